"""The cutover and TCO Dagster assets end to end on a small lake: tables written, alert check fires."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import polars as pl
import pytest
import yaml

from assets import cutover as cutover_assets
from assets import tco as tco_assets
from mtashift.lake import Lake, write_partition
from pipelines.resources import resources_for
from schemas.events import EVENT_SCHEMA
from tests.test_cutover import T0, comparison_scenario

SEEDS = "test_id,sent_at,pool,provider,seed_address,placement\n" + "".join(
    f"t{i},{(T0 - timedelta(days=2)).isoformat()},p1,google,s{i}@gmail.com,inbox\n" for i in range(3)
) + "bad,row\n"  # fmt: skip


@pytest.fixture()
def estate(tmp_path):
    lake, landing = tmp_path / "lake", tmp_path / "landing"
    landing.mkdir()
    ev, plan = comparison_scenario()
    # The lake holds canonical columns only: the provider comes from the provider map.
    events = ev.collect().select(list(EVENT_SCHEMA.names()))
    lk = Lake.at(lake)
    for (day,), part in events.with_columns(
        pl.col("event_time").dt.date().cast(pl.String).alias("d")
    ).group_by("d"):
        write_partition(part.drop("d"), lake=lk, table="events", day=day)
    (landing / "plan.yaml").write_text(
        yaml.safe_dump(
            {
                **plan,
                "tco": {"shared": {"operator_usd_per_hour": 90}},
                # the small scenario's one regression is judged on its raw p-value
                "cutover": {"statistics": {"multiple_testing": "none"}},
            }
        )
    )
    (landing / "seedlist").mkdir()
    (landing / "seedlist" / "s.csv").write_text(SEEDS)
    return lk, resources_for(lake=lake, landing=landing)


def test_cutover_assets_write_tables_and_alert(estate) -> None:
    lk, resources = estate
    selection = [
        cutover_assets.cutover_plan,
        cutover_assets.cutover_comparison,
        cutover_assets.seedlist_placement,
        cutover_assets.inflight_drain,
        cutover_assets.cutover_verdicts,
        cutover_assets.cutover_verdicts_alert,
    ]
    result = dg.materialize(selection, resources=resources, raise_on_error=True)
    assert result.success
    for table in ("cutover_plan", "cutover_comparison", "seedlist_placement", "seedlist_results", "inflight_drain",
                  "cutover_verdicts"):  # fmt: skip
        assert (lk.root / table / "data.parquet").exists(), table
    plan = pl.read_parquet(lk.root / "cutover_plan" / "data.parquet")
    assert plan.filter(pl.col("pool") == "p1")["cutover_source"].item() == "plan"
    comp = pl.read_parquet(lk.root / "cutover_comparison" / "data.parquet")
    # Providers come from add_provider (gmail.com / yahoo.com by the domain list).
    d = comp.filter((pl.col("provider") == "google") & (pl.col("metric") == "deferral_rate")).to_dicts()[0]
    assert (d["before_num"], d["before_n"], d["after_num"], d["after_n"]) == (40, 1000, 70, 1000)
    verdicts = pl.read_parquet(lk.root / "cutover_verdicts" / "data.parquet")
    assert verdicts.filter(pl.col("pool") == "p1")["verdict"].item() == "hold"
    # Seed list: 3 rows parsed, the bad one quarantined under the file's key.
    assert pl.read_parquet(lk.root / "seedlist_results" / "data.parquet").height == 3
    q = pl.concat([pl.read_parquet(p) for p in (lk.quarantine / "seedlist").glob("*.parquet")])
    assert q.select("source_file", "source_line", "reason").rows() == [("seedlist/s.csv", 5, "invalid_row")]
    # The alert: fails (WARN: hold, no rollback) and names the pool.
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 1
    check = checks[0]
    assert check.passed is False
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["hold"].value == ["p1"]
    assert "deferral_rise" in {e["rule"] for e in check.metadata["alert"].value["p1"]["evidence"]}


def test_cutover_assets_on_an_empty_lake(tmp_path) -> None:
    (tmp_path / "landing").mkdir()
    resources = resources_for(lake=tmp_path / "lake", landing=tmp_path / "landing")
    selection = [
        cutover_assets.cutover_plan,
        cutover_assets.cutover_comparison,
        cutover_assets.seedlist_placement,
        cutover_assets.inflight_drain,
        cutover_assets.cutover_verdicts,
        cutover_assets.cutover_verdicts_alert,
        tco_assets.tco,
    ]
    result = dg.materialize(selection, resources=resources, raise_on_error=True)
    assert result.success
    verdicts = pl.read_parquet(tmp_path / "lake" / "cutover_verdicts" / "data.parquet")
    assert verdicts.is_empty()
    assert result.get_asset_check_evaluations()[0].passed is True
    summary = pl.read_parquet(tmp_path / "lake" / "tco" / "data.parquet")
    assert summary["range_flag"].unique().to_list() == ["below_range"]


def test_tco_asset_tables(estate) -> None:
    lk, resources = estate
    result = dg.materialize([tco_assets.tco], resources=resources, raise_on_error=True)
    assert result.success
    summary = pl.read_parquet(lk.root / "tco" / "data.parquet")
    assert summary["option"].to_list() == ["powermta", "kumomta"]
    cash = pl.read_parquet(lk.root / "tco_cashflow" / "data.parquet")
    assert cash.height == 2 * 37  # months 0..36 for both options
    sens = pl.read_parquet(lk.root / "tco_sensitivity" / "data.parquet")
    assert sens.height == 14
    a = {r["name"]: r for r in pl.read_parquet(lk.root / "tco_assumptions" / "data.parquet").to_dicts()}
    assert (
        a["shared.operator_usd_per_hour"]["value"] == "90" and a["shared.operator_usd_per_hour"]["overridden"]
    )
    # The scenario: 960 + 930 google and 200 yahoo messages over 15 UTC days; VMTA v1 on PowerMTA.
    assert a["measured.vmtas"]["value"] == "1"
    total = sum(pl.read_parquet(p).filter(pl.col("event_type").is_in(["delivered", "bounced", "expired"])).height
                for p in lk.events.glob("date=*/*.parquet"))  # fmt: skip
    assert total == 960 + 930 + 200
    days = int(a["measured.days_observed"]["value"])
    assert summary["mean_daily_messages"][0] == pytest.approx(total / days)
    assert summary["range_flag"][0] == "below_range"
    assert "staying on PowerMTA can be the better call" in summary["note"][0]
