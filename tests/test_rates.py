"""Provider rates, deferral signatures and warm-up state against hand-computed fixtures."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import polars as pl
import pytest

from mtashift.deferrals import deferral_signatures, template_of
from mtashift.lake import Lake, write_parquet, write_partition
from mtashift.rates import bounded_rate_violations, rates, reconcile_with_events
from mtashift.warmup import warmup_daily, warmup_state
from schemas.events import conform
from schemas.rates import (
    DEFERRAL_SIGNATURES_SCHEMA,
    PROVIDER_RATES_DAILY_SCHEMA,
    PROVIDER_RATES_HOURLY_SCHEMA,
    WARMUP_STATE_SCHEMA,
)

DAY = date(2025, 3, 10)


def ts(h: int, m: int = 0, s: int = 0, d: int = 10) -> datetime:
    return datetime(2025, 3, d, h, m, s, tzinfo=UTC)


A = {"pool": "p1", "source": "s1", "source_ip": "192.0.2.1", "mta": "pmta"}
B = {"pool": "p2", "source": "s2", "source_ip": "192.0.2.2", "mta": "kumo"}


def ev(eid: str, etype: str, t: datetime, *, q: datetime | None = None, dom: str | None = "gmail.com",
       mx: str | None = None, keys: dict = A, code: int | None = None, resp: str | None = None) -> dict:  # fmt: skip
    return {"event_id": eid, "event_type": etype, "event_time": t, "queued_time": q, "recipient_domain": dom,
            "mx_host": mx, "smtp_code": code, "response": resp, **keys}  # fmt: skip


GMX = "gmail-smtp-in.l.google.com"


def fixture_events() -> pl.LazyFrame:
    rows = [
        # Group A = google / p1 / s1 / 192.0.2.1 / pmta.
        # Deliveries, latency = event_time - queued_time: 10, 20, 30, 40, 100 s.
        ev("d1", "delivered", ts(10, 0, 10), q=ts(10, 0, 0), mx=GMX),
        ev("d2", "delivered", ts(10, 0, 40), q=ts(10, 0, 20), mx=GMX),
        ev("d3", "delivered", ts(10, 1, 30), q=ts(10, 1, 0), mx=GMX),
        ev("d4", "delivered", ts(10, 0, 50), q=ts(10, 0, 10), mx=GMX),
        ev("d5", "delivered", ts(11, 5, 0), q=ts(11, 3, 20), mx=GMX),
        ev("t1", "deferred", ts(10, 30), mx=GMX, code=421, resp="4.7.0 Try again later"),
        ev("t2", "deferred", ts(11, 10), mx=GMX, code=421, resp="4.7.0 Try again later"),
        ev("b1", "bounced", ts(10, 45), mx=GMX, code=550),
        ev("b2", "bounced", ts(11, 20), mx=GMX, code=550),
        ev("x1", "expired", ts(11, 30)),
        ev("c1", "complaint", ts(12, 0)),
        ev("r1", "remote_bounce", ts(14, 0)),
        ev("rc1", "received", ts(9, 0)),  # not counted anywhere
        # Group B-google: a Workspace custom domain, provider from its observed MX.
        ev(
            "d6",
            "delivered",
            ts(13, 0, 5),
            q=ts(13, 0, 0),
            dom="acme.example",
            mx="aspmx.l.google.com",
            keys=B,
        ),
        ev("x2", "expired", ts(13, 30), dom="acme.example", keys=B),  # no MX on the row -> domain map
        # office365 tenant vs consumer Outlook.
        ev(
            "d7",
            "delivered",
            ts(13, 0, 2),
            q=ts(13, 0, 0),
            dom="contoso.example",
            mx="contoso-example.mail.protection.outlook.com",
            keys=B,
        ),
        ev(
            "d8",
            "delivered",
            ts(13, 0, 3),
            q=ts(13, 0, 0),
            dom="hotmail.com",
            mx="hotmail-com.olc.protection.outlook.com",
            keys=B,
        ),
        # other: unknown domain, non-provider MX.
        ev("b3", "bounced", ts(15, 0), dom="example.org", mx="mx.example.org", keys=B, code=550),
        ev("b4", "bounced", ts(15, 1), dom="example.org", mx="mx.example.org", keys=B, code=552),
        # Queue-level delay without a recipient (PowerMTA tq): other, not an attempt.
        ev(
            "tq1",
            "queue_deferred",
            ts(16, 0),
            dom=None,
            code=451,
            resp="No answer from any hosts listed in MX",
        ),
    ]
    return conform(pl.LazyFrame(rows))


def fixture_consequences() -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "event_id": ["b1", "b1", "b3", "b4", "t1"],
            "category": ["bad-mailbox", "bad-mailbox", "policy", "quota", "throttle"],
            "consequence": [
                "suppress",
                "retry",
                "Retry",
                "statistical",
                "retry",
            ],  # 2nd b1 row: duplicate, ignored
        }
    )


def by_provider(frame: pl.DataFrame, provider: str, **keys) -> dict:
    sel = frame.filter(pl.col("provider") == provider)
    for k, v in keys.items():
        sel = sel.filter(pl.col(k) == v)
    assert sel.height == 1, sel
    return sel.row(0, named=True)


def test_daily_rates_hand_computed() -> None:
    out = rates(events=fixture_events(), consequences=fixture_consequences(), grain="day").collect()
    assert out.schema == PROVIDER_RATES_DAILY_SCHEMA
    # Groups: google/A, google/B, office365/B, microsoft/B, other/B, other/A (tq).
    assert out.select("provider", "pool").rows() == [
        ("google", "p1"), ("google", "p2"), ("microsoft", "p2"), ("office365", "p2"), ("other", "p1"), ("other", "p2"),
    ]  # fmt: skip
    a = by_provider(out, "google", pool="p1")
    # attempts = 5 delivered + 2 deferred + 2 bounced + 1 expired = 10
    assert (a["attempts"], a["delivered"], a["deferred"], a["bounced"], a["expired"]) == (10, 5, 2, 2, 1)
    # b1 -> suppress (first row of its duplicate pair); b2 has no bounces row -> unclassified
    assert (
        a["bounced_suppress"],
        a["bounced_retry"],
        a["bounced_statistical"],
        a["bounced_unclassified"],
    ) == (1, 0, 0, 1)
    assert (a["complaints"], a["remote_bounced"], a["queue_deferred"]) == (1, 1, 0)
    assert (a["delivery_rate"], a["deferral_rate"], a["bounce_rate"], a["expiry_rate"]) == (
        0.5,
        0.2,
        0.2,
        0.1,
    )
    assert a["complaint_rate"] == 0.2  # 1 complaint / 5 delivered
    # Latencies sorted 10,20,30,40,100 (n=5), linear: position q*(n-1).
    # p50: pos 2 -> 30.  p95: pos 3.8 -> 40 + 0.8*60 = 88.  p99: pos 3.96 -> 40 + 0.96*60 = 97.6
    assert (a["latency_samples"], a["latency_p50_s"], a["latency_p95_s"], a["latency_p99_s"]) == (
        5,
        30.0,
        88.0,
        97.6,
    )
    assert a["attempts_per_delivered"] == 1.4  # (5 + 2) / 5
    # Minutes: 10:00 has d1, d2, d4 (3); 10:01 d3; 11:05 d5 -> peak 3
    assert a["peak_delivered_per_minute"] == 3
    assert a["last_attempt_time"] == ts(11, 30)  # x1, the latest attempt (complaint/remote_bounce are not)
    assert a["consequence_source"] == "bounces"

    g = by_provider(out, "google", pool="p2")  # custom domain: d6 via its MX, x2 via the domain map
    assert (g["attempts"], g["delivered"], g["expired"], g["delivery_rate"], g["latency_p99_s"]) == (
        2,
        1,
        1,
        0.5,
        5.0,
    )
    o365 = by_provider(out, "office365")
    ms = by_provider(out, "microsoft")
    assert (o365["delivered"], o365["latency_p50_s"], ms["delivered"], ms["latency_p50_s"]) == (
        1,
        2.0,
        1,
        3.0,
    )
    oth = by_provider(out, "other", pool="p2")
    # b3 "Retry-Then-Suppress" (case-folded) -> bounced_retry; b4 statistical
    assert (oth["attempts"], oth["bounced_retry"], oth["bounced_statistical"], oth["bounce_rate"]) == (
        2,
        1,
        1,
        1.0,
    )
    assert (
        oth["delivery_rate"] == 0.0
        and oth["complaint_rate"] is None
        and oth["attempts_per_delivered"] is None
    )
    assert (
        oth["peak_delivered_per_minute"] == 0 and oth["latency_samples"] == 0 and oth["latency_p50_s"] is None
    )
    tq = by_provider(out, "other", pool="p1")
    assert (tq["queue_deferred"], tq["attempts"], tq["delivery_rate"]) == (1, 0, None)
    assert set(out["day"].to_list()) == {DAY}


def test_hourly_rates_hand_computed() -> None:
    out = rates(events=fixture_events(), consequences=fixture_consequences(), grain="hour").collect()
    assert out.schema == PROVIDER_RATES_HOURLY_SCHEMA
    a = out.filter((pl.col("provider") == "google") & (pl.col("pool") == "p1"))
    assert a["hour"].to_list() == [ts(10), ts(11), ts(12), ts(14)]
    h10, h11, h12, h14 = a.to_dicts()
    # 10h: d1-d4, t1, b1 -> attempts 6; latencies 10,20,30,40:
    # p50 pos 1.5 -> 25; p95 pos 2.85 -> 30 + 0.85*10 = 38.5; p99 pos 2.97 -> 39.7
    assert (h10["attempts"], h10["delivered"], h10["deferred"], h10["bounced_suppress"]) == (6, 4, 1, 1)
    assert (h10["latency_p50_s"], h10["latency_p95_s"], h10["latency_p99_s"]) == (25.0, 38.5, 39.7)
    assert h10["delivery_rate"] == 4 / 6 and h10["peak_delivered_per_minute"] == 3
    assert h10["attempts_per_delivered"] == 1.25  # (4 + 1) / 4
    # 11h: d5, t2, b2, x1 -> attempts 4; one latency sample (100 s)
    assert (h11["attempts"], h11["delivery_rate"], h11["bounced_unclassified"], h11["expiry_rate"]) == (
        4,
        0.25,
        1,
        0.25,
    )
    assert (h11["latency_p50_s"], h11["latency_p99_s"], h11["peak_delivered_per_minute"]) == (100.0, 100.0, 1)
    # 12h: a complaint only; 14h: a remote bounce only -> no attempts, rates null
    assert (h12["complaints"], h12["attempts"], h12["delivery_rate"], h12["complaint_rate"]) == (
        1,
        0,
        None,
        None,
    )
    assert (h14["remote_bounced"], h14["attempts"], h14["peak_delivered_per_minute"]) == (1, 0, 0)
    # Hourly rows add up to the daily row.
    daily = rates(events=fixture_events(), consequences=fixture_consequences(), grain="day").collect()
    for col in (
        "attempts",
        "delivered",
        "deferred",
        "bounced",
        "expired",
        "complaints",
        "bounced_unclassified",
    ):
        assert out[col].sum() == daily[col].sum()


def test_rates_without_bounces_table_are_unclassified() -> None:
    out = rates(events=fixture_events(), consequences=None, grain="day").collect()
    assert out["bounced"].sum() == out["bounced_unclassified"].sum() == 4
    assert (
        out["bounced_suppress"].sum() == out["bounced_retry"].sum() == out["bounced_statistical"].sum() == 0
    )
    assert set(out["consequence_source"]) == {"none"}


def test_rates_deterministic_and_checks() -> None:
    ev_ = fixture_events()
    one = rates(events=ev_, consequences=fixture_consequences(), grain="day").collect()
    two = rates(events=ev_.reverse(), consequences=fixture_consequences(), grain="day").collect()
    assert one.equals(two)
    assert bounded_rate_violations(one) == {
        "delivery_rate": 0,
        "deferral_rate": 0,
        "bounce_rate": 0,
        "expiry_rate": 0,
    }
    sums = reconcile_with_events(rates_frame=one, events=ev_)
    assert sums["table"] == sums["events"]
    assert sums["events"] == {"delivered": 8, "deferred": 2, "bounced": 4, "expired": 2, "complaints": 1,
                              "attempts": 16, "bounced_by_consequence": 4}  # fmt: skip
    broken = one.with_columns(pl.lit(1.5).alias("bounce_rate"))
    assert bounded_rate_violations(broken)["bounce_rate"] == one.height


def test_rates_use_given_provider_column_and_domain_map() -> None:
    ev_ = fixture_events()
    dm = pl.LazyFrame({"recipient_domain": ["example.org"], "provider": ["mimecast"]})
    out = rates(events=ev_, consequences=None, grain="day", domain_map=dm).collect()
    assert out.filter(pl.col("provider") == "mimecast")["bounced"].to_list() == [2]
    # acme.example gets no map entry now (the given map replaces the day's own) -> x2 falls to `other`
    assert by_provider(out, "google", pool="p2")["attempts"] == 1
    fixed = rates(
        events=ev_.with_columns(pl.lit("yahoo").alias("provider")), consequences=None, grain="day"
    ).collect()
    assert set(fixed["provider"]) == {"yahoo"} and fixed["attempts"].sum() == 16


def test_rates_empty_input() -> None:
    out = rates(events=conform(pl.LazyFrame()), consequences=None, grain="hour").collect()
    assert out.height == 0 and out.schema == PROVIDER_RATES_HOURLY_SCHEMA
    with pytest.raises(ValueError, match="grain"):
        rates(events=conform(pl.LazyFrame()), consequences=None, grain="week")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- deferral signatures


@pytest.mark.parametrize(
    ("text", "template"),
    [
        (
            "[TSS04] Messages from 203.0.113.7 temporarily deferred due to unexpected volume or user complaints"
            " - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
            "[TSS04] Messages from <ip> temporarily deferred due to unexpected volume or user complaints"
            " - <ip>; see https://postmaster.yahooinc.com/error-codes",
        ),
        (
            "4.7.28 [2001:db8::1  12] Unusual rate from your IP. https://support.google.com/mail/?p=Rate&ip=1.2.3.4"
            " a640si2003528pls.127 - gsmtp",
            "4.7.28 [<ip> <n>] Unusual rate from your IP. https://support.google.com/mail/?<query> <id>.<n> - gsmtp",
        ),
        (
            "Server busy. Please try again later from [198.51.100.23]. (S77719) "
            "[BN8NAM12FT041.eop-nam12.prod.protection.outlook.com 2024-01-01T00:00:00.000Z 08DC1234ABCD5678]",
            "Server busy. Please try again later from [<ip>]. (S77719) [<host> <ts> <id>]",
        ),
        (
            "RL000010 user bob.smith+x@example.com queue 4b3c2d1e9f0a retry in 300 seconds",
            "RL000010 user <email> queue <id> retry in <n> seconds",
        ),
        ("deferred: 3fa85f64-5717-4562-b3fc-2c963f66afa6 ::ffff:192.0.2.1", "deferred: <id> <ip>"),
        (
            "Rate limit 4.7.0 exceeded, 1,500 messages in 60 minutes",
            "Rate limit 4.7.0 exceeded, <n> messages in <n> minutes",
        ),
        (None, None),
    ],
)
def test_template(text: str | None, template: str | None) -> None:
    assert template_of(text) == template


def test_deferral_signatures_hand_computed() -> None:
    yahoo = "mta{}.am0.yahoodns.net"
    rows = [
        ev(
            "y1",
            "deferred",
            ts(8),
            dom="yahoo.com",
            mx=yahoo.format(5),
            code=421,
            resp="[TSS04] Messages from 192.0.2.1 temporarily deferred",
        ),
        ev(
            "y2",
            "deferred",
            ts(9),
            dom="aol.com",
            mx=yahoo.format(6),
            code=421,
            keys=B,
            resp="[TSS04] Messages from 192.0.2.2 temporarily deferred",
        ),
        ev(
            "y3",
            "queue_deferred",
            ts(7),
            dom="yahoo.com",
            mx=yahoo.format(7),
            code=421,
            resp="[TSS04] Messages from 192.0.2.1 temporarily deferred",
        ),
        ev("y4", "deferred", ts(10), dom="yahoo.com", mx=yahoo.format(5), code=451, resp="Internal error 12"),
        ev("y5", "deferred", ts(11), dom="yahoo.com", code=None, resp="connection timed out"),  # no code: out
        ev("y6", "bounced", ts(11), dom="yahoo.com", code=554, resp="[TSS04] permanently"),  # 5xx: out
        ev("g1", "deferred", ts(12), code=421, resp="4.7.0 Try again in 30 minutes", mx=GMX),
    ]
    out = deferral_signatures(events=conform(pl.LazyFrame(rows))).collect()
    assert out.schema == DEFERRAL_SIGNATURES_SCHEMA
    assert out.select("provider", "smtp_code", "template", "count", "share").rows() == [
        ("google", 421, "4.7.0 Try again in <n> minutes", 1, 1.0),
        ("yahoo", 421, "[TSS04] Messages from <ip> temporarily deferred", 3, 0.75),
        ("yahoo", 451, "Internal error <n>", 1, 0.25),
    ]
    tss = out.row(1, named=True)
    assert (tss["first_seen"], tss["last_seen"]) == (ts(7), ts(9))
    assert tss["pools"] == ["p1", "p2"] and tss["source_ips"] == ["192.0.2.1", "192.0.2.2"]
    assert tss["mtas"] == ["kumo", "pmta"]
    assert tss["example"] == "[TSS04] Messages from 192.0.2.1 temporarily deferred"  # earliest (y3)
    assert tss["day"] == DAY


# ---------------------------------------------------------------------------- warm-up


def _rates_rows(ip: str, provider: str, mta: str, first: date, delivered: list[int | None], *,
                hour: int = 9, attempts_extra: int = 0) -> list[dict]:  # fmt: skip
    rows = []
    for i, n in enumerate(delivered):
        if n is None:
            continue
        d = first + timedelta(days=i)
        rows.append({"day": d, "provider": provider, "pool": "p", "source": "s", "source_ip": ip, "mta": mta,
                     "attempts": n + attempts_extra, "delivered": n, "deferred": attempts_extra,
                     "last_attempt_time": datetime(d.year, d.month, d.day, hour, tzinfo=UTC)})  # fmt: skip
    return rows


def warmup_fixture() -> pl.LazyFrame:
    d1 = date(2025, 3, 1)
    rows = (
        # IP1 -> google, a clean ramp 100..700 over 7 days, pmta
        _rates_rows("192.0.2.1", "google", "pmta", d1, [100, 200, 300, 400, 500, 600, 700])
        # IP2 -> yahoo: 50 on 03-05 (kumo); on 03-07 100 via pmta at 09:00 and 50 via kumo at 10:00
        + _rates_rows("192.0.2.2", "yahoo", "kumo", date(2025, 3, 5), [50])
        + _rates_rows("192.0.2.2", "yahoo", "pmta", date(2025, 3, 7), [100], hour=9)
        + _rates_rows("192.0.2.2", "yahoo", "kumo", date(2025, 3, 7), [50], hour=10)
        # IP3 -> gmx: attempts but no delivery on 03-06 (active day with 0 delivered)
        + _rates_rows("192.0.2.3", "gmx", "kumo", date(2025, 3, 6), [0], attempts_extra=5)
        # complaint-only row (no attempts) and a null IP: neither makes an IP active
        + [
            {
                "day": date(2025, 3, 2),
                "provider": "apple",
                "pool": None,
                "source": None,
                "source_ip": "192.0.2.9",
                "mta": "pmta",
                "attempts": 0,
                "delivered": 0,
                "deferred": 0,
                "last_attempt_time": None,
            }
        ]
        + _rates_rows(None, "google", "pmta", d1, [999])  # type: ignore[arg-type]
    )
    return pl.LazyFrame(rows)


def test_warmup_state_hand_computed() -> None:
    out = warmup_state(rates_daily=warmup_fixture())
    assert out.schema == WARMUP_STATE_SCHEMA
    assert out["source_ip"].to_list() == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    ip1, ip2, ip3 = out.to_dicts()
    assert ip1["as_of"] == date(2025, 3, 7)
    assert (ip1["first_day"], ip1["last_day"], ip1["days_active"]) == (date(2025, 3, 1), date(2025, 3, 7), 7)
    assert (ip1["sustained_level"], ip1["delivered_total"], ip1["mta_last_seen"]) == (700, 2800, "pmta")
    # y = 100x + 100 over x = 0..6: slope exactly 100; ratio mean(500,600,700)/mean(100..400) = 600/250
    assert ip1["trend_slope"] == 100.0 and ip1["trend_ratio"] == 2.4
    assert ip1["delivered_history"] == [100, 200, 300, 400, 500, 600, 700]
    # IP2 window (03-01..03-07) = [0,0,0,0,50,0,150]: slope = sum((x-3)*y)/sum((x-3)^2) = (1*50 + 3*150)/28
    assert ip2["trend_slope"] == round(500 / 28, 9)
    assert ip2["trend_ratio"] is None  # previous 4 days all zero
    assert (ip2["first_day"], ip2["days_active"], ip2["sustained_level"]) == (date(2025, 3, 5), 2, 150)
    assert ip2["delivered_history"] == [50, 0, 150]
    assert ip2["mta_last_seen"] == "kumo"  # kumo's 10:00 attempt is later than pmta's 09:00
    assert (ip3["days_active"], ip3["sustained_level"], ip3["delivered_history"]) == (1, 0, [0, 0])
    assert ip3["trend_slope"] == 0.0


def test_warmup_daily_zero_filled() -> None:
    out = warmup_daily(rates_daily=warmup_fixture()).collect()
    ip2 = out.filter(pl.col("source_ip") == "192.0.2.2")
    assert ip2.select("day", "delivered", "attempts").rows() == [
        (date(2025, 3, 5), 50, 50), (date(2025, 3, 6), 0, 0), (date(2025, 3, 7), 150, 150),
    ]  # fmt: skip
    assert out.height == 7 + 3 + 2
    # an explicit earlier as_of truncates the history
    early = warmup_state(rates_daily=warmup_fixture(), as_of=date(2025, 3, 3))
    assert early.select("source_ip", "sustained_level", "delivered_total").rows() == [("192.0.2.1", 300, 600)]


def test_warmup_empty() -> None:
    empty = pl.LazyFrame(schema=PROVIDER_RATES_DAILY_SCHEMA)
    assert warmup_state(rates_daily=empty).height == 0
    assert warmup_daily(rates_daily=empty).collect().height == 0


# ---------------------------------------------------------------------------- assets end to end


def test_assets_materialize_on_a_small_lake(tmp_path) -> None:
    from assets import rates as rates_assets
    from pipelines.resources import LakeResource

    lake = Lake.at(tmp_path / "lake")
    events = fixture_events().collect()
    write_partition(events, lake=lake, table="events", day="2025-03-10")
    # the next day: a complaint for the custom domain, whose MX is only known from history
    day2 = conform(pl.LazyFrame([ev("c2", "complaint", ts(8, d=11), dom="acme.example", keys=B)])).collect()
    write_partition(day2, lake=lake, table="events", day="2025-03-11")
    write_partition(fixture_consequences().collect(), lake=lake, table="bounces", day="2025-03-10")
    # recipient_domains reads the per-file raw layer (built right after ingest)
    write_parquet(events, lake.raw_dir("pmta") / "f1.parquet")
    write_parquet(day2, lake.raw_dir("kumo") / "f2.parquet")
    res = {"lake": LakeResource(root=str(lake.root))}
    daily = [
        rates_assets.provider_rates_daily,
        rates_assets.provider_rates_hourly,
        rates_assets.deferral_signatures,
    ]
    checks = [
        rates_assets.provider_rates_daily_bounded, rates_assets.provider_rates_daily_reconcile,
        rates_assets.provider_rates_hourly_bounded, rates_assets.provider_rates_hourly_reconcile,
        rates_assets.deferral_signatures_reconcile,
    ]  # fmt: skip
    assert dg.materialize([rates_assets.recipient_domains], resources=res).success
    for day in ("2025-03-10", "2025-03-11", "2025-03-12"):  # 03-12 has no events at all
        result = dg.materialize([*daily, *checks], resources=res, partition_key=day)
        assert result.success
        evals = result.get_asset_check_evaluations()
        assert len(evals) == 5 and all(e.passed for e in evals)
    assert dg.materialize([rates_assets.warmup_state, rates_assets.warmup_daily], resources=res).success

    d1 = pl.read_parquet(lake.partition_dir("provider_rates_daily", "2025-03-10") / "part-0.parquet")
    assert d1["consequence_source"].unique().to_list() == ["bounces"]
    assert by_provider(d1, "google", pool="p1")["bounced_suppress"] == 1
    d2 = pl.read_parquet(lake.partition_dir("provider_rates_daily", "2025-03-11") / "part-0.parquet")
    assert d2.select("provider", "complaints", "consequence_source").rows() == [("google", 1, "none")]
    assert (
        pl.read_parquet(lake.partition_dir("provider_rates_daily", "2025-03-12") / "part-0.parquet").height
        == 0
    )
    rd = pl.read_parquet(lake.table_dir("recipient_domains") / "data.parquet")
    assert rd.filter(pl.col("recipient_domain") == "acme.example")["provider_basis"].to_list() == ["mx"]
    ws = pl.read_parquet(lake.table_dir("warmup_state") / "data.parquet")
    assert ws.select("source_ip", "provider", "delivered_total", "as_of").rows() == [
        ("192.0.2.1", "google", 5, date(2025, 3, 11)),
        ("192.0.2.2", "google", 1, date(2025, 3, 11)),
        ("192.0.2.2", "microsoft", 1, date(2025, 3, 11)),
        ("192.0.2.2", "office365", 1, date(2025, 3, 11)),
        ("192.0.2.2", "other", 0, date(2025, 3, 11)),
    ]
    sig = pl.read_parquet(lake.partition_dir("deferral_signatures", "2025-03-10") / "part-0.parquet")
    assert sig.select("provider", "template", "count").rows() == [
        ("google", "4.7.0 Try again later", 2),
        ("other", "No answer from any hosts listed in MX", 1),
    ]


def test_deferral_signatures_all_view(tmp_path) -> None:
    from mtashift import catalog

    lake = Lake.at(tmp_path / "lake")
    day1 = [
        ev("y1", "deferred", ts(8), dom="yahoo.com", code=421, resp="[TSS04] from 192.0.2.1"),
        ev("y2", "deferred", ts(9), dom="yahoo.com", code=421, resp="Busy 12"),
    ]
    day2 = [
        ev("y3", "deferred", ts(8, d=11), dom="yahoo.com", code=421, keys=B, resp="[TSS04] from 192.0.2.2"),
        ev("y4", "deferred", ts(9, d=11), dom="yahoo.com", code=421, keys=B, resp="[TSS04] from 192.0.2.3"),
    ]
    for day, rows in (("2025-03-10", day1), ("2025-03-11", day2)):
        out = deferral_signatures(events=conform(pl.LazyFrame(rows))).collect()
        write_partition(out, lake=lake, table="deferral_signatures", day=day)
    assert "deferral_signatures_all" in catalog.refresh(lake)["created"]
    got = catalog.query(
        lake,
        "SELECT template, count, days, share, pools, source_ips, example, first_seen "
        "FROM deferral_signatures_all ORDER BY count DESC",
    )
    # TSS04: 1 on day 1 + 2 on day 2 = 3 of the provider's 4 deferrals
    assert got.rows() == [
        (
            "[TSS04] from <ip>",
            3,
            2,
            0.75,
            ["p1", "p2"],
            ["192.0.2.1", "192.0.2.2"],
            "[TSS04] from 192.0.2.1",
            ts(8),
        ),
        ("Busy <n>", 1, 1, 0.25, ["p1"], ["192.0.2.1"], "Busy 12", ts(9)),
    ]


def test_docs_name_every_column() -> None:
    from pathlib import Path

    from mtashift.providers import RECIPIENT_DOMAINS_SCHEMA
    from schemas.rates import WARMUP_DAILY_SCHEMA

    doc = (Path(__file__).resolve().parents[1] / "schemas" / "docs" / "rates.md").read_text(encoding="utf-8")
    for schema in (
        PROVIDER_RATES_HOURLY_SCHEMA, DEFERRAL_SIGNATURES_SCHEMA, WARMUP_DAILY_SCHEMA, WARMUP_STATE_SCHEMA,
        RECIPIENT_DOMAINS_SCHEMA,
    ):  # fmt: skip
        missing = [c for c in schema.names() if f"`{c}`" not in doc]
        assert missing == []


def test_every_taxonomy_consequence_has_a_column() -> None:
    from mtashift.taxonomy import CONSEQUENCES
    from schemas.rates import CONSEQUENCE_COLUMNS

    assert set(CONSEQUENCES) <= set(CONSEQUENCE_COLUMNS)
    cons = pl.LazyFrame({"event_id": ["b1", "b2", "b3", "b4"], "consequence": [*CONSEQUENCES, "Suppress"]})
    out = rates(events=fixture_events(), consequences=cons, grain="day").collect()
    # b1 suppress, b2 retry-then-suppress, b3 statistical, b4 "Suppress" -> suppress
    assert [out[c].sum() for c in ("bounced_suppress", "bounced_retry", "bounced_statistical")] == [2, 1, 1]
    assert out["bounced_unclassified"].sum() == 0
