"""ARF (RFC 5965) and legacy Microsoft JMRP feedback reports -> one row each, or a quarantine entry.

Parsing uses the standard library ``email`` package (policy ``email.policy.default``); header values
are read raw and unfolded here so that one malformed header never aborts a report.

Recipient resolution (the field everything downstream joins on), first usable value wins:
the decoded ``X-KumoRef`` trace header of the attached original (written by our own MTA, so
never redacted by the provider), ``Original-Rcpt-To``, ``X-HmXmrOriginalRecipient`` (JMRP),
``Removal-Recipient``, then the original's ``To:`` when it is one plain address. A value is
"usable" when it is an address that is not redacted; when no usable value exists the first
candidate is kept as written and ``recipient_redacted`` is set.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import hashlib
import ipaddress
import quopri
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path

import orjson
import polars as pl

from schemas.complaints import ARF_SCHEMA
from schemas.quarantine import QUARANTINE_SCHEMA

SOURCE_KIND = "fbl"
FBL_SUFFIXES: tuple[str, ...] = (".eml", ".msg", ".txt")
_RAW_TEXT_LIMIT = 4096

# Fields of the feedback-report part that get their own column; all others go to `extensions`.
_KNOWN_FIELDS = {
    "feedback-type",
    "user-agent",
    "version",
    "original-mail-from",
    "original-rcpt-to",
    "arrival-date",
    "received-date",
    "reporting-mta",
    "source-ip",
    "reported-domain",
    "reported-uri",
    "incidents",
    "authentication-results",
    "original-envelope-id",
}
_HEX_HASH = re.compile(r"^([0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64})$")
_MASKED = re.compile(r"^[x*#._-]{3,}$", re.IGNORECASE)
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_JMRP_SUBJECT_IP = re.compile(r"from\s+\[?((?:\d{1,3}\.){3}\d{1,3}|[0-9a-f:]+:[0-9a-f:]+)\]?", re.IGNORECASE)


@dataclass(frozen=True)
class QuarantineEntry:
    source_kind: str
    source_file: str
    source_line: int | None
    byte_offset: int | None
    reason: str
    detail: str
    raw_text: str


@dataclass(frozen=True)
class ArfReport:
    report_id: str
    source_file: str
    report_format: str
    feedback_type: str | None
    user_agent: str | None
    version: str | None
    report_date: datetime | None
    report_from: str | None
    report_subject: str | None
    reporting_mta_type: str | None
    reporting_mta: str | None
    reporting_domain: str | None
    source_ip: str | None
    source_ip_raw: str | None
    original_mail_from: str | None
    original_rcpt_to: list[str] = field(default_factory=list)
    arrival_date: datetime | None = None
    arrival_date_raw: str | None = None
    reported_domain: list[str] = field(default_factory=list)
    reported_uri: list[str] = field(default_factory=list)
    incidents: int | None = None
    authentication_results: list[str] = field(default_factory=list)
    original_envelope_id: str | None = None
    extensions: str | None = None
    original_part: str | None = None
    original_message_id: str | None = None
    original_from: str | None = None
    original_to: str | None = None
    original_subject: str | None = None
    original_date: datetime | None = None
    original_return_path: str | None = None
    original_x_job: str | None = None
    x_kumoref: str | None = None
    supplemental_trace: str | None = None
    trace_recipient: str | None = None
    recipient: str | None = None
    recipient_source: str | None = None
    recipient_redacted: bool = False
    complaint_time: datetime | None = None


# ----------------------------------------------------------------------------------------------
# small helpers (shared with mtashift.complaints)


def unfold(value: str | None) -> str | None:
    if value is None:
        return None
    v = re.sub(r"\r?\n[ \t]+", " ", str(value)).strip()
    return v or None


def strip_angle(value: str | None) -> str | None:
    """``<a@b>`` -> ``a@b``; also drops an ``rfc822;`` address-type prefix."""
    if value is None:
        return None
    v = value.strip()
    if v.lower().startswith("rfc822;"):
        v = v[7:].strip()
    if v.startswith("<") and v.endswith(">"):
        v = v[1:-1].strip()
    return v or None


def normalise_message_id(value: str | None) -> str | None:
    """Message-ID without angle brackets or whitespace (case kept: ids are case-sensitive)."""
    if value is None:
        return None
    v = re.sub(r"\s+", "", str(value))
    v = v.strip("<>")
    return v or None


def is_redacted(address: str | None) -> bool:
    """True for addresses a provider masked or hashed, and for values that are not an address."""
    if address is None:
        return False
    a = address.strip()
    if "redacted" in a.lower():
        return True
    if not _ADDRESS.match(a):
        return True
    local = a.rsplit("@", 1)[0]
    return bool(_MASKED.match(local) or _HEX_HASH.match(local.lower()))


def parse_date(value: str | None) -> datetime | None:
    """RFC 2822 date (incl. obsolete forms: 2-digit years, named zones) or ISO 8601 -> aware UTC."""
    v = unfold(value)
    if not v:
        return None
    dt: datetime | None
    try:
        dt = parsedate_to_datetime(v)
    except (TypeError, ValueError, IndexError, OverflowError):
        dt = None
    if dt is None:
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return None
    if dt.tzinfo is None:  # "-0000" or no zone: RFC 5322 says no zone information, we read UTC
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def decode_kumoref(value: str | None) -> dict | None:
    """Decode an X-KumoRef trace header (base64 of a JSON object); None when it is not one."""
    if not value:
        return None
    raw = re.sub(r"\s+", "", value)
    try:
        decoded = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=False)
        obj = orjson.loads(decoded)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(obj, dict):
        return None
    obj.pop("_@_", None)  # KumoMTA's format marker, not data
    return obj


def clean_ip(value: str | None) -> str | None:
    """The IP address in ``value`` (brackets and spaces dropped), normalised; None when it is not one."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip().strip("[]")))
    except ValueError:
        return None


def _domain_of(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    d = address.rsplit("@", 1)[1].strip().strip(">").lower().rstrip(".")
    return d or None


def _first_address(value: str | None) -> str | None:
    v = unfold(value)
    if not v:
        return None
    pairs = [a for _n, a in getaddresses([v]) if a]
    return pairs[0] if len(pairs) >= 1 else None


def _single_address(value: str | None) -> str | None:
    v = unfold(value)
    if not v:
        return None
    pairs = [a for _n, a in getaddresses([v]) if a]
    return pairs[0] if len(pairs) == 1 else None


class _Fields:
    """Case-insensitive multi-map of raw header-style fields, values unfolded."""

    def __init__(self, items: Iterable[tuple[str, str]]):
        self.items: list[tuple[str, str]] = []
        for name, value in items:
            v = unfold(value)
            if v is not None:
                self.items.append((name.strip().lower(), v))

    def all(self, name: str) -> list[str]:
        n = name.lower()
        return [v for k, v in self.items if k == n]

    def first(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def __bool__(self) -> bool:
        return bool(self.items)


def _raw_items(msg: Message) -> list[tuple[str, str]]:
    return [(k, str(v)) for k, v in msg.raw_items()]


def _fields_from_text(text: str) -> _Fields:
    block = text.lstrip("\r\n")
    return _Fields(_raw_items(HeaderParser(policy=email.policy.compat32).parsestr(block, headersonly=True)))


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, errors="replace")
        except LookupError:
            return payload.decode("utf-8", errors="replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _report_fields(part: Message) -> _Fields:
    """Fields of a message/feedback-report part, whatever way the parser stored its body."""
    payload = part.get_payload()
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    fields = _Fields([])
    if isinstance(payload, list):
        items: list[tuple[str, str]] = []
        for sub in payload:
            if isinstance(sub, Message):
                items.extend(_raw_items(sub))
        fields = _Fields(items)
        if not fields.first("feedback-type") and cte in {"base64", "quoted-printable"}:
            # A message/* part must not be encoded, but some generators do; the parser then saw
            # encoded text where headers should be. Decode the text and read the fields again.
            text = "".join(sub.as_string() for sub in payload if isinstance(sub, Message))
            try:
                decoded = (
                    base64.b64decode(re.sub(r"\s+", "", text))
                    if cte == "base64"
                    else quopri.decodestring(text.encode())
                )
                fields = _fields_from_text(decoded.decode("utf-8", errors="replace"))
            except (binascii.Error, ValueError):
                pass
    elif isinstance(payload, str):
        fields = _fields_from_text(_part_text(part) if cte in {"base64", "quoted-printable"} else payload)
    return fields


def _original_headers(msg: Message) -> tuple[_Fields | None, str | None]:
    """Headers of the attached original message and the content type they came from."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return _Fields(_raw_items(payload[0])), ctype
        if ctype == "text/rfc822-headers":
            return _fields_from_text(_part_text(part)), ctype
    return None, None


def _jmrp_original(msg: Message) -> tuple[_Fields | None, str | None]:
    """The original of a legacy JMRP report: the attached message carrying X-HmXmrOriginalRecipient."""
    headers, ctype = _original_headers(msg)
    if headers is not None and headers.first("x-hmxmroriginalrecipient"):
        return headers, ctype
    top = _Fields(_raw_items(msg))
    if top.first("x-hmxmroriginalrecipient"):
        return top, "inline"
    return None, None


def _quarantine(source_file: str, data: bytes, detail: str) -> QuarantineEntry:
    return QuarantineEntry(
        source_kind=SOURCE_KIND,
        source_file=source_file,
        source_line=None,
        byte_offset=None,
        reason="arf_unparseable",
        detail=detail,
        raw_text=data[:_RAW_TEXT_LIMIT].decode("utf-8", errors="replace"),
    )


def resolve_recipient(candidates: list[tuple[str, str | None]]) -> tuple[str | None, str | None, bool]:
    present = [(src, strip_angle(v)) for src, v in candidates if strip_angle(v)]
    for src, v in present:
        if v is not None and not is_redacted(v):
            return v, src, False
    if present:
        src, v = present[0]
        return v, src, True
    return None, None, False


def parse_arf(data: bytes, *, source_file: str) -> ArfReport | QuarantineEntry:
    """Parse one feedback report file. Anything that is not a usable report becomes a quarantine entry."""
    if not data or not data.strip():
        return _quarantine(source_file, data, "empty file")
    try:
        return _parse(data, source_file=source_file)
    except _Unusable as exc:
        return _quarantine(source_file, data, str(exc))
    except Exception as exc:  # a malformed report must never stop the folder; it is kept with its error
        return _quarantine(source_file, data, f"parser error: {type(exc).__name__}: {exc}")


class _Unusable(Exception):
    pass


def _parse(data: bytes, *, source_file: str) -> ArfReport:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    outer = _Fields(_raw_items(msg))
    if not outer:
        raise _Unusable("no message headers")
    report_part = next((p for p in msg.walk() if p.get_content_type() == "message/feedback-report"), None)

    if report_part is not None:
        fmt = "arf"
        fields = _report_fields(report_part)
        if not fields.first("feedback-type"):
            raise _Unusable("message/feedback-report part has no Feedback-Type field")
        original, original_part = _original_headers(msg)
    else:
        original, original_part = _jmrp_original(msg)
        if original is None:
            ctype = msg.get_content_type()
            raise _Unusable(
                f"no message/feedback-report part and no JMRP original (content type {ctype}, "
                f"report-type {msg.get_param('report-type')!s})"
            )
        fmt = "jmrp"
        fields = _Fields([])

    report_from = _first_address(outer.first("from"))
    report_subject = outer.first("subject")
    report_date = parse_date(outer.first("date"))

    if fmt == "arf":
        feedback_type = (fields.first("feedback-type") or "").lower() or None
        user_agent = fields.first("user-agent")
        version = fields.first("version")
    else:
        feedback_type = "abuse"  # JMRP reports are junk-button complaints
        user_agent = outer.first("x-mailer") or outer.first("user-agent") or "JMRP"
        version = None

    rmta_type = rmta = None
    if rm := fields.first("reporting-mta"):
        if ";" in rm:
            rmta_type, rmta = (s.strip() for s in rm.split(";", 1))
            rmta_type = rmta_type.lower() or None
        else:
            rmta = rm.strip()
        rmta = (rmta or "").lower().rstrip(".") or None
    reporting_domain = rmta or _domain_of(report_from)

    source_ip_raw = fields.first("source-ip")
    if source_ip_raw is None and fmt == "jmrp" and report_subject:
        m = _JMRP_SUBJECT_IP.search(report_subject)
        source_ip_raw = m.group(1) if m else None

    arrival_raw = fields.first("arrival-date") or fields.first("received-date")
    arrival = parse_date(arrival_raw)

    incidents = None
    if inc := fields.first("incidents"):
        try:
            incidents = int(inc.strip())
        except ValueError:
            incidents = None

    rcpt_to: list[str] = []
    for v in fields.all("original-rcpt-to"):
        for piece in v.split(","):
            if a := strip_angle(piece):
                rcpt_to.append(a)

    extensions: dict[str, list[str]] = {}
    for k, v in fields.items:
        if k not in _KNOWN_FIELDS:
            extensions.setdefault(k, []).append(v)

    o = original or _Fields([])
    x_kumoref = o.first("x-kumoref")
    trace = decode_kumoref(x_kumoref)
    trace_recipient = strip_angle(str(trace["recipient"])) if trace and trace.get("recipient") else None
    hm_recipient = o.first("x-hmxmroriginalrecipient")

    recipient, recipient_source, redacted = resolve_recipient(
        [("trace", trace_recipient)]
        + [("original_rcpt_to", a) for a in rcpt_to]
        + [("hotmail_original_recipient", hm_recipient)]
        + [("removal_recipient", a) for a in fields.all("removal-recipient")]
        + [("original_to", _single_address(o.first("to")))]
    )

    original_mail_from = strip_angle(fields.first("original-mail-from"))
    if original_mail_from is None and fmt == "jmrp":
        original_mail_from = strip_angle(o.first("return-path"))
    if fmt == "jmrp" and (pra := o.first("x-sid-pra")):
        extensions.setdefault("x-sid-pra", []).append(pra)

    complaint_time = report_date or arrival
    if complaint_time is None:
        raise _Unusable("no usable date: neither the report Date: nor Arrival-Date/Received-Date parse")

    return ArfReport(
        report_id=hashlib.sha256(data).hexdigest()[:32],
        source_file=source_file,
        report_format=fmt,
        feedback_type=feedback_type,
        user_agent=user_agent,
        version=version,
        report_date=report_date,
        report_from=report_from,
        report_subject=report_subject,
        reporting_mta_type=rmta_type,
        reporting_mta=rmta,
        reporting_domain=reporting_domain,
        source_ip=clean_ip(source_ip_raw),
        source_ip_raw=source_ip_raw,
        original_mail_from=original_mail_from,
        original_rcpt_to=rcpt_to,
        arrival_date=arrival,
        arrival_date_raw=arrival_raw,
        reported_domain=[d.lower().rstrip(".") for d in fields.all("reported-domain")],
        reported_uri=fields.all("reported-uri"),
        incidents=incidents,
        authentication_results=fields.all("authentication-results"),
        original_envelope_id=fields.first("original-envelope-id"),
        extensions=orjson.dumps(extensions, option=orjson.OPT_SORT_KEYS).decode() if extensions else None,
        original_part=original_part,
        original_message_id=normalise_message_id(o.first("message-id")),
        original_from=o.first("from"),
        original_to=o.first("to"),
        original_subject=o.first("subject"),
        original_date=parse_date(o.first("date")),
        original_return_path=strip_angle(o.first("return-path")),
        original_x_job=o.first("x-job"),
        x_kumoref=x_kumoref,
        supplemental_trace=orjson.dumps(trace, option=orjson.OPT_SORT_KEYS).decode() if trace else None,
        trace_recipient=trace_recipient,
        recipient=recipient,
        recipient_source=recipient_source,
        recipient_redacted=redacted,
        complaint_time=complaint_time,
    )


def original_message_headers(data: bytes | str | list[int] | None) -> dict[str, str]:
    """Selected headers (lower-case names) of an original message given as text, bytes or a byte array.

    KumoMTA logs ``feedback_report.original_message`` as a string, or (before 2026.06.23) as a
    JSON array of byte values.
    """
    if data is None:
        return {}
    if isinstance(data, list):
        try:
            raw = bytes(int(b) & 0xFF for b in data)
        except (TypeError, ValueError):
            return {}
    elif isinstance(data, str):
        raw = data.encode("utf-8", errors="replace")
    else:
        raw = data
    try:
        headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw, headersonly=True)
    except Exception:  # an unreadable original only loses the enrichment, never the complaint
        return {}
    out: dict[str, str] = {}
    for k, v in headers.raw_items():
        key = k.strip().lower()
        if key not in out and (val := unfold(str(v))):
            out[key] = val
    return out


def reports_frame(reports: list[ArfReport]) -> pl.DataFrame:
    rows = [asdict(r) for r in reports]
    return pl.DataFrame(rows, schema=ARF_SCHEMA) if rows else pl.DataFrame(schema=ARF_SCHEMA)


def quarantine_frame(entries: list[QuarantineEntry]) -> pl.DataFrame:
    rows = [asdict(q) for q in entries]
    return pl.DataFrame(rows, schema=QUARANTINE_SCHEMA) if rows else pl.DataFrame(schema=QUARANTINE_SCHEMA)


def parse_fbl_folder(folder: str | Path, landing_root: str | Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse every report file of ``folder`` (``landing/fbl``): (complaints_raw, quarantine).

    Files are read in path order; ``source_file`` is relative to ``landing_root``. Every file ends
    up in exactly one of the two frames (files = rows + quarantined).
    """
    folder = Path(folder)
    root = Path(landing_root)
    reports: list[ArfReport] = []
    rejected: list[QuarantineEntry] = []
    if folder.exists():
        paths = sorted(
            p
            for p in folder.rglob("*")
            if p.is_file() and p.suffix.lower() in FBL_SUFFIXES and not p.name.startswith(".")
        )
        for p in paths:
            rel = p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name
            result = parse_arf(p.read_bytes(), source_file=rel)
            (reports if isinstance(result, ArfReport) else rejected).append(result)  # type: ignore[arg-type]
    return reports_frame(reports).sort("source_file"), quarantine_frame(rejected).sort("source_file")
