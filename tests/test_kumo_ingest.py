"""KumoMTA log ingest: record mapping, broken input, zstd damage, open segments, webhooks, counting.

Every fixture is built here (our own records in the shapes of formats.md B.7); expected values are
written out by hand.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import zstandard

from mtashift.ingest import kumo, run
from mtashift.ingest.common import event_id_of, prefetched
from mtashift.ingest.kumo import (
    KumoFileJob,
    KumoFileStats,
    classify_kumo_path,
    ingest_kumo_file,
    ingest_kumo_files,
    is_open_segment,
    kumo_event_id,
    parse_kumo_file,
)
from schemas.events import EVENT_SCHEMA
from schemas.quarantine import QUARANTINE_SCHEMA, REASONS

from .conftest import raw_file_layout, samples_dir

# --------------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------------

# 2026-11-01T12:05:06Z = 1793491200 (2026-11-01T00:00:00Z) + 12*3600 + 5*60 + 6
T_EVENT = 1793534706

DELIVERY: dict = {
    "type": "Delivery",
    "id": "7a1c0e5e2b3f11efa0d2525400123456",
    "sender": "bounces@News.Sender.Example",
    "recipient": "Jane.Doe@Bücher.Example",
    "queue": "spring-sale:acme@bücher.example!relay.example.net",
    "site": "ip-7->(mx1|mx2).mail.example@smtp",
    "size": 20480,
    "response": {
        "code": 250,
        "enhanced_code": {"class": 2, "subject": 0, "detail": 0},
        "content": "Ok: queued as 4F1B2",
        "command": ".",
    },
    "peer_address": {"name": "MX1.Mail.Example.", "addr": "192.0.2.25"},
    "timestamp": T_EVENT,
    "event_time": "2026-11-01T12:05:06.123456789Z",
    "created": 1793534700,
    "created_time": "2026-11-01T12:05:00.500000000Z",
    "num_attempts": 2,
    "bounce_classification": "Uncategorized",
    "egress_pool": "warm-pool",
    "egress_source": "ip-7",
    "source_address": {"address": "198.51.100.7:49152", "protocol": "haproxy", "server": "203.0.113.9:5000"},
    "feedback_report": None,
    "meta": {"job_id": "job-4711", "campaign": "spring-sale"},
    "headers": {"Subject": "Spring sale", "X-Job": "hdr-job"},
    "delivery_protocol": "ESMTP",
    "reception_protocol": "HTTP",
    "nodeid": "0b7d6d3e-1f2a-4c55-9e0e-2a1b3c4d5e6f",
    "tls_cipher": "TLS_AES_128_GCM_SHA256",
    "tls_protocol_version": "TLSv1.3",
    "tls_peer_subject_name": ["C=DE", "CN=mx1.mail.example"],
    "provider_name": "other",
    "session_id": "5d3c2b1a-0000-4000-8000-000000000001",
}

RECEPTION: dict = {
    "type": "Reception",
    "id": "1e2d3c4b5a6911efb0c1525400abcdef",
    "sender": "newsletter@shop.example",
    "recipient": "max@example.net",
    "queue": "example.net",
    "site": "",
    "size": 3120,
    "response": {"code": 250, "enhanced_code": None, "content": "", "command": None},
    "peer_address": {"name": "Injector-01.Shop.Example", "addr": "10.20.30.40"},
    "timestamp": 1793520000,
    "event_time": "2026-11-01T08:00:00.000000500Z",
    "created": 1793520000,
    "created_time": "2026-11-01T08:00:00.000000500Z",
    "num_attempts": 0,
    "bounce_classification": "Uncategorized",
    "egress_pool": None,
    "egress_source": None,
    "source_address": None,
    "feedback_report": None,
    "meta": {},
    "headers": {},
    "delivery_protocol": None,
    "reception_protocol": "ESMTP",
    "nodeid": "0b7d6d3e-1f2a-4c55-9e0e-2a1b3c4d5e6f",
    "session_id": "77777777-0000-4000-8000-000000000002",
}

# An old one-line record (before 2025.10.06 and before the protocol/nodeid fields): epoch times only.
OLD_RECEPTION = (
    '{"type":"Reception","id":"0f6b2a90e60111ed8162000d3afc0001","sender":"alerts@example.org",'
    '"recipient":"ops@example.net","queue":"example.net","site":"","size":512,"response":{"code":250,'
    '"enhanced_code":null,"content":"","command":null},"peer_address":{"name":"","addr":"10.9.8.7"},'
    '"timestamp":1682712864,"created":1682712800,"num_attempts":0,"bounce_classification":"Uncategorized",'
    '"egress_pool":null,"egress_source":null,"feedback_report":null,"meta":{},"headers":{"Subject":"hi"}}'
)


def line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def with_(base: dict, **changes: object) -> dict:
    rec = copy.deepcopy(base)
    rec.update(changes)
    return rec


def write_text(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def zstd_blocks(chunks: list[bytes], *, finish: bool = True) -> tuple[bytes, list[int]]:
    """One zstd frame, a block flushed after each chunk; returns the data and the end offset of each block."""
    cobj = zstandard.ZstdCompressor().compressobj()
    out = bytearray()
    ends = []
    for chunk in chunks:
        out += cobj.compress(chunk)
        out += cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        ends.append(len(out))
    if finish:
        out += cobj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
    return bytes(out), ends


def write_segment(path: Path, data: bytes, *, closed: bool = True) -> Path:
    write_text(path, data)
    path.chmod(0o444 if closed else 0o644)
    return path


def parse(path: Path, rel: str, **kw: object) -> tuple[pl.DataFrame, pl.DataFrame, KumoFileStats]:
    events, quarantine, stats = parse_kumo_file(path, rel_path=rel, **kw)  # type: ignore[arg-type]
    assert events.schema == EVENT_SCHEMA
    assert quarantine.schema == QUARANTINE_SCHEMA
    assert_reconciles(stats, events, quarantine)
    return events, quarantine, stats


def assert_reconciles(stats: KumoFileStats, events: pl.DataFrame, quarantine: pl.DataFrame) -> None:
    assert stats.events == events.height
    assert stats.quarantined == quarantine.height
    assert stats.records_read == stats.records_ok + stats.quarantined
    assert (
        stats.lines_read + stats.fanout
        == stats.events + stats.duplicates + stats.quarantined + stats.other_lines
    )
    assert set(quarantine["reason"].to_list()) <= set(REASONS)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --------------------------------------------------------------------------------------------------
# record mapping
# --------------------------------------------------------------------------------------------------


def test_full_delivery_maps_every_column(tmp_path: Path) -> None:
    p = write_text(tmp_path / "kumo" / "n1" / "d.jsonl", line(DELIVERY) + "\n")
    events, quarantine, stats = parse(p, "kumo/n1/d.jsonl")
    assert quarantine.height == 0
    row = events.row(0, named=True)
    key = "\x1f".join(
        [
            "Delivery",
            "7a1c0e5e2b3f11efa0d2525400123456",
            "1793534706123456789",  # event_time in ns, full precision
            "Jane.Doe@Bücher.Example",
            "2",
            "0b7d6d3e-1f2a-4c55-9e0e-2a1b3c4d5e6f",
            "5d3c2b1a-0000-4000-8000-000000000001",
            "bounces@News.Sender.Example",
            "192.0.2.25",
        ]
    )
    expected = {
        "event_id": event_id_of("kumo", key),
        "mta": "kumo",
        "event_type": "delivered",
        "raw_type": "Delivery",
        "event_time": utc(2026, 11, 1, 12, 5, 6, 123456),
        "queued_time": utc(2026, 11, 1, 12, 5, 0, 500000),
        "sender": "bounces@News.Sender.Example",
        "sender_domain": "news.sender.example",
        "recipient": "Jane.Doe@Bücher.Example",
        "recipient_domain": "xn--bcher-kva.example",
        "pool": "warm-pool",
        "source": "ip-7",
        "source_ip": "198.51.100.7",
        "mx_host": "mx1.mail.example",
        "mx_ip": "192.0.2.25",
        "smtp_code": 250,
        "enhanced_status": "2.0.0",
        "response": "Ok: queued as 4F1B2",
        "raw_bounce_category": "Uncategorized",
        "job_id": "job-4711",
        "campaign": "spring-sale",
        "tenant": "acme",
        "message_id": "7a1c0e5e2b3f11efa0d2525400123456",
        "size_bytes": 20480,
        "attempts": 2,
        "tls_protocol": "TLSv1.3",
        "tls_cipher": "TLS_AES_128_GCM_SHA256",
        "node": "0b7d6d3e-1f2a-4c55-9e0e-2a1b3c4d5e6f",
        "source_file": "kumo/n1/d.jsonl",
        "source_line": 1,
    }
    assert {k: row[k] for k in expected} == expected
    assert len(row["event_id"]) == 32
    # extra is the record itself, losslessly (meta, headers, source_address extras, tls_peer_subject_name, ...)
    assert json.loads(row["extra"]) == DELIVERY
    assert stats.records_read == 1 and stats.records_ok == 1 and stats.events == 1


def test_reception_keeps_client_peer_out_of_mx_columns(tmp_path: Path) -> None:
    p = write_text(tmp_path / "r.jsonl", line(RECEPTION) + "\n")
    events, _q, _s = parse(p, "kumo/n1/r.jsonl")
    row = events.row(0, named=True)
    assert row["event_type"] == "received"
    assert row["event_time"] == utc(2026, 11, 1, 8, 0, 0, 0)  # 500 ns truncate to the microsecond
    assert (row["mx_host"], row["mx_ip"]) == (None, None)  # EHLO name / client IP of the injector
    assert (row["pool"], row["source"], row["source_ip"]) == (None, None, None)
    assert (row["smtp_code"], row["enhanced_status"], row["response"]) == (250, None, "")
    assert (row["campaign"], row["tenant"], row["job_id"]) == (None, None, None)
    assert json.loads(row["extra"])["peer_address"] == {
        "name": "Injector-01.Shop.Example",
        "addr": "10.20.30.40",
    }
    # the sub-microsecond digits still distinguish the event
    assert row["event_id"] == kumo_event_id(
        raw_type="Reception", message_id=RECEPTION["id"], key_time="1793520000000000500", recipient="max@example.net",
        attempts=0, node=RECEPTION["nodeid"], session_id=RECEPTION["session_id"], sender="newsletter@shop.example",
        peer_addr="10.20.30.40",
    )  # fmt: skip


def test_old_record_without_newer_fields(tmp_path: Path) -> None:
    p = write_text(tmp_path / "old.jsonl", OLD_RECEPTION + "\n")
    events, _q, _s = parse(p, "kumo/n1/old.jsonl")
    row = events.row(0, named=True)
    assert row["event_time"] == utc(2023, 4, 28, 20, 14, 24)  # 1682712864
    assert row["queued_time"] == utc(2023, 4, 28, 20, 13, 20)  # 1682712800
    assert (row["node"], row["tls_protocol"], row["tls_cipher"]) == (None, None, None)
    assert row["recipient_domain"] == "example.net"
    assert row["size_bytes"] == 512
    assert json.loads(row["extra"])["headers"] == {"Subject": "hi"}
    assert row["event_id"] == kumo_event_id(
        raw_type="Reception", message_id="0f6b2a90e60111ed8162000d3afc0001", key_time="1682712864000000000",
        recipient="ops@example.net", attempts=0, node=None, session_id=None, sender="alerts@example.org",
        peer_addr="10.9.8.7",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("raw_type", "event_type"),
    [
        ("Reception", "received"),
        ("Delivery", "delivered"),
        ("TransientFailure", "deferred"),
        ("Delayed", "queue_deferred"),
        ("Bounce", "bounced"),
        ("Expiration", "expired"),
        ("AdminBounce", "admin_bounce"),
        ("OOB", "remote_bounce"),
        ("Feedback", "complaint"),
        ("Rejection", "rejected"),
        ("AdminRebind", "other"),
        ("DeferredInjectionRebind", "other"),
        ("XferOut", "other"),
        ("XferIn", "other"),
        ("SuspendNotice", "other"),  # a type this version does not know
    ],
)
def test_every_record_type(tmp_path: Path, raw_type: str, event_type: str) -> None:
    p = write_text(tmp_path / "t.jsonl", line(with_(DELIVERY, type=raw_type)) + "\n")
    events, _q, _s = parse(p, "kumo/n1/t.jsonl")
    assert events.select("raw_type", "event_type").row(0) == (raw_type, event_type)
    inbound = raw_type in ("Reception", "Rejection", "Feedback", "XferIn")
    assert events["mx_host"][0] == (None if inbound else "mx1.mail.example")


def test_failure_records_keep_code_status_text_and_class(tmp_path: Path) -> None:
    bounce = with_(
        DELIVERY,
        type="Bounce",
        response={
            "code": 550,
            "enhanced_code": {"class": 5, "subject": 1, "detail": 1},
            "content": "The email account that you tried to reach does not exist",
            "command": "RCPT TO",
        },
        bounce_classification="InvalidRecipient",
    )
    transient = with_(
        DELIVERY,
        type="TransientFailure",
        response={
            "code": 451,
            "enhanced_code": None,
            "content": "KumoMTA internal: no answer",
            "command": None,
        },
        bounce_classification="MyOwnLabel",  # user-defined classes are an open set
        size=0,
    )
    p = write_text(tmp_path / "f.jsonl", line(bounce) + "\n" + line(transient) + "\n")
    events, _q, _s = parse(p, "kumo/n1/f.jsonl")
    got = events.select(
        "event_type", "smtp_code", "enhanced_status", "response", "raw_bounce_category", "size_bytes"
    )
    assert got.rows() == [
        (
            "bounced",
            550,
            "5.1.1",
            "The email account that you tried to reach does not exist",
            "InvalidRecipient",
            20480,
        ),
        ("deferred", 451, None, "KumoMTA internal: no answer", "MyOwnLabel", 0),
    ]


@pytest.mark.parametrize(
    ("queue", "campaign", "tenant"),
    [
        ("campaign:tenant@domain.example", "campaign", "tenant"),
        ("tenant@domain.example", None, "tenant"),
        ("campaign:@domain.example", "campaign", None),
        ("domain.example", None, None),
        ("c1:t1@domain.example!routing.example", "c1", "t1"),
        ("t2@domain.example!routing.example", None, "t2"),
        ("a:b:c@domain.example", "a", "b:c"),  # KumoMTA splits at the first `:`
        ("", None, None),
    ],
)
def test_queue_names(tmp_path: Path, queue: str, campaign: str | None, tenant: str | None) -> None:
    p = write_text(tmp_path / "q.jsonl", line(with_(DELIVERY, queue=queue)) + "\n")
    events, _q, _s = parse(p, "kumo/n1/q.jsonl")
    assert events.select("campaign", "tenant").row(0) == (campaign, tenant)


@pytest.mark.parametrize(
    ("source_address", "source_ip"),
    [
        ({"address": "10.0.0.1:53210"}, "10.0.0.1"),
        ({"address": "[2001:db8::7]:25"}, "2001:db8::7"),
        ({"address": "[::1]:25"}, "::1"),
        ({"address": "2001:db8::7"}, "2001:db8::7"),
        ({"address": "10.0.0.2"}, "10.0.0.2"),
        ({"address": "10.0.0.3:0", "protocol": "socks5", "server": "192.168.1.1:5000"}, "10.0.0.3"),
        (None, None),
    ],
)
def test_source_address(tmp_path: Path, source_address: dict | None, source_ip: str | None) -> None:
    p = write_text(tmp_path / "s.jsonl", line(with_(DELIVERY, source_address=source_address)) + "\n")
    events, _q, _s = parse(p, "kumo/n1/s.jsonl")
    assert events["source_ip"][0] == source_ip


def test_job_id_sources(tmp_path: Path) -> None:
    recs = [
        with_(DELIVERY, meta={"jobId": 99}, headers={}),  # number -> text
        with_(DELIVERY, meta={"x-job": "xj"}, headers={"X-Job": "hj"}),  # meta before headers
        with_(DELIVERY, meta={"X-Job": "XJ"}, headers={}),
        with_(DELIVERY, meta={"campaign": "c"}, headers={"X-Job": "hj"}),
        with_(DELIVERY, meta={}, headers={"x-job": "lower"}),
        with_(DELIVERY, meta={"JOB_ID": "wrong case"}, headers={}),  # keys match case-sensitively
    ]
    for i, r in enumerate(recs):
        r["id"] = f"id{i}"
    p = write_text(tmp_path / "j.jsonl", "".join(line(r) + "\n" for r in recs))
    events, _q, _s = parse(p, "kumo/n1/j.jsonl")
    assert events["job_id"].to_list() == ["99", "xj", "XJ", "hj", "lower", None]


def test_lenient_types(tmp_path: Path) -> None:
    rec = with_(DELIVERY, type=5, size="2048", num_attempts="many", egress_pool={"name": "p"})
    p = write_text(tmp_path / "l.jsonl", line(rec) + "\n")
    events, _q, _s = parse(p, "kumo/n1/l.jsonl")
    row = events.row(0, named=True)
    assert (row["raw_type"], row["event_type"]) == ("5", "other")
    assert (row["size_bytes"], row["attempts"], row["pool"]) == (2048, None, '{"name":"p"}')
    assert json.loads(row["extra"])["num_attempts"] == "many"


def test_times_offsets_and_fallbacks(tmp_path: Path) -> None:
    recs = [
        # an explicit offset is converted to UTC
        with_(
            DELIVERY, id="a", event_time="2026-11-01T14:05:06.25+02:00", created_time=None, created=1793534700
        ),
        # an unusable event_time falls back to the epoch seconds
        with_(DELIVERY, id="b", event_time="yesterday", timestamp=1793534707),
        # neither: quarantined
        with_(DELIVERY, id="c", event_time=None, timestamp=None),
    ]
    recs[2].pop("timestamp")
    p = write_text(tmp_path / "t.jsonl", "".join(line(r) + "\n" for r in recs))
    events, quarantine, _s = parse(p, "kumo/n1/t.jsonl")
    assert events.select("message_id", "event_time", "queued_time").rows() == [
        ("a", utc(2026, 11, 1, 12, 5, 6, 250000), utc(2026, 11, 1, 12, 5, 0)),
        ("b", utc(2026, 11, 1, 12, 5, 7), utc(2026, 11, 1, 12, 5, 0, 500000)),
    ]
    assert quarantine.select("source_line", "reason").rows() == [(3, "bad_timestamp")]


def test_fractional_epoch_seconds_round_to_the_nearest_second(tmp_path: Path) -> None:
    """kumod writes whole seconds; a fraction from another producer is rounded (documented), not an error."""
    recs = [
        with_(DELIVERY, id=i, event_time=None, timestamp=t)
        for i, t in (("a", 1793534706.4), ("b", 1793534706.5))
    ]
    p = write_text(tmp_path / "f.jsonl", "".join(line(r) + "\n" for r in recs))
    events, quarantine, _s = parse(p, "kumo/n1/f.jsonl")
    assert quarantine.height == 0
    assert events.select("message_id", "event_time").rows() == [
        ("a", utc(2026, 11, 1, 12, 5, 6)),
        ("b", utc(2026, 11, 1, 12, 5, 7)),
    ]


def test_feedback_byte_arrays_and_version_forms_are_kept(tmp_path: Path) -> None:
    report = {
        "feedback_type": "abuse",
        "user_agent": "SomeGenerator/1.0",
        "version": "1",
        "arrival_date": "2026-11-01T11:00:00Z",
        "incidents": None,
        "original_envelope_id": None,
        "original_mail_from": "<bounces@news.sender.example>",
        "reporting_mta": {"mta_type": "dns", "name": "mail.example.com"},
        "source_ip": "192.0.2.1",
        "authentication_results": ["mail.example.com; spf=fail smtp.mail=bounces@news.sender.example"],
        "original_rcpto_to": ["<user@example.com>"],
        "reported_domain": ["example.net"],
        "reported_uri": ["http://example.net/earn_money.html"],
        "extensions": {"removal-recipient": [[117, 64, 101, 46, 99, 111, 109]]},
        "original_message": [70, 114, 111, 109, 58, 32, 60, 62, 13, 10],
        "supplemental_trace": {"recipient": "trace@example.com", "job_id": "job-1"},
    }
    fb1 = with_(RECEPTION, type="Feedback", sender="abuse@isp.example", recipient="fbl@fbl.sender.example",
                feedback_report=report)  # fmt: skip
    report2 = dict(report, version=1, original_rcpto_to=[])
    fb2 = with_(fb1, id="2e2d3c4b5a6911efb0c1525400abcdef", feedback_report=report2)
    report3 = dict(report2, supplemental_trace=None)
    fb3 = with_(fb1, id="3e2d3c4b5a6911efb0c1525400abcdef", feedback_report=report3)
    p = write_text(tmp_path / "fb.jsonl", "".join(line(r) + "\n" for r in (fb1, fb2, fb3)))
    events, _q, _s = parse(p, "kumo/n1/fb.jsonl")
    assert events["event_type"].to_list() == ["complaint"] * 3
    # the complaint is about the original message: its recipient and sender, not the FBL envelope
    assert events["recipient"].to_list() == [
        "user@example.com",
        "trace@example.com",
        "fbl@fbl.sender.example",
    ]
    assert events["sender"].to_list() == ["bounces@news.sender.example"] * 3
    assert events["recipient_domain"].to_list() == ["example.com", "example.com", "fbl.sender.example"]
    extras = [json.loads(x)["feedback_report"] for x in events["extra"]]
    assert extras == [report, report2, report3]
    assert extras[0]["original_message"] == [70, 114, 111, 109, 58, 32, 60, 62, 13, 10]
    assert extras[0]["extensions"]["removal-recipient"] == [[117, 64, 101, 46, 99, 111, 109]]
    assert (extras[0]["version"], extras[1]["version"]) == ("1", 1)


def test_unknown_fields_are_kept(tmp_path: Path) -> None:
    rec = with_(DELIVERY, bogus=None, future_field={"nested": [1, 2.5, "x"]})
    p = write_text(tmp_path / "u.jsonl", line(rec) + "\n")
    events, _q, _s = parse(p, "kumo/n1/u.jsonl")
    extra = json.loads(events["extra"][0])
    assert extra["bogus"] is None and "bogus" in extra
    assert extra["future_field"] == {"nested": [1, 2.5, "x"]}


# --------------------------------------------------------------------------------------------------
# recipients, arrays, duplicates
# --------------------------------------------------------------------------------------------------


def test_recipient_array_fans_out_with_the_same_ids_as_single_records(tmp_path: Path) -> None:
    batched = with_(DELIVERY, recipient=["a@gmail.com", "B@Gmail.com", "c@gmail.com"])
    p = write_text(tmp_path / "b.jsonl", line(batched) + "\n")
    events, _q, stats = parse(p, "kumo/n1/b.jsonl")
    assert events["recipient"].to_list() == ["a@gmail.com", "B@Gmail.com", "c@gmail.com"]
    assert events["recipient_domain"].to_list() == ["gmail.com"] * 3
    assert events["source_line"].to_list() == [1, 1, 1]
    assert events["event_id"].n_unique() == 3
    assert (stats.records_read, stats.records_ok, stats.events, stats.fanout) == (1, 1, 3, 2)
    singles = write_text(tmp_path / "s.jsonl", "".join(line(with_(DELIVERY, recipient=r)) + "\n"
                                                    for r in ("a@gmail.com", "B@Gmail.com", "c@gmail.com")))  # fmt: skip
    single_events, _q, _s = parse(singles, "kumo/n1/s.jsonl")
    assert single_events["event_id"].to_list() == events["event_id"].to_list()


def test_recipient_string_that_starts_with_a_bracket_stays_one_recipient(tmp_path: Path) -> None:
    p = write_text(tmp_path / "b.jsonl", line(with_(DELIVERY, recipient='["x"]@odd.example')) + "\n")
    events, _q, _s = parse(p, "kumo/n1/b.jsonl")
    assert events["recipient"].to_list() == ['["x"]@odd.example']
    assert events["recipient_domain"].to_list() == ["odd.example"]


def test_empty_recipient_array_gives_one_event_without_recipient(tmp_path: Path) -> None:
    p = write_text(tmp_path / "e.jsonl", line(with_(DELIVERY, recipient=[])) + "\n")
    events, _q, stats = parse(p, "kumo/n1/e.jsonl")
    assert events.select("recipient", "recipient_domain").rows() == [(None, None)]
    assert stats.fanout == 0


def test_webhook_batches_arrays_per_line(tmp_path: Path) -> None:
    a, b, c, d = (with_(DELIVERY, id=f"id-{x}") for x in "abcd")
    text = (
        f"[{line(a)},{line(b)}]\n"  # a batch of two
        f"{line(c)}\n"
        "[]\n"  # an empty batch carries nothing
        f"[{line(d)}, 7]\n"  # the second element is not a record
    )
    p = write_text(tmp_path / "kumo" / "webhooks" / "batch.json", text)
    events, quarantine, stats = parse(p, "kumo/webhooks/batch.json")
    assert events.select("message_id", "source_line").rows() == [
        ("id-a", 1),
        ("id-b", 1),
        ("id-c", 2),
        ("id-d", 4),
    ]
    assert [json.loads(x).get("record_index") for x in events["extra"]] == [0, 1, None, 0]
    assert quarantine.select("source_line", "reason", "raw_text").rows() == [(4, "not_a_record", "7")]
    assert "record 1 of the JSON array" in quarantine["detail"][0]
    assert (stats.kind, stats.lines_read, stats.records_read, stats.other_lines, stats.fanout) == (
        "webhook", 4, 5, 1, 2,
    )  # fmt: skip


def test_webhook_whole_file_pretty_printed_array(tmp_path: Path) -> None:
    a, b = with_(DELIVERY, id="id-a"), with_(RECEPTION, id="id-b")
    text = "\n" + json.dumps([a, b], indent=2, ensure_ascii=False) + "\n"
    p = write_text(tmp_path / "kumo" / "webhooks" / "pretty.json", text)
    events, quarantine, stats = parse(p, "kumo/webhooks/pretty.json")
    assert quarantine.height == 0
    assert stats.document_mode
    assert events.select("message_id", "source_line").rows() == [("id-a", 2), ("id-b", 2)]  # the `[` line
    extras = [json.loads(x) for x in events["extra"]]
    assert [x.pop("record_index") for x in extras] == [0, 1]
    assert extras == [a, b]
    assert (stats.lines_read, stats.records_read, stats.fanout, stats.events) == (1, 2, 1, 2)


def test_webhook_single_pretty_printed_object(tmp_path: Path) -> None:
    p = write_text(tmp_path / "kumo" / "webhooks" / "one.json", json.dumps(RECEPTION, indent=4) + "\n")
    events, _q, stats = parse(p, "kumo/webhooks/one.json")
    assert events.select("message_id", "source_line").rows() == [(RECEPTION["id"], 1)]
    assert json.loads(events["extra"][0]) == RECEPTION
    assert stats.document_mode


def _raw_record(message_id: str) -> str:
    """A record whose text a parse-and-dump round trip would change: number spellings, an integer wider
    than 64 bits, an overflowing exponent, an escape, and a duplicate key that is part of the event id."""
    body = line(with_(DELIVERY, id=message_id))[1:-1]
    return (
        '{"meta":{"score":1.10,"big":123456789012345678901234567890,"huge":1e400,"esc":"\\u00e9"},'
        f'{body},"num_attempts":9,"num_attempts":1}}'
    )


@pytest.mark.parametrize("form", ["line", "batch", "pretty_batch", "document"])
def test_array_elements_are_kept_as_written_and_hash_like_lines(tmp_path: Path, form: str) -> None:
    """An array element reads as the same record on a line of its own: same event id (duplicate keys
    resolve the same way), and `extra` holds its text as written, with only its position put first."""
    a, b = _raw_record("id-a"), _raw_record("id-b")
    text = {
        "line": f"{a}\n{b}\n",
        "batch": f"[{a},{b}]\n",
        "pretty_batch": f"[ {a} ,\t{b} ]\n",
        "document": f"[\n  {a},\n  {b}\n]\n",
    }[form]
    p = write_text(tmp_path / "kumo" / "webhooks" / "raw.json", text)
    events, quarantine, stats = parse(p, "kumo/webhooks/raw.json")
    assert quarantine.height == 0
    assert stats.document_mode == (form == "document")
    lines, _q, _s = parse(write_text(tmp_path / "kumo" / "webhooks" / "ref.json", f"{a}\n{b}\n"), "ref")
    assert events["event_id"].to_list() == lines["event_id"].to_list()
    assert events["attempts"].to_list() == lines["attempts"].to_list()
    if form == "line":
        assert events["extra"].to_list() == [a, b]
    else:
        assert events["extra"].to_list() == ['{"record_index":0,' + a[1:], '{"record_index":1,' + b[1:]]


def test_an_element_with_its_own_record_index_keeps_it(tmp_path: Path) -> None:
    own = '{"record_index":"theirs","record_index#2":5,' + line(with_(DELIVERY, id="id-a"))[1:]
    p = write_text(tmp_path / "kumo" / "webhooks" / "own.json", f"[{own}]\n[{{}}, {{ }}]\n")
    events, quarantine, _stats = parse(p, "kumo/webhooks/own.json")
    assert events["extra"].to_list() == ['{"record_index#3":0,' + own[1:]]
    extra = json.loads(events["extra"][0])
    assert (extra["record_index"], extra["record_index#2"], extra["record_index#3"]) == ("theirs", 5, 0)
    # an empty object is no record, and its text is quarantined as it was (not turned into invalid JSON)
    assert quarantine.select("source_line", "reason", "raw_text").rows() == [
        (2, "not_a_record", "{}"),
        (2, "not_a_record", "{ }"),
    ]


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_nesting_deeper_than_the_parsers_is_quarantined_not_fatal(tmp_path: Path, depth: int) -> None:
    """Python's parser gives up with RecursionError on deep nesting; that is bad input, not a crash."""
    a, b = line(with_(DELIVERY, id="id-a")), line(with_(DELIVERY, id="id-b"))
    deep = "[" * depth + "]" * depth
    batch = write_text(tmp_path / "kumo" / "webhooks" / "deep.json", f"{a}\n{deep}\n{b}\n")
    events, quarantine, _s = parse(batch, "kumo/webhooks/deep.json")
    assert events["message_id"].to_list() == ["id-a", "id-b"]
    assert quarantine.select("source_line", "reason").rows() == [(2, "invalid_json")]
    assert "depth" in quarantine["detail"][0]
    doc = write_text(tmp_path / "kumo" / "webhooks" / "doc.json", f"[\n{deep}\n]\n")
    events, quarantine, stats = parse(doc, "kumo/webhooks/doc.json")
    assert (events.height, stats.document_mode) == (0, False)  # read line by line after all
    assert quarantine["reason"].to_list() == ["invalid_json"] * 3
    c = with_(DELIVERY, id="id-c")
    c.pop("recipient")
    rcpt = write_text(
        tmp_path / "kumo" / "webhooks" / "rcpt.json",
        line(c)[:-1] + f',"recipient":["x@y.example",{deep}]}}\n',
    )
    events, quarantine, _s = parse(rcpt, "kumo/webhooks/rcpt.json")
    assert (events.height, quarantine.height) == (1, 0)
    assert events["recipient"].to_list() == [None]  # the array stays whole in `extra`
    assert events["extra"][0].endswith(f',"recipient":["x@y.example",{deep}]}}')


@pytest.mark.parametrize("form", ["batch", "pretty_batch", "document", "object"])
def test_an_integer_wider_than_pythons_conversion_limit_reads_as_on_a_line(tmp_path: Path, form: str) -> None:
    """Python refuses to convert integers of more than 4300 digits; the numbers are never needed as numbers,
    so such a record reads the same in an array, a document or alone on a line."""
    rec = line(with_(DELIVERY, id="id-a"))[:-1] + ',"x":1' + "0" * 4300 + "}"
    text = {"batch": f"[{rec}]\n", "pretty_batch": f"[ {rec} ]\n", "document": f"[\n{rec}\n]\n"}.get(form)
    if text is None:
        text = "\n" + rec + "\n"  # a whole-file object: its first non-blank line does not parse by itself
        text = text.replace(',"x"', ',\n"x"')
    p = write_text(tmp_path / "kumo" / "webhooks" / "wide.json", text)
    events, quarantine, stats = parse(p, "kumo/webhooks/wide.json")
    ref, _q, _s = parse(write_text(tmp_path / "kumo" / "webhooks" / "ref.json", rec + "\n"), "ref")
    assert quarantine.height == 0
    assert stats.document_mode == (form in ("document", "object"))
    assert events["event_id"].to_list() == ref["event_id"].to_list()
    expected = rec if form == "object" else '{"record_index":0,' + rec[1:]
    assert events["extra"].str.replace_all("\n", "").to_list() == [expected]


def test_an_escaped_record_index_key_is_the_elements_own(tmp_path: Path) -> None:
    own = '{"record\\u005findex":5,' + line(with_(DELIVERY, id="id-a"))[1:]
    p = write_text(tmp_path / "kumo" / "webhooks" / "esc.json", f"[{own}]\n")
    events, _q, _s = parse(p, "kumo/webhooks/esc.json")
    assert events["extra"].to_list() == ['{"record_index#2":0,' + own[1:]]
    assert json.loads(events["extra"][0])["record_index"] == 5


def test_array_elements_reader_refuses_what_strict_json_refuses() -> None:
    assert [t for t, _extra in kumo._array_elements(' [ 1 , {"a": [2, 3]} ,"x"]\n')] == [
        "1",
        '{"a": [2, 3]}',
        '"x"',
    ]
    assert kumo._array_elements("[]") == []
    for bad in ("[1,]", "[NaN]", "[1 2]", "[1] x", "{}", "[", '["a"'):
        with pytest.raises(ValueError):
            kumo._array_elements(bad)


def test_duplicates_in_a_file_are_dropped_and_ids_match_across_files(tmp_path: Path) -> None:
    # The same event delivered twice by the hook, the second copy serialised differently and with other meta
    # (a log hook may select other meta/headers than the local logs).
    copy2 = json.dumps(with_(DELIVERY, meta={"other": 1}), indent=1)
    copy2 = copy2.replace("\n", "")
    text = line(DELIVERY) + "\n" + line(RECEPTION) + "\n" + copy2 + "\n"
    hook = write_text(tmp_path / "kumo" / "webhooks" / "cap.jsonl", text)
    events, _q, stats = parse(hook, "kumo/webhooks/cap.jsonl")
    assert events["message_id"].to_list() == [DELIVERY["id"], RECEPTION["id"]]
    assert (stats.events, stats.duplicates, stats.records_ok) == (2, 1, 3)
    seg = write_segment(
        tmp_path / "kumo" / "n1" / "20261101-120000.000000001",
        zstandard.ZstdCompressor().compress((line(RECEPTION) + "\n" + line(DELIVERY) + "\n").encode()),
    )
    seg_events, _q, _s = parse(seg, "kumo/n1/20261101-120000.000000001")
    assert sorted(seg_events["event_id"].to_list()) == sorted(events["event_id"].to_list())


def test_duplicates_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kumo, "PLAIN_READ_SIZE", 700)  # many pieces, so many chunks
    recs = [with_(DELIVERY, id=f"m{i}") for i in range(6)]
    text = "".join(line(r) + "\n" for r in recs + recs[:2])
    p = write_text(tmp_path / "c.jsonl", text)
    events, _q, stats = parse(p, "kumo/n1/c.jsonl", chunk_bytes=900)
    assert events["message_id"].to_list() == [f"m{i}" for i in range(6)]
    assert events["source_line"].to_list() == [1, 2, 3, 4, 5, 6]
    assert stats.duplicates == 2


# --------------------------------------------------------------------------------------------------
# broken input
# --------------------------------------------------------------------------------------------------


def test_broken_lines_are_quarantined_with_line_offset_and_text(tmp_path: Path) -> None:
    good = line(DELIVERY)
    fallback = line(with_(DELIVERY, id="fb", event_time="not a time"))
    lines_ = [
        good.encode(),
        b'{"type":"Delivery","id":',  # broken JSON
        b"",  # blank
        b"42",  # JSON, not a record
        b'{"kind":"Delivery"}',  # no type
        b'{"type":"Bounce","id":"x","recipient":"a@b.example"}',  # no time at all
        fallback.encode(),
        b'{"type":"Delivery","x":"\xff\xfe"}',  # not UTF-8
        b'  {"type":"Deliv',  # last line, no newline, incomplete
    ]
    data = b"\n".join(lines_)
    p = write_text(tmp_path / "bad.jsonl", data)
    events, quarantine, stats = parse(p, "kumo/n1/bad.jsonl")
    assert events["message_id"].to_list() == [DELIVERY["id"], "fb"]
    assert events["source_line"].to_list() == [1, 7]
    offsets = [sum(len(x) + 1 for x in lines_[:i]) for i in range(len(lines_))]
    assert quarantine.select("source_kind", "source_file", "source_line", "byte_offset", "reason").rows() == [
        ("kumo", "kumo/n1/bad.jsonl", 2, offsets[1], "invalid_json"),
        ("kumo", "kumo/n1/bad.jsonl", 4, offsets[3], "not_a_record"),
        ("kumo", "kumo/n1/bad.jsonl", 5, offsets[4], "not_a_record"),
        ("kumo", "kumo/n1/bad.jsonl", 6, offsets[5], "bad_timestamp"),
        ("kumo", "kumo/n1/bad.jsonl", 8, offsets[7], "invalid_utf8"),
        ("kumo", "kumo/n1/bad.jsonl", 9, offsets[8], "incomplete_record"),
    ]
    assert quarantine["raw_text"].to_list() == [
        '{"type":"Delivery","id":',
        "42",
        '{"kind":"Delivery"}',
        '{"type":"Bounce","id":"x","recipient":"a@b.example"}',
        '{"type":"Delivery","x":"\ufffd\ufffd"}',
        '  {"type":"Deliv',
    ]
    assert quarantine["detail"][0].startswith("invalid JSON")
    assert (stats.lines_read, stats.other_lines, stats.records_read, stats.quarantined, stats.records_ok) == (
        9, 1, 8, 6, 2,
    )  # fmt: skip


def test_crlf_bom_and_missing_final_newline(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbf" + line(DELIVERY).encode() + b"\r\n" + line(RECEPTION).encode()
    p = write_text(tmp_path / "w.jsonl", data)
    events, quarantine, _s = parse(p, "kumo/n1/w.jsonl")
    assert quarantine.height == 0
    assert events["source_line"].to_list() == [1, 2]
    assert [json.loads(x) for x in events["extra"]] == [DELIVERY, RECEPTION]
    assert not events["extra"][0].endswith("\r")


# --------------------------------------------------------------------------------------------------
# zstd segments: damage, open segments
# --------------------------------------------------------------------------------------------------


def _records(n: int) -> list[bytes]:
    return [(line(with_(DELIVERY, id=f"r{i}")) + "\n").encode() for i in range(1, n + 1)]


def test_truncated_stream_keeps_intact_records(tmp_path: Path) -> None:
    l1, l2, l3, l4, l5 = _records(5)
    data, ends = zstd_blocks([l1, l2, l3, l4[:20], l4[20:] + l5])
    cut = data[: ends[3] + 3]  # inside the header of the block holding the rest of line 4 and line 5
    p = write_segment(tmp_path / "kumo" / "n1" / "20261101-120000.000000002", cut)
    events, quarantine, stats = parse(p, "kumo/n1/20261101-120000.000000002")
    assert events["message_id"].to_list() == ["r1", "r2", "r3"]
    assert quarantine.select("source_line", "byte_offset", "reason", "raw_text").rows() == [
        (4, len(l1 + l2 + l3), "truncated_stream", l4[:20].decode()),
    ]
    assert "ends inside a frame" in quarantine["detail"][0]
    assert stats.truncated and (stats.lines_read, stats.records_read) == (4, 4)


def test_truncated_exactly_at_a_line_boundary(tmp_path: Path) -> None:
    l1, l2, l3 = _records(3)
    data, ends = zstd_blocks([l1, l2, l3])
    p = write_segment(tmp_path / "20261101-120000.000000003", data[: ends[1] + 2])
    events, quarantine, _s = parse(p, "kumo/n1/20261101-120000.000000003")
    assert events["message_id"].to_list() == ["r1", "r2"]
    assert quarantine.select("source_line", "byte_offset", "reason", "raw_text").rows() == [
        (3, len(l1 + l2), "truncated_stream", ""),
    ]


def test_corrupt_block_keeps_everything_before_it(tmp_path: Path) -> None:
    l1, l2, l3, l4 = _records(4)
    data, ends = zstd_blocks([l1, l2, l3, l4])
    damaged = bytearray(data)
    damaged[ends[1]] |= 0b110  # block type 3 is reserved: the decoder must reject the third block
    p = write_segment(tmp_path / "20261101-120000.000000004", bytes(damaged))
    events, quarantine, stats = parse(p, "kumo/n1/20261101-120000.000000004")
    assert events["message_id"].to_list() == ["r1", "r2"]
    assert quarantine.select("source_line", "byte_offset", "reason").rows() == [
        (3, len(l1 + l2), "truncated_stream")
    ]
    assert "zstd decoding error" in quarantine["detail"][0]
    assert stats.truncated


def test_corrupt_block_deep_in_a_large_frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kumo, "READ_SIZE", 8192)  # the damage arrives several decoder calls in
    recs = _records(200)
    data, ends = zstd_blocks(recs)
    damaged = bytearray(data)
    damaged[ends[149]] |= 0b110  # the block of record 151
    p = write_segment(tmp_path / "20261101-120000.000000008", bytes(damaged))
    events, quarantine, _s = parse(p, "kumo/n1/20261101-120000.000000008")
    assert events["message_id"].to_list() == [f"r{i}" for i in range(1, 151)]
    assert quarantine.select("source_line", "byte_offset", "reason").rows() == [
        (151, sum(len(r) for r in recs[:150]), "truncated_stream")
    ]


def test_corrupt_second_frame(tmp_path: Path) -> None:
    l1, l2, l3 = _records(3)
    cctx = zstandard.ZstdCompressor()
    frame2 = bytearray(cctx.compress(l3))
    frame2[:4] = b"JUNK"
    p = write_segment(tmp_path / "20261101-120000.000000005", cctx.compress(l1 + l2) + bytes(frame2))
    events, quarantine, _s = parse(p, "kumo/n1/20261101-120000.000000005")
    assert events["message_id"].to_list() == ["r1", "r2"]
    assert quarantine.select("source_line", "byte_offset", "reason", "raw_text").rows() == [
        (3, len(l1 + l2), "truncated_stream", ""),
    ]


def test_multi_frame_segment_with_suffix(tmp_path: Path) -> None:
    l1, l2, l3 = _records(3)
    cctx = zstandard.ZstdCompressor()
    p = write_segment(tmp_path / "20261101-120000.000000006_recv", cctx.compress(l1) + cctx.compress(l2 + l3))
    events, quarantine, stats = parse(p, "kumo/n1/20261101-120000.000000006_recv")
    assert events["message_id"].to_list() == ["r1", "r2", "r3"]
    assert quarantine.height == 0 and not stats.truncated and stats.kind == "segment"


def test_open_segment_skipped_or_read_up_to_its_last_complete_line(tmp_path: Path) -> None:
    l1, l2, l3 = _records(3)
    data, _ends = zstd_blocks([l1 + l2, l3[:25]], finish=False)  # kumod is still writing line 3
    name = "20261101-120000.000000007"
    p = write_segment(tmp_path / "kumo" / "n1" / name, data, closed=False)
    assert is_open_segment(p)

    out_e, out_q = tmp_path / "out" / "e.parquet", tmp_path / "out" / "q.parquet"
    stats = ingest_kumo_file(p, rel_path=f"kumo/n1/{name}", events_out=out_e, quarantine_out=out_q)
    assert stats.skipped_open and not out_e.exists() and not out_q.exists()
    events, _q, stats = parse(p, f"kumo/n1/{name}")
    assert events.height == 0 and stats.skipped_open

    events, quarantine, stats = parse(p, f"kumo/n1/{name}", include_open=True)
    assert events["message_id"].to_list() == ["r1", "r2"]
    assert quarantine.height == 0  # the partial line is not damage: the closed segment will have it
    assert (stats.partial_tail_bytes, stats.other_lines, stats.lines_read, stats.truncated) == (
        25,
        1,
        3,
        False,
    )

    # kumod closes the segment: the same file, complete and read-only
    p.chmod(0o644)
    write_segment(p, zstandard.ZstdCompressor().compress(l1 + l2 + l3))
    assert not is_open_segment(p)
    closed_events, _q, closed_stats = parse(p, f"kumo/n1/{name}")
    assert closed_events["message_id"].to_list() == ["r1", "r2", "r3"]
    assert closed_events["event_id"].to_list()[:2] == events["event_id"].to_list()
    assert closed_stats.partial_tail_bytes == 0


def test_zstd_jsonl_file(tmp_path: Path) -> None:
    p = write_text(tmp_path / "kumo" / "n1" / "export.jsonl.zst",
                   zstandard.ZstdCompressor().compress((line(DELIVERY) + "\n").encode()))  # fmt: skip
    events, _q, stats = parse(p, "kumo/n1/export.jsonl.zst")
    assert stats.kind == "jsonl" and events["message_id"].to_list() == [DELIVERY["id"]]


# --------------------------------------------------------------------------------------------------
# files, paths, parallel ingest
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "kind"),
    [
        ("kumo/n1/20261101-000000.123456789", "segment"),
        ("kumo/n1/20261101-000000.123456789_recv", "segment"),
        ("kumo/n1/20230311-033705", "segment"),
        ("kumo/webhooks/capture-1.json", "webhook"),
        ("kumo/webhooks/2026/capture.jsonl", "webhook"),
        ("kumo/n1/export.jsonl", "jsonl"),
        ("kumo/n1/export.jsonl.zst", "jsonl"),
    ],
)
def test_classify_kumo_path(rel: str, kind: str) -> None:
    assert classify_kumo_path(rel) == kind


def test_ingest_writes_parquet_atomically_and_identically(tmp_path: Path) -> None:
    text = line(DELIVERY) + "\n" + "{oops\n" + line(RECEPTION) + "\n"
    p = write_text(tmp_path / "in.jsonl", text)
    outs = []
    for k in range(2):
        e, q = tmp_path / f"o{k}" / "e.parquet", tmp_path / f"o{k}" / "q.parquet"
        stats = ingest_kumo_file(p, rel_path="kumo/n1/in.jsonl", events_out=e, quarantine_out=q)
        outs.append((e.read_bytes(), q.read_bytes()))
        assert (stats.events, stats.quarantined) == (2, 1)
        assert pl.read_parquet(e).schema == EVENT_SCHEMA
        codecs, with_stats = raw_file_layout(e)  # the raw layer's layout, as the PowerMTA ingest writes it
        assert (codecs.pop("event_id"), codecs.pop("extra")) == ("UNCOMPRESSED", "ZSTD")
        assert set(codecs.values()) == {"LZ4"}
        assert with_stats == {"event_time", "source_line"}
        assert pl.read_parquet(q).select("source_line", "reason").rows() == [(2, "invalid_json")]
        assert sorted(x.name for x in e.parent.iterdir()) == ["e.parquet", "q.parquet"]  # no temp files left
    assert outs[0] == outs[1]
    assert stats.days == ["2026-11-01"]
    assert (stats.first_event_time, stats.last_event_time) == (
        utc(2026, 11, 1, 8),
        utc(2026, 11, 1, 12, 5, 6, 123456),
    )


def test_ingest_many_files_in_parallel_matches_sequential(tmp_path: Path) -> None:
    cctx = zstandard.ZstdCompressor()
    paths = []
    for k in range(3):
        body = "".join(line(with_(DELIVERY, id=f"f{k}-{i}")) + "\n" for i in range(50)).encode()
        paths.append(
            write_segment(tmp_path / "kumo" / "n1" / f"20261101-12000{k}.000000000", cctx.compress(body))
        )
    results = {}
    for workers in (1, 2):
        jobs = [
            KumoFileJob(path=p, rel_path=f"kumo/n1/{p.name}", events_out=tmp_path / f"w{workers}" / f"{p.name}.e",
                        quarantine_out=tmp_path / f"w{workers}" / f"{p.name}.q")
            for p in paths
        ]  # fmt: skip
        stats = ingest_kumo_files(jobs, workers=workers)
        assert [s.source_file for s in stats] == [f"kumo/n1/{p.name}" for p in paths]
        assert [s.events for s in stats] == [50, 50, 50]
        results[workers] = [j.events_out.read_bytes() for j in jobs]
    assert results[1] == results[2]


def test_a_reader_told_to_stop_unwinds_without_leaving_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from mtashift.ingest import worker

    body = "".join(line(with_(DELIVERY, id=f"s-{i}")) + "\n" for i in range(5)).encode()
    seg = write_segment(
        tmp_path / "in" / "20261101-130000.000000000", zstandard.ZstdCompressor().compress(body)
    )
    stop = threading.Event()
    stop.set()
    monkeypatch.setattr(worker, "_STOPPING", stop)
    with pytest.raises(SystemExit):
        kumo.ingest_kumo_file(
            seg,
            rel_path="kumo/n1/x",
            events_out=tmp_path / "out" / "e",
            quarantine_out=tmp_path / "out" / "q",
        )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("workers", [False, True], ids=["in-process", "worker-processes"])
def test_a_landing_batch_reads_files_together_and_reports_a_failed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: bool
) -> None:
    from mtashift.ingest import worker

    children: list[int] = []
    real_worker = worker.run_in_worker

    def counted(kind: str, **kw: object) -> object:
        children.append(len(kw["jobs"]))  # type: ignore[arg-type]
        return real_worker(kind, **kw)

    monkeypatch.setattr(worker, "run_in_worker", counted)
    if workers:  # any batch of several files goes to the worker processes
        monkeypatch.setattr(run, "KUMO_WORKER_MIN_BYTES", 0)
        monkeypatch.setattr(run.os, "cpu_count", lambda: 2)
    cctx = zstandard.ZstdCompressor()
    paths = []
    for k in range(3):
        body = "".join(line(with_(DELIVERY, id=f"b{k}-{i}")) + "\n" for i in range(20 + k)).encode()
        paths.append(
            write_segment(tmp_path / "kumo" / "n1" / f"20261101-13000{k}.000000000", cctx.compress(body))
        )
    blocker = write_text(tmp_path / "not-a-dir", "")
    jobs = [
        (p, f"kumo/n1/{p.name}", tmp_path / "out" / f"{p.name}.e", tmp_path / "out" / f"{p.name}.q", {"include_open": False})
        for p in paths
    ]  # fmt: skip
    jobs[1] = (*jobs[1][:2], blocker / "e", blocker / "q", jobs[1][4])  # its output cannot be written
    got = run.ingest_kumo_batch(jobs)
    assert sorted(children) == ([1, 2] if workers else [])  # two children share the three files
    assert [r["ok"] for r in got] == [True, False, True]
    assert got[1]["detail"].startswith(("FileExistsError", "NotADirectoryError"))
    for k in (0, 2):  # what the one-file registry function gives for the same file
        alone = run.ingest_kumo(
            paths[k],
            rel_path=jobs[k][1],
            events_out=tmp_path / "alone.e",
            quarantine_out=tmp_path / "alone.q",
        )
        assert got[k] == {"ok": True, **alone}
        assert got[k]["rows"] == 20 + k and got[k]["lines_read"] == 20 + k
        assert pl.read_parquet(jobs[k][2]).equals(pl.read_parquet(tmp_path / "alone.e"))


def test_a_worker_batch_is_split_by_size_and_a_dead_workers_files_are_read_again_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mtashift.ingest import worker

    sizes = [5, 40, 10, 30, 20]  # bytes: groups by largest first, each file to the lighter group
    jobs = []
    for k, size in enumerate(sizes):
        p = write_text(tmp_path / f"s{k}", "x" * size)
        jobs.append((p, f"kumo/n1/s{k}", tmp_path / f"s{k}.e", tmp_path / f"s{k}.q", {}))
    assert run._balanced(sizes, 2) == [[1, 2, 0], [3, 4]]  # 40, 30, 20 (to 30), 10 (to 40), 5 (a tie: first)
    assert run._balanced(sizes[:1], 2) == [[0]]

    requests: list[list[str]] = []

    def fake_worker(kind: str, **kw: object) -> list[dict]:
        names = [j[1] for j in kw["jobs"]]  # type: ignore[attr-defined]
        requests.append(names)
        if "kumo/n1/s3" in names:
            raise worker.WorkerError("ingest worker for a kumo batch: killed by SIGKILL")
        return [{"ok": True, "rows": int(n[-1])} for n in names]

    monkeypatch.setattr(worker, "run_in_worker", fake_worker)
    monkeypatch.setattr(run, "KUMO_WORKER_MIN_BYTES", sum(sizes))
    monkeypatch.setattr(run.os, "cpu_count", lambda: 2)
    got = run.ingest_kumo_batch(jobs)
    # the dead child's files are each read again alone: only the one that kills its reader fails
    assert sorted(requests) == [
        ["kumo/n1/s1", "kumo/n1/s2", "kumo/n1/s0"],
        ["kumo/n1/s3"],
        ["kumo/n1/s3", "kumo/n1/s4"],
        ["kumo/n1/s4"],
    ]
    dead = {"ok": False, "detail": "WorkerError: ingest worker for a kumo batch: killed by SIGKILL"}
    assert got == [
        {"ok": True, "rows": 0},
        {"ok": True, "rows": 1},
        {"ok": True, "rows": 2},
        dead,
        {"ok": True, "rows": 4},
    ]

    requests.clear()
    monkeypatch.setattr(run, "KUMO_WORKER_MIN_BYTES", sum(sizes) + 1)  # too small a batch: read here
    monkeypatch.setattr(run, "_ingest_kumo_batch_here", lambda js: [{"ok": True, "here": len(js)}] * len(js))
    assert run.ingest_kumo_batch(jobs) == [{"ok": True, "here": 5}] * 5 and requests == []


def test_a_kumo_worker_reads_its_files_one_at_a_time_on_one_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mtashift.ingest import kumo

    seen: dict = {}

    def spy(jobs: list, **kw: object) -> list:
        seen.update(kw, jobs=jobs)
        return [kumo.KumoFileStats(source_file=j.rel_path, kind="segment") for j in jobs]

    monkeypatch.setattr(kumo, "ingest_kumo_files_reporting", spy)
    # a job as the child decodes it from the request: a list, paths as Path
    job = [tmp_path / "s", "kumo/n1/s", tmp_path / "e", tmp_path / "q", {"include_open": True}]
    out = run.IN_PROCESS["kumo"](jobs=[job])
    assert (seen["workers"], seen["threads"]) == (1, 1)
    assert seen["jobs"][0].path == tmp_path / "s" and seen["jobs"][0].include_open is True
    assert out[0]["ok"] is True and out[0]["rows"] == 0


def test_the_landing_asset_path_uses_the_batch_reader_for_several_kumo_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mtashift import landing, manifest
    from mtashift.lake import Lake

    root = tmp_path / "landing"
    cctx = zstandard.ZstdCompressor()
    for k in range(2):
        body = "".join(line(with_(DELIVERY, id=f"m{k}-{i}")) + "\n" for i in range(5)).encode()
        write_segment(root / "kumo" / "n1" / f"20261101-14000{k}.000000000", cctx.compress(body))
    calls: list[int] = []

    def spy(jobs: list) -> list:
        calls.append(len(jobs))
        return run.ingest_kumo_batch(jobs)

    spec = run.INGESTORS["kumo"]
    files = [f for f in landing.scan(root) if f.kind == "kumo"]
    batch = manifest.ingest(
        kind="kumo", files=files, lake=Lake.at(tmp_path / "lake"), fn=spec.fn, batch_id="b1", batch=spy,
        fn_kwargs=spec.kwargs(include_open=False),
    )  # fmt: skip
    assert calls == [2]
    assert batch.select("status", "rows", "lines_read").rows() == [("loaded", 5, 5), ("loaded", 5, 5)]


# --------------------------------------------------------------------------------------------------
# conformance with the documentation samples
# --------------------------------------------------------------------------------------------------


def test_docs_samples_conformance(tmp_path: Path) -> None:
    sample = samples_dir("kumo-docs") / "docs-samples.jsonl"
    events, quarantine, stats = parse(sample, "kumo/docs/docs-samples.jsonl")
    assert quarantine.height == 0 and stats.records_read == 3
    cols = ["event_type", "event_time", "recipient_domain", "pool", "source", "source_ip", "mx_host", "mx_ip",
            "smtp_code", "enhanced_status", "campaign", "tenant", "tls_protocol", "node"]  # fmt: skip
    assert events.select(cols).rows() == [
        ("delivered", utc(2023, 3, 6, 2, 28, 11), "recipient.example.com", "pool0", "source2", "10.0.0.1",
         "gmail-smtp-in.l.google.com", "142.251.2.27", 250, "2.0.0", "campaign", "tenant", "TLSv1.3",
         "557f3ad4-2c8c-11ee-976e-782d7e12e173"),
        ("received", utc(2023, 9, 27, 20, 53), "example.com", None, None, None, None, None, 250, None, None, None,
         None, "d8e014c7-eaeb-4683-a56e-61324e91b1fc"),
        ("received", utc(2023, 4, 28, 20, 14, 24), "example.com", None, None, None, None, None, 250, None, None,
         None, None, None),
    ]  # fmt: skip
    first = json.loads(events["extra"][0])
    assert "bogus" in first and first["source_address"]["protocol"] == "socks5"
    assert json.loads(events["extra"][2])["headers"] == {"Subject": "hello"}


def test_open_segment_detection_uses_any_write_bit(tmp_path: Path) -> None:
    p = write_text(tmp_path / "20261101-000000", b"")
    for mode, expected in ((0o444, False), (0o644, True), (0o464, True), (0o446, True), (0o400, False)):
        os.chmod(p, mode)
        assert is_open_segment(p) is expected


# --------------------------------------------------------------------------------------------------
# the pipeline: SQL batches, the decompression thread, the Parquet writer thread
# --------------------------------------------------------------------------------------------------


def _mixed_lines() -> bytes:
    """30 lines: every 5th broken, line 7 with two recipients, line 12 a copy of line 11."""
    out = []
    for i in range(1, 31):
        if i % 5 == 0:
            out.append("{oops")
        elif i == 7:
            out.append(line(with_(DELIVERY, id="r7", recipient=["a@x.example", "b@y.example"])))
        elif i == 12:
            out.append(line(with_(DELIVERY, id="r11")))
        else:
            out.append(line(with_(DELIVERY, id=f"r{i}")))
    return ("\n".join(out) + "\n").encode()


def test_sql_batches_and_chunks_do_not_change_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = write_segment(
        tmp_path / "20261101-120000.000000000", zstandard.ZstdCompressor().compress(_mixed_lines())
    )
    events, quarantine, stats = parse(p, "kumo/n1/seg")
    assert (stats.lines_read, stats.records_read, stats.records_ok, stats.quarantined) == (30, 30, 24, 6)
    assert (stats.events, stats.duplicates, stats.fanout) == (24, 1, 1)
    assert quarantine["source_line"].to_list() == [5, 10, 15, 20, 25, 30]
    assert events.filter(pl.col("message_id") == "r7")["recipient_domain"].to_list() == [
        "x.example",
        "y.example",
    ]
    monkeypatch.setattr(kumo, "SQL_BATCH_ROWS", 2)  # 2-row record batches for DuckDB
    small = parse(p, "kumo/n1/seg", chunk_bytes=1500)  # and many chunks
    assert small[0].equals(events) and small[1].equals(quarantine)
    assert small[2] == stats


def test_parquet_writer_failure_raises_and_leaves_no_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = write_text(tmp_path / "in.jsonl", line(DELIVERY) + "\n" + line(RECEPTION) + "\n")

    def broken(self: object, table: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(kumo.pq.ParquetWriter, "write_table", broken)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        ingest_kumo_file(
            p, rel_path="kumo/n1/in.jsonl", events_out=out / "e.parquet", quarantine_out=out / "q.parquet"
        )
    assert list(out.iterdir()) == []


def test_prefetched_passes_items_and_errors_and_stops_its_producer() -> None:
    produced: list[int] = []
    finished: list[bool] = []

    def numbers(fail_at: int | None) -> Iterator[int]:
        try:
            for i in range(100):
                if i == fail_at:
                    raise ValueError(f"bad item {i}")
                produced.append(i)
                yield i
        finally:
            finished.append(True)

    assert list(prefetched(numbers(None))) == list(range(100))
    with pytest.raises(ValueError, match="bad item 3"):
        list(prefetched(numbers(3)))
    produced.clear()
    with contextlib.closing(prefetched(numbers(None), depth=1)) as items:
        assert [next(items), next(items)] == [0, 1]
    # closed early: the producer stopped a few items ahead and was joined
    assert len(produced) <= 4 and finished == [True, True, True]


# ------------------------------------------------------------------------------ hostile input (second review)

REC = '{"type":"Delivery","id":"a","timestamp":1793534706'


@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize(
    ("name", "data", "reasons", "events"),
    [
        ("unterminated invalid UTF-8 last line", REC.encode() + b"}\n\xff", ["invalid_utf8"], 1),
        ("only an invalid UTF-8 byte", b"\xff", ["invalid_utf8"], 0),
        ("array line with a trailing comma", f"[{REC}}},]\n".encode(), ["invalid_json"], 0),
        ("array line with -Inf", f'[{REC},"x":-Inf}}]\n'.encode(), ["invalid_json"], 0),
        ("trailing comma in an object", f"{REC},}}\n".encode(), ["invalid_json"], 0),
        ("NaN value", f'{REC},"x":NaN}}\n'.encode(), ["invalid_json"], 0),
        ("NaN after two spaces", f'{REC},"x":  NaN}}\n'.encode(), ["invalid_json"], 0),
        ("+inf after a tab", f'{REC},"x":\t+inf}}\n'.encode(), ["invalid_json"], 0),
        ("trailing comma before spaces", f"{REC},  \t}}\n".encode(), ["invalid_json"], 0),
        (
            "null, numbers and nested objects stay valid",
            f'{REC},"x":null,"y":[1, 2],"z":{{"n":1}}}}\n'.encode(),
            [],
            1,
        ),
        ("-Infinity value in a nested array", f'{REC},"x":[1, -Infinity]}}\n'.encode(), ["invalid_json"], 0),
        ("NaN and a trailing comma inside strings are text", f'{REC},"x":":nan, ]"}}\n'.encode(), [], 1),
        (
            "pretty document with a lone surrogate",
            b"[\n" + REC.encode() + b',"x":"\\udc00"}\n]\n',
            ["invalid_json"],  # its one record, as on a line of its own
            0,
        ),
    ],
)
def test_hostile_lines_are_quarantined_not_fatal(
    tmp_path: Path, chunk: int | None, name: str, data: bytes, reasons: list[str], events: int
) -> None:
    p = tmp_path / "hook.jsonl"
    p.write_bytes(data)
    ev, q, _st = parse(p, "kumo/webhooks/hook.jsonl", **({"chunk_bytes": chunk} if chunk else {}))
    assert (ev.height, q["reason"].to_list()) == (events, reasons)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ('"event_time":"infinity","timestamp":1793534706', utc(2026, 11, 1, 12, 5, 6)),
        ('"event_time":"0000-01-01T00:00:00Z","timestamp":1793534706', utc(2026, 11, 1, 12, 5, 6)),
        ('"event_time":"200000-01-01T00:00:00Z","timestamp":1793534706', utc(2026, 11, 1, 12, 5, 6)),
        ('"event_time":"epoch","timestamp":1793534706', utc(2026, 11, 1, 12, 5, 6)),
        ('"event_time":"2026-11-01","timestamp":1793534706', utc(2026, 11, 1, 12, 5, 6)),
        ('"event_time":"2026-11-01t13:05:06.5+01:00"', datetime(2026, 11, 1, 12, 5, 6, 500000, tzinfo=UTC)),
        (
            '"event_time":"2026-11-01t12:05:06.123456789z"',
            datetime(2026, 11, 1, 12, 5, 6, 123456, tzinfo=UTC),
        ),
        ('"timestamp":-100000000000', None),
        ('"event_time":"infinity"', None),
    ],
)
def test_event_times_outside_the_shape_or_range_fall_back(
    tmp_path: Path, fields: str, expected: object
) -> None:
    p = tmp_path / "t.jsonl"
    p.write_text('{"type":"Delivery","id":"a",' + fields + ',"created_time":"infinity"}\n')
    ev, q, _st = parse(p, "kumo/t.jsonl")
    if expected is None:
        assert (ev.height, q["reason"].to_list()) == (0, ["bad_timestamp"])
    else:
        assert (ev["event_time"].to_list(), ev["queued_time"].to_list()) == ([expected], [None])


def test_sub_microsecond_digits_keep_records_apart_whatever_the_offset(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl"
    times = [
        "2026-11-01T13:05:06.123456789+01:00",
        "2026-11-01T13:05:06.123456111+01:00",
        "2026-11-01T12:05:06.1234567Z",
        "2026-11-01T12:05:06.1234561Z",
        "2026-11-01T12:05:06.123456789Z",
    ]
    p.write_text("".join(json.dumps({"type": "Delivery", "id": "a", "event_time": t}) + "\n" for t in times))
    ev, _q, st = parse(p, "kumo/t.jsonl")
    # the first and the last are one instant to the nanosecond, so one event: the rest are distinct
    assert (ev.height, st.duplicates) == (4, 1)
    assert ev["event_time"].n_unique() == 1


def test_a_thirty_character_time_with_an_offset_is_not_read_as_kumods_shape(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl"
    # the same instant: `.1234+01:00` is 30 characters long, like kumod's `.123400000Z`
    times = ["2026-11-01T13:05:06.1234+01:00", "2026-11-01T12:05:06.123400000Z"]
    p.write_text("".join(json.dumps({"type": "Delivery", "id": "a", "event_time": t}) + "\n" for t in times))
    ev, _q, st = parse(p, "kumo/t.jsonl")
    assert (ev.height, st.duplicates) == (1, 1)


def test_a_document_followed_by_a_broken_frame_quarantines_the_loss(tmp_path: Path) -> None:
    c = zstandard.ZstdCompressor()
    doc = b'[\n {"type":"Delivery","id":"a","timestamp":1793534706}\n]\n'
    broken = c.compress((REC + ',"n":1}\n').encode() * 50)[:-8]
    p = tmp_path / "hook.jsonl.zst"
    p.write_bytes(c.compress(doc) + broken)
    ev, q, st = parse(p, "kumo/webhooks/hook.jsonl.zst")
    assert (ev.height, q["reason"].to_list(), q["source_line"].to_list(), st.truncated) == (
        1,
        ["truncated_stream"],
        [4],
        True,
    )


def test_a_feedback_report_recipient_wins_over_an_array_envelope(tmp_path: Path) -> None:
    p = tmp_path / "f.jsonl"
    p.write_text(
        '{"type":"Feedback","id":"a","timestamp":1793534706,"recipient":["fbl@me.example","x@me.example"],'
        '"feedback_report":{"original_rcpto_to":["<orig@x.example>"]}}\n'
    )
    ev, _q, st = parse(p, "kumo/f.jsonl")
    assert (ev["recipient"].to_list(), ev["recipient_domain"].to_list(), st.fanout) == (
        ["orig@x.example"],
        ["x.example"],
        0,
    )
