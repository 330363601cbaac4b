"""ARF / JMRP parsing: our fixtures (RFC 5965 and provider shapes) and the KumoMTA sample reports."""

from datetime import UTC, datetime
from pathlib import Path

import orjson
import polars as pl
import pytest

from mtashift.arf import (
    ArfReport,
    QuarantineEntry,
    decode_kumoref,
    is_redacted,
    original_message_headers,
    parse_arf,
    parse_date,
    parse_fbl_folder,
)
from schemas.complaints import ARF_SCHEMA
from schemas.quarantine import QUARANTINE_SCHEMA, REASONS
from tests.conftest import samples_dir

FIXTURES = Path(__file__).parent / "fixtures" / "arf"


def _parse(name: str) -> ArfReport | QuarantineEntry:
    return parse_arf((FIXTURES / name).read_bytes(), source_file=f"fbl/{name}")


def _report(name: str) -> ArfReport:
    r = _parse(name)
    assert isinstance(r, ArfReport), r
    return r


def dt(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_rfc5965_minimal_report_with_original():
    r = _report("rfc5965_minimal.eml")
    assert (r.report_format, r.feedback_type, r.user_agent, r.version) == (
        "arf",
        "abuse",
        "IspFeedback/1.0",
        "1",
    )
    assert r.report_date == dt(2024, 5, 1, 16, 30)  # 12:30 -0400
    assert r.complaint_time == r.report_date
    assert r.original_rcpt_to == [] and r.arrival_date is None and r.reporting_mta is None
    assert r.reporting_domain == "isp.example"  # from the report's From:
    assert r.original_part == "message/rfc822"
    assert r.original_message_id == "20240501140211.7F2A10@news.sender.example"
    assert r.original_subject == "Weekly deals"
    assert (r.recipient, r.recipient_source, r.recipient_redacted) == (
        "dave@isp.example",
        "original_to",
        False,
    )


def test_rfc5965_full_report_fields():
    r = _report("rfc5965_full.eml")
    assert r.original_mail_from == "bounce-7731@news.sender.example"
    assert r.original_rcpt_to == ["carol@example.org", "carol.alias@example.org"]
    assert r.original_envelope_id == "ENV-7731-0001"
    assert r.arrival_date == dt(2024, 5, 2, 6, 40)
    assert (r.reporting_mta_type, r.reporting_mta, r.reporting_domain) == (
        "dns",
        "fbl.isp.example",
        "fbl.isp.example",
    )
    assert (r.source_ip, r.incidents) == ("203.0.113.10", 3)
    assert r.authentication_results == [
        "mx.isp.example; spf=pass smtp.mailfrom=news.sender.example; dkim=pass header.d=sender.example"
    ]
    assert r.reported_domain == ["news.sender.example"]
    assert r.reported_uri == ["http://news.sender.example/spring", "mailto:unsubscribe@news.sender.example"]
    assert orjson.loads(r.extensions) == {"removal-recipient": ["carol@example.org"]}
    assert r.original_message_id == "spring.7731.0001@news.sender.example"
    assert r.original_x_job == "spring-2024-05"
    assert r.original_return_path == "bounce-7731@news.sender.example"
    assert orjson.loads(r.supplemental_trace) == {
        "recipient": "carol@example.org",
        "tenant": "acme",
        "campaign": "spring-sale",
    }
    assert (r.recipient, r.recipient_source) == ("carol@example.org", "trace")
    assert r.report_date == dt(2024, 5, 2, 7, 15, 30)


def test_yahoo_style_headers_only_original_and_obsolete_date():
    r = _report("yahoo_headers_only.eml")
    assert (r.user_agent, r.version) == ("Yahoo!-Mail-Feedback/2.0", "0.1")
    assert r.report_date is None  # the report has no Date: header
    assert r.arrival_date_raw == "Fri, 03 May 24 08:00:00 GMT"  # Received-Date, two-digit year
    assert r.arrival_date == dt(2024, 5, 3, 8, 0)
    assert r.complaint_time == r.arrival_date
    assert r.original_part == "text/rfc822-headers"
    assert (r.original_message_id, r.original_x_job) == ("may.42.frank@news.sender.example", "may-newsletter")
    assert r.reporting_domain == "arf.mail.yahoo.com"
    assert (r.recipient, r.recipient_source) == ("frank@yahoo.com", "original_rcpt_to")


def test_redacted_recipient_is_kept_and_flagged():
    r = _report("redacted_recipient.eml")
    assert r.original_rcpt_to == ["xxxxxxxx@isp.example"]
    assert (r.recipient, r.recipient_source, r.recipient_redacted) == (
        "xxxxxxxx@isp.example",
        "original_rcpt_to",
        True,
    )
    assert r.original_to == "redacted"
    assert r.original_message_id == "flash.99.0001@news.sender.example"


def test_jmrp_legacy_report():
    r = _report("jmrp_legacy.eml")
    assert (r.report_format, r.feedback_type, r.user_agent) == ("jmrp", "abuse", "JMRP")
    assert (r.recipient, r.recipient_source, r.recipient_redacted) == (
        "grace@hotmail.com",
        "hotmail_original_recipient",
        False,
    )
    assert r.source_ip == "203.0.113.13"  # from "complaint about message from <ip>"
    assert r.original_mail_from == "bounce-5@news.sender.example"
    assert orjson.loads(r.extensions) == {"x-sid-pra": ["shop@news.sender.example"]}
    assert (r.original_message_id, r.original_x_job) == ("coupons.5.grace@news.sender.example", "coupons-may")
    assert r.reporting_domain == "hotmail.com"
    assert r.complaint_time == dt(2024, 5, 5, 18, 22, 33)


def test_report_without_original_message():
    r = _report("no_original.eml")
    assert r.original_part is None and r.original_message_id is None
    assert r.feedback_type == "fraud"
    assert (r.source_ip, r.source_ip_raw) == ("2001:db8::17", "2001:DB8:0:0::17")
    assert r.arrival_date == dt(2024, 5, 6, 7, 30)  # obsolete form without weekday, -0000
    assert (r.recipient, r.recipient_source) == ("heidi@isp.example", "original_rcpt_to")


def test_base64_encoded_report_part_is_decoded():
    r = _report("base64_report_part.eml")
    assert (r.feedback_type, r.user_agent) == ("abuse", "ExampleFBL/3.1")
    assert r.original_rcpt_to == ["erin@example.net"]
    assert r.source_ip == "198.51.100.7"


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("not_a_report.eml", "no message/feedback-report part and no JMRP original"),
        ("missing_feedback_type.eml", "message/feedback-report part has no Feedback-Type field"),
    ],
)
def test_unusable_files_are_quarantined(name, detail):
    q = _parse(name)
    assert isinstance(q, QuarantineEntry)
    assert (q.source_kind, q.source_file, q.reason) == ("fbl", f"fbl/{name}", "arf_unparseable")
    assert q.reason in REASONS
    assert q.detail.startswith(detail)
    assert q.raw_text == (FIXTURES / name).read_text(encoding="utf-8")


def test_empty_and_dateless_reports_are_quarantined():
    q = parse_arf(b"", source_file="fbl/empty.eml")
    assert isinstance(q, QuarantineEntry) and q.detail == "empty file"
    dateless = (
        (FIXTURES / "rfc5965_minimal.eml").read_text().replace("Date: Wed, 1 May 2024 12:30:00 -0400\n", "")
    )
    q = parse_arf(dateless.encode(), source_file="fbl/dateless.eml")
    assert isinstance(q, QuarantineEntry)
    assert q.detail.startswith("no usable date")


def test_crlf_line_ends_parse_the_same():
    lf = (FIXTURES / "rfc5965_full.eml").read_bytes()
    a = parse_arf(lf, source_file="x")
    b = parse_arf(lf.replace(b"\n", b"\r\n"), source_file="x")
    assert isinstance(a, ArfReport) and isinstance(b, ArfReport)
    assert {k: v for k, v in a.__dict__.items() if k != "report_id"} == {
        k: v for k, v in b.__dict__.items() if k != "report_id"
    }


def test_parse_fbl_folder_reconciles(tmp_path):
    landing = tmp_path / "landing"
    folder = landing / "fbl"
    folder.mkdir(parents=True)
    for p in sorted(FIXTURES.glob("*.eml")):
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "notes.pdf").write_bytes(b"%PDF")  # not a report file: ignored
    reports, quarantine = parse_fbl_folder(folder, landing)
    assert reports.schema == ARF_SCHEMA
    assert quarantine.schema == QUARANTINE_SCHEMA
    assert reports.height + quarantine.height == len(list(FIXTURES.glob("*.eml"))) == 9
    assert reports["source_file"].to_list() == [
        "fbl/base64_report_part.eml",
        "fbl/jmrp_legacy.eml",
        "fbl/no_original.eml",
        "fbl/redacted_recipient.eml",
        "fbl/rfc5965_full.eml",
        "fbl/rfc5965_minimal.eml",
        "fbl/yahoo_headers_only.eml",
    ]
    assert quarantine["source_file"].to_list() == ["fbl/missing_feedback_type.eml", "fbl/not_a_report.eml"]
    assert reports.filter(pl.col("recipient_redacted"))["source_file"].to_list() == [
        "fbl/redacted_recipient.eml"
    ]
    again, _ = parse_fbl_folder(folder, landing)
    assert again.equals(reports)  # deterministic


@pytest.mark.parametrize(
    ("address", "redacted"),
    [
        ("alice@example.com", False),
        ("xxxxx@example.com", True),
        ("****@example.com", True),
        ("redacted@example.com", True),
        ("redacted", True),
        ("cb4a01a48251d4765f489076aa81e2a4@comcast.net", True),  # hashed local part
        ("Undisclosed Recipients", True),
        ("max@example.com", False),
    ],
)
def test_is_redacted(address, redacted):
    assert is_redacted(address) is redacted


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thu, 8 Mar 2005 14:00:00 EDT", dt(2005, 3, 8, 18, 0)),
        ("Thu, 02 Jul 26 18:55:38 UTC", dt(2026, 7, 2, 18, 55, 38)),
        ("Wed, 29 Jan 2025 17:36:57 +0100 (CET)", dt(2025, 1, 29, 16, 36, 57)),
        ("8 Mar 2005 14:00:00 -0000", dt(2005, 3, 8, 14, 0)),
        ("2023-12-13T19:03:30Z", dt(2023, 12, 13, 19, 3, 30)),
        ("not a date", None),
        (None, None),
    ],
)
def test_parse_date_forms(text, expected):
    assert parse_date(text) == expected


def test_decode_kumoref_and_byte_array_original():
    assert decode_kumoref("eyJfQF8iOiJcXF8vIiwicmVjaXBpZW50IjoidGVzdEBleGFtcGxlLmNvbSJ9") == {
        "recipient": "test@example.com"
    }
    assert decode_kumoref("not base64 json") is None
    raw = b"Message-ID: <m1@x>\r\nX-KumoRef: abc\r\nSubject: hi\r\n there\r\n\r\nbody"
    assert original_message_headers(list(raw)) == {
        "message-id": "<m1@x>",
        "x-kumoref": "abc",
        "subject": "hi there",
    }
    assert original_message_headers(raw.decode()) == original_message_headers(raw)
    assert original_message_headers(None) == {}


# ---- conformance: the KumoMTA parser's own test reports --------------------------------------

KUMO_EXPECTED = {
    "1.eml": {
        "feedback_type": "abuse",
        "user_agent": "SomeGenerator/1.0",
        "version": "1",
        "original_rcpt_to": [],
        "arrival_date": None,
        "original_message_id": "8787KJKJ3K4J3K4J3K4J3.mail@example.net",
        "recipient_redacted": True,  # only "To: <Undisclosed Recipients>"
    },
    "2.eml": {
        "feedback_type": "abuse",
        "original_mail_from": "somespammer@example.net",
        "original_rcpt_to": ["user@example.com"],
        "arrival_date": dt(2005, 3, 8, 18, 0),
        "reporting_mta": "mail.example.com",
        "source_ip": "192.0.2.1",
        "reported_domain": ["example.net"],
        "reported_uri": ["http://example.net/earn_money.html", "mailto:user@example.com"],
        "trace_recipient": "test@example.com",
        "recipient": "test@example.com",
        "recipient_source": "trace",
    },
    "3.eml": {
        "user_agent": "Yahoo!-Mail-Feedback/2.0",
        "version": "0.1",
        "arrival_date": dt(2023, 12, 14, 16, 16, 15),  # Received-Date
        "reported_domain": ["bounce.kumo.example.com"],
        "recipient": "user@example.com",
        "recipient_source": "original_rcpt_to",
    },
    "4.eml": {
        "user_agent": "ReturnPathFBL/2.0",
        "original_rcpt_to": ["cb4a01a48251d4765f489076aa81e2a4@comcast.net"],
        "arrival_date": dt(2023, 12, 13, 19, 3, 30),
        "source_ip": None,
        "source_ip_raw": "x.x.x.x",
        "recipient": "user@example.com",  # hashed Original-Rcpt-To; the original's To: is usable
        "recipient_source": "original_to",
    },
}


@pytest.mark.parametrize("name", sorted(KUMO_EXPECTED))
def test_kumomta_sample_reports(name):
    folder = samples_dir("arf-kumomta")
    r = parse_arf((folder / name).read_bytes(), source_file=f"fbl/{name}")
    assert isinstance(r, ArfReport)
    for key, value in KUMO_EXPECTED[name].items():
        assert getattr(r, key) == value, key
    assert orjson.loads(r.extensions or "{}").get("source") == (["Comcast"] if name == "4.eml" else None)


def test_delivery_status_notifications_are_not_feedback_reports():
    folder = samples_dir("dsn-kumomta")
    results = [parse_arf(p.read_bytes(), source_file=p.name) for p in sorted(folder.glob("*.eml"))]
    assert len(results) == 7
    assert all(isinstance(r, QuarantineEntry) and r.reason == "arf_unparseable" for r in results)
