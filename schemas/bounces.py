"""The `bounces` table and the classifier report tables.

`bounces` (LAKE/bounces/date=YYYY-MM-DD/): one row per failure event of the UTC day
(event_type in FAILURE_EVENT_TYPES), both MTAs, with the unified category of
``schemas/bounce_taxonomy.yaml`` and the rule that decided it (``schemas/classifier_rules.yaml``).
The classifier report tables are daily too (LAKE/<table>/date=YYYY-MM-DD/).
"""

from __future__ import annotations

import polars as pl

from schemas.events import EVENT_SCHEMA, FAILURE_EVENT_TYPES

UTC_TS = pl.Datetime("us", "UTC")

# Event columns carried over unchanged (dtype from the canonical schema).
_EVENT_KEYS: tuple[str, ...] = (
    "event_id",
    "mta",
    "event_type",
    "event_time",
    "recipient",
    "recipient_domain",
    "sender_domain",
    "pool",
    "source",
    "source_ip",
    "mx_host",
)
_EVENT_KEYS_2: tuple[str, ...] = (
    "smtp_code",
    "enhanced_status",
    "response",
    "raw_bounce_category",
    "tenant",
    "campaign",
    "job_id",
    "message_id",
)

BOUNCE_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    **{name: (EVENT_SCHEMA[name], "as in events") for name in _EVENT_KEYS},
    "provider": (
        pl.String(),
        "mailbox provider (mtashift.providers closed set; null when no provider map ran)",
    ),
    **{name: (EVENT_SCHEMA[name], "as in events") for name in _EVENT_KEYS_2},
    "raw_category": (
        pl.String(),
        "raw_bounce_category mapped onto the taxonomy; null when blank, `other` when unknown",
    ),
    "classifier_category": (pl.String(), "what the classifier rules say, for every row (agreement reports)"),
    "classifier_rule": (pl.String(), "id of the classifier rule that matched (`catch-all` when none did)"),
    "category": (pl.String(), "unified category: raw_category when informative, else classifier_category"),
    "consequence": (pl.String(), "suppress | retry-then-suppress | statistical (from the taxonomy)"),
    "rule": (pl.String(), "classifier rule id, or `raw:<label>` when the category came from the raw label"),
}
BOUNCE_SCHEMA: pl.Schema = pl.Schema({n: t for n, (t, _d) in BOUNCE_COLUMNS.items()})

# classifier_stats: one row per (day, provider, mta).
CLASSIFIER_STATS_SCHEMA: pl.Schema = pl.Schema(
    {
        "day": pl.Date(),
        "provider": pl.String(),
        "mta": pl.String(),
        "failures": pl.Int64(),  # bounce rows
        "classified_by_raw": pl.Int64(),  # category taken from the MTA's own informative label
        "classified_by_rules": pl.Int64(),  # category from a classifier rule other than the catch-all
        "unclassified": pl.Int64(),  # category `other`
        "unclassified_rate": pl.Float64(),  # unclassified / failures
    }
)

# rule_hits: one row per (day, provider, mta, rule) that decided at least one row's category.
RULE_HITS_SCHEMA: pl.Schema = pl.Schema(
    {
        "day": pl.Date(),
        "provider": pl.String(),
        "mta": pl.String(),
        "rule": pl.String(),
        "category": pl.String(),
        "hits": pl.Int64(),
    }
)

# unmatched_replies: the most frequent reply templates among rows left `other`, per (day, provider).
UNMATCHED_REPLIES_SCHEMA: pl.Schema = pl.Schema(
    {
        "day": pl.Date(),
        "provider": pl.String(),
        "rank": pl.Int32(),  # 1 = most frequent
        "smtp_code": pl.Int16(),
        "enhanced_status": pl.String(),
        "template": pl.String(),  # response with addresses, URLs, IPs, host names, ids and numbers replaced
        "failures": pl.Int64(),
        "example": pl.String(),  # one raw response of the template (earliest event); untrusted text
    }
)
UNMATCHED_TOP_N = 20

# category_agreement: rows whose MTA gave a raw label, counted by (raw mapped category × classifier).
CATEGORY_AGREEMENT_SCHEMA: pl.Schema = pl.Schema(
    {
        "day": pl.Date(),
        "mta": pl.String(),
        "provider": pl.String(),
        "raw_bounce_category": pl.String(),  # the label as written (bounceCat / bounce_classification)
        "raw_category": pl.String(),
        "classifier_category": pl.String(),
        "agree": pl.Boolean(),
        "rows": pl.Int64(),
    }
)

__all__ = [
    "BOUNCE_COLUMNS",
    "BOUNCE_SCHEMA",
    "CATEGORY_AGREEMENT_SCHEMA",
    "CLASSIFIER_STATS_SCHEMA",
    "FAILURE_EVENT_TYPES",
    "RULE_HITS_SCHEMA",
    "UNMATCHED_REPLIES_SCHEMA",
    "UNMATCHED_TOP_N",
]
