"""The quality asset checks and the Data Docs asset, run through Dagster on a small lake."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from assets import quality as q
from mtashift.lake import Lake, write_partition
from mtashift.quality.docs import results_table
from mtashift.quality.synthetic import shift_node_clock, synthetic_events
from pipelines.partitions import daily_partitions
from pipelines.resources import LakeResource
from schemas.quarantine import QUARANTINE_SCHEMA

DAY = "2024-03-01"
EVENT_CHECKS = [
    q.events_expectations,
    q.events_expectations_warn,
    q.events_record_mix_drift,
    q.events_clock_skew,
]


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    return synthetic_events(rows=100_000, day=DAY, seed=3)


def _stand_in(key: str, partitioned: bool) -> dg.AssetsDefinition:
    """An asset with the real key that leaves the lake as the test wrote it (checks run after it)."""

    @dg.asset(name=key, partitions_def=daily_partitions if partitioned else None)
    def _asset() -> None:
        return None

    return _asset


def _run_checks(
    lake: Lake, asset: str, checks: list, partition: str | None = DAY
) -> dict[str, dg.AssetCheckEvaluation]:
    result = dg.materialize(
        [_stand_in(asset, partition is not None), *checks],
        partition_key=partition,
        resources={"lake": LakeResource(root=str(lake.root))},
        raise_on_error=False,
    )
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _failed_names(evaluation: dg.AssetCheckEvaluation) -> list[str]:
    return [
        f["expectation"] + ":" + ",".join(f["columns"])
        for f in evaluation.metadata["failed_expectations"].data
    ]


def test_clean_partition_passes_every_events_check(tmp_path, events) -> None:
    lake = Lake.at(tmp_path / "lake")
    write_partition(events, lake=lake, table="events", day=DAY)
    got = _run_checks(lake, "events", EVENT_CHECKS)
    assert {name: e.passed for name, e in got.items()} == {
        "events_expectations": True,
        "events_expectations_warn": True,
        "events_record_mix_drift": True,
        "events_clock_skew": True,
    }
    assert got["events_expectations"].metadata["rows"].value == 100_000
    assert got["events_expectations"].metadata["evaluated"].value == 49 + 2  # events + record-mix ERROR
    for suite, part in (
        ("events", "ERROR"),
        ("events", "WARN"),
        ("events_record_mix", "ERROR"),
        ("events_clock", "WARN"),
    ):
        assert (lake.quality / "results" / suite / DAY / f"{part}.json").exists()


def test_corruptions_fail_the_right_check_with_the_right_severity(tmp_path, events) -> None:
    lake = Lake.at(tmp_path / "lake")
    bad = shift_node_clock(events, node="kumo-a", seconds=300, day=DAY).with_columns(
        pl.when(pl.int_range(pl.len()) < 2).then(pl.lit("bogus")).otherwise("event_type").alias("event_type")
    )
    write_partition(bad, lake=lake, table="events", day=DAY)
    got = _run_checks(lake, "events", EVENT_CHECKS)

    blocking = got["events_expectations"]
    assert not blocking.passed and blocking.severity == dg.AssetCheckSeverity.ERROR and blocking.blocking
    # the bogus type fails the allowed values, and the record-type mapping of the rows' raw types
    assert _failed_names(blocking) == [
        "expect_column_values_to_be_in_set:event_type",
        "expect_column_values_to_be_in_set:mapping",
    ]
    combos = bad.head(2).select("mta", "raw_type").unique().height
    assert blocking.metadata["unexpected_counts"].data == {
        "expect_column_values_to_be_in_set(event_type)": 2,
        "expect_column_values_to_be_in_set(mapping)": combos,
    }
    examples = blocking.metadata["examples"].data["expect_column_values_to_be_in_set(event_type)"]
    assert [e["event_type"] for e in examples] == ["bogus", "bogus"]

    skew = got["events_clock_skew"]
    assert not skew.passed and skew.severity == dg.AssetCheckSeverity.WARN and not skew.blocking
    assert skew.metadata["examples"].data["expect_column_values_to_be_between(clock_offset_s)"] == [
        {"node": "kumo-a", "mta": "kumo", "clock_offset_s": 300.0}
    ]
    assert got["events_expectations_warn"].passed and got["events_record_mix_drift"].passed


def test_missing_partition_is_not_an_error(tmp_path) -> None:
    lake = Lake.at(tmp_path / "lake")
    got = _run_checks(lake, "events", [q.events_expectations])
    assert got["events_expectations"].passed
    assert got["events_expectations"].metadata["note"].value == "no data"


def test_rate_above_one_fails_the_blocking_rates_check(tmp_path, events) -> None:
    from mtashift.rates import rates as build_rates

    lake = Lake.at(tmp_path / "lake")
    table = build_rates(events=events.lazy(), consequences=None, grain="day").collect()
    bad = table.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(1.5).otherwise("delivery_rate").alias("delivery_rate")
    )
    write_partition(bad, lake=lake, table="provider_rates_daily", day=DAY)
    checks = [q.provider_rates_daily_expectations, q.provider_rates_daily_expectations_warn]
    got = _run_checks(lake, "provider_rates_daily", checks)
    assert not got["provider_rates_daily_expectations"].passed
    assert got["provider_rates_daily_expectations"].severity == dg.AssetCheckSeverity.ERROR
    assert _failed_names(got["provider_rates_daily_expectations"]) == [
        "expect_column_values_to_be_between:delivery_rate"
    ]
    assert got["provider_rates_daily_expectations_warn"].passed


def test_quarantine_check_and_data_docs(tmp_path) -> None:
    lake = Lake.at(tmp_path / "lake")
    rows = pl.DataFrame(
        {
            "source_kind": ["pmta"] * 2,
            "source_file": ["pmta/n1/acct.csv"] * 2,
            "source_line": [4, 7],
            "byte_offset": [80, 200],
            "reason": ["malformed_csv", "not-a-reason"],
            "detail": ["x", "y"],
            "raw_text": ['<script>alert("q")</script>', "ok"],
        },
        schema=QUARANTINE_SCHEMA,
    )
    (lake.quarantine / "pmta").mkdir(parents=True)
    rows.write_parquet(lake.quarantine / "pmta" / "acct.parquet")
    got = _run_checks(lake, "pmta_files", [q.pmta_quarantine_expectations], partition=None)
    check = got["pmta_quarantine_expectations"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert _failed_names(check) == ["expect_column_values_to_be_in_set:reason"]

    result = dg.materialize([q.quality_docs], resources={"lake": LakeResource(root=str(lake.root))})
    assert result.success
    index = lake.quality / "index.html"
    assert index.exists() and "quarantine" in index.read_text(encoding="utf-8")
    [page] = (lake.quality / "validations" / "quarantine" / "pmta").rglob("*.html")
    html = page.read_text(encoding="utf-8")
    assert "not-a-reason" in html
    assert "dataContextId" not in html and 'src="../../../../static/images/logo-long.png"' in html
    table = pl.read_parquet(lake.table_dir("quality_results") / "data.parquet")
    assert table.equals(results_table(lake))
    failing = table.filter(~pl.col("success"))
    assert failing.select(
        "suite", "batch", "expectation", "columns", "severity", "unexpected_count"
    ).rows() == [("quarantine", "pmta", "expect_column_values_to_be_in_set", "reason", "ERROR", 1)]


def test_data_docs_escape_untrusted_values(tmp_path, events) -> None:
    from mtashift.quality.docs import build_data_docs, save_result
    from mtashift.quality.validate import validate

    lake = Lake.at(tmp_path / "lake")
    hostile = events.head(200).with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit("<img src=x onerror=alert(1)>"))
        .otherwise("event_type")
        .alias("event_type")
    )
    save_result(validate(hostile, suite="events", day=DAY, severity="ERROR"), lake=lake)
    build_data_docs(lake)
    [page] = (lake.quality / "validations" / "events" / DAY).rglob("*.html")
    html = page.read_text(encoding="utf-8")
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
