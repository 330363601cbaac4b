"""Deferral signatures: 4xx replies per provider reduced to templates, counted per day.

A template is the reply text with its variable parts replaced by placeholders, so the thousands
of ``421 4.7.0 [TSS04] Messages from 203.0.113.7 temporarily deferred …`` lines of a day collapse
into one row per provider × code × enhanced status × template. Provider codes that identify the
cause (``TSS04``, ``RL000010``, ``S3150``, ``4.7.28``) are deliberately kept.
"""

from __future__ import annotations

import polars as pl

from mtashift.providers import ProviderMap, add_provider, domain_mx_map
from schemas.rates import DEFERRAL_EVENT_TYPES, DEFERRAL_SIGNATURES_SCHEMA

# (pattern, replacement), applied in order with polars `str.replace_all` (Rust regex syntax).
# Order matters: URLs and addresses first, so the IPs and numbers inside them are not templated
# piecemeal; enhanced status codes are shielded before bare numbers are replaced.
_SHIELD_L, _SHIELD_M = "ESCQZ", "QZQ"
TEMPLATE_RULES: tuple[tuple[str, str], ...] = (
    # URL query strings (tracking ids, IPs, tokens): keep scheme/host/path.
    (r"(?i)\b(https?://[^\s?#<>\"']+)\?[^\s<>\"']*", "${1}?<query>"),
    (r"(?i)\b[a-z0-9._%+\-]+@[a-z0-9.\-]+\.[a-z]{2,}\b", "<email>"),
    # ISO-8601 timestamps (Microsoft puts one in every reply).
    (r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?", "<ts>"),
    # Host names whose first label carries a digit (per-server names such as mta6.am0.yahoodns.net,
    # BN8NAM12FT041.eop-nam12.prod.protection.outlook.com); support.google.com stays readable.
    (r"(?i)\b[a-z0-9\-]*[0-9][a-z0-9\-]*(?:\.[a-z0-9\-]+)+\.[a-z]{2,}\b", "<host>"),
    # IPv6: full form, or any compressed form with `::` (optionally IPv4-mapped).
    (r"(?i)\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b", "<ip>"),
    (
        r"(?i)(?:[0-9a-f]{1,4}:)*[0-9a-f]{0,4}::(?:[0-9a-f]{1,4}:)*(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f]{1,4})?",
        "<ip>",
    ),
    (r"\b\d{1,3}(?:\.\d{1,3}){3}\b", "<ip>"),
    (r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<id>"),
    (r"(?i)\b[0-9a-f]{8,}\b", "<id>"),
    # Mixed letter/digit tokens of 9+ characters (queue ids such as a640si2003528pls); short
    # provider codes (TSS04, RL000010, S3150) are shorter and survive.
    (r"(?i)\b(?:[a-z]+[0-9]+|[0-9]+[a-z]+)[a-z0-9]{7,}\b", "<id>"),
    (
        r"\b([245])\.(\d{1,3})\.(\d{1,3})\b",
        _SHIELD_L + "${1}" + _SHIELD_M + "${2}" + _SHIELD_M + "${3}" + _SHIELD_L,
    ),
    (r"\b\d+(?:[.,]\d+)*\b", "<n>"),
    (_SHIELD_L + r"(\d)" + _SHIELD_M + r"(\d+)" + _SHIELD_M + r"(\d+)" + _SHIELD_L, "${1}.${2}.${3}"),
    (r"\s+", " "),
)

TEMPLATE_MAX_CHARS = 500


def template_expr(text: pl.Expr | str = "response") -> pl.Expr:
    """The reply template of a text column (vectorised; null stays null)."""
    expr = pl.col(text) if isinstance(text, str) else text
    for pattern, replacement in TEMPLATE_RULES:
        expr = expr.str.replace_all(pattern, replacement)
    return expr.str.strip_chars().str.slice(0, TEMPLATE_MAX_CHARS)


def template_of(text: str | None) -> str | None:
    """Template of one reply (the same expression, for tests and ad-hoc use)."""
    return pl.DataFrame({"t": [text]}, schema={"t": pl.String}).select(template_expr("t")).item()


def deferral_signatures(
    *,
    events: pl.LazyFrame,
    domain_map: pl.LazyFrame | None = None,
    pmap: ProviderMap | None = None,
) -> pl.LazyFrame:
    """One row per day × provider × smtp_code × enhanced_status × template (DEFERRAL_SIGNATURES_SCHEMA).

    Input rows: deferred / queue_deferred events with a 4xx smtp_code. ``share`` is the row's
    count over all such deferrals of the provider that day. Sorted by day, provider, count
    descending, then the template, for stable bytes.
    """
    names = events.collect_schema().names()
    frame = events.filter(
        pl.col("event_type").is_in(DEFERRAL_EVENT_TYPES) & pl.col("smtp_code").is_between(400, 499)
    )
    if "provider" not in names:
        dm = domain_map if domain_map is not None else domain_mx_map(events=events, pmap=pmap)
        frame = add_provider(frame, domain_map=dm, pmap=pmap)
    keys = ["day", "provider", "smtp_code", "enhanced_status", "template"]
    sig = (
        frame.with_columns(
            pl.col("event_time").dt.date().alias("day"),
            template_expr(pl.col("response").fill_null("")).alias("template"),
        )
        .sort(["event_time", "event_id"], nulls_last=True)
        .group_by(keys, maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64).alias("count"),
            pl.col("event_time").min().alias("first_seen"),
            pl.col("event_time").max().alias("last_seen"),
            pl.col("pool").drop_nulls().unique().sort().alias("pools"),
            pl.col("source_ip").drop_nulls().unique().sort().alias("source_ips"),
            pl.col("mta").drop_nulls().unique().sort().alias("mtas"),
            pl.col("response").first().alias("example"),
        )
        .with_columns(
            (pl.col("count") / pl.col("count").sum().over(["day", "provider"])).alias("share"),
        )
    )
    return sig.select([pl.col(n).cast(t) for n, t in DEFERRAL_SIGNATURES_SCHEMA.items()]).sort(
        ["day", "provider", "count", "smtp_code", "enhanced_status", "template"],
        descending=[False, False, True, False, False, False],
        nulls_last=True,
    )
