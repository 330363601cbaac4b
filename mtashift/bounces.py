"""The `bounces` table and the classifier reports (pure functions over polars LazyFrames)."""

from __future__ import annotations

import polars as pl

from mtashift.classify import RAW_RULE_PREFIX, RuleSet, classify, load_rules
from mtashift.taxonomy import OTHER, Taxonomy, load_taxonomy
from schemas.bounces import (
    BOUNCE_SCHEMA,
    CATEGORY_AGREEMENT_SCHEMA,
    CLASSIFIER_STATS_SCHEMA,
    RULE_HITS_SCHEMA,
    UNMATCHED_REPLIES_SCHEMA,
    UNMATCHED_TOP_N,
)
from schemas.events import FAILURE_EVENT_TYPES


def _conform(frame: pl.LazyFrame, schema: pl.Schema) -> pl.LazyFrame:
    names = set(frame.collect_schema().names())
    return frame.select(
        [(pl.col(n) if n in names else pl.lit(None)).cast(t).alias(n) for n, t in schema.items()]
    )


def build_bounces(
    *, events: pl.LazyFrame, taxonomy: Taxonomy | None = None, rules: RuleSet | None = None
) -> pl.LazyFrame:
    """One row per failure event (BOUNCE_SCHEMA), ordered by event_time, event_id.

    ``events`` may carry a ``provider`` column (from mtashift.providers.add_provider); it is passed
    through, else ``provider`` is null.
    """
    tax = taxonomy or load_taxonomy()
    rs = rules or load_rules(taxonomy=taxonomy)
    failures = events.filter(pl.col("event_type").is_in(list(FAILURE_EVENT_TYPES)))
    classified = classify(failures, taxonomy=tax, rules=rs)
    return _conform(classified, BOUNCE_SCHEMA).sort(["event_time", "event_id"], nulls_last=True)


def _day() -> pl.Expr:
    return pl.col("event_time").dt.date().alias("day")


def classifier_stats(*, bounces: pl.LazyFrame) -> pl.LazyFrame:
    """Per (day, provider, mta): failures, how they were classified, unclassified (`other`) rate."""
    by_raw = pl.col("rule").str.starts_with(RAW_RULE_PREFIX)
    other = pl.col("category") == OTHER
    out = (
        bounces.with_columns(_day())
        .group_by("day", "provider", "mta")
        .agg(
            pl.len().cast(pl.Int64).alias("failures"),
            (by_raw & ~other).sum().cast(pl.Int64).alias("classified_by_raw"),
            (~by_raw & ~other).sum().cast(pl.Int64).alias("classified_by_rules"),
            other.sum().cast(pl.Int64).alias("unclassified"),
        )
        .with_columns((pl.col("unclassified") / pl.col("failures")).alias("unclassified_rate"))
    )
    return _conform(out, CLASSIFIER_STATS_SCHEMA).sort("day", "provider", "mta", nulls_last=True)


def rule_hits(*, bounces: pl.LazyFrame) -> pl.LazyFrame:
    """Per (day, provider, mta, rule): how many rows that rule (or raw label) decided."""
    out = (
        bounces.with_columns(_day())
        .group_by("day", "provider", "mta", "rule", "category")
        .agg(pl.len().cast(pl.Int64).alias("hits"))
    )
    return _conform(out, RULE_HITS_SCHEMA).sort(
        ["day", "provider", "mta", "hits", "rule"],
        descending=[False, False, False, True, False],
        nulls_last=True,
    )


def reply_template(response: pl.Expr | str = "response") -> pl.Expr:
    """The reply text with the parts that vary per message replaced, so replies group by template."""
    e = pl.col(response) if isinstance(response, str) else response
    return (
        e.cast(pl.String)
        .str.replace_all(r"(?i)\b(https?|mailto):\S+", "<url>")
        .str.replace_all(r"(?i)[a-z0-9._%+=/-]+@[a-z0-9.-]+[a-z0-9]", "<addr>")
        .str.replace_all(r"(?i)\b\d{4}-\d{2}-\d{2}([t ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?z?)?", "<time>")
        .str.replace_all(r"\b\d{1,2}:\d{2}:\d{2}\b", "<time>")
        .str.replace_all(r"\b(\d{1,3}\.){3}\d{1,3}\b", "<ip>")
        .str.replace_all(r"(?i)[0-9a-f]{0,4}(:[0-9a-f]{0,4}){2,7}", "<ip>")
        # host names that carry a number label vary per receiving machine (BN2NAM02..., mta7.am0...)
        .str.replace_all(r"(?i)\b[a-z0-9-]*\d[a-z0-9-]*(\.[a-z0-9-]+)*\.[a-z][a-z-]+\b", "<host>")
        .str.replace_all(r"(?i)\b[a-z0-9_-]{16,}\b", "<id>")
        .str.replace_all(r"(?i)\b[0-9a-f]{8,}\b", "<id>")
        .str.replace_all(r"\d+", "<n>")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
        .str.slice(0, 300)
    )


def unmatched_replies(*, bounces: pl.LazyFrame, top_n: int = UNMATCHED_TOP_N) -> pl.LazyFrame:
    """Top reply templates among rows left `other`, per (day, provider)."""
    rows = bounces.filter(pl.col("category") == OTHER).with_columns(
        _day(), reply_template("response").fill_null("").alias("template")
    )
    grouped = rows.group_by("day", "provider", "smtp_code", "enhanced_status", "template").agg(
        pl.len().cast(pl.Int64).alias("failures"),
        pl.col("response").sort_by("event_time", "event_id").first().alias("example"),
    )
    ranked = grouped.sort(
        ["day", "provider", "failures", "template", "smtp_code", "enhanced_status"],
        descending=[False, False, True, False, False, False],
        nulls_last=True,
    ).with_columns(pl.int_range(1, pl.len() + 1).over("day", "provider").cast(pl.Int32).alias("rank"))
    return _conform(ranked.filter(pl.col("rank") <= top_n), UNMATCHED_REPLIES_SCHEMA)


def category_agreement(*, bounces: pl.LazyFrame, mtas: tuple[str, ...] = ("pmta", "kumo")) -> pl.LazyFrame:
    """Rows that carry a raw label: raw mapped category × our classifier's category, with counts.

    PowerMTA's bounceCat is the headline (how far our rules reproduce the operator's
    bounce-category-patterns); KumoMTA rows are included with their own ``mta`` value.
    """
    rows = bounces.filter(pl.col("raw_category").is_not_null() & pl.col("mta").is_in(list(mtas)))
    out = (
        rows.with_columns(_day())
        .group_by("day", "mta", "provider", "raw_bounce_category", "raw_category", "classifier_category")
        .agg(pl.len().cast(pl.Int64).alias("rows"))
        .with_columns((pl.col("raw_category") == pl.col("classifier_category")).alias("agree"))
    )
    return _conform(out, CATEGORY_AGREEMENT_SCHEMA).sort(
        "day", "mta", "provider", "raw_bounce_category", "classifier_category", nulls_last=True
    )


def classifier_reports(*, bounces: pl.LazyFrame) -> dict[str, pl.LazyFrame]:
    """All classifier report tables by table name."""
    return {
        "classifier_stats": classifier_stats(bounces=bounces),
        "rule_hits": rule_hits(bounces=bounces),
        "unmatched_replies": unmatched_replies(bounces=bounces),
        "category_agreement": category_agreement(bounces=bounces),
    }
