"""Cutover evidence: statistics, plan inference, comparison, in-flight drain, verdict rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from mtashift import cutover as co
from schemas.events import EVENT_SCHEMA

T0 = datetime(2024, 5, 8, tzinfo=UTC)
SCHEMA = {**EVENT_SCHEMA, "provider": pl.String()}


def events_frame(rows: list[dict]) -> pl.LazyFrame:
    """Canonical events (plus provider) from partial dicts; event ids are the row numbers."""
    full = []
    for i, r in enumerate(rows):
        r = {"event_id": f"e{i:06d}", "sender": "news@s.example", **r}
        if r.get("recipient") and not r.get("recipient_domain"):
            r["recipient_domain"] = r["recipient"].rsplit("@", 1)[1]
        full.append({name: r.get(name) for name in SCHEMA})
    return pl.DataFrame(full, schema=SCHEMA).lazy()


def message(
    rows: list[dict], *, mta: str, pool: str, source: str, provider: str, rcpt: str, queued: datetime,
    outcome: list[tuple[str, float]], mid: str | None = None, job: str | None = None,
) -> None:  # fmt: skip
    """Append the events of one message: ``outcome`` = [(event_type, seconds after queueing), ...]."""
    for event_type, secs in outcome:
        rows.append(
            {
                "mta": mta, "event_type": event_type, "event_time": queued + timedelta(seconds=secs),
                "queued_time": queued, "recipient": rcpt, "pool": pool, "source": source, "provider": provider,
                "message_id": mid, "job_id": job,
            }
        )  # fmt: skip


def policy(**over) -> dict:
    return co.load_policy(overrides=over)


# --------------------------------------------------------------------------- statistics


def test_wilson_and_z_test_hand_computed() -> None:
    # Wilson, z = 1.959964 (z^2 = 3.841459), n = 1000:
    #   40/1000: p = 0.04, denom = 1 + z^2/n = 1.0038415
    #     centre = (0.04 + z^2/2000) / 1.0038415 = 0.0419207 / 1.0038415 = 0.041760
    #     half   = z/denom * sqrt(0.04*0.96/1000 + z^2/4e6) = 1.952464 * 0.0062738 = 0.012249
    #     -> [0.0295, 0.0540]
    #   70/1000: centre = 0.0719207 / 1.0038415 = 0.071646, half = 1.952464 * 0.0081277 = 0.015869
    #     -> [0.0558, 0.0875]
    assert co.wilson(40, 1000) == (pytest.approx(0.0295, abs=5e-5), pytest.approx(0.0540, abs=5e-5))
    assert co.wilson(70, 1000) == (pytest.approx(0.0558, abs=5e-5), pytest.approx(0.0875, abs=5e-5))
    # Two-proportion z-test (pooled): p = 110/2000 = 0.055,
    #   se = sqrt(0.055 * 0.945 * (1/1000 + 1/1000)) = sqrt(0.00010395) = 0.0101956
    #   z  = (0.07 - 0.04) / 0.0101956 = 2.9424;  p = 2 * (1 - Phi(2.9424)) = 0.0033
    test, z, p = co.two_proportion_test(40, 1000, 70, 1000)
    assert test == "z"
    assert round(z, 4) == 2.9424
    assert round(p, 4) == 0.0033
    row = co.proportion_row(
        k_before=40,
        n_before=1000,
        k_after=70,
        n_after=1000,
        min_n=500,
        min_expected=5,
        confidence=0.95,
        alpha=0.01,
    )
    assert row["before_value"] == 0.04 and row["after_value"] == 0.07
    assert round(row["rel_change"], 4) == 0.75
    assert row["significant"] is True and row["small_sample"] is False


def test_fisher_for_small_expected_counts() -> None:
    # 0/100 before vs 3/100 after: pooled expected successes = 1.5 < 5 -> Fisher exact.
    # One-sided P(X=3) = C(100,3)/C(200,3) = 161700/1313400 = 0.123116; two-sided doubles it
    # (the table is symmetric) = 0.2462.
    test, _stat, p = co.two_proportion_test(0, 100, 3, 100)
    assert test == "fisher"
    assert round(p, 4) == 0.2462
    # No successes on either side: Fisher, p = 1 (no evidence), never a NaN from the z-test.
    assert co.two_proportion_test(0, 800, 0, 900)[0] == "fisher"
    assert co.two_proportion_test(0, 800, 0, 900)[2] == 1.0


def test_small_sample_flagged_not_judged() -> None:
    row = co.proportion_row(
        k_before=4,
        n_before=100,
        k_after=30,
        n_after=100,
        min_n=500,
        min_expected=5,
        confidence=0.95,
        alpha=0.01,
    )
    assert row["small_sample"] is True
    assert row["p_value"] < 0.01  # significant, but below the sample minimum...
    pol = policy()
    rows = [dict(row, pool="p", provider="google", metric="deferral_rate")]
    verdict, evidence = co.evaluate_pool(pool="p", comparison=rows, seedlist=[], drain=None, policy=pol)
    # ...so deferral_rise does not fire; small_sample makes it a watch (google had < min_n before too,
    # so only the pool aggregate could trigger it - there is none here).
    assert [e["rule"] for e in evidence] == []
    assert verdict == "proceed"
    rows.append(dict(row, pool="p", provider="all", metric="deferral_rate"))
    verdict, evidence = co.evaluate_pool(pool="p", comparison=rows, seedlist=[], drain=None, policy=pol)
    assert verdict == "watch"
    assert [e["rule"] for e in evidence] == ["small_sample"]


def test_quantile_and_mean_intervals() -> None:
    import numpy as np

    x = np.arange(1, 101, dtype=float)  # 1..100
    value, low, high = co.quantile_ci(x, 0.5, confidence=0.95)
    # Linear-interpolated median of 1..100 = 50.5; the order-statistic interval brackets it.
    assert value == 50.5
    assert low < 50.5 < high
    mean, lo, hi = co.mean_ci(np.asarray([1.0, 1.0, 2.0, 2.0]), confidence=0.95)
    # mean 1.5, sd 0.57735, sem 0.288675, t(0.975, 3) = 3.182446 -> 1.5 +/- 0.918689
    assert mean == 1.5
    assert round(lo, 4) == 0.5813 and round(hi, 4) == 2.4187
    assert co.thin(np.arange(10.0), 4).tolist() == [0.0, 3.0, 6.0, 9.0]


# --------------------------------------------------------------------------- plan


def plan_doc() -> dict:
    return {
        "pools": {"p1": {"cutover": "2024-05-08T00:00:00Z"}, "p3": {}},
        "vmta_map": {"v1": {"egress_source": "k-src1", "egress_pool": "kp1"}},
    }


def test_plan_and_inference() -> None:
    rows: list[dict] = []
    message(rows, mta="pmta", pool="p1", source="v1", provider="google", rcpt="a@gmail.com",
            queued=T0 - timedelta(days=1), outcome=[("delivered", 5)])  # fmt: skip
    message(rows, mta="kumo", pool="kp1", source="k-src1", provider="google", rcpt="b@gmail.com",
            queued=T0 + timedelta(hours=1), outcome=[("received", 0), ("delivered", 5)])  # fmt: skip
    # p3: in the plan without a time; its first KumoMTA event (a deferral) dates the cutover.
    message(rows, mta="pmta", pool="p3", source="v3", provider="yahoo", rcpt="c@yahoo.com",
            queued=T0 - timedelta(days=2), outcome=[("delivered", 5)])  # fmt: skip
    message(rows, mta="kumo", pool="p3", source="k3", provider="yahoo", rcpt="d@yahoo.com",
            queued=T0 + timedelta(hours=5), outcome=[("received", 0), ("deferred", 30), ("delivered", 90)])  # fmt: skip
    # p4: PowerMTA only, not in the plan -> not cut over.
    message(rows, mta="pmta", pool="p4", source="v4", provider="apple", rcpt="e@icloud.com",
            queued=T0, outcome=[("delivered", 5)])  # fmt: skip
    # Kumo rows with `unspecified` egress names fall back to nothing (no pool).
    message(rows, mta="kumo", pool="unspecified", source="unspecified", provider="other", rcpt="f@x.example",
            queued=T0, outcome=[("delivered", 5)])  # fmt: skip
    ev = events_frame(rows)
    resolver = co.pool_resolver(plan=plan_doc(), events=ev)
    assert resolver.source_to_pool == {"k-src1": "p1"} and resolver.egress_pool_to_pool == {"kp1": "p1"}
    out = co.cutover_plan(plan=plan_doc(), events=co.annotate(ev, resolver=resolver), resolver=resolver)
    got = {r["pool"]: r for r in out.iter_rows(named=True)}
    assert sorted(got) == ["p1", "p3", "p4"]
    assert got["p1"]["cutover_source"] == "plan" and got["p1"]["cutover_time"] == T0
    assert got["p1"]["first_kumo_event"] == T0 + timedelta(hours=1, seconds=5)
    assert got["p1"]["kumo_egress_pools"] == ["kp1"] and got["p1"]["pmta_vmtas"] == ["v1"]
    assert got["p3"]["cutover_source"] == "inferred"
    assert got["p3"]["cutover_time"] == T0 + timedelta(hours=5, seconds=30)  # reception carries no egress
    assert got["p3"]["in_plan"] is True and got["p3"]["planned_cutover_time"] is None
    assert got["p4"]["cutover_source"] == "none" and got["p4"]["cutover_time"] is None
    assert got["p4"]["in_plan"] is False


def test_missing_plan_infers_everything() -> None:
    rows: list[dict] = []
    message(rows, mta="pmta", pool="p1", source="v1", provider="google", rcpt="a@gmail.com",
            queued=T0 - timedelta(days=1), outcome=[("delivered", 5)])  # fmt: skip
    message(rows, mta="kumo", pool="p1", source="k1", provider="google", rcpt="b@gmail.com",
            queued=T0, outcome=[("bounced", 7)])  # fmt: skip
    ev = events_frame(rows)
    resolver = co.pool_resolver(plan={}, events=ev)
    out = co.cutover_plan(plan={}, events=co.annotate(ev, resolver=resolver), resolver=resolver)
    assert out.select("pool", "cutover_source", "cutover_time").rows() == [
        ("p1", "inferred", T0 + timedelta(seconds=7))
    ]


def test_parse_time_forms() -> None:
    assert co.parse_time("2024-05-08T02:00:00+02:00") == T0
    assert co.parse_time("2024-05-08 00:00:00") == T0
    assert co.parse_time(datetime(2024, 5, 8)) == T0
    assert co.parse_time(T0.timestamp()) == T0
    assert co.parse_time("soon") is None and co.parse_time(None) is None


def test_load_yaml_tolerates_absence_rejects_garbage(tmp_path) -> None:
    assert co.load_yaml(tmp_path / "nope.yaml") == {}
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping"):
        co.load_yaml(tmp_path / "bad.yaml")
    pol = co.load_policy(overrides={"statistics": {"alpha": 0.05}, "windows": {"baseline_days": 3}})
    assert pol["statistics"]["alpha"] == 0.05 and pol["statistics"]["confidence"] == 0.95
    assert pol["windows"]["baseline_days"] == 3 and pol["windows"]["after_max_days"] == 14
    with pytest.raises(ValueError, match="unknown kind"):
        co.load_policy(overrides={"rules": [{"name": "x", "kind": "vibes", "verdict": "hold"}]})


# --------------------------------------------------------------------------- comparison


def comparison_scenario() -> tuple[pl.LazyFrame, dict]:
    """p1 at google: before 960 messages / 1000 attempts / 40 deferrals (PowerMTA), after 930
    messages / 1000 attempts / 70 deferrals (KumoMTA). Deferred messages are delivered 600 s after
    queueing, the others after 60 s. Plus yahoo: 3 bounces of 100 after, 0 of 100 before."""
    rows: list[dict] = []
    step = timedelta(days=7) / 1000
    for i in range(960):
        q = T0 - timedelta(days=7) + i * step
        out = [("deferred", 60), ("delivered", 600)] if i < 40 else [("delivered", 60)]
        message(rows, mta="pmta", pool="p1", source="v1", provider="google", rcpt=f"b{i}@gmail.com", queued=q,
                outcome=out, mid=f"<b{i}@s>")  # fmt: skip
    for i in range(930):
        q = T0 + i * step
        out = [("deferred", 60), ("delivered", 600)] if i < 70 else [("delivered", 60)]
        message(rows, mta="kumo", pool="kp1", source="k-src1", provider="google", rcpt=f"a{i}@gmail.com", queued=q,
                outcome=out, mid=f"spool{i}")  # fmt: skip
    for i in range(100):
        message(rows, mta="pmta", pool="p1", source="v1", provider="yahoo", rcpt=f"y{i}@yahoo.com",
                queued=T0 - timedelta(days=3) + i * step, outcome=[("delivered", 60)])  # fmt: skip
        out = [("bounced", 60)] if i < 3 else [("delivered", 60)]
        message(rows, mta="kumo", pool="kp1", source="k-src1", provider="yahoo", rcpt=f"z{i}@yahoo.com",
                queued=T0 + timedelta(days=1) + i * step, outcome=out)  # fmt: skip
    return events_frame(rows), plan_doc()


def run_comparison(complaints: pl.LazyFrame | None = None, bounces: pl.LazyFrame | None = None):
    ev, plan = comparison_scenario()
    resolver = co.pool_resolver(plan=plan, events=ev)
    ann = co.annotate(ev, resolver=resolver)
    cplan = co.cutover_plan(plan=plan, events=ann, resolver=resolver)
    pol = policy()
    comp = co.cutover_comparison(
        events=ann, plan=cplan, policy=pol, resolver=resolver, complaints=complaints, bounces=bounces
    )
    return ann, cplan, comp, pol


def pick(comp: pl.DataFrame, provider: str, metric: str) -> dict:
    rows = comp.filter((pl.col("provider") == provider) & (pl.col("metric") == metric)).to_dicts()
    assert len(rows) == 1, (provider, metric, rows)
    return rows[0]


def test_comparison_matches_hand_computed_rates() -> None:
    bounces = pl.LazyFrame({"event_id": ["none"], "consequence": ["hard"]})
    _ann, _plan, comp, _pol = run_comparison(bounces=bounces)
    d = pick(comp, "google", "deferral_rate")
    assert (d["before_num"], d["before_n"], d["after_num"], d["after_n"]) == (40, 1000, 70, 1000)
    assert round(d["before_ci_low"], 4) == 0.0295 and round(d["before_ci_high"], 4) == 0.0540
    assert round(d["after_ci_low"], 4) == 0.0558 and round(d["after_ci_high"], 4) == 0.0875
    assert d["test"] == "z" and round(d["p_value"], 4) == 0.0033 and d["significant"]
    m = pick(comp, "google", "messages")
    assert (m["before_value"], m["after_value"]) == (960.0, 930.0)
    a = pick(comp, "google", "attempts_per_message")
    assert a["before_value"] == pytest.approx(1000 / 960) and a["after_value"] == pytest.approx(1000 / 930)
    assert a["test"] == "mannwhitney"
    p50, p95 = pick(comp, "google", "latency_p50_s"), pick(comp, "google", "latency_p95_s")
    # before: 920 x 60 s + 40 x 600 s; p95 sits at position 911.05 of 960 -> 60 s.
    # after: 860 x 60 s + 70 x 600 s; p95 sits at position 882.55 of 930 -> 600 s.
    assert (p50["before_value"], p50["after_value"]) == (60.0, 60.0)
    assert (p95["before_value"], p95["after_value"]) == (60.0, 600.0)
    # yahoo bounces: 0/100 vs 3/100 -> Fisher p = 0.2462, below the 500 minimum -> small sample.
    b = pick(comp, "yahoo", "bounce_rate")
    assert (b["before_num"], b["before_n"], b["after_num"], b["after_n"]) == (0, 100, 3, 100)
    assert b["test"] == "fisher" and round(b["p_value"], 4) == 0.2462 and b["small_sample"]
    # The pool aggregate adds google and yahoo.
    agg = pick(comp, "all", "bounce_rate")
    assert (agg["before_num"], agg["before_n"], agg["after_num"], agg["after_n"]) == (0, 1060, 3, 1030)
    # Consequence split from the bounces table: bounces not in it are `unclassified`.
    u = pick(comp, "yahoo", "bounce_rate:unclassified")
    assert (u["after_num"], u["after_n"]) == (3, 100)
    w = pick(comp, "all", "deferral_rate")
    assert w["cutover_time"] == T0 and w["before_start"] == T0 - timedelta(days=7)


def test_complaints_attributed_to_the_delivery() -> None:
    day = timedelta(days=1)
    complaints = pl.LazyFrame(
        {
            # 1. b5 was delivered by PowerMTA before the cutover; its complaint arrives after it and
            #    still counts for the before side (matched by recipient, case-insensitively).
            # 2-3. a1 and a2 are KumoMTA deliveries: after side.
            # 4. redacted (no recipient, no delivery id): its own pool/MTA/time -> KumoMTA, after.
            # 5. matched upstream to delivery e000140 (b100's delivery: 40 deferred messages x 2 events
            #    + 60 single ones precede it): before side, by event id.
            # 6. matched upstream to a delivery outside every window: not counted, even though its
            #    recipient had a window delivery.
            "complaint_time": [T0 + day, T0 + 2 * day, T0 + 2 * day, T0 + 3 * day, T0 + day, T0 + day],
            "recipient": ["B5@gmail.com", "a1@gmail.com", "a2@gmail.com", None, None, "b7@gmail.com"],
            "pool": ["p1", "kp1", "kp1", "kp1", "p1", "p1"],
            "provider": ["google"] * 6,
            "mta": ["pmta", "kumo", "kumo", "kumo", "pmta", "pmta"],
            "delivery_event_id": [None, None, None, None, "e000140", "elsewhere"],
        },
        schema_overrides={"complaint_time": co.UTC_TS},
    )
    _ann, _plan, comp, _pol = run_comparison(complaints=complaints)
    c = pick(comp, "google", "complaint_rate")
    assert (c["before_num"], c["before_n"], c["after_num"], c["after_n"]) == (2, 960, 3, 930)


def test_comparison_without_plan_rows_is_empty() -> None:
    ev, _plan = comparison_scenario()
    resolver = co.pool_resolver(plan={}, events=ev)
    empty_plan = pl.DataFrame(schema=co.CUTOVER_PLAN_SCHEMA)
    out = co.cutover_comparison(
        events=co.annotate(ev, resolver=resolver), plan=empty_plan, policy=policy(), resolver=resolver
    )
    assert out.is_empty() and out.schema == co.COMPARISON_SCHEMA


# --------------------------------------------------------------------------- in-flight drain


def test_inflight_drain_counts_tail_parity_and_double_sends() -> None:
    rows: list[dict] = []
    kw = {"mta": "pmta", "pool": "p2", "source": "v2", "provider": "google"}
    start = T0 - timedelta(days=7)  # first event of the lake: the baseline is a full 7 days
    # 5 ordinary PowerMTA messages finished before the cutover (one of them for job J1).
    for i in range(5):
        message(rows, **kw, rcpt=f"n{i}@gmail.com", queued=start + timedelta(days=i), outcome=[("delivered", 0)],
                job="J1" if i == 4 else None)  # fmt: skip
    # 4 queued before the cutover, finished after it: +1 h, +2 h delivered, +3 h bounced, +10 h expired.
    q = T0 - timedelta(hours=1)
    for i, (kind, hours) in enumerate([("delivered", 1), ("delivered", 2), ("bounced", 3), ("expired", 10)]):
        message(
            rows,
            **kw,
            rcpt=f"d{i}@gmail.com",
            queued=q,
            outcome=[("deferred", 60), (kind, 3600 * (hours + 1))],
        )
    # 1 queued before, deferred, never finished: left behind.
    message(rows, **kw, rcpt="lost@gmail.com", queued=q, outcome=[("deferred", 60)])
    # KumoMTA: n4 again for the same job J1 (double send), and the last event of the lake.
    kk = {"mta": "kumo", "pool": "p2", "source": "k2", "provider": "google"}
    message(
        rows, **kk, rcpt="N4@gmail.com", queued=T0 + timedelta(days=1), outcome=[("delivered", 0)], job="J1"
    )
    message(rows, **kk, rcpt="k1@gmail.com", queued=T0 + timedelta(days=2) - timedelta(microseconds=1),
            outcome=[("delivered", 0)])  # fmt: skip
    ev = events_frame(rows)
    plan = {"pools": {"p2": {"cutover": T0.isoformat()}}}
    resolver = co.pool_resolver(plan=plan, events=ev)
    ann = co.annotate(ev, resolver=resolver)
    cplan = co.cutover_plan(plan=plan, events=ann, resolver=resolver)
    out = co.inflight_drain(events=ann, plan=cplan, policy=policy()).to_dicts()
    assert len(out) == 1
    d = out[0]
    assert (d["drained_messages"], d["drained_delivered"], d["drained_bounced"], d["drained_expired"]) == (
        4,
        2,
        1,
        1,
    )
    # tails: 3600, 7200, 10800, 36000 s. p50 = (7200+10800)/2 = 9000; p95 at position 2.85 =
    # 10800 + 0.85 * (36000 - 10800) = 32220.
    assert (
        d["tail_last_s"] == 36000.0
        and d["tail_p50_s"] == 9000.0
        and d["tail_p95_s"] == pytest.approx(32220.0)
    )
    assert d["last_finish_time"] == T0 + timedelta(hours=10)
    assert (d["pmta_queued_before"], d["unfinished_messages"]) == (10, 1)
    assert d["unfinished_share"] == pytest.approx(0.1)
    # Volume: 5 finals in 7 days before; after 48 h: 4 drained + 2 KumoMTA = 6 -> 3/day; ratio 4.2.
    assert d["before_daily_volume"] == pytest.approx(5 / 7)
    assert d["after_hours"] == pytest.approx(48.0)
    assert d["after_daily_volume"] == pytest.approx(3.0)
    assert d["volume_ratio"] == pytest.approx(4.2) and d["parity_flag"] == "high"
    # Same recipient and job on both MTAs is only informational; a double send needs the same Message-Id.
    assert (d["double_sent"], d["double_sent_by_job"], d["double_sent_by_message_id"]) == (0, 1, 0)
    verdict, evidence = co.evaluate_pool(pool="p2", comparison=[], seedlist=[], drain=d, policy=policy())
    assert verdict == "watch"
    assert sorted(e["rule"] for e in evidence) == ["left_behind", "volume_parity"]
    verdict, evidence = co.evaluate_pool(
        pool="p2", comparison=[], seedlist=[], drain={**d, "double_sent": 2}, policy=policy()
    )
    assert sorted(e["rule"] for e in evidence) == ["double_sent", "left_behind", "volume_parity"]


# --------------------------------------------------------------------------- verdict rules


def crow(provider: str, metric: str, before: float, after: float, p: float | None, *, nb: int = 10_000,
         na: int = 10_000, small: bool = False) -> dict:  # fmt: skip
    return {
        "pool": "p", "provider": provider, "metric": metric, "before_value": before, "after_value": after,
        "p_value": p, "before_n": nb, "after_n": na, "small_sample": small,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "seeds", "verdict", "rules"),
    [
        ([crow("google", "deferral_rate", 0.04, 0.07, 0.001)], [], "hold", ["deferral_rise"]),
        # Rise too small (10 % < 25 %), or not significant, or at a minor provider: nothing.
        ([crow("google", "deferral_rate", 0.040, 0.044, 0.001)], [], "proceed", []),
        ([crow("google", "deferral_rate", 0.04, 0.07, 0.02)], [], "proceed", []),
        ([crow("gmx", "deferral_rate", 0.04, 0.07, 0.001)], [], "proceed", []),
        ([crow("yahoo", "bounce_rate", 0.01, 0.02, 0.0001)], [], "hold", ["bounce_rise"]),
        ([crow("microsoft", "expiry_rate", 0.001, 0.01, 0.0001)], [], "hold", ["expiry_rise"]),
        ([crow("all", "complaint_rate", 0.001, 0.003, 0.2)], [], "rollback", ["complaint_ceiling"]),
        ([crow("all", "complaint_rate", 0.001, 0.0029, 0.2)], [], "proceed", []),
        # A ceiling crossed by the point estimate while the interval still reaches below it: not judged.
        ([dict(crow("yahoo", "complaint_rate", 0.0, 0.0040, 0.2, na=759), after_ci_low=0.0013)], [], "proceed", []),
        ([dict(crow("yahoo", "complaint_rate", 0.0, 0.0060, 0.2), after_ci_low=0.0046)], [], "rollback",
         ["complaint_ceiling"]),
        # The ceiling needs the after side to be large enough.
        ([crow("all", "complaint_rate", 0.001, 0.01, 0.2, na=100)], [], "proceed", []),
        ([crow("google", "complaint_rate", 0.001, 0.002, 0.0001)], [], "hold", ["complaint_rise"]),
        ([], [crow("google", "inbox_rate", 0.9, 0.5, 0.0001, nb=40, na=40)], "hold", ["inbox_drop"]),
        ([crow("google", "latency_p95_s", 60, 600, 0.0001)], [], "watch", ["latency_rise"]),
        ([crow("google", "attempts_per_message", 1.04, 1.4, 0.0001)], [], "watch", ["attempts_rise"]),
        # A provider row too small after the cutover is flagged and not judged...
        ([crow("google", "deferral_rate", 0.04, 0.0, None, na=20)], [], "proceed", []),
        # ...but a pool too small as a whole cannot be judged: watch.
        ([crow("all", "deferral_rate", 0.04, 0.0, None, na=20)], [], "watch", ["small_sample"]),
        # Both rollback and hold fire: the worst wins and both are evidence.
        (
            [crow("google", "deferral_rate", 0.04, 0.07, 0.001), crow("google", "complaint_rate", 0.001, 0.004, 0.0001)],
            [], "rollback", ["complaint_ceiling", "complaint_rise", "deferral_rise"],
        ),
    ],
)  # fmt: skip
def test_verdict_rules_fire(rows: list[dict], seeds: list[dict], verdict: str, rules: list[str]) -> None:
    got, evidence = co.evaluate_pool(pool="p", comparison=rows, seedlist=seeds, drain=None, policy=policy())
    assert got == verdict
    assert sorted({e["rule"] for e in evidence}) == rules
    for e in evidence:
        assert set(e) == {"provider", "metric", "before", "after", "p_value", "rule", "verdict", "detail"}


def test_verdict_table_carries_evidence() -> None:
    _ann, cplan, comp, pol = run_comparison()
    # This hand-computed example judges the raw p-value (one test in mind, no family correction).
    pol = {**pol, "statistics": {**pol["statistics"], "multiple_testing": "none"}}
    out = co.cutover_verdicts(plan=cplan, comparison=comp, seedlist=None, drain=None, policy=pol)
    assert out.schema == co.VERDICT_SCHEMA
    row = out.filter(pl.col("pool") == "p1").to_dicts()[0]
    # google deferrals 4 % -> 7 %, p = 0.0033 < 0.01, +75 % >= 25 %: hold. The p95 latency (60 s ->
    # 600 s) also rises significantly: watch evidence alongside.
    assert row["verdict"] == "hold"
    assert "deferral_rise" in row["rules_fired"] and "latency_rise" in row["rules_fired"]
    ev = [e for e in row["evidence"] if e["rule"] == "deferral_rise"]
    assert [(e["provider"], e["metric"], e["before"], e["after"]) for e in ev] == [
        ("google", "deferral_rate", 0.04, 0.07)
    ]
    assert round(ev[0]["p_value"], 4) == 0.0033


def test_malformed_plan_sections_are_reported() -> None:
    with pytest.raises(ValueError, match="pools"):
        r = co.PoolResolver()
        co.cutover_plan(plan={"pools": ["p1"]}, events=co.annotate(events_frame([]), resolver=r), resolver=r)
    with pytest.raises(ValueError, match="vmta_map"):
        co.pool_resolver(plan={"vmta_map": "v1"})
    with pytest.raises(ValueError, match="cutover"):
        co.load_policy(overrides=["x"])


def test_family_wise_correction_keeps_chance_findings_from_moving_verdicts() -> None:
    # 20 tests at a pool: one p = 0.004 is what chance gives about once in 12 such pools.
    others = [
        crow(p, m, 0.001, 0.001, 0.9)
        for p in ("yahoo", "microsoft", "office365", "apple")
        for m in ("deferral_rate", "bounce_rate", "expiry_rate", "complaint_rate", "latency_p95_s")
    ][:19]
    rows = [crow("google", "deferral_rate", 0.040, 0.060, 0.004), *others]
    held, _ = co.evaluate_pool(pool="p", comparison=rows, seedlist=[], drain=None,
                               policy=policy(statistics={"multiple_testing": "none"}))  # fmt: skip
    assert held == "hold"
    verdict, evidence = co.evaluate_pool(pool="p", comparison=rows, seedlist=[], drain=None, policy=policy())
    # Holm: 0.004 * 20 = 0.08 >= 0.01.
    assert (verdict, evidence) == ("proceed", [])
    # A real regression survives the correction: 1e-9 * 20 = 2e-8.
    rows[0] = crow("google", "deferral_rate", 0.040, 0.120, 1e-9)
    verdict, evidence = co.evaluate_pool(pool="p", comparison=rows, seedlist=[], drain=None, policy=policy())
    assert verdict == "hold" and "holm-adjusted over 20 tests" in evidence[0]["detail"]
