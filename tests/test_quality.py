"""GX suites: single-sourced from the contracts, and each corruption fails the right expectation.

One clean synthetic partition (60k canonical events, both MTAs, four nodes) is corrupted one way
at a time; each test asserts which expectation fails, with which severity and how many rows.
"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from mtashift.bounces import build_bounces
from mtashift.quality import frames, suites
from mtashift.quality.drift import ClockParams, _best_lag, node_clock, record_mix
from mtashift.quality.synthetic import shift_node_clock, synthetic_events
from mtashift.quality.validate import needed_columns, validate
from mtashift.rates import rates
from mtashift.taxonomy import CONSEQUENCES
from schemas.events import EVENT_SCHEMA, EVENT_TYPES
from schemas.quarantine import QUARANTINE_SCHEMA, REASONS
from schemas.suppression import SUPPRESSION_SCHEMA

DAY = "2024-03-01"


@pytest.fixture(scope="module")
def clean() -> pl.DataFrame:
    return synthetic_events(rows=60_000, day=DAY, seed=7)


def _only(outcome, *, expectation: str, column: str | None = None):
    """The single failed expectation of ``outcome``, checked to be the named one."""
    assert len(outcome.failed) == 1, [f.as_dict() for f in outcome.failed]
    f = outcome.failed[0]
    assert f.expectation == expectation
    if column is not None:
        assert column in f.columns
    return f


def _first_rows(n: int) -> pl.Expr:
    return pl.int_range(pl.len()) < n


# ----------------------------------------------------------------------------- suites


def test_committed_suites_equal_regenerated() -> None:
    built = suites.build_suites()
    assert set(built) == set(suites.SUITE_NAMES)
    for name, doc in built.items():
        committed = (suites.expectations_dir() / f"{name}.json").read_text(encoding="utf-8")
        assert committed == suites.dumps(doc), f"{name}.json is stale: python -m mtashift.quality.suites"


def test_suites_are_gx_suites_with_a_severity_each() -> None:
    import great_expectations as gx

    for name in suites.SUITE_NAMES:
        doc = suites.load_suite(name)
        suite = gx.ExpectationSuite(**doc)
        assert len(suite.expectations) == len(doc["expectations"]) > 0
        for e in doc["expectations"]:
            assert e["meta"]["severity"] in ("ERROR", "WARN"), (name, e["type"])
            assert e["severity"] == {"ERROR": "critical", "WARN": "warning"}[e["meta"]["severity"]]
            assert e["description"]


def test_allowed_values_come_from_the_contracts() -> None:
    def kwargs(suite: str, column: str, typ: str = "expect_column_values_to_be_in_set") -> dict:
        [e] = [
            e
            for e in suites.load_suite(suite)["expectations"]
            if e["type"] == typ and e["kwargs"].get("column") == column
        ]
        return e["kwargs"]

    assert kwargs("events", "event_type")["value_set"] == list(EVENT_TYPES)
    assert kwargs("events", "mta")["value_set"] == ["pmta", "kumo"]
    assert kwargs("quarantine", "reason")["value_set"] == list(REASONS)
    assert kwargs("bounces", "consequence")["value_set"] == list(CONSEQUENCES)
    cols = kwargs("events", None, "expect_table_columns_to_match_ordered_list")["column_list"]
    assert cols == list(EVENT_SCHEMA.names())
    assert (
        kwargs("events", "event_time", "expect_column_type_to_be")["type_"]
        == "timestamp[us, tz=UTC][pyarrow]"
    )
    # thresholds.yaml values are baked in
    assert kwargs("events", "event_type", "expect_column_values_to_not_be_in_set")["mostly"] == 0.98
    assert kwargs("bounces", "category", "expect_column_values_to_not_be_in_set")["mostly"] == 0.9


def test_needed_columns_are_only_what_the_expectations_read() -> None:
    assert needed_columns("events", "WARN") == ["queued_time", "event_type", "node", "smtp_code", "event_id"]
    assert needed_columns("events_clock") == ["node", "mta", "event_type", "event_time", "queued_time"]
    err = needed_columns("events", "ERROR")
    assert "extra" not in err and "response" not in err and {"event_id", "recipient_domain"} <= set(err)


# ----------------------------------------------------------------------------- clean data


def test_clean_partition_passes_every_suite(clean) -> None:
    for suite in ("events", "events_record_mix", "events_clock"):
        outcome = validate(clean, suite=suite, day=DAY)
        assert outcome.passed, (suite, [f.as_dict() for f in outcome.failed])
        assert outcome.severity is None
    clock = node_clock(clean)
    assert clock["clock_offset_s"].to_list() == [0.0, 0.0, 0.0, 0.0]  # judged, and agreeing


def test_empty_partition_passes() -> None:
    outcome = validate(pl.DataFrame(schema=EVENT_SCHEMA), suite="events", day=DAY)
    assert (
        outcome.passed
        and outcome.rows == 0
        and outcome.evaluated == len(suites.load_suite("events")["expectations"])
    )


def test_day_is_required_by_day_bounded_suites(clean) -> None:
    with pytest.raises(ValueError, match="day"):
        validate(clean, suite="events", day=None)


# ----------------------------------------------------------------------------- corruptions: ERROR


def test_bad_event_type_value(clean) -> None:
    bad = clean.with_columns(
        pl.when(_first_rows(3)).then(pl.lit("bogus")).otherwise("event_type").alias("event_type")
    )
    outcome = validate(bad, suite="events", day=DAY, severity="ERROR")
    assert outcome.severity == "ERROR"
    f = _only(outcome, expectation="expect_column_values_to_be_in_set", column="event_type")
    assert f.unexpected_count == 3
    assert [e["event_type"] for e in f.examples] == ["bogus"] * 3
    assert [e["event_id"] for e in f.examples] == clean["event_id"][:3].to_list()


def test_event_time_outside_the_day(clean) -> None:
    bad = clean.with_columns(
        pl.when(_first_rows(2))
        .then(pl.col("event_time") - timedelta(hours=1))
        .otherwise("event_time")
        .alias("event_time"),
        pl.when(_first_rows(2))
        .then(pl.col("queued_time") - timedelta(hours=1))
        .otherwise("queued_time")
        .alias("queued_time"),
    )
    f = _only(
        validate(bad, suite="events", day=DAY, severity="ERROR"),
        expectation="expect_column_values_to_be_between",
    )
    assert f.columns == ("event_time",) and f.unexpected_count == 2 and f.severity == "ERROR"
    # the same rows are fine for the previous day's bounds only if they fall on it
    assert (
        validate(bad, suite="events", day="2024-02-29", severity="ERROR").failed[0].unexpected_count
        == 60_000 - 2
    )


def test_queued_time_after_event_time(clean) -> None:
    delivered = pl.col("event_type") == "delivered"
    first4 = delivered & (delivered.cum_sum() <= 4)
    bad = clean.with_columns(
        pl.when(first4)
        .then(pl.col("event_time") + timedelta(seconds=1))
        .otherwise("queued_time")
        .alias("queued_time")
    )
    f = _only(
        validate(bad, suite="events", day=DAY, severity="ERROR"),
        expectation="expect_column_pair_values_a_to_be_greater_than_b",
    )
    assert f.unexpected_count == 4 and f.columns == ("event_time", "queued_time")
    # complaints are timed by the reporter: the same inversion there is not an error
    complaint = pl.col("event_type") == "complaint"
    ok = clean.with_columns(
        pl.when(complaint)
        .then(pl.col("event_time") + timedelta(hours=1))
        .otherwise("queued_time")
        .alias("queued_time")
    )
    assert validate(ok, suite="events", day=DAY, severity="ERROR").passed


def test_duplicate_event_id(clean) -> None:
    bad = clean.with_columns(
        pl.when(pl.int_range(pl.len()) == 10)
        .then(pl.col("event_id").first())
        .otherwise("event_id")
        .alias("event_id")
    )
    f = _only(
        validate(bad, suite="events", day=DAY, severity="ERROR"),
        expectation="expect_column_values_to_be_unique",
    )
    assert f.unexpected_count == 2  # both copies
    assert {e["event_id"] for e in f.examples} == {clean["event_id"][0]}


def test_hash_collisions_do_not_fail_uniqueness(clean, monkeypatch) -> None:
    # every id hashing alike is the worst collision: the real values decide
    monkeypatch.setattr(
        frames,
        "_hashed",
        lambda s: frames.pd.Series(frames.pd.array(np.zeros(len(s), "uint64"), dtype="UInt64")),
    )
    assert validate(clean, suite="events", day=DAY, severity="ERROR").passed


def test_missing_recipient_domain_on_delivered_rows(clean) -> None:
    delivered = pl.col("event_type") == "delivered"
    bad = clean.with_columns(
        pl.when(delivered & (delivered.cum_sum() <= 5))
        .then(None)
        .otherwise("recipient_domain")
        .alias("recipient_domain")
    )
    f = _only(
        validate(bad, suite="events", day=DAY, severity="ERROR"),
        expectation="expect_column_values_to_not_be_null",
    )
    assert f.columns == ("recipient_domain",) and f.unexpected_count == 5
    # queue-level rows may lack a recipient domain
    assert clean.filter(pl.col("event_type") == "queue_deferred")["recipient_domain"].null_count() > 0


def test_unknown_raw_type_must_become_other(clean) -> None:
    wrong = (pl.col("raw_type") == "d") & (pl.col("event_type") == "delivered")
    bad = clean.with_columns(
        pl.when(wrong).then(pl.lit("bounced")).otherwise("event_type").alias("event_type")
    )
    f = _only(
        validate(bad, suite="events_record_mix", day=DAY, severity="ERROR"),
        expectation="expect_column_values_to_be_in_set",
    )
    assert f.columns == ("mapping",) and f.unexpected_count == 1
    assert f.examples == [
        {"mta": "pmta", "raw_type": "d", "event_type": "bounced", "mapping": "pmta:d->bounced"}
    ]


# ----------------------------------------------------------------------------- corruptions: WARN


def test_no_powermta_transient_records(clean) -> None:
    bad = clean.filter(~((pl.col("mta") == "pmta") & (pl.col("raw_type") == "t")))
    assert validate(bad, suite="events_record_mix", day=DAY, severity="ERROR").passed
    outcome = validate(bad, suite="events_record_mix", day=DAY, severity="WARN")
    assert outcome.severity == "WARN"
    f = _only(outcome, expectation="expect_column_values_to_be_between", column="rows")
    assert "pmta `t` records" in f.description and f.unexpected_count == 1
    assert f.examples == [{"mta": "pmta", "raw_type": "t", "event_type": "deferred", "rows": 0}]


def test_clock_skew_on_one_node() -> None:
    events = synthetic_events(rows=100_000, day=DAY, seed=3)
    skewed = shift_node_clock(events, node="kumo-a", seconds=300, day=DAY)
    assert validate(skewed, suite="events", day=DAY, severity="ERROR").passed
    outcome = validate(skewed, suite="events_clock", day=DAY, severity="WARN")
    assert outcome.severity == "WARN"
    f = _only(outcome, expectation="expect_column_values_to_be_between", column="clock_offset_s")
    assert f.unexpected_count == 1
    assert f.examples == [{"node": "kumo-a", "mta": "kumo", "clock_offset_s": 300.0}]
    # a node behind is found too, and within tolerance nothing is reported
    behind = node_clock(shift_node_clock(events, node="pmta-b", seconds=-90, day=DAY))
    assert dict(behind.select("node", "clock_offset_s").iter_rows()) == {
        "kumo-a": 0.0, "kumo-b": 0.0, "pmta-a": 0.0, "pmta-b": -90.0
    }  # fmt: skip
    slight = shift_node_clock(events, node="pmta-b", seconds=30, day=DAY)
    assert validate(slight, suite="events_clock", day=DAY).passed


def test_reception_lag_between_a_nodes_own_timestamps(clean) -> None:
    # queued_time written in local time without its offset on one node: both timestamps disagree
    on = (pl.col("node") == "kumo-b") & pl.col("queued_time").is_not_null()
    bad = clean.with_columns(
        pl.when(on)
        .then(pl.col("queued_time") - timedelta(hours=2))
        .otherwise("queued_time")
        .alias("queued_time")
    )
    f = _only(validate(bad, suite="events_clock", day=DAY), expectation="expect_column_values_to_be_between")
    assert f.columns == ("reception_lag_median_s",) and f.severity == "WARN"
    assert f.examples == [{"node": "kumo-b", "mta": "kumo", "reception_lag_median_s": 7200.0}]


def test_share_of_other_events(clean) -> None:
    n = int(clean.height * 0.03)
    bad = clean.with_columns(
        pl.when(_first_rows(n)).then(pl.lit("other")).otherwise("event_type").alias("event_type"),
        pl.when(_first_rows(n)).then(pl.lit("NewType")).otherwise("raw_type").alias("raw_type"),
    )
    outcome = validate(bad, suite="events", day=DAY)
    f = _only(outcome, expectation="expect_column_values_to_not_be_in_set", column="event_type")
    assert f.severity == "WARN" and outcome.severity == "WARN" and f.unexpected_count == n


# ----------------------------------------------------------------------------- other tables


def test_bounces_unclassified_share_and_consequence(clean) -> None:
    bounces = build_bounces(events=clean.lazy()).collect()
    assert (
        bounces.height
        == clean.filter(
            pl.col("event_type").is_in(["bounced", "expired", "deferred", "queue_deferred"])
        ).height
    )
    assert validate(bounces, suite="bounces", day=DAY).passed
    n = int(bounces.height * 0.2)
    unclassified = bounces.with_columns(
        pl.when(_first_rows(n)).then(pl.lit("other")).otherwise("category").alias("category")
    )
    f = _only(
        validate(unclassified, suite="bounces", day=DAY), expectation="expect_column_values_to_not_be_in_set"
    )
    already = int((bounces["category"].tail(bounces.height - n) == "other").sum())  # queue-level delays
    assert already > 0 and f.severity == "WARN" and f.unexpected_count == n + already
    wrong = bounces.with_columns(
        pl.when(_first_rows(1)).then(pl.lit("retry")).otherwise("consequence").alias("consequence")
    )
    f = _only(
        validate(wrong, suite="bounces", day=DAY, severity="ERROR"),
        expectation="expect_column_values_to_be_in_set",
    )
    assert f.columns == ("consequence",) and f.unexpected_count == 1


def test_rate_above_one(clean) -> None:
    table = rates(events=clean.lazy(), consequences=None, grain="day").collect()
    assert table.height > 4 and validate(table, suite="provider_rates_daily", day=DAY).passed
    bad = table.with_columns(pl.when(_first_rows(1)).then(1.25).otherwise("bounce_rate").alias("bounce_rate"))
    outcome = validate(bad, suite="provider_rates_daily", day=DAY)
    f = _only(outcome, expectation="expect_column_values_to_be_between", column="bounce_rate")
    assert f.severity == "ERROR" and f.unexpected_count == 1 and f.examples[0]["bounce_rate"] == 1.25
    over = table.with_columns(
        pl.when(_first_rows(1)).then(3.0).otherwise("complaint_rate").alias("complaint_rate")
    )
    f = _only(
        validate(over, suite="provider_rates_daily", day=DAY),
        expectation="expect_column_values_to_be_between",
    )
    assert f.columns == ("complaint_rate",) and f.severity == "WARN"
    dup = pl.concat([table, table.head(1)])
    f = _only(
        validate(dup, suite="provider_rates_daily", day=DAY),
        expectation="expect_compound_columns_to_be_unique",
    )
    assert f.unexpected_count == 2


def test_quarantine_reason_outside_the_vocabulary() -> None:
    rows = pl.DataFrame(
        {
            "source_kind": ["pmta", "pmta"],
            "source_file": ["pmta/n1/acct.csv", "pmta/n1/acct.csv"],
            "source_line": [3, 9],
            "byte_offset": [120, 577],
            "reason": ["malformed_csv", "looked_odd"],
            "detail": ["unterminated quote", "?"],
            "raw_text": ['d,"x', "<b>"],
        },
        schema=QUARANTINE_SCHEMA,
    )
    f = _only(
        validate(rows, suite="quarantine", day=None, batch="pmta"),
        expectation="expect_column_values_to_be_in_set",
    )
    assert f.columns == ("reason",) and f.unexpected_count == 1
    assert f.examples == [{"source_file": "pmta/n1/acct.csv", "source_line": 9, "reason": "looked_odd"}]
    wrong_type = rows.with_columns(pl.col("source_line").cast(pl.Int32))
    f = _only(
        validate(wrong_type.head(1), suite="quarantine", day=None), expectation="expect_column_type_to_be"
    )
    assert f.columns == ("source_line",) and f.observed_value == "int32[pyarrow]"


def test_suppression_key_is_unique() -> None:
    row = {
        "address": "a@x.example", "match_key": "a@x.example", "scope": "global", "reason": "bad mailbox",
        "category": "bad-mailbox", "first_seen": None, "last_seen": None, "evidence_count": 1, "evidence": ["e1"],
        "source": "bounce", "expires_at": None, "rule": "bounces.suppress", "sources": ["bounce"],
    }  # fmt: skip
    table = pl.DataFrame([row, {**row, "scope": "tenant:acme"}], schema=SUPPRESSION_SCHEMA)
    assert validate(table, suite="suppression", day=None).passed
    f = _only(
        validate(pl.concat([table, table.head(1)]), suite="suppression", day=None),
        expectation="expect_compound_columns_to_be_unique",
    )
    assert f.unexpected_count == 2 and f.severity == "ERROR"
    f = _only(
        validate(
            table.with_columns(pl.lit("everyone").alias("scope")).head(1), suite="suppression", day=None
        ),
        expectation="expect_column_values_to_match_regex",
    )
    assert f.columns == ("scope",)


# ----------------------------------------------------------------------------- derived frames


def test_record_mix_counts_every_known_type() -> None:
    events = pl.DataFrame(
        {
            "mta": ["pmta", "pmta", "pmta", "kumo", "kumo"],
            "raw_type": ["d", "d", "zz", "Delivery", "Bounce"],
            "event_type": ["delivered", "delivered", "other", "delivered", "bounced"],
        }
    )
    mix = record_mix(events)
    assert mix.height == 9 + 14 + 1  # known pmta (b twice) + known kumo + the unknown `zz`
    got = {
        r["mapping"]: (r["rows"], r["mta_rows"], r["type_share"], r["mta_delivered"])
        for r in mix.iter_rows(named=True)
    }
    assert got["pmta:d->delivered"] == (2, 3, 2 / 3, 2)
    assert got["pmta:zz->other"] == (1, 3, 1 / 3, 2)
    assert got["pmta:t->deferred"] == (0, 3, 0.0, 2)
    assert got["kumo:Bounce->bounced"] == (1, 2, 0.5, 1)


def test_best_lag_recovers_a_known_shift() -> None:
    rng = np.random.default_rng(0)
    base = rng.poisson(5, 600).astype(float)
    base[100:110] += 40
    base[400:405] += 60
    shifted = np.roll(base, 7)
    lag, corr = _best_lag(shifted - shifted.mean(), base - base.mean(), 30)
    assert lag == 7 and corr > 0.9
    assert _best_lag(base - base.mean(), shifted - shifted.mean(), 30)[0] == -7


def test_two_disagreeing_nodes_blame_the_smaller() -> None:
    events = synthetic_events(rows=100_000, day=DAY, seed=5).filter(
        pl.col("node").is_in(["kumo-a", "pmta-b"])
    )
    skewed = shift_node_clock(events, node="pmta-b", seconds=600, day=DAY)
    clock = node_clock(skewed, params=ClockParams.load())
    assert dict(clock.select("node", "clock_offset_s").iter_rows()) == {"kumo-a": None, "pmta-b": 600.0}


def test_outcome_result_is_a_gx_result_document(clean) -> None:
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult

    outcome = validate(clean.head(500), suite="events", day=DAY, severity="WARN")
    doc = json.loads(json.dumps(outcome.result))
    assert (
        doc["suite_name"] == "events"
        and doc["statistics"]["evaluated_expectations"] == outcome.evaluated == 4
    )
    assert isinstance(
        ExpectationSuiteValidationResult(**{k: doc[k] for k in ("success", "results", "suite_name")}).success,
        bool,
    )
