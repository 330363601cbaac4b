"""Contracts of the provider tables: rates, deferral signatures, warm-up state, recipient domains.

Every table is documented column by column here; ``schemas/docs/rates.md`` explains the choices
(denominators, percentile definition, signature templating, warm-up trend).
"""

from __future__ import annotations

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")

# Grouping keys shared by provider_rates_hourly / provider_rates_daily.
RATE_KEYS: tuple[str, ...] = ("provider", "pool", "source", "source_ip", "mta")

# Event types that are one delivery outcome for one recipient at one MTA. Their sum is the
# denominator `attempts` of delivery/deferral/bounce/expiry rates.
ATTEMPT_EVENT_TYPES: tuple[str, ...] = ("delivered", "deferred", "bounced", "expired")

# bounces.consequence value (the bounce taxonomy's vocabulary, mtashift.taxonomy.CONSEQUENCES,
# compared case-insensitively) -> bounced_* column. Anything else, or no classification, counts as
# bounced_unclassified; nothing is guessed from the SMTP code.
CONSEQUENCE_COLUMNS: dict[str, str] = {
    "suppress": "bounced_suppress",
    "retry-then-suppress": "bounced_retry",
    "retry": "bounced_retry",
    "statistical": "bounced_statistical",
}
UNCLASSIFIED_COLUMN = "bounced_unclassified"

# Percentiles of queue-to-delivery latency, computed with polars
# `quantile(q, interpolation="linear")` (numpy's default / Hyndman-Fan type 7, DuckDB quantile_cont).
LATENCY_QUANTILES: dict[str, float] = {"latency_p50_s": 0.50, "latency_p95_s": 0.95, "latency_p99_s": 0.99}

_RATE_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "provider": (pl.String(), "mailbox provider (schemas/providers.yaml), never null"),
    "pool": (pl.String(), "VMTA pool / egress pool as logged (null when the event carries none)"),
    "source": (pl.String(), "VMTA / egress source as logged"),
    "source_ip": (pl.String(), "local source IP"),
    "mta": (pl.String(), "`pmta` or `kumo`"),
    "attempts": (
        pl.Int64(),
        "delivered + deferred + bounced + expired events: every per-recipient delivery outcome the MTA "
        "logged in the period (one per SMTP try for deferred; terminal otherwise). DENOMINATOR of "
        "delivery_rate, deferral_rate, bounce_rate, expiry_rate",
    ),
    "delivered": (pl.Int64(), "delivered events. DENOMINATOR of complaint_rate"),
    "deferred": (pl.Int64(), "deferred events (PowerMTA `t`, KumoMTA TransientFailure): failed tries"),
    "bounced": (pl.Int64(), "bounced events (PowerMTA `b` other than message-expired, KumoMTA Bounce)"),
    "bounced_suppress": (pl.Int64(), "bounced events whose bounces.consequence is `suppress`"),
    "bounced_retry": (
        pl.Int64(),
        "bounced events whose bounces.consequence is `retry-then-suppress` (or `retry`)",
    ),
    "bounced_statistical": (pl.Int64(), "bounced events whose bounces.consequence is `statistical`"),
    "bounced_unclassified": (
        pl.Int64(),
        "bounced events with no bounces row, or another consequence, or no bounces partition for the day",
    ),
    "expired": (pl.Int64(), "expired events (message aged out of the queue)"),
    "queue_deferred": (
        pl.Int64(),
        "queue_deferred events (PowerMTA `tq`, KumoMTA Delayed): queue-level delays, not in attempts",
    ),
    "remote_bounced": (
        pl.Int64(),
        "remote_bounce events (asynchronous DSNs after acceptance): counted on arrival, not in attempts",
    ),
    "complaints": (
        pl.Int64(),
        "complaint events, counted in the period they arrive and under their own pool/source/ip/mta "
        "(null when the report does not name them)",
    ),
    "delivery_rate": (pl.Float64(), "delivered / attempts (null when attempts = 0)"),
    "deferral_rate": (pl.Float64(), "deferred / attempts (null when attempts = 0)"),
    "bounce_rate": (pl.Float64(), "bounced / attempts (null when attempts = 0)"),
    "expiry_rate": (pl.Float64(), "expired / attempts (null when attempts = 0)"),
    "complaint_rate": (
        pl.Float64(),
        "complaints / delivered of the same group and period (null when delivered = 0); an arrival-time "
        "approximation, so it can exceed 1 in a small group",
    ),
    "latency_samples": (pl.Int64(), "delivered events with a queued_time (the percentiles' population)"),
    "latency_p50_s": (
        pl.Float64(),
        "median seconds from queued_time to delivery (event_time), linear interpolation",
    ),
    "latency_p95_s": (pl.Float64(), "95th percentile of the same, linear interpolation"),
    "latency_p99_s": (pl.Float64(), "99th percentile of the same, linear interpolation"),
    "attempts_per_delivered": (
        pl.Float64(),
        "(delivered + deferred) / delivered: SMTP tries (successful + transiently failed) per delivered "
        "message in the group and period (null when delivered = 0)",
    ),
    "peak_delivered_per_minute": (
        pl.Int64(),
        "largest number of delivered events in one UTC clock minute within the period",
    ),
    "last_attempt_time": (UTC_TS, "latest event_time among the group's attempts (null without attempts)"),
    "consequence_source": (
        pl.String(),
        "`bounces` when the day's bounces partition classified the bounces, `none` when it was absent",
    ),
}

PROVIDER_RATES_DAILY_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "day": (pl.Date(), "UTC day of event_time"),
    **_RATE_COLUMNS,
}
PROVIDER_RATES_HOURLY_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "day": (pl.Date(), "UTC day of event_time"),
    "hour": (UTC_TS, "start of the UTC hour of event_time"),
    **_RATE_COLUMNS,
}
PROVIDER_RATES_DAILY_SCHEMA = pl.Schema({k: t for k, (t, _) in PROVIDER_RATES_DAILY_COLUMNS.items()})
PROVIDER_RATES_HOURLY_SCHEMA = pl.Schema({k: t for k, (t, _) in PROVIDER_RATES_HOURLY_COLUMNS.items()})

# Rates the blocking [0, 1] check covers (complaint_rate is only warned about: see its doc).
BOUNDED_RATES: tuple[str, ...] = ("delivery_rate", "deferral_rate", "bounce_rate", "expiry_rate")

# ----------------------------------------------------------------------------- deferral signatures

DEFERRAL_EVENT_TYPES: tuple[str, ...] = ("deferred", "queue_deferred")

DEFERRAL_SIGNATURES_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "day": (pl.Date(), "UTC day of the deferrals"),
    "provider": (pl.String(), "mailbox provider"),
    "smtp_code": (pl.Int16(), "4xx reply code"),
    "enhanced_status": (pl.String(), "enhanced status as logged (may be null)"),
    "template": (pl.String(), "reply text with variable parts replaced by placeholders (docs/rates.md)"),
    "count": (pl.Int64(), "deferrals of the day with this signature"),
    "share": (pl.Float64(), "count / the provider's 4xx deferrals of the day"),
    "first_seen": (UTC_TS, "earliest event_time of the day with this signature"),
    "last_seen": (UTC_TS, "latest event_time of the day with this signature"),
    "pools": (pl.List(pl.String()), "sorted distinct pools affected (nulls dropped)"),
    "source_ips": (pl.List(pl.String()), "sorted distinct source IPs affected (nulls dropped)"),
    "mtas": (pl.List(pl.String()), "sorted distinct MTAs that logged it"),
    "example": (pl.String(), "one raw reply text (earliest event; untrusted: escape before display)"),
}
DEFERRAL_SIGNATURES_SCHEMA = pl.Schema({k: t for k, (t, _) in DEFERRAL_SIGNATURES_COLUMNS.items()})

# ----------------------------------------------------------------------------- warm-up

WARMUP_WINDOW_DAYS = 7

WARMUP_DAILY_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "source_ip": (pl.String(), "local source IP"),
    "provider": (pl.String(), "mailbox provider"),
    "day": (pl.Date(), "UTC day"),
    "delivered": (
        pl.Int64(),
        "delivered events of the IP to the provider that day (0-filled between first and last day)",
    ),
    "attempts": (pl.Int64(), "attempts (see provider_rates) that day"),
    "deferred": (pl.Int64(), "deferred events that day"),
}
WARMUP_DAILY_SCHEMA = pl.Schema({k: t for k, (t, _) in WARMUP_DAILY_COLUMNS.items()})

WARMUP_STATE_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "source_ip": (pl.String(), "local source IP"),
    "provider": (pl.String(), "mailbox provider"),
    "first_day": (pl.Date(), "first UTC day the IP made an attempt to the provider"),
    "last_day": (pl.Date(), "last UTC day the IP made an attempt to the provider"),
    "as_of": (pl.Date(), "the last day present in the whole lake's history (the window ends here)"),
    "days_active": (pl.Int64(), "days with at least one attempt"),
    "sustained_level": (
        pl.Int64(),
        "max daily delivered over the 7 days ending at as_of (0-filled), the level the IP has proven",
    ),
    "trend_slope": (
        pl.Float64(),
        "least-squares slope (numpy.polyfit, degree 1) of daily delivered over the 7 days ending at "
        "as_of, 0-filled (days before first_day count as 0), in messages/day per day",
    ),
    "trend_ratio": (
        pl.Float64(),
        "mean delivered of the last 3 days / mean of the 4 days before (window ending at as_of); null "
        "when the earlier mean is 0",
    ),
    "delivered_total": (pl.Int64(), "delivered over the whole history"),
    "delivered_history": (pl.List(pl.Int64()), "daily delivered from first_day to as_of, 0-filled"),
    "mta_last_seen": (
        pl.String(),
        "mta of the IP's latest attempt to the provider (latest last_attempt_time; ties: alphabetically last)",
    ),
}
WARMUP_STATE_SCHEMA = pl.Schema({k: t for k, (t, _) in WARMUP_STATE_COLUMNS.items()})


def schema_doc(columns: dict[str, tuple[pl.DataType, str]]) -> str:
    """A markdown table of a table's columns (for asset descriptions and docs)."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {dtype} | {doc} |" for name, (dtype, doc) in columns.items()]
    return "\n".join(lines)
