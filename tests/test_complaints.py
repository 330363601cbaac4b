"""Complaints: routes merged once, join-back to deliveries, complaint rates against thresholds, assets."""

import hashlib
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import orjson
import polars as pl
import pytest
import yaml

from mtashift.arf import parse_arf, reports_frame
from mtashift.complaints import (
    build_complaints,
    complaint_candidates,
    complaint_rates,
    default_thresholds_path,
    load_thresholds,
    parse_thresholds,
)
from mtashift.lake import Lake, write_partition
from schemas.complaints import COMPLAINT_RATE_SCHEMA, COMPLAINT_SCHEMA
from schemas.events import EVENT_SCHEMA

FIXTURES = Path(__file__).parent / "fixtures" / "arf"


def ts(day: int, h: int, m: int = 0, s: int = 0) -> datetime:
    return datetime(2024, 5, day, h, m, s, tzinfo=UTC)


def ev(event_id: str, event_type: str, t: datetime, **kw) -> dict:
    row = dict.fromkeys(EVENT_SCHEMA.names())
    row.update(event_id=event_id, event_type=event_type, event_time=t, mta=kw.pop("mta", "pmta"))
    row.update(kw)
    if row.get("recipient") and row.get("recipient_domain") is None and event_type != "complaint":
        row["recipient_domain"] = row["recipient"].rsplit("@", 1)[1].lower()
    return row


def frame(rows: list[dict]) -> pl.LazyFrame:
    return pl.DataFrame(rows, schema=EVENT_SCHEMA).lazy()


def arf_frame(*names: str) -> pl.DataFrame:
    reports = [parse_arf((FIXTURES / n).read_bytes(), source_file=f"fbl/{n}") for n in names]
    return reports_frame(reports)  # type: ignore[arg-type]


def kumo_feedback(event_id: str, t: datetime, report: dict) -> dict:
    return ev(
        event_id, "complaint", t, mta="kumo", recipient="fbl@sender.example", sender="feedback@isp.example",
        extra=orjson.dumps({"feedback_report": report}).decode(),
    )  # fmt: skip


def pmta_f(event_id: str, t: datetime, **kw) -> dict:
    extra = kw.pop(
        "extra",
        {"feedbackType": "abuse", "userAgent": "IspFeedback/2.3", "reportingMta": "dns; fbl.isp.example"},
    )
    return ev(event_id, "complaint", t, mta="pmta", extra=orjson.dumps(extra).decode(), **kw)


SPRING_ID = "spring.7731.0001@news.sender.example"
SPRING_DELIVERY = ev(
    "d-spring", "delivered", ts(2, 6, 39, 59), recipient="carol@example.org", message_id=f"<{SPRING_ID}>",
    sender="bounce-7731@news.sender.example", sender_domain="news.sender.example", pool="p1", source="vmta1",
    source_ip="203.0.113.10", mx_host="mx.isp.example", job_id="spring-2024-05",
)  # fmt: skip


def cid(identity: str) -> str:
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def test_same_complaint_by_three_routes_counts_once():
    original = f"Message-ID: <{SPRING_ID}>\r\nTo: Carol <carol@example.org>\r\nSubject: Spring sale\r\n\r\nbody".encode()
    events = frame(
        [
            SPRING_DELIVERY,
            # PowerMTA's accounting file does not log the Message-ID header here
            pmta_f("f-1", ts(2, 7, 16), recipient="carol@example.org", sender="bounce-7731@news.sender.example"),
            kumo_feedback(
                "k-1",
                ts(2, 7, 15, 45),
                {
                    "feedback_type": "abuse", "user_agent": "IspFeedback/2.3", "version": "1",
                    "original_rcpto_to": ["<carol@example.org>"], "original_mail_from": "<bounce-7731@news.sender.example>",
                    "reporting_mta": {"mta_type": "dns", "name": "fbl.isp.example"},
                    "original_message": list(original),
                    "supplemental_trace": {"recipient": "carol@example.org", "tenant": "acme", "campaign": "spring-sale"},
                },
            ),
        ]
    )  # fmt: skip
    out = build_complaints(events=events, arf=arf_frame("rfc5965_full.eml"), deliveries=events).collect()
    assert out.schema == COMPLAINT_SCHEMA
    assert out.height == 1
    row = out.row(0, named=True)
    assert row["complaint_id"] == cid(f"m|carol@example.org|{SPRING_ID}")
    assert row["routes"] == ["arf_mail", "kumo_feedback", "pmta_f"]
    assert row["route_rows"] == 3
    assert row["complaint_time"] == ts(2, 7, 15, 30)  # the ARF's Date:, earliest of the three
    assert (row["identity_basis"], row["matched_by"], row["delivery_event_id"]) == (
        "recipient+message_id", "message_id", "d-spring",
    )  # fmt: skip
    assert (row["recipient"], row["recipient_domain"], row["recipient_redacted"]) == (
        "carol@example.org",
        "example.org",
        False,
    )
    assert (row["sender"], row["sender_domain"]) == ("bounce-7731@news.sender.example", "news.sender.example")
    assert (row["message_id"], row["original_message_id"]) == (f"<{SPRING_ID}>", SPRING_ID)
    assert (row["pool"], row["source"], row["source_ip"], row["mta"]) == (
        "p1",
        "vmta1",
        "203.0.113.10",
        "pmta",
    )
    assert (row["job_id"], row["tenant"], row["campaign"]) == ("spring-2024-05", "acme", "spring-sale")
    assert (row["feedback_type"], row["reporting_domain"], row["reported_domain"]) == (
        "abuse", "fbl.isp.example", "news.sender.example",
    )  # fmt: skip


def test_join_back_by_recipient_takes_the_nearest_earlier_delivery():
    events = frame(
        [
            ev("d-old", "delivered", ts(1, 10), mta="kumo", recipient="dana@gmail.com", message_id="k1",
               sender="news@news.sender.example", sender_domain="news.sender.example", mx_host="gmail-smtp-in.l.google.com"),
            ev("d-near", "delivered", ts(2, 9), mta="kumo", recipient="Dana@Gmail.com", message_id="k2", pool="warm",
               sender="news@news.sender.example", sender_domain="news.sender.example", mx_host="gmail-smtp-in.l.google.com"),
            ev("d-after", "delivered", ts(2, 12), mta="kumo", recipient="dana@gmail.com", message_id="k3",
               sender="news@news.sender.example", sender_domain="news.sender.example", mx_host="gmail-smtp-in.l.google.com"),
            pmta_f("f-dana", ts(2, 11), recipient="dana@gmail.com"),
            ev("d-stale", "delivered", ts(1, 8) - timedelta(days=40), recipient="eve@gmail.com", message_id="old"),
            pmta_f("f-eve", ts(2, 11), recipient="eve@gmail.com"),
        ]
    )  # fmt: skip
    out = build_complaints(events=events, arf=None, deliveries=events).collect().sort("recipient")
    assert out.select(
        "recipient", "matched_by", "delivery_event_id", "pool", "message_id", "identity_basis"
    ).rows() == [
        ("dana@gmail.com", "recipient_time", "d-near", "warm", "k2", "recipient+day"),
        (
            "eve@gmail.com",
            None,
            None,
            None,
            None,
            "recipient+day",
        ),  # only delivery is beyond the 30-day lookback
    ]
    assert out["provider"].to_list() == ["google", "google"]
    assert out["complaint_id"].to_list() == [
        cid("r|dana@gmail.com|2024-05-02"),
        cid("r|eve@gmail.com|2024-05-02"),
    ]


def test_redacted_recipient_is_resolved_through_the_message_id():
    deliveries = frame(
        [ev("d-flash", "delivered", ts(4, 17, 19, 59), recipient="ivy@isp.example", message_id="<flash.99.0001@news.sender.example>",
            sender="bounce-99@news.sender.example", sender_domain="news.sender.example")]
    )  # fmt: skip
    out = build_complaints(
        events=frame([]), arf=arf_frame("redacted_recipient.eml"), deliveries=deliveries
    ).collect()
    assert out.select("recipient", "recipient_redacted", "matched_by", "identity_basis", "routes").rows() == [
        ("ivy@isp.example", False, "message_id", "recipient+message_id", ["arf_mail"])
    ]
    # Two delivered recipients share the Message-ID: no match, the redacted value is kept and flagged.
    two = pl.concat(
        [deliveries, frame([ev("d-flash2", "delivered", ts(4, 17, 20), recipient="jo@isp.example",
                                message_id="flash.99.0001@news.sender.example")])]
    )  # fmt: skip
    out2 = build_complaints(
        events=frame([]), arf=arf_frame("redacted_recipient.eml"), deliveries=two
    ).collect()
    assert out2.select("recipient", "recipient_redacted", "matched_by", "identity_basis").rows() == [
        ("xxxxxxxx@isp.example", True, None, "message_id")
    ]
    assert out2["complaint_id"].to_list() == [cid("i|flash.99.0001@news.sender.example")]


def test_distinct_messages_of_one_recipient_are_distinct_complaints_and_reports_without_keys_never_merge():
    events = frame(
        [
            pmta_f("f-a", ts(3, 9), recipient="kim@example.net", message_id="<a@x>"),
            pmta_f("f-b", ts(3, 9, 5), recipient="kim@example.net", message_id="<b@x>"),
            pmta_f("f-a-copy", ts(3, 9, 6), recipient="KIM@example.net", message_id="a@x"),  # same as f-a
            pmta_f("f-none-1", ts(3, 10), recipient=None),
            pmta_f("f-none-2", ts(3, 10), recipient=None),
        ]
    )
    out = build_complaints(events=events, arf=None, deliveries=frame([])).collect()
    assert out.select("identity_basis", "route_rows").sort("identity_basis", "route_rows").rows() == [
        ("recipient+message_id", 1),
        ("recipient+message_id", 2),
        ("report", 1),
        ("report", 1),
    ]
    assert set(out["complaint_id"]) == {
        cid("m|kim@example.net|a@x"), cid("m|kim@example.net|b@x"), cid("u|pmta_f|f-none-1"), cid("u|pmta_f|f-none-2"),
    }  # fmt: skip


def test_complaints_are_counted_on_the_day_of_their_earliest_sighting():
    # The ARF is dated 23:59:59 on the 2nd; PowerMTA logs the same report after midnight.
    text = (
        (FIXTURES / "rfc5965_full.eml")
        .read_text()
        .replace("Thu, 2 May 2024 09:15:30 +0200", "Thu, 2 May 2024 23:59:59 +0000")
    )
    arf = reports_frame([parse_arf(text.encode(), source_file="fbl/late.eml")])  # type: ignore[list-item]
    events = frame(
        [
            SPRING_DELIVERY,
            pmta_f("f-late", ts(3, 0, 0, 30), recipient="carol@example.org", message_id=f"<{SPRING_ID}>"),
        ]
    )
    d2 = build_complaints(events=events, arf=arf, deliveries=events, day="2024-05-02").collect()
    d3 = build_complaints(events=events, arf=arf, deliveries=events, day="2024-05-03").collect()
    assert d2.select("complaint_time", "routes").rows() == [(ts(2, 23, 59, 59), ["arf_mail", "pmta_f"])]
    assert d3.height == 0


def test_output_is_deterministic_whatever_the_input_order():
    events_rows = [
        SPRING_DELIVERY,
        pmta_f("f-1", ts(2, 7, 16), recipient="carol@example.org"),
        pmta_f("f-2", ts(2, 8), recipient="lee@example.org", message_id="<z@x>"),
    ]
    arf = arf_frame("rfc5965_full.eml", "jmrp_legacy.eml", "yahoo_headers_only.eml")
    a = build_complaints(events=frame(events_rows), arf=arf, deliveries=frame(events_rows)).collect()
    b = build_complaints(
        events=frame(events_rows[::-1]), arf=arf.reverse(), deliveries=frame(events_rows[::-1])
    ).collect()
    assert a.equals(b)
    assert a.height == 4
    assert a["complaint_id"].is_unique().all()
    by_route = {tuple(r["routes"]): r for r in a.iter_rows(named=True)}
    assert by_route[("arf_mail",)] is not None
    providers = dict(a.select("recipient", "reporting_provider").rows())
    assert providers == {
        "carol@example.org": "other",
        "grace@hotmail.com": "microsoft",
        "frank@yahoo.com": "yahoo",
        "lee@example.org": "other",
    }


def test_candidates_read_pmta_extra_case_insensitively():
    events = frame(
        [pmta_f("f-x", ts(2, 9), recipient=None, extra={"FeedbackType": "Abuse", "UserAgent": "Ua/1", "reportingMTA": "fbl.isp.example",
                                                         "arf_Original-Rcpt-To": "<m@example.org>", "header_X-Job": "job-9",
                                                         "header_Message-Id": "<q@x>"})]
    )  # fmt: skip
    c = complaint_candidates(events=events, arf=None)
    assert c.select(
        "feedback_type", "user_agent", "reporting_domain", "recipient", "job_id", "original_message_id"
    ).rows() == [("abuse", "Ua/1", "fbl.isp.example", "m@example.org", "job-9", "q@x")]


# ---------------------------------------------------------------------------- rates


def _rates_inputs(cells: list[tuple[str, str, int, int]]) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """cells: (provider, sender_domain, delivered, complaints) on 2024-05-02."""
    dl, cp = [], []
    for provider, domain, delivered, complaints in cells:
        dl += [
            {
                "event_type": "delivered",
                "event_time": ts(2, 10),
                "provider": provider,
                "sender_domain": domain,
            }
        ] * delivered
        cp += [{"complaint_time": ts(2, 11), "provider": provider, "sender_domain": domain}] * complaints
    sch_d = {
        "event_type": pl.String,
        "event_time": pl.Datetime("us", "UTC"),
        "provider": pl.String,
        "sender_domain": pl.String,
    }
    sch_c = {"complaint_time": pl.Datetime("us", "UTC"), "provider": pl.String, "sender_domain": pl.String}
    return pl.DataFrame(cp, schema=sch_c).lazy(), pl.DataFrame(dl, schema=sch_d).lazy()


CELLS = [
    ("google", "a.example", 1000, 1),  # 0.1%  -> warn (threshold is inclusive)
    ("google", "b.example", 1001, 1),  # 0.0999% -> ok
    ("yahoo", "a.example", 1000, 3),  # 0.3%  -> critical
    ("microsoft", "a.example", 0, 1),  # no deliveries that day
    ("microsoft", "c.example", 10, 0),  # low volume
    ("microsoft", "d.example", 2000, 1),  # 0.05% -> ok with defaults
]


def test_complaint_rates_against_default_thresholds():
    complaints, deliveries = _rates_inputs(CELLS)
    out = complaint_rates(
        complaints=complaints, deliveries=deliveries, thresholds=load_thresholds()
    ).collect()
    assert out.schema == COMPLAINT_RATE_SCHEMA
    assert out.select(
        "provider", "sender_domain", "complaints", "delivered", "complaint_rate", "status", "low_volume"
    ).rows() == [
        ("google", "a.example", 1, 1000, 0.001, "warn", False),
        ("google", "b.example", 1, 1001, 1 / 1001, "ok", False),
        ("microsoft", "a.example", 1, 0, None, "no_deliveries", True),
        ("microsoft", "c.example", 0, 10, 0.0, "ok", True),
        ("microsoft", "d.example", 1, 2000, 0.0005, "ok", False),
        ("yahoo", "a.example", 3, 1000, 0.003, "critical", False),
    ]
    assert out["day"].unique().to_list() == [date(2024, 5, 2)]
    assert out["warn_threshold"].unique().to_list() == [0.001]
    assert out["critical_threshold"].unique().to_list() == [0.003]


def test_thresholds_are_configuration(tmp_path):
    doc = yaml.safe_load(default_thresholds_path().read_text(encoding="utf-8"))
    doc["providers"]["microsoft"] = {"warn": 0.0004, "critical": 0.0005}
    doc["min_delivered"] = 5
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(doc), encoding="utf-8")
    complaints, deliveries = _rates_inputs(CELLS)
    out = complaint_rates(
        complaints=complaints, deliveries=deliveries, thresholds=load_thresholds(p)
    ).collect()
    ms = out.filter(pl.col("provider") == "microsoft").select(
        "sender_domain", "status", "low_volume", "warn_threshold"
    )
    assert ms.rows() == [
        ("a.example", "no_deliveries", True, 0.0004),
        ("c.example", "ok", False, 0.0004),
        ("d.example", "critical", False, 0.0004),
    ]
    with pytest.raises(ValueError, match="warn <= critical"):
        parse_thresholds({"default": {"warn": 0.01, "critical": 0.001}})


# ---------------------------------------------------------------------------- assets end to end


def test_assets_materialize_on_a_small_lake(tmp_path):
    from assets import bounces as bounce_assets
    from assets import complaints as complaint_assets
    from pipelines.resources import resources_for

    lake = Lake.at(tmp_path / "lake")
    landing = tmp_path / "landing"
    (landing / "fbl").mkdir(parents=True)
    for name in ("rfc5965_full.eml", "not_a_report.eml"):
        shutil.copy(FIXTURES / name, landing / "fbl" / name)
    day1 = pl.DataFrame(
        [ev("d-earlier", "delivered", ts(1, 12), recipient="carol@example.org", message_id="<other@x>",
            sender_domain="news.sender.example")],
        schema=EVENT_SCHEMA,
    )  # fmt: skip
    day2 = pl.DataFrame(
        [
            SPRING_DELIVERY,
            ev("b-1", "bounced", ts(2, 8), recipient="x@gmail.com", smtp_code=550, enhanced_status="5.1.1",
               response="The email account that you tried to reach does not exist.", raw_bounce_category="bad-mailbox"),
            ev("t-1", "deferred", ts(2, 9), mta="kumo", recipient="y@yahoo.com", smtp_code=421, enhanced_status="4.7.0",
               response="[TSS04] Messages from 192.0.2.1 temporarily deferred", raw_bounce_category="Uncategorized"),
            ev("t-2", "deferred", ts(2, 9, 30), recipient="z@example.net", smtp_code=421, response="Try later maybe"),
            pmta_f("f-1", ts(2, 7, 16), recipient="carol@example.org"),
        ],
        schema=EVENT_SCHEMA,
    )  # fmt: skip
    write_partition(day1, lake=lake, table="events", day="2024-05-01")
    write_partition(day2, lake=lake, table="events", day="2024-05-02")
    res = resources_for(lake=lake.root, landing=landing)

    landing_run = dg.materialize(
        [complaint_assets.fbl_reports, complaint_assets.fbl_reports_reconcile], resources=res
    )
    assert landing_run.success
    assert all(e.passed for e in landing_run.get_asset_check_evaluations())

    daily = [
        bounce_assets.bounces, bounce_assets.bounces_match_failures, bounce_assets.classifier_stats,
        complaint_assets.complaints, complaint_assets.complaints_not_double_counted, complaint_assets.complaint_rates,
    ]  # fmt: skip
    for day in ("2024-05-02", "2024-05-03"):  # 05-03 has no events at all
        result = dg.materialize(daily, resources=res, partition_key=day)
        assert result.success
        evals = result.get_asset_check_evaluations()
        assert len(evals) == 2 and all(e.passed for e in evals)

    def read(table: str, day: str = "2024-05-02") -> pl.DataFrame:
        return pl.read_parquet(lake.partition_dir(table, day) / "part-0.parquet")

    b = read("bounces")
    assert b.select("event_id", "provider", "category", "rule").rows() == [
        ("b-1", "google", "bad-mailbox", "raw:bad-mailbox"),
        ("t-1", "yahoo", "spam-related", "yahoo.tss"),
        ("t-2", "other", "other", "catch-all"),
    ]
    assert read("classifier_stats").select("provider", "failures", "unclassified").rows() == [
        ("google", 1, 0), ("other", 1, 1), ("yahoo", 1, 0),
    ]  # fmt: skip
    assert read("unmatched_replies")["template"].to_list() == ["Try later maybe"]
    c = read("complaints")
    assert c.select("routes", "matched_by", "delivery_event_id").rows() == [
        (["arf_mail", "pmta_f"], "message_id", "d-spring")
    ]
    r = read("complaint_rates")
    assert r.select("provider", "sender_domain", "complaints", "delivered", "status").rows() == [
        ("other", "news.sender.example", 1, 1, "critical")
    ]
    assert read("bounces", "2024-05-03").height == 0
    assert read("complaints", "2024-05-03").height == 0
    q = pl.read_parquet(lake.quarantine / "fbl" / "fbl.parquet")
    assert q.select("source_file", "reason").rows() == [("fbl/not_a_report.eml", "arf_unparseable")]


def test_complaint_alerts_view(tmp_path):
    from mtashift import catalog

    lake = Lake.at(tmp_path / "lake")
    complaints, deliveries = _rates_inputs(CELLS)
    rates = complaint_rates(complaints=complaints, deliveries=deliveries).collect()
    write_partition(rates, lake=lake, table="complaint_rates", day="2024-05-02")
    assert "complaint_alerts" in catalog.refresh(lake)["created"]
    got = catalog.query(
        lake, "SELECT provider, sender_domain, status FROM complaint_alerts ORDER BY provider, sender_domain"
    )
    assert got.rows() == [("google", "a.example", "warn"), ("yahoo", "a.example", "critical")]


def test_candidates_fall_back_to_raw_type_when_mta_is_missing():
    rows = [
        {**pmta_f("f-raw", ts(2, 9), recipient="n@example.org"), "mta": None, "raw_type": "f"},
        {
            **pmta_f("x-raw", ts(2, 9), recipient="o@example.org"),
            "mta": None,
            "raw_type": "zz",
        },  # not a complaint route
    ]
    c = complaint_candidates(events=frame(rows), arf=None)
    assert c.select("route", "route_ref", "recipient", "mta").rows() == [
        ("pmta_f", "f-raw", "n@example.org", "pmta")
    ]
