"""PowerMTA accounting ingest: hand-written fixtures (tests/fixtures/pmta, see make_fixtures.py) with
hand-computed expectations, plus a conformance run over the guide samples of the shared reference."""

from __future__ import annotations

import csv
import gzip
import json
import random
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from mtashift.ingest import pmta
from mtashift.ingest.common import (
    RawEventsWriter,
    SeenKeys,
    byte_positions,
    coded,
    constant_categorical,
    event_id_of,
    idna_domain,
    newline_positions,
    normalise_domain,
    occurrences,
    per_distinct,
)
from mtashift.ingest.pmta import PmtaFileStats, ingest_pmta_file, parse_pmta_file
from schemas.events import EVENT_SCHEMA, RAW_DICTIONARY_COLUMNS, conform
from schemas.quarantine import QUARANTINE_SCHEMA, REASONS
from tests.conftest import raw_file_layout, samples_dir

FIX = Path(__file__).parent / "fixtures" / "pmta"
DEFAULT = FIX / "acct-2026-03-01-0000.csv"
CUSTOM = FIX / "acct-custom-order.csv"
ALL_TYPES = FIX / "acct-all-types.csv"
MESSY = FIX / "acct-messy.csv"
NO_HEADER = FIX / "acct-no-header.csv"
FIXTURES = [DEFAULT, CUSTOM, ALL_TYPES, MESSY, NO_HEADER]


def t(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def parse(path: Path, **kw: object) -> pmta.PmtaParseResult:
    return parse_pmta_file(path, rel_path=f"pmta/node-a/{path.name}", node="node-a", **kw)


def by_line(result: pmta.PmtaParseResult) -> dict[int, dict]:
    return {r["source_line"]: r for r in result.events.to_dicts()}


def assert_reconciles(st: PmtaFileStats) -> None:
    assert st.other_lines == st.header_lines + st.blank_lines + st.continuation_lines
    assert st.lines_read == st.rows + st.quarantined + st.other_lines
    assert st.reconciles()


def assert_row(row: dict, expected: dict) -> None:
    for key, value in expected.items():
        if key == "extra":
            assert json.loads(row["extra"]) == value, row["extra"]
        else:
            assert row[key] == value, (key, row[key], value)


# --------------------------------------------------------------------------------------- default layout

DEFAULT_ROWS = {
    2: dict(
        event_type="delivered",
        raw_type="d",
        event_time=t(2026, 3, 1, 10, 0, 5),
        queued_time=t(2026, 3, 1, 10, 0, 1),
        sender="bounce-7@news.example.com",
        sender_domain="news.example.com",
        recipient="alice@gmail.com",
        recipient_domain="gmail.com",
        pool=None,
        source="vmta-gmail-1",
        source_ip="203.0.113.10",
        mx_host="gmail-smtp-in.l.google.com",
        mx_ip="142.250.102.27",
        smtp_code=250,
        enhanced_status="2.0.0",
        response="OK  1772359205 a1si123 - gsmtp",
        raw_bounce_category=None,
        job_id="job-42",
        size_bytes=48211,
        node="node-a",
        source_file="pmta/node-a/acct-2026-03-01-0000.csv",
        extra={
            "dsnAction": "relayed",
            "dsnStatusText": "success",
            "srcType": "api",
            "srcMta": "app1.example.com (10.0.0.5)",
            "dlvType": "smtp",
            "dlvEsmtpAvailable": "PIPELINING,8BITMIME,SMTPUTF8",
            "queue": "gmail.com/vmta-gmail-1",
        },
    ),
    3: dict(
        event_type="bounced",
        event_time=t(2026, 3, 1, 10, 0, 0),
        queued_time=t(2026, 3, 1, 9, 59, 0),
        recipient="bob@Yahoo.COM",
        recipient_domain="yahoo.com",
        pool="pool-yahoo",
        source="vmta-yahoo-1",
        mx_host="mta7.am0.yahoodns.net",
        mx_ip="67.195.204.72",
        smtp_code=554,
        enhanced_status="5.7.1",
        response='Message rejected, see "policy" page',
        raw_bounce_category="spam-related",
        size_bytes=None,
        extra={
            "dsnAction": "failed",
            "dsnStatusText": "delivery not authorized",
            "dsnMta": "MTA7.AM0.YAHOODNS.NET. (67.195.204.72)",
            "srcType": "api",
            "srcMta": "app1.example.com (10.0.0.5)",
            "dlvType": "smtp",
            "dlvEsmtpAvailable": "PIPELINING,8BITMIME",
            "queue": "yahoo.rollup/vmta-yahoo-1",
        },
    ),
    4: dict(
        event_type="deferred",
        event_time=t(2026, 3, 1, 17, 0, 0),
        queued_time=t(2026, 3, 1, 16, 0, 0),
        mx_host="outlook-com.olc.protection.outlook.com",
        smtp_code=421,
        enhanced_status="4.7.0",
        response="[TSS04] Messages temporarily deferred",
        raw_bounce_category="policy-related",
        job_id=None,
        pool=None,
    ),
    5: dict(
        event_type="expired",
        raw_type="b",
        event_time=t(2026, 3, 2, 10, 0, 0),
        smtp_code=421,
        enhanced_status="4.4.7",
        response="Message expired",
        raw_bounce_category="message-expired",
        mx_host=None,
        mx_ip=None,
        source_ip=None,
    ),
    6: dict(
        event_type="delivered",
        recipient="kunde@Bücher.de",
        recipient_domain="xn--bcher-kva.de",
        mx_host="mx.xn--bcher-kva.de",
        smtp_code=250,
        enhanced_status="2.0.0",
        response="ok dirdel",
        raw_bounce_category="success",
        size_bytes=1024,
        extra={
            "dsnAction": "relayed",
            "dsnStatusText": "success",
            "dsnDiagPrefix": "smtp;250 ",
            "srcType": "api",
            "srcMta": "app1.example.com (10.0.0.5)",
            "dlvType": "smtp",
            "dlvEsmtpAvailable": "ENHANCEDSTATUSCODES,8BITMIME",
            "queue": "bücher.de/vmta-de-1",
        },
    ),
    7: dict(
        event_type="queue_deferred",
        raw_type="tq",
        event_time=t(2026, 3, 1, 14, 0, 0),
        recipient=None,
        recipient_domain=None,
        sender=None,
        source="vmta-x",
        source_ip="203.0.113.14",
        mx_host="mx.unreachable.example",
        mx_ip="198.51.100.7",
        smtp_code=None,
        enhanced_status="4.4.1",
        response=None,
        extra={
            "dsnStatusText": "no answer from host",
            "dlvType": "smtp",
            "queue": "unreachable.example/vmta-x",
        },
    ),
}


@pytest.mark.parametrize("line", sorted(DEFAULT_ROWS))
def test_default_layout_values(line: int) -> None:
    res = parse(DEFAULT)
    assert_row(by_line(res)[line], DEFAULT_ROWS[line])


def test_default_layout_counts_and_schema() -> None:
    res = parse(DEFAULT)
    assert res.events.schema == EVENT_SCHEMA
    assert res.quarantine.schema == QUARANTINE_SCHEMA
    st = res.stats
    assert (st.lines_read, st.rows, st.quarantined, st.header_lines, st.blank_lines) == (7, 6, 0, 1, 0)
    assert (st.first_event_time, st.last_event_time) == (t(2026, 3, 1, 10, 0, 0), t(2026, 3, 2, 10, 0, 0))
    assert st.bytes_read == DEFAULT.stat().st_size
    assert_reconciles(st)


def test_crlf_and_lf_give_the_same_events(tmp_path: Path) -> None:
    lf = tmp_path / "acct-lf.csv"
    lf.write_bytes(DEFAULT.read_bytes().replace(b"\r\n", b"\n"))
    a, b = parse(DEFAULT).events, parse(lf).events
    assert b"\r\n" in DEFAULT.read_bytes()
    assert a.drop("source_file").equals(b.drop("source_file"))


# --------------------------------------------------------------------------------- other field layouts


def test_custom_record_fields_epoch_offsets_and_extra_columns() -> None:
    rows = by_line(parse(CUSTOM))
    assert_row(
        rows[2],
        dict(
            event_time=t(2026, 3, 1, 10, 0, 5),
            queued_time=None,
            recipient="eve@example.org",
            sender="sender@mail.example.net",
            source="vmta-a",
            job_id="spring-sale",  # jobId empty -> header_x-job
            message_id="<abc.123@mail.example.net>",
            tls_protocol="TLSv1.3",
            tls_cipher="TLS_AES_256_GCM_SHA384",
            smtp_code=250,
            enhanced_status="2.0.0",
            response="Ok: queued as 4XyZ",
            size_bytes=2048,
            extra={
                "header_x-job": "spring-sale",
                "dsnStatusText": "success",
                "userString": "node-a",
                "timeImprinted": "1772359100",
            },
        ),
    )
    assert_row(
        rows[3],
        dict(
            event_time=t(2026, 3, 1, 10, 0, 0),
            job_id="job-7",
            message_id="<def@mail>",
            enhanced_status="2.0.0",
            smtp_code=250,
            response="OK",
            size_bytes=None,
            # bare status: nothing to keep; a diag without enhanced code keeps its prefix (diag = prefix +
            # response), an unparseable size is kept verbatim
            extra={
                "header_x-job": "spring-sale",
                "dsnDiagPrefix": "smtp;250 ",
                "userString": "node-a",
                "dlvSize": "notanumber",
            },
        ),
    )


def rebuild_diag(row: dict) -> str | None:
    """dsnDiag as schemas/docs/pmta_mapping.md §6 says to rebuild it from a canonical row."""
    extra = json.loads(row["extra"])
    if "dsnDiag" in extra:
        return extra["dsnDiag"]
    if "dsnDiagPrefix" in extra:
        return extra["dsnDiagPrefix"] + row["response"]
    if row["response"] is None:
        return None
    return f"smtp;{row['smtp_code']} {row['enhanced_status']} {row['response']}"


DIAG_CASES = [
    # (dsnStatus, dsnDiag, smtp_code, enhanced_status, response, what extra keeps)
    (
        "5.1.1 (bad destination mailbox address)",
        "smtp;550 5.1.1 user unknown",
        550,
        "5.1.1",
        "user unknown",
        {},
    ),
    (
        "5.0.0 (other)",
        "smtp;550 5.1.1 user unknown",
        550,
        "5.0.0",
        "user unknown",
        {"dsnDiagPrefix": "smtp;550 5.1.1 "},
    ),
    ("2.0.0 (success)", "smtp;250 ok", 250, "2.0.0", "ok", {"dsnDiagPrefix": "smtp;250 "}),
    (
        "4.4.7 (delivery time expired)",
        "smtp;421-4.4.7 expired",
        421,
        "4.4.7",
        "expired",
        {"dsnDiagPrefix": "smtp;421-4.4.7 "},
    ),
    (
        "5.7.1 (delivery not authorized)",
        'smtp;  554   5.7.1   spaced, "quoted"',
        554,
        "5.7.1",
        'spaced, "quoted"',
        {"dsnDiagPrefix": "smtp;  554   5.7.1   "},
    ),
    (
        "4.4.1 (no answer from host)",
        "Connection timed out",
        None,
        "4.4.1",
        "Connection timed out",
        {"dsnDiag": "Connection timed out"},
    ),
    ("2.0.0 (success)", "smtp;250", 250, "2.0.0", None, {"dsnDiag": "smtp;250"}),
    ("5.1.1", "x-postfix; host said: no", None, "5.1.1", "host said: no", {"dsnDiagPrefix": "x-postfix; "}),
    ("2.0.0 (success)", None, None, "2.0.0", None, {}),
]


@pytest.mark.parametrize("case", DIAG_CASES, ids=[c[1] or "null" for c in DIAG_CASES])
def test_dsn_diag_keeps_exactly_what_rebuilds_it(tmp_path: Path, case: tuple) -> None:
    status, diag, code, enh, response, kept = case
    field = "" if diag is None else '"' + diag.replace('"', '""') + '"'
    p = tmp_path / "acct-diag.csv"
    p.write_text(
        f"type,timeLogged,rcpt,dsnStatus,dsnDiag\nd,2026-03-01 10:00:00+0000,a@b.example,{status},{field}\n"
    )
    res = parse(p)
    assert res.stats.rows == 1
    row = res.events.row(0, named=True)
    assert (row["smtp_code"], row["enhanced_status"], row["response"]) == (code, enh, response)
    extra = json.loads(row["extra"])
    assert {k: v for k, v in extra.items() if k.startswith("dsnDiag")} == kept
    assert rebuild_diag(row) == diag


def _extra_pairs(row: dict) -> list[tuple[str, str]]:
    """`extra` as its key/value pairs in order, duplicates kept (json.loads would drop them silently)."""
    return json.loads(row["extra"], object_pairs_hook=list)


def test_a_column_named_like_a_derived_key_keeps_both_values(tmp_path: Path) -> None:
    p = tmp_path / "acct-derived.csv"
    p.write_text(
        "type,timeLogged,rcpt,dsnStatus,dsnDiag,dsnDiagPrefix,dsnStatusText\n"
        "d,2026-03-01 10:00:00+0000,a@b.example,2.0.0 (success),smtp;250 ok,theirs,also theirs\n"
    )
    row = parse(p).events.row(0, named=True)
    assert (row["smtp_code"], row["enhanced_status"], row["response"]) == (250, "2.0.0", "ok")
    assert _extra_pairs(row) == [
        ("dsnStatusText#2", "success"),
        ("dsnDiagPrefix#2", "smtp;250 "),
        ("dsnDiagPrefix", "theirs"),
        ("dsnStatusText", "also theirs"),
    ]


def test_repeated_names_never_share_a_key_with_a_column(tmp_path: Path) -> None:
    p = tmp_path / "acct-repeats.csv"
    p.write_text("type,timeLogged,rcpt,x,x,x#2,X\nd,2026-03-01 10:00:00+0000,a@b.example,1,2,3,4\n")
    row = parse(p).events.row(0, named=True)
    assert _extra_pairs(row) == [("x", "1"), ("x#3", "2"), ("x#2", "3"), ("X#4", "4")]


ALL_TYPES_ROWS = {
    2: dict(
        event_type="received",
        raw_type="r",
        pool="pool-main",
        source=None,
        source_ip=None,
        message_id="<m1@news.example.com>",
        job_id="job-1",
        extra={
            "srcType": "smtp",
            "srcMta": "inject.example.com (10.0.0.9)",
            "rcvSourceIp": "10.0.0.9",
            "rcvDestinationIp": "10.0.0.1",
            "vmta": "pool-main",
            "envId": "env-1",
        },
    ),
    3: dict(
        event_type="delivered",
        pool="pool-main",
        source="vmta-main-3",
        source_ip="203.0.113.20",
        response="accepted",
        extra={"dsnAction": "relayed", "dsnStatusText": "success", "queue": "example.org/vmta-main-3"},
    ),
    4: dict(
        event_type="complaint",
        raw_type="f",
        event_time=t(2026, 3, 2, 12, 0, 0),
        sender="bounce-1@news.example.com",
        recipient="grace@example.org",
        recipient_domain="example.org",
        source_ip="203.0.113.20",
        mx_host=None,
        extra={
            "format": "arf",
            "repSourceIp": "203.0.113.250",
            "feedbackType": "abuse",
            "userAgent": "Yahoo!-Mail-Feedback/2.0",
            "reportingMta": "mta1.fbl.example.net",
            "reportedDomain": "news.example.com",
            "arf_Reported-URI": "http://news.example.com/x",
            "rcvSourceIp#2": "198.51.100.99",
        },
    ),
    5: dict(
        event_type="remote_bounce",
        raw_type="rb",
        smtp_code=550,
        enhanced_status="5.1.1",
        response='<henry@example.org>: "no such user"',
        mx_host="mx.example.org",
        mx_ip="192.0.2.10",
        raw_bounce_category="bad-mailbox",
        extra={
            "dsnStatusText": "bad destination mailbox address",
            "dsnReportingMta": "mx.example.org",
            "srcType": "smtp",
            "srcMta": "mx.example.org",
            "format": "dsn",
        },
    ),
    6: dict(
        event_type="remote_status",
        raw_type="rs",
        enhanced_status="2.0.0",
        smtp_code=None,
        extra={"dsnAction": "delivered", "dsnStatusText": "success", "format": "dsn"},
    ),
    7: dict(event_type="other", raw_type="zz", recipient_domain="example.org", extra={}),
}


@pytest.mark.parametrize("line", sorted(ALL_TYPES_ROWS))
def test_every_record_type(line: int) -> None:
    assert_row(by_line(parse(ALL_TYPES))[line], ALL_TYPES_ROWS[line])


# ---------------------------------------------------------------------------------------- damaged input


def test_messy_file_quarantines_each_bad_line_and_reconciles() -> None:
    res = parse(MESSY)
    st = res.stats
    assert (st.lines_read, st.rows, st.quarantined) == (17, 7, 5)
    assert (st.header_lines, st.blank_lines, st.continuation_lines) == (2, 2, 1)
    assert_reconciles(st)
    assert st.reasons == {
        "too_many_fields": 1,
        "missing_type": 1,
        "bad_timestamp": 1,
        "malformed_csv": 1,
        "invalid_utf8": 1,
    }
    q = {r["source_line"]: r for r in res.quarantine.to_dicts()}
    assert {k: v["reason"] for k, v in q.items()} == {
        4: "too_many_fields",
        5: "missing_type",
        6: "bad_timestamp",
        7: "malformed_csv",
        16: "invalid_utf8",
    }
    assert set(res.quarantine["reason"]) <= set(REASONS)
    raw = MESSY.read_bytes().split(b"\n")
    for line, row in q.items():  # byte offsets point at the line's first byte
        assert row["byte_offset"] == sum(len(x) + 1 for x in raw[: line - 1])
        assert row["source_file"] == "pmta/node-a/acct-messy.csv" and row["source_kind"] == "pmta"
    assert q[4]["detail"] == "7 fields, header has 6"
    assert q[6]["raw_text"] == "d,yesterday,a@x.example,e@y.example,,"
    assert q[7]["raw_text"].endswith('"smtp;550 5.1.1 user unknown')
    assert q[16]["raw_text"] == "d,2026-03-01 10:00:09+0000,\ufffd\ufffd@y.example,a@x.example"

    rows = by_line(res)
    assert sorted(rows) == [2, 8, 9, 12, 14, 15, 17]  # line 8 right after the broken line 7 survives
    assert_row(
        rows[9],
        dict(
            event_type="bounced",
            recipient="h@y.example",
            smtp_code=550,
            enhanced_status="5.1.1",
            response="first line\nsecond line of the reply",
        ),
    )
    # after the second header, columns are mapped by the new names (rcpt before orig)
    assert_row(rows[12], dict(recipient="i@y.example", sender="a@x.example", enhanced_status=None))
    assert_row(rows[14], dict(recipient="j@y.example", sender=None))  # shorter than the header: padded
    assert_row(rows[15], dict(event_type="other", raw_type="x"))
    assert_row(
        rows[17], dict(recipient="l@y.example", event_time=t(2026, 3, 1, 10, 0, 10))
    )  # no final newline


def test_data_before_any_header_is_quarantined() -> None:
    res = parse(NO_HEADER)
    assert res.quarantine.select("source_line", "reason").rows() == [(1, "no_header")]
    assert by_line(res)[3]["recipient"] == "a@b.example"
    assert_reconciles(res.stats)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
@pytest.mark.parametrize("chunk", [1, 7, 100, 333])
def test_block_size_does_not_change_anything(path: Path, chunk: int) -> None:
    """Tiny blocks force header speculation misses, carried multi-line records and many batches."""
    ref, small = parse(path), parse(path, chunk_bytes=chunk)
    assert small.events.equals(ref.events)
    assert small.quarantine.equals(ref.quarantine)
    assert small.stats == ref.stats


def test_unterminated_quote_at_end_of_file_is_confined_to_its_line(tmp_path: Path) -> None:
    p = tmp_path / "acct.csv"
    p.write_text(
        'type,timeLogged,rcpt,dsnDiag\nd,2026-03-01 10:00:00+0000,a@b.example,"smtp;250 ok\n'
        "d,2026-03-01 10:00:01+0000,c@b.example,smtp;250 ok\n"
    )
    res = parse(p)
    assert res.quarantine.select("source_line", "reason").rows() == [(2, "malformed_csv")]
    assert res.events["recipient"].to_list() == ["c@b.example"]
    assert_reconciles(res.stats)


def test_bad_quote_inside_a_field_is_quarantined(tmp_path: Path) -> None:
    p = tmp_path / "acct.csv"
    p.write_text(
        'type,timeLogged,rcpt,dsnDiag\nd,2026-03-01 10:00:00+0000,a@b.example,"smtp;250" ok\n'
        "d,2026-03-01 10:00:01+0000,c@b.example,smtp;250 ok\n"
    )
    res = parse(p)
    assert res.quarantine.select("source_line", "reason").rows() == [(2, "malformed_csv")]
    assert res.events["recipient"].to_list() == ["c@b.example"]


LOOSE_LINES = [
    # undoubled quotes inside a quoted field
    'b,2026-03-01 10:00:00+0000,a@b.example,"smtp;550 5.7.1 "blocked" by policy",1',
    # polars would read these two without an error and drop everything after the stray quote
    'b,2026-03-01 10:00:01+0000,a@b.example,a","","z,2',
    'b,2026-03-01 10:00:02+0000,a@b.example, "," w,3',
    # text after a closing quote
    'b,2026-03-01 10:00:03+0000,a@b.example,"x" ,4',
]


@pytest.mark.parametrize("chunk", [None, 7, 64])
@pytest.mark.parametrize("neighbour", ["strict", "loose"])
def test_quoting_that_strict_csv_refuses_is_malformed_beside_any_neighbour(
    tmp_path: Path, chunk: int | None, neighbour: str
) -> None:
    """A line with a stray quote is malformed_csv with its raw text, never an event that lost what followed
    the quote; strict quoting (doubled quotes, commas inside, a literal quote inside an unquoted field) is
    read exactly; the result does not depend on the other lines of the block or on the block size."""
    strict = [
        'b,2026-03-01 10:00:10+0000,c@b.example,"smtp;550 5.7.1 ""blocked"", by policy",5',
        'b,2026-03-01 10:00:11+0000,c@b.example,smtp;550 user "x" unknown,6',
    ]
    lines = [LOOSE_LINES[0], *strict] if neighbour == "strict" else [*LOOSE_LINES, *strict]
    p = tmp_path / "acct.csv"
    p.write_text("type,timeLogged,rcpt,dsnDiag,x\n" + "\n".join(lines) + "\n")
    res = parse(p) if chunk is None else parse(p, chunk_bytes=chunk)
    n_loose = len(lines) - 2
    assert res.quarantine.select("source_line", "reason", "raw_text").rows() == [
        (2 + k, "malformed_csv", lines[k]) for k in range(n_loose)
    ]
    assert all(d.startswith("csv: ") for d in res.quarantine["detail"])
    rows = by_line(res)
    assert sorted(rows) == [2 + n_loose, 3 + n_loose]
    first, second = rows[2 + n_loose], rows[3 + n_loose]
    assert (first["smtp_code"], first["enhanced_status"], first["response"]) == (
        550,
        "5.7.1",
        '"blocked", by policy',
    )
    assert json.loads(first["extra"]) == {"x": "5"}
    assert (second["smtp_code"], second["response"]) == (550, 'user "x" unknown')
    assert json.loads(second["extra"]) == {
        "dsnDiagPrefix": "smtp;550 ",
        "x": "6",
    }  # no status to rebuild it from
    assert_reconciles(res.stats)


@pytest.mark.parametrize("chunk", [None, 1, 7, 64, 4096])
def test_a_quote_inside_an_unquoted_field_is_literal_at_any_block_size(
    tmp_path: Path, chunk: int | None
) -> None:
    """polars may take such a quote as opening a quoted field (in a long enough block) and silently merge
    the fields after it; the csv module reads the line instead, with the quote kept as it stands."""
    pad = "z" * 40
    p = tmp_path / "acct.csv"
    p.write_bytes(
        "type,timeLogged,rcpt,a,b,c\n"
        f'"d",2026-03-01 10:00:00+0000,r@b.example,5"x,7",{pad}\n'
        '"d","2026-03-01 10:00:01+0000",r"@b.example,a"\n'
        '"d",2026-03-01 10:00:02+0000,"s@b.example",a""b,\u00e9,"a""b"\n'.encode()
    )
    res = parse(p) if chunk is None else parse(p, chunk_bytes=chunk)
    assert res.quarantine.height == 0
    assert [(r["recipient"], json.loads(r["extra"])) for r in res.events.to_dicts()] == [
        ("r@b.example", {"a": '5"x', "b": '7"', "c": pad}),
        ('r"@b.example', {"a": 'a"'}),
        ("s@b.example", {"a": 'a""b', "b": "\u00e9", "c": 'a"b'}),
    ]
    assert_reconciles(res.stats)


def test_a_bom_opening_a_data_line_mid_file_gives_the_same_id_at_any_block_size(tmp_path: Path) -> None:
    """polars drops a BOM that opens its buffer: a line's text (and id) must not depend on where the
    block boundaries fall. The file's own leading BOM is not part of its first line."""
    line = "\ufeffd,2026-03-01 10:00:00+0000,r@b.example,x"
    p = tmp_path / "acct.csv"
    p.write_text(f"\ufefftype,timeLogged,rcpt,a\n{line}\nd,2026-03-01 10:00:01+0000,s@b.example,y\n")
    ids = {chunk: parse(p, **({} if chunk is None else {"chunk_bytes": chunk})) for chunk in (None, 1, 7, 64)}
    for res in ids.values():
        assert res.events["event_id"].to_list() == [
            event_id_of("pmta", line),
            ids[None].events["event_id"][1],
        ]
        assert res.events["raw_type"].to_list() == ["d", "d"]
        assert_reconciles(res.stats)


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_a_line_holding_only_a_bom_gets_one_reason_at_any_block_size(tmp_path: Path, ending: str) -> None:
    hdr = "type,timeLogged,rcpt\n"
    row = "d,2026-03-01 10:00:00+0000,r@b.example\n"
    p = tmp_path / "acct.csv"
    p.write_bytes((hdr + row * 3 + "\ufeff" + ending + row * 3).encode())
    for chunk in (None, *range(30, 140, 3)):  # the BOM line at a block's start, inside one, or split
        res = parse(p) if chunk is None else parse(p, chunk_bytes=chunk)
        assert len(res.events) == 6
        assert res.quarantine.select("source_line", "reason", "raw_text").rows() == [
            (5, "missing_type", "\ufeff")
        ]
        assert_reconciles(res.stats)


@pytest.mark.parametrize("chunk", [None, 1, 64])
def test_a_bare_carriage_return_after_a_quoted_field_is_malformed(tmp_path: Path, chunk: int | None) -> None:
    """The csv module would end the record at the CR and drop the rest of the line."""
    bad = 'd,2026-03-01 10:00:00+0000,r@b.example,"x"\ry,z'
    p = tmp_path / "acct.csv"
    p.write_bytes(f"type,timeLogged,rcpt,a,b,c\n{bad}\nd,2026-03-01 10:00:01+0000,s@b.example,ok\n".encode())
    res = parse(p) if chunk is None else parse(p, chunk_bytes=chunk)
    assert res.events["recipient"].to_list() == ["s@b.example"]
    assert res.quarantine.select("source_line", "reason", "raw_text").rows() == [(2, "malformed_csv", bad)]
    assert_reconciles(res.stats)


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_loose_quoting_mask_matches_the_strict_csv_module(eol: str) -> None:
    """The vectorised pre-check sends to the csv module exactly the single lines it refuses plus those with
    a quote inside an unquoted field (which polars may misread), whether a line is checked alone or among
    others (quote pairing runs over the whole buffer)."""
    cases = [
        *LOOSE_LINES,
        'd,"a""b",c',
        'd,"",',
        "d,,",
        'd,"a,b"',
        '"x,y",z,"w"',
        'd,""""',
        'd,a"b,c',  # literal to the csv module
        'd,"a,"b,"c",',  # every quote touches a comma, yet the first field closes before `b`
        'd,"a"b"',
        '"',
    ]
    expected = [True] * len(LOOSE_LINES) + [False] * 6 + [True] * 4
    refused = []
    for line in cases:
        try:
            pmta._csv_fields(line)
            refused.append(False)
        except csv.Error:
            refused.append(True)
    assert refused == [*expected[:-4], False, True, True, True]

    def mask(lines: list[str]) -> list[bool]:
        buf = (eol.join(lines) + eol).encode()
        return pmta._loose_quoting(pl.Series(lines), buf).tolist()

    assert mask(cases) == expected
    assert [mask([line])[0] for line in cases] == expected
    assert mask(['d,"a,b",c', 'e,"x",', "f,g"]) == [False, False, False]  # settled by the pairing alone
    # after a header line that the buffer still holds
    head = 'type,"x"' + eol
    buf = (head + eol.join(cases) + eol).encode()
    assert pmta._loose_quoting(pl.Series(cases), buf, 1).tolist() == expected


@pytest.mark.parametrize("chunk", [None, 64])
def test_fields_longer_than_the_csv_modules_default_limit(tmp_path: Path, chunk: int | None) -> None:
    """Records the csv module reads (a multi-line one, one too long) may hold fields over its 128 KiB
    default: they are read like any other, not refused for the field's length."""
    big = "smtp;550 5.1.1 " + "y" * 200_000
    p = tmp_path / "acct.csv"
    p.write_text(
        "type,timeLogged,rcpt,dsnDiag,x\n"
        f'b,2026-03-01 10:00:00+0000,a@b.example,"{big},\nmore",1\n'
        f"b,2026-03-01 10:00:01+0000,c@b.example,{big},2,surplus\n"
    )
    res = parse(p) if chunk is None else parse(p, chunk_bytes=chunk)
    assert res.events.select("source_line", "smtp_code", "enhanced_status").rows() == [(2, 550, "5.1.1")]
    assert res.events["response"].to_list() == ["y" * 200_000 + ",\nmore"]
    assert res.quarantine.select("source_line", "reason", "detail").rows() == [
        (4, "too_many_fields", "6 fields, header has 5")
    ]
    assert_reconciles(res.stats)


@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("final_newline", [True, False])
def test_a_surplus_empty_field_on_the_last_line_is_too_many_fields(
    tmp_path: Path, chunk: int | None, final_newline: bool
) -> None:
    """Polars ignores one surplus empty field at the very end of the data; the line is still too long."""
    p = tmp_path / "acct.csv"
    last = "d,2026-03-01 10:00:01+0000,c@b.example,ok,1,"
    body = f"type,timeLogged,rcpt,dsnDiag,x\nd,2026-03-01 10:00:00+0000,a@b.example,ok,2\n{last}"
    p.write_text(body + ("\n" if final_newline else ""))
    res = parse(p) if chunk is None else parse(p, chunk_bytes=chunk)
    assert res.events["recipient"].to_list() == ["a@b.example"]
    assert res.quarantine.select("source_line", "reason", "detail", "raw_text").rows() == [
        (3, "too_many_fields", "6 fields, header has 5", last)
    ]
    assert_reconciles(res.stats)


@pytest.mark.parametrize("chunk", [None, 7])
def test_an_unterminated_quote_in_the_last_field_without_a_final_newline(
    tmp_path: Path, chunk: int | None
) -> None:
    """Polars would end the open field at the end of the data and lose its value; it is malformed."""
    p = tmp_path / "acct.csv"
    last = 'd,2026-03-01 10:00:01+0000,c@b.example,smtp;250 ok,"1'
    p.write_text(f"type,timeLogged,rcpt,dsnDiag,x\nd,2026-03-01 10:00:00+0000,a@b.example,ok,2\n{last}")
    res = parse(p) if chunk is None else parse(p, chunk_bytes=chunk)
    assert res.events["recipient"].to_list() == ["a@b.example"]
    assert res.quarantine.select("source_line", "reason", "detail", "raw_text").rows() == [
        (3, "malformed_csv", "unterminated quoted field", last)
    ]
    assert_reconciles(res.stats)


def test_overlong_line_is_quarantined_and_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pmta, "MAX_LINE_BYTES", 64)
    monkeypatch.setattr(pmta, "QUARANTINE_TEXT_MAX", 10)
    p = tmp_path / "acct.csv"
    long_line = "d,2026-03-01 10:00:00+0000,x@b.example," + "z" * 200
    p.write_text(f"type,timeLogged,rcpt,dsnDiag\n{long_line}\nd,2026-03-01 10:00:01+0000,c@b.example,ok\n")
    res = parse(p, chunk_bytes=16)
    assert res.quarantine.select("source_line", "byte_offset", "reason", "raw_text").rows() == [
        (2, 29, "malformed_csv", long_line[:10])
    ]
    assert by_line(res)[3]["recipient"] == "c@b.example"
    assert_reconciles(res.stats)


@pytest.mark.parametrize("step", [1, 3, 8, 1 << 18])
def test_byte_positions_across_piece_boundaries(step: int) -> None:
    data = b"\nab\n\ncdefg\r\nh\n" + b"x" * 9 + b"\n"
    arr = np.frombuffer(data, dtype=np.uint8)
    assert byte_positions(arr, 10, step=step).tolist() == [0, 3, 4, 11, 13, 23]
    assert byte_positions(arr, ord("x"), step=step).tolist() == list(range(14, 23))
    assert byte_positions(arr[:0], 10, step=step).tolist() == []
    assert byte_positions(arr[1:3], 10, step=step).tolist() == []
    assert newline_positions(arr).tolist() == [0, 3, 4, 11, 13, 23]


def _blocks_of(path: Path, size: int, *, plain: bool) -> list[object]:
    out: list[object] = []
    with open(path, "rb") as fh:
        finished = False
        if plain:
            blocks = pmta._read_plain_blocks(fh, size)
            while True:
                try:
                    out.append(next(blocks))
                except StopIteration as end:  # its value: False when the generic reader must take over
                    finished = end.value
                    break
        if not finished:
            out.extend(pmta._read_blocks(fh, size))
    return [b if isinstance(b, bytes) else (b.head, b.length, b.terminated) for b in out]


def test_a_reader_failure_is_raised_not_taken_for_the_end_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fh: object, size: int) -> Iterator[bytes]:
        yield b"type,timeLogged,rcpt\n"
        raise RuntimeError("reader bug")

    monkeypatch.setattr(pmta, "_read_plain_blocks", broken)
    p = tmp_path / "acct.csv"
    p.write_text("type,timeLogged,rcpt\nd,2026-03-01 10:00:00+0000,a@b.example\n")
    with pytest.raises(RuntimeError, match="reader bug"):
        parse(p)


@pytest.mark.parametrize("probe", [64, 1000, 4096])
def test_plain_file_reader_cuts_the_same_blocks_as_the_generic_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, probe: int
) -> None:
    """The pread reader must hand over exactly the generic reader's blocks: long lines, lines ending at a
    block's nominal end, files without a final newline, probes shorter and longer than MAX_LINE_BYTES."""
    monkeypatch.setattr(pmta, "MAX_LINE_BYTES", 1000)
    monkeypatch.setattr(pmta, "QUARANTINE_TEXT_MAX", 8)
    monkeypatch.setattr(pmta, "PROBE_BYTES", probe)
    rng = random.Random(probe)
    p = tmp_path / "acct.csv"
    fallbacks = 0
    for _ in range(300):
        lines = [
            b"x" * rng.choice([0, 1, 5, 63, 64, 65, 300, 999, 1000, 1001, 2500])
            for _ in range(rng.randint(0, 25))
        ]
        p.write_bytes(b"\n".join(lines) + rng.choice([b"", b"\n", b"\r\n"]))
        size = rng.choice([1, 2, 10, 64, 100, 4096])
        generic = _blocks_of(p, size, plain=False)
        assert _blocks_of(p, size, plain=True) == generic, (size, [len(x) for x in lines])
        fallbacks += any(isinstance(b, tuple) for b in generic)
    assert fallbacks > 10  # the over-long-line hand-over was exercised


def test_utf8_bom_is_not_part_of_the_header(tmp_path: Path) -> None:
    p = tmp_path / "acct.csv"
    p.write_bytes(b"\xef\xbb\xbf" + CUSTOM.read_bytes())
    a, b = parse(CUSTOM), parse(p)
    assert b.events.drop("source_file").equals(a.events.drop("source_file"))


# --------------------------------------------------------------------------------------------- event ids


def test_event_id_is_xxh3_of_mta_and_line() -> None:
    xxhash = pytest.importorskip("xxhash")
    line = DEFAULT.read_bytes().split(b"\r\n")[1]
    row = by_line(parse(DEFAULT))[2]
    assert row["event_id"] == xxhash.xxh3_128_hexdigest(b"pmta:" + line)
    assert row["event_id"] == event_id_of("pmta", line.decode())


def test_event_ids_survive_renaming_and_growth(tmp_path: Path) -> None:
    full = parse(DEFAULT).events
    renamed = tmp_path / "acct-2026-03-01-0007.csv"
    shutil.copy(DEFAULT, renamed)
    assert parse(renamed).events["event_id"].to_list() == full["event_id"].to_list()
    grown = tmp_path / "acct-growing.csv"
    lines = DEFAULT.read_bytes().split(b"\r\n")
    grown.write_bytes(b"\r\n".join(lines[:4]) + b"\r\n")  # header + 3 rows, the file "before growing"
    assert parse(grown).events["event_id"].to_list() == full["event_id"].to_list()[:3]


def test_repeated_lines_stay_distinct_events(tmp_path: Path) -> None:
    line = "d,2026-03-01 10:00:00+0000,a@b.example"
    p = tmp_path / "acct.csv"
    p.write_text(f"type,timeLogged,rcpt\n{line}\n{line}\nd,2026-03-01 10:00:01+0000,c@b.example\n{line}\n")
    for chunk in (pmta.CHUNK_BYTES, 20):  # repeats within one batch and across batches
        ids = parse(p, chunk_bytes=chunk).events["event_id"].to_list()
        assert ids[0] == event_id_of("pmta", line)
        assert ids[1] == event_id_of("pmta", line, 2)
        assert ids[3] == event_id_of("pmta", line, 3)
        assert len(set(ids)) == 4


def test_occurrences_across_batches() -> None:

    seen = SeenKeys()
    assert occurrences(np.array([5, 3, 5, 7], dtype=np.uint64), seen).tolist() == [1, 1, 2, 1]
    assert occurrences(np.array([3, 9, 5, 3], dtype=np.uint64), seen).tolist() == [2, 1, 3, 3]
    assert occurrences(np.array([1, 2], dtype=np.uint64), seen).tolist() == [1, 1]
    assert occurrences(np.array([5, 2, 11], dtype=np.uint64), seen).tolist() == [4, 2, 1]


def test_occurrences_stay_exact_while_the_bitmap_grows() -> None:
    rng = np.random.default_rng(7)
    seen, counts = SeenKeys(), Counter()
    bits = []
    for size in [50, 300, 2_000, 9_000, 40_000]:  # the bitmap is rebuilt larger as keys accumulate
        # keys repeat within and across batches; high bits vary so the low bits alone cannot tell them apart
        keys = rng.integers(0, 30_000, size).astype(np.uint64) | (
            rng.integers(0, 4, size).astype(np.uint64) << 40
        )
        want = []
        for k in keys.tolist():
            counts[k] += 1
            want.append(counts[k])
        assert occurrences(keys, seen).tolist() == want
        bits.append(seen._bits)
    assert bits == sorted(bits) and bits[0] == SeenKeys.MIN_BITS and bits[-1] > bits[0]


def test_per_distinct_equals_the_per_row_result() -> None:
    expr = pl.col("v").str.to_uppercase().str.slice(0, 2)
    repeating = pl.Series(["ab", None, "cd", "ab", "ab"] * 200)
    unique = pl.Series([f"x{i}" for i in range(5_000)])
    for s in (repeating, unique, pl.Series([None, None], dtype=pl.String), pl.Series([], dtype=pl.String)):
        got = per_distinct(s, out=expr)["out"]
        assert got.to_list() == s.rename("v").to_frame().select(out=expr)["out"].to_list()
    assert coded(repeating) is not None and coded(unique) is None  # the repeating one went per value


# --------------------------------------------------------------------------------------- compressed input


def test_gzip_gives_the_same_events(tmp_path: Path) -> None:
    gz = tmp_path / "acct-2026-03-01-0000.csv.gz"
    gz.write_bytes(gzip.compress(DEFAULT.read_bytes(), mtime=0))
    a, b = parse(DEFAULT), parse(gz)
    assert b.events.drop("source_file").equals(a.events.drop("source_file"))
    assert b.stats.bytes_read == DEFAULT.stat().st_size  # decompressed bytes


@pytest.mark.parametrize("chunk", [pmta.CHUNK_BYTES, 500])
def test_truncated_gzip_keeps_what_was_readable(tmp_path: Path, chunk: int) -> None:
    body = DEFAULT.read_bytes() * 40  # 40 copies: the header line re-appears mid-stream 39 times
    packed = gzip.compress(body, mtime=0)
    gz = tmp_path / "acct.csv.gz"
    gz.write_bytes(packed[: len(packed) // 2])
    res = parse(gz, chunk_bytes=chunk)
    st = res.stats
    assert st.reasons == {"truncated_stream": 1}
    read = body[: st.bytes_read]
    complete, unfinished = read.rsplit(b"\n", 1)
    n_complete = complete.count(b"\n") + 1
    assert 0 < n_complete < body.count(b"\n")
    # every complete line before the damage is accounted for; the unfinished one is quarantined
    assert st.lines_read == n_complete + 1
    assert st.header_lines == sum(1 for ln in complete.split(b"\r\n") if ln.startswith(b"type,"))
    assert st.rows == n_complete - st.header_lines
    assert res.quarantine.select("source_line", "reason", "raw_text").rows() == [
        (n_complete + 1, "truncated_stream", unfinished.decode())
    ]
    assert_reconciles(st)


# ------------------------------------------------------------------------------------------- streaming


def test_ingest_streams_to_parquet_and_is_deterministic(tmp_path: Path) -> None:
    ref = parse(MESSY)
    out1, q1 = tmp_path / "a" / "ev.parquet", tmp_path / "a" / "q.parquet"
    st = ingest_pmta_file(
        MESSY,
        rel_path="pmta/node-a/acct-messy.csv",
        node="node-a",
        events_out=out1,
        quarantine_out=q1,
        chunk_bytes=64,
    )
    assert st == ref.stats
    assert pl.read_parquet(out1).equals(ref.events)
    assert pl.read_parquet(q1).equals(ref.quarantine)
    out2, q2 = tmp_path / "b" / "ev.parquet", tmp_path / "b" / "q.parquet"
    ingest_pmta_file(
        MESSY,
        rel_path="pmta/node-a/acct-messy.csv",
        node="node-a",
        events_out=out2,
        quarantine_out=q2,
        chunk_bytes=64,
    )
    assert out1.read_bytes() == out2.read_bytes() and q1.read_bytes() == q2.read_bytes()
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]  # no temp files left


def test_ingest_writes_an_empty_quarantine_file(tmp_path: Path) -> None:
    ev, q = tmp_path / "ev.parquet", tmp_path / "q.parquet"
    ingest_pmta_file(DEFAULT, rel_path="pmta/n/x.csv", node="n", events_out=ev, quarantine_out=q)
    assert pl.read_parquet(q).schema == QUARANTINE_SCHEMA and pl.read_parquet(q).height == 0
    assert pl.read_parquet(ev).height == 6


# ------------------------------------------------------------------------------------------------ domains


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("bücher.de", "xn--bcher-kva.de"),
        ("GMAIL.com.", "gmail.com"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("Bücher.DE>", "xn--bcher-kva.de"),
        ("", None),
        (None, None),
        ("a_b.example", "a_b.example"),
    ],
)
def test_domain_normalisation(raw: str | None, expected: str | None) -> None:
    got = pl.DataFrame({"d": [raw]}, schema={"d": pl.String}).select(normalise_domain(pl.col("d"))).item()
    assert got == expected


def test_idna_fallback_keeps_undecodable_domains() -> None:
    assert idna_domain("münchen.de") == "xn--mnchen-3ya.de"
    assert idna_domain("x" * 70 + "ü.de") == "x" * 70 + "ü.de"  # label too long for IDNA: kept


# -------------------------------------------------------------------------------- the guide's samples


def test_pmta_guide_samples() -> None:
    d = samples_dir("pmta-guide")
    res = {p.name: parse(p) for p in sorted(d.glob("*.csv"))}
    for r in res.values():
        assert r.quarantine.height == 0
        assert_reconciles(r.stats)
    acct = by_line(res["acct-2019-02-08-0000.csv"])
    assert_row(
        acct[2],
        dict(
            event_type="delivered",
            event_time=t(2019, 2, 8, 21, 54, 5),
            recipient="D@1181.com",
            recipient_domain="1181.com",
            mx_host="foo.int.port25.com",
            mx_ip="10.1.2.3",
            smtp_code=250,
            enhanced_status="2.0.0",
            response="DATA ok",
            size_bytes=41159,
            source="vmta48",
            job_id="JoBID29546016861868",
            pool=None,
        ),
    )
    assert_row(
        acct[3],
        dict(
            event_type="bounced",
            recipient_domain="yahoo.com",
            smtp_code=554,
            enhanced_status="5.7.1",
            raw_bounce_category="spam-related",
            source_ip="10.1.2.3",
            response="Denied - Spam Suspected - http://www.w357sfhsjhf873.net/services/spamwatch/blocked.php",
        ),
    )
    assert_row(
        acct[4],
        dict(
            event_type="deferred",
            recipient_domain="yahoo.fr",
            smtp_code=421,
            mx_ip="10.1.2.165",
            source_ip="10.59.14.69",
            response="mx002.roc2.bluetie.com Error: too many errors",
        ),
    )
    assert json.loads(acct[3]["extra"])["queue"] == "yahoo.rollup/vmta18"
    epoch = by_line(res["acct-epoch-2007-05-10-0000.csv"])
    assert [epoch[i]["event_time"] for i in (2, 3, 4)] == [
        t(2007, 5, 10, 14, 38, 23),
        t(2007, 5, 10, 14, 38, 25),
        t(2007, 5, 10, 14, 38, 35),
    ]
    assert epoch[4]["raw_bounce_category"] == "policy-related" and epoch[2]["source_ip"] == "10.0.0.1"
    f = by_line(res["acct-f-2010-04-12-0000.csv"])[2]
    assert_row(
        f,
        dict(
            event_type="complaint",
            event_time=t(2010, 4, 12, 15, 40, 37),
            source_ip="169.63.151.30",
            extra={"format": "arf", "userAgent": "AOL SComp", "reportingMta": "mail1.domain.com"},
        ),
    )
    r = by_line(res["acct-r-2010-04-17-0000.csv"])[2]
    assert_row(
        r,
        dict(
            event_type="received",
            event_time=t(2010, 4, 17, 20, 19, 57),
            pool="vmta1",
            source=None,
            job_id="job2",
        ),
    )
    rb = by_line(res["acct-rb-2010-12-01-0000.csv"])[2]
    assert_row(
        rb,
        dict(
            event_type="remote_bounce",
            smtp_code=550,
            enhanced_status="5.1.1",
            mx_host="mail.remotedomain.com",
            mx_ip="169.3.169.30",
            recipient_domain="somedomain.com",
            response='no such local recipient: <lksjflkj@somedomain.com> in "RCPT TO:<lksjflkj@somedomain.com>"',
        ),
    )
    tq = by_line(res["acct-tq-2019-02-08-0000.csv"])[2]
    assert_row(
        tq,
        dict(
            event_type="queue_deferred",
            recipient_domain=None,
            mx_host="mx.xn--bcher-kva.de",
            enhanced_status="4.4.1",
            source="vmta29",
        ),
    )


@pytest.mark.parametrize(
    ("addresses", "domains"),
    [
        # one shared domain (the suffix shortcut) and mixed domains (the general path) agree on every rule
        (["a@X.example", "b@X.example."], ["x.example", "x.example"]),
        (["a@X.example", "b@X.example"], ["x.example", "x.example"]),
        (['"a@b"@x.example', "c@x.example"], ["x.example", "x.example"]),
        (["c@x.example", '"a@b"@x.example'], ["x.example", "x.example"]),
        (["a@Bücher.de", "b@Bücher.de"], ["xn--bcher-kva.de", "xn--bcher-kva.de"]),
        (["a@x.example", "b@y.example", "no-at-sign"], ["x.example", "y.example", None]),
        (["x@", "y@"], [None, None]),
        (["a@x.example", None], ["x.example", None]),
    ],
)
def test_domains_shortcut_and_general_path_agree(
    addresses: list[str | None], domains: list[str | None]
) -> None:
    s = pl.Series(addresses, dtype=pl.String)
    assert pmta._domains(s, len(s)).cast(pl.String).to_list() == domains


def test_raw_events_writer_round_trip_and_layout(tmp_path: Path) -> None:
    batches = [
        pl.DataFrame(
            {
                "event_id": ["a", "b"],
                "extra": ['{"k":"1"}', "{}"],
                "source_line": [1, 2],
                "pool": ["p1", None],
                "event_time": [datetime(2026, 3, 1, tzinfo=UTC)] * 2,
            }
        ).with_columns(mta=constant_categorical("pmta", 2)),
        pl.DataFrame({"event_id": ["c"], "extra": ['{"k":"1"}'], "source_line": [3], "pool": ["p2"]}),
    ]
    out = tmp_path / "raw.parquet"
    w = RawEventsWriter(out)
    for b in batches:
        w.write(b)
    w.close()
    assert pq.read_schema(out).names == list(EVENT_SCHEMA)
    assert {f.name for f in pq.read_schema(out) if str(f.type).startswith("dictionary")} == set(
        RAW_DICTIONARY_COLUMNS
    )
    codecs, with_stats = raw_file_layout(out)
    assert (codecs.pop("event_id"), codecs.pop("extra")) == ("UNCOMPRESSED", "ZSTD")
    assert set(codecs.values()) == {"LZ4"}
    assert with_stats == {"event_time", "source_line"}
    back = conform(pl.scan_parquet(out)).collect()
    assert back.schema == EVENT_SCHEMA
    assert back.select("event_id", "mta", "extra", "pool", "source_line").rows() == [
        ("a", "pmta", '{"k":"1"}', "p1", 1),
        ("b", "pmta", "{}", None, 2),
        ("c", None, '{"k":"1"}', "p2", 3),
    ]

    empty = tmp_path / "empty.parquet"
    w = RawEventsWriter(empty)
    w.close()
    assert conform(pl.scan_parquet(empty)).collect().schema == EVENT_SCHEMA
    assert pl.scan_parquet(empty).select(pl.len()).collect().item() == 0


def test_raw_events_writer_surfaces_a_failure_of_its_thread(tmp_path: Path) -> None:
    w = RawEventsWriter(tmp_path / "raw.parquet")

    def broken(table: object) -> None:
        raise OSError("disk full")

    w._writer.write_table = broken  # type: ignore[method-assign]
    w.write(pl.DataFrame({"event_id": ["a"]}))
    with pytest.raises(OSError, match="disk full"):
        w.close()


def test_raw_files_with_and_without_dictionary_columns_read_together(tmp_path: Path) -> None:
    from mtashift.events import scan_raw_files

    rows = pl.DataFrame({"event_id": ["a", "b"], "mta": ["pmta", "pmta"], "extra": ["{}", '{"k":"v"}']})
    plain = tmp_path / "plain.parquet"  # a raw file as written before the dictionary layout
    conform(rows.lazy()).collect().write_parquet(plain)
    coded = tmp_path / "coded.parquet"
    w = RawEventsWriter(coded)
    w.write(rows.with_columns(event_id=pl.lit("c")))
    w.close()
    for order in ([plain, coded], [coded, plain]):
        got = scan_raw_files(order).collect()
        assert got.schema == EVENT_SCHEMA
        assert sorted(got.select("event_id", "mta", "extra").rows()) == [
            ("a", "pmta", "{}"),
            ("b", "pmta", '{"k":"v"}'),
            ("c", "pmta", '{"k":"v"}'),
            ("c", "pmta", "{}"),
        ]


def test_times_outside_1970_to_2099_are_unusable_not_fatal(tmp_path: Path) -> None:
    p = tmp_path / "acct.csv"
    p.write_text(
        "type,timeLogged,timeQueued,rcpt\n"
        "d,0001-01-01 00:00:00+0100,,a@b.example\n"  # year 0 once in UTC
        "d,9999-12-31 23:59:59-1400,,a@b.example\n"  # past year 9999 once in UTC
        "d,2026-03-01 10:00:00+0000,1969-12-31 23:59:59+0000,c@b.example\n"
        "d,2100-01-01 00:00:00+0000,,a@b.example\n"
        "d,2099-12-31 23:59:59+0000,1970-01-01 00:00:00+0000,d@b.example\n"
    )
    res = parse(p)
    assert res.quarantine.select("source_line", "reason").rows() == [
        (2, "bad_timestamp"),
        (3, "bad_timestamp"),
        (5, "bad_timestamp"),
    ]
    rows = by_line(res)
    assert rows[4]["queued_time"] is None and json.loads(rows[4]["extra"]) == {
        "timeQueued": "1969-12-31 23:59:59+0000"
    }
    assert rows[6]["event_time"] == t(2099, 12, 31, 23, 59, 59) and rows[6]["queued_time"] == t(
        1970, 1, 1, 0, 0, 0
    )
    assert (res.stats.first_event_time, res.stats.last_event_time) == (
        t(2026, 3, 1, 10, 0, 0),
        t(2099, 12, 31, 23, 59, 59),
    )
    assert_reconciles(res.stats)


# ------------------------------------------------------------------------------ hostile input (second review)

H3 = "type,timeLogged,rcpt"
T0 = "2026-03-01 10:00:00+0000"


def _both_block_sizes(p: Path) -> pmta.PmtaParseResult:
    """Parse at the default block size and at a tiny one; both must agree exactly."""
    a, b = parse(p), parse(p, chunk_bytes=16)
    assert a.events.equals(b.events) and a.quarantine.equals(b.quarantine) and a.stats == b.stats
    assert_reconciles(a.stats)
    return a


def test_a_blank_line_inside_a_quoted_field_is_a_continuation_only(tmp_path: Path) -> None:
    p = tmp_path / "acct-q.csv"
    p.write_text(f'{H3},dsnDiag\nd,{T0},a@b.com,"x\n\ny"\n')
    res = _both_block_sizes(p)
    st = res.stats
    assert (st.lines_read, st.rows, st.header_lines, st.blank_lines, st.continuation_lines) == (4, 1, 1, 0, 2)
    assert res.events["response"].to_list() == ["x\n\ny"]


@pytest.mark.parametrize(
    ("line", "fields"),
    [(f'd,{T0},a@b.com,"multi\nline",LOST', 5), (f'd,{T0},a"b@c.com,LOST', 4)],
    ids=["multi-line", "stray-quote"],
)
def test_quoted_records_longer_than_the_header_are_quarantined(
    tmp_path: Path, line: str, fields: int
) -> None:
    p = tmp_path / "acct-long.csv"
    p.write_text(f"{H3}\n{line}\n")
    res = _both_block_sizes(p)
    assert res.stats.rows == 0
    assert res.quarantine.select("source_line", "reason", "detail", "raw_text").rows() == [
        (2, "too_many_fields", f"{fields} fields, header has 3", line)
    ]


def test_a_quoted_first_value_holding_type_is_data_not_a_header(tmp_path: Path) -> None:
    p = tmp_path / "acct-typex.csv"
    p.write_text(f'{H3},x\n"type,x",{T0},a@b.com,2\nd,{T0},a@b.com,3\n')
    res = _both_block_sizes(p)
    assert (res.stats.header_lines, res.stats.quarantined) == (1, 0)
    assert res.events.select("raw_type", "event_type").rows() == [("type,x", "other"), ("d", "delivered")]


def test_a_bom_before_a_quoted_mid_file_header(tmp_path: Path) -> None:
    p = tmp_path / "acct-cat.csv"
    p.write_text(f'{H3}\nd,{T0},a@b.com\n\ufeff"type",rcpt,timeLogged\nd,c@d.com,2026-03-01 10:00:01+0000\n')
    res = _both_block_sizes(p)
    assert res.stats.quarantined == 0
    assert res.events["recipient"].to_list() == ["a@b.com", "c@d.com"]


def test_an_empty_status_text_keeps_the_raw_status(tmp_path: Path) -> None:
    p = tmp_path / "acct-st.csv"
    p.write_text(f"{H3},dsnStatus\nd,{T0},a@b.com,5.1.1 ()\n")
    row = parse(p).events.row(0, named=True)
    assert (row["enhanced_status"], json.loads(row["extra"])) == ("5.1.1", {"dsnStatus": "5.1.1 ()"})
