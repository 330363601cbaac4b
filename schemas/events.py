"""The canonical event schema: one row per (message, recipient, event), both MTAs.

This module is the contract. Both ingests (PowerMTA accounting CSV, KumoMTA JSON logs) write
exactly these columns in this order with these types; everything downstream reads them.
The mapping of every source record type and field is documented in ``schemas/docs/``
(``pmta_mapping.md`` for PowerMTA accounting files).
"""

from __future__ import annotations

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")

MTAS: tuple[str, ...] = ("pmta", "kumo")

EVENT_TYPES: tuple[str, ...] = (
    "received",
    "delivered",
    "deferred",
    "bounced",
    "expired",
    "queue_deferred",
    "remote_bounce",
    "remote_status",
    "complaint",
    "rejected",
    "admin_bounce",
    "other",
)

# Failure-like event types: the rows the bounce taxonomy classifies.
FAILURE_EVENT_TYPES: tuple[str, ...] = (
    "bounced",
    "expired",
    "deferred",
    "queue_deferred",
    "remote_bounce",
    "rejected",
    "admin_bounce",
)

# PowerMTA accounting `type` column -> canonical event_type. A `b` whose bounceCat is
# `message-expired` becomes `expired` (PowerMTA has no separate expiry record).
PMTA_RECORD_TYPES: dict[str, str] = {
    "r": "received",
    "d": "delivered",
    "t": "deferred",
    "tq": "queue_deferred",
    "b": "bounced",
    "rb": "remote_bounce",
    "rs": "remote_status",
    "f": "complaint",
}

# KumoMTA log record `type` -> canonical event_type. Unknown types become `other`.
KUMO_RECORD_TYPES: dict[str, str] = {
    "Reception": "received",
    "Delivery": "delivered",
    "TransientFailure": "deferred",
    "Delayed": "queue_deferred",
    "Bounce": "bounced",
    "Expiration": "expired",
    "AdminBounce": "admin_bounce",
    "OOB": "remote_bounce",
    "Feedback": "complaint",
    "Rejection": "rejected",
    "AdminRebind": "other",
    "DeferredInjectionRebind": "other",
    "XferOut": "other",
    "XferIn": "other",
}

# name -> (dtype, doc). Order is the physical column order of every events file.
EVENT_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "event_id": (pl.String(), "deterministic id: hex digest of (mta, source content key); unique per event"),
    "mta": (pl.String(), "`pmta` or `kumo`"),
    "event_type": (pl.String(), "canonical type, one of EVENT_TYPES"),
    "raw_type": (pl.String(), "the source record type as written (`d`, `tq`, `Delivery`, ...)"),
    "event_time": (
        UTC_TS,
        "when the event happened (PowerMTA timeLogged, KumoMTA event_time/timestamp), UTC",
    ),
    "queued_time": (UTC_TS, "when the message was queued (timeQueued, created_time/created), UTC"),
    "sender": (pl.String(), "envelope sender (orig / sender)"),
    "sender_domain": (pl.String(), "domain of sender, lower-case, IDNA"),
    "recipient": (pl.String(), "envelope recipient (rcpt / recipient); one row per recipient"),
    "recipient_domain": (pl.String(), "domain of recipient, lower-case, IDNA (never from the queue name)"),
    "pool": (pl.String(), "VMTA pool / egress pool"),
    "source": (pl.String(), "VMTA / egress source"),
    "source_ip": (pl.String(), "local source IP (dlvSourceIp / source_address ip)"),
    "mx_host": (
        pl.String(),
        "remote MTA host name (dsnMta host / peer_address.name), lower-case, no trailing dot",
    ),
    "mx_ip": (pl.String(), "remote MTA IP (dsnMta ip / peer_address.addr)"),
    "smtp_code": (pl.Int16(), "SMTP reply code (dsnDiag `smtp;NNN` / response.code)"),
    "enhanced_status": (pl.String(), "enhanced status `x.y.z`"),
    "response": (pl.String(), "reply text without code and enhanced status"),
    "raw_bounce_category": (pl.String(), "bounceCat / bounce_classification as written"),
    "job_id": (pl.String(), "PowerMTA jobId / header x-job; KumoMTA meta job id if present"),
    "campaign": (pl.String(), "campaign (KumoMTA queue `campaign:`; PowerMTA from job/header)"),
    "tenant": (pl.String(), "tenant (KumoMTA queue `tenant@`; PowerMTA from header)"),
    "message_id": (pl.String(), "PowerMTA header_Message-Id; KumoMTA spool `id`"),
    "size_bytes": (pl.Int64(), "message size in bytes"),
    "attempts": (pl.Int32(), "delivery attempts so far (KumoMTA num_attempts)"),
    "tls_protocol": (pl.String(), "negotiated TLS protocol"),
    "tls_cipher": (pl.String(), "negotiated TLS cipher"),
    "node": (pl.String(), "the MTA node that wrote the record"),
    "extra": (pl.String(), "JSON object of every other source field, kept losslessly"),
    "source_file": (pl.String(), "landing file the row came from (path relative to the landing root)"),
    "source_line": (pl.Int64(), "1-based line number (CSV line / JSON line) in the decompressed file"),
}

EVENT_SCHEMA: pl.Schema = pl.Schema({name: dtype for name, (dtype, _doc) in EVENT_COLUMNS.items()})


# Columns the per-file raw layer stores dictionary-encoded: the ones an ingest derives once per distinct
# source value, so it holds their codes already, and a Parquet dictionary column written from codes costs a
# fraction of hashing the strings again (columns passed through as read are written plain: hashing them
# would cost more than it saves). The values are the canonical strings; `conform` casts them back to String.
RAW_DICTIONARY_COLUMNS: tuple[str, ...] = (
    "mta",
    "event_type",
    "raw_type",
    "sender_domain",
    "recipient_domain",
    "mx_host",
    "mx_ip",
    "enhanced_status",
    "node",
    "extra",
    "source_file",
)


def empty_events() -> pl.DataFrame:
    """An empty frame with the canonical schema."""
    return pl.DataFrame(schema=EVENT_SCHEMA)


def conform(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Select and cast to the canonical columns in canonical order (missing columns become null)."""
    names = set(frame.collect_schema().names())
    return frame.select(
        [
            (pl.col(name) if name in names else pl.lit(None)).cast(dtype).alias(name)
            for name, dtype in EVENT_SCHEMA.items()
        ]
    )
