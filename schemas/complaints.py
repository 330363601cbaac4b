"""Complaint tables: parsed FBL reports, deduplicated complaints, complaint rates.

- ``complaints_raw`` (LAKE/raw/fbl/complaints_raw.parquet): one row per parseable ARF/JMRP file
  of ``landing/fbl/``; unparseable files go to LAKE/quarantine/fbl/ (reason ``arf_unparseable``).
- ``complaints`` (LAKE/complaints/date=YYYY-MM-DD/): one row per distinct complaint whose
  complaint_time falls on the UTC day, whatever route(s) it arrived by.
- ``complaint_rates`` (LAKE/complaint_rates/date=YYYY-MM-DD/): per (day, provider, sender_domain),
  complaints over deliveries of the same day, flagged against ``schemas/complaint_thresholds.yaml``.
"""

from __future__ import annotations

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")
STR_LIST = pl.List(pl.String())

# How a complaint reached us.
ROUTES: tuple[str, ...] = ("pmta_f", "kumo_feedback", "arf_mail")
# How a complaint was tied to the delivery it complains about.
MATCHED_BY: tuple[str, ...] = ("message_id", "recipient_time")
# What the complaint identity was built from (strongest first), see mtashift/complaints.py.
IDENTITY_BASES: tuple[str, ...] = ("recipient+message_id", "recipient+day", "message_id", "report")
RATE_STATUSES: tuple[str, ...] = ("ok", "warn", "critical", "no_deliveries")

# Where a recipient value of an ARF report came from (first usable wins, in this order).
RECIPIENT_SOURCES: tuple[str, ...] = (
    "trace",  # X-KumoRef supplemental trace header of the attached original (our own header)
    "original_rcpt_to",  # ARF Original-Rcpt-To
    "hotmail_original_recipient",  # X-HmXmrOriginalRecipient (Microsoft JMRP)
    "removal_recipient",  # Removal-Recipient extension field
    "original_to",  # To: of the attached original, when it is a single plain address
)

ARF_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "report_id": (pl.String(), "sha256 of the file bytes (first 32 hex): identical files share it"),
    "source_file": (pl.String(), "file path relative to the landing root"),
    "report_format": (pl.String(), "`arf` (RFC 5965 multipart/report) or `jmrp` (legacy Microsoft report)"),
    "feedback_type": (
        pl.String(),
        "Feedback-Type, lower case (abuse, fraud, virus, other, not-spam, auth-failure)",
    ),
    "user_agent": (pl.String(), "User-Agent of the report generator"),
    "version": (pl.String(), "Version field as written"),
    "report_date": (UTC_TS, "Date: of the report message, UTC"),
    "report_from": (pl.String(), "address in From: of the report message"),
    "report_subject": (pl.String(), "Subject: of the report message"),
    "reporting_mta_type": (pl.String(), "Reporting-MTA type (`dns`)"),
    "reporting_mta": (pl.String(), "Reporting-MTA name, lower case"),
    "reporting_domain": (pl.String(), "Reporting-MTA name, else the domain of the report's From:"),
    "source_ip": (pl.String(), "Source-IP when it is a valid IP address (normalised), else null"),
    "source_ip_raw": (pl.String(), "Source-IP as written (may be redacted, e.g. `x.x.x.x`)"),
    "original_mail_from": (pl.String(), "Original-Mail-From without angle brackets"),
    "original_rcpt_to": (STR_LIST, "every Original-Rcpt-To value, angle brackets removed, as written"),
    "arrival_date": (UTC_TS, "Arrival-Date (or Received-Date), UTC; RFC 2822 incl. obsolete forms"),
    "arrival_date_raw": (pl.String(), "Arrival-Date / Received-Date as written"),
    "reported_domain": (STR_LIST, "Reported-Domain values"),
    "reported_uri": (STR_LIST, "Reported-URI values"),
    "incidents": (pl.Int64(), "Incidents"),
    "authentication_results": (STR_LIST, "Authentication-Results values"),
    "original_envelope_id": (pl.String(), "Original-Envelope-Id"),
    "extensions": (pl.String(), "JSON object: every other report field, name (lower case) -> list of values"),
    "original_part": (
        pl.String(),
        "content type of the attached original (message/rfc822, text/rfc822-headers) or null",
    ),
    "original_message_id": (pl.String(), "Message-ID of the attached original, angle brackets removed"),
    "original_from": (pl.String(), "From: of the attached original"),
    "original_to": (pl.String(), "To: of the attached original"),
    "original_subject": (pl.String(), "Subject: of the attached original"),
    "original_date": (UTC_TS, "Date: of the attached original, UTC"),
    "original_return_path": (pl.String(), "Return-Path of the attached original, without angle brackets"),
    "original_x_job": (pl.String(), "X-Job header of the attached original (PowerMTA job id)"),
    "x_kumoref": (pl.String(), "X-KumoRef header of the attached original, as written"),
    "supplemental_trace": (pl.String(), "X-KumoRef decoded: JSON object (recipient + configured meta)"),
    "trace_recipient": (pl.String(), "recipient from the decoded X-KumoRef"),
    "recipient": (
        pl.String(),
        "the complaining recipient: first usable of RECIPIENT_SOURCES, else the first candidate as written",
    ),
    "recipient_source": (pl.String(), "one of RECIPIENT_SOURCES, null when no candidate exists"),
    "recipient_redacted": (
        pl.Boolean(),
        "true when `recipient` is redacted/hashed/not an address (kept as written)",
    ),
    "complaint_time": (UTC_TS, "report Date:, else Arrival-Date: the time the complaint is counted at"),
}
ARF_SCHEMA: pl.Schema = pl.Schema({n: t for n, (t, _d) in ARF_COLUMNS.items()})

COMPLAINT_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "complaint_id": (pl.String(), "sha256 (32 hex) of the complaint identity: unique, deterministic"),
    "complaint_time": (
        UTC_TS,
        "earliest time any route recorded the complaint, UTC; its date is the partition",
    ),
    "feedback_type": (pl.String(), "ARF Feedback-Type, lower case"),
    "reporting_provider": (
        pl.String(),
        "provider that sent the report (from Reporting-MTA / report sender / User-Agent)",
    ),
    "reporting_domain": (pl.String(), "Reporting-MTA host or report sender domain"),
    "user_agent": (pl.String(), "report generator"),
    "recipient": (pl.String(), "complaining recipient (report, trace header, or the matched delivery)"),
    "recipient_domain": (pl.String(), "domain of recipient, lower case"),
    "recipient_redacted": (pl.Boolean(), "the reported recipient was redacted and no delivery supplied it"),
    "sender": (pl.String(), "envelope sender of the original (matched delivery, else Original-Mail-From)"),
    "sender_domain": (pl.String(), "domain of sender, lower case"),
    "source_ip": (pl.String(), "our IP that sent the original (matched delivery, else report Source-IP)"),
    "reported_domain": (pl.String(), "first Reported-Domain"),
    "message_id": (pl.String(), "message_id of the matched delivery event, else the original's Message-ID"),
    "original_message_id": (
        pl.String(),
        "Message-ID of the original message as reported (no angle brackets)",
    ),
    "job_id": (pl.String(), "job id (delivery, else trace meta / X-Job)"),
    "campaign": (pl.String(), "campaign (delivery, else trace meta)"),
    "tenant": (pl.String(), "tenant (delivery, else trace meta)"),
    "pool": (pl.String(), "pool of the matched delivery"),
    "source": (pl.String(), "VMTA / egress source of the matched delivery"),
    "mta": (pl.String(), "MTA of the matched delivery, else the MTA that logged the complaint"),
    "provider": (
        pl.String(),
        "recipient's mailbox provider (matched delivery's, else from the recipient domain)",
    ),
    "delivery_event_id": (pl.String(), "event_id of the matched delivery"),
    "delivery_time": (UTC_TS, "event_time of the matched delivery"),
    "routes": (STR_LIST, "sorted distinct routes the complaint arrived by (subset of ROUTES)"),
    "route_rows": (
        pl.Int32(),
        "rows merged into this complaint (>1: same complaint by several routes/copies)",
    ),
    "matched_by": (pl.String(), "`message_id` | `recipient_time` | null (no delivery found)"),
    "identity_basis": (pl.String(), "one of IDENTITY_BASES: what complaint_id was computed from"),
}
COMPLAINT_SCHEMA: pl.Schema = pl.Schema({n: t for n, (t, _d) in COMPLAINT_COLUMNS.items()})

COMPLAINT_RATE_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "day": (pl.Date(), "UTC day of the complaints and of the deliveries (same day)"),
    "provider": (pl.String(), "recipient's mailbox provider"),
    "sender_domain": (pl.String(), "envelope sender domain"),
    "complaints": (pl.Int64(), "distinct complaints of the day (complaints table)"),
    "delivered": (
        pl.Int64(),
        "denominator: delivered events to that provider from that sender domain that day",
    ),
    "complaint_rate": (pl.Float64(), "complaints / delivered; null when delivered = 0"),
    "warn_threshold": (pl.Float64(), "rate at or above which status is `warn`"),
    "critical_threshold": (pl.Float64(), "rate at or above which status is `critical`"),
    "status": (pl.String(), "ok | warn | critical | no_deliveries"),
    "low_volume": (
        pl.Boolean(),
        "delivered below the thresholds file's min_delivered: read the rate with care",
    ),
}
COMPLAINT_RATE_SCHEMA: pl.Schema = pl.Schema({n: t for n, (t, _d) in COMPLAINT_RATE_COLUMNS.items()})

# User-Agent / report-sender hints -> provider, used when the reporting host says nothing
# (Yahoo's reports carry no Reporting-MTA; Return Path relays Comcast's with `Source: Comcast`).
REPORTING_AGENT_PROVIDERS: tuple[tuple[str, str], ...] = (
    (r"(?i)yahoo|aol", "yahoo"),
    (r"(?i)hotmail|outlook|msn|jmrp|microsoft", "microsoft"),
    (r"(?i)comcast", "comcast"),
    (r"(?i)google|gmail", "google"),
    (r"(?i)apple|icloud", "apple"),
    (r"(?i)\bgmx\b|web\.de", "gmx"),
    (r"(?i)orange|wanadoo", "orange"),
    (r"(?i)mimecast", "mimecast"),
)
