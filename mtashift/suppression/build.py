"""Rebuild the suppression list from the whole history: legacy lists, bounces, complaints.

Pure and deterministic: the result depends only on the inputs, the policy and ``as_of`` (by default
the newest event time in the data, never the wall clock), and every sort has a total order, so a
rebuild from the same inputs is byte-identical.

Each source yields *candidates*, one per (match_key, scope, source, rule), with their evidence. A
candidate is active when it has no expiry or its expiry is after ``as_of``. The table has one row
per (match_key, scope) with at least one active candidate: the winning candidate (policy
precedence, then rule order) gives address, reason, category, source and rule; first/last seen,
expiry and evidence cover every active candidate. Keys whose candidates all lapsed are returned
separately (``expired``) with the rule that lapsed them, for the diff and the legacy proof.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath

import polars as pl

from mtashift.suppression.address import normalize_column
from mtashift.suppression.policy import SuppressionPolicy
from schemas.suppression import LEGACY_SCHEMA, SUPPRESSION_SCHEMA, UTC_TS

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Within one source, the order rules win in (a verdict beats a threshold).
RULE_ORDER: tuple[str, ...] = (
    "complaints",
    "unsubscribes",
    "bounces.suppress",
    "bounces.domain",
    "bounces.retry_then_suppress",
    "legacy",
)

BOUNCE_INPUT = {
    "event_id": pl.String,
    "event_type": pl.String,
    "event_time": UTC_TS,
    "recipient": pl.String,
    "sender_domain": pl.String,
    "tenant": pl.String,
    "message_id": pl.String,
    "category": pl.String,
    "consequence": pl.String,
}
COMPLAINT_INPUT = {
    "complaint_id": pl.String,
    "complaint_time": UTC_TS,
    "feedback_type": pl.String,
    "recipient": pl.String,
    "recipient_redacted": pl.Boolean,
    "sender_domain": pl.String,
    "tenant": pl.String,
}

CANDIDATE_SCHEMA = pl.Schema(
    {
        "match_key": pl.String,
        "scope": pl.String,
        "source": pl.String,
        "rule": pl.String,
        "address": pl.String,
        "category": pl.String,
        "reason": pl.String,
        "first_seen": UTC_TS,
        "last_seen": UTC_TS,
        "expires_at": UTC_TS,
        "lapse_rule": pl.String,
    }
)
EVIDENCE_SCHEMA = pl.Schema(
    {
        "match_key": pl.String,
        "scope": pl.String,
        "source": pl.String,
        "rule": pl.String,
        "ev_id": pl.String,
        "ev_time": UTC_TS,
        "ev_file": pl.String,
        "ev_line": pl.Int64,
    }
)
EXPIRED_SCHEMA = pl.Schema(
    {
        "match_key": pl.String,
        "scope": pl.String,
        "address": pl.String,
        "source": pl.String,
        "sources": pl.List(pl.String),
        "expires_at": UTC_TS,
        "rule": pl.String,
    }
)


@dataclass(frozen=True)
class SuppressionBuild:
    table: pl.DataFrame  # SUPPRESSION_SCHEMA, sorted by (match_key, scope)
    expired: pl.DataFrame  # EXPIRED_SCHEMA: keys whose every candidate lapsed
    as_of: datetime
    stats: dict[str, int] = field(default_factory=dict)


def _conform(frame: pl.LazyFrame | pl.DataFrame | None, schema: dict[str, pl.DataType]) -> pl.LazyFrame:
    """The needed columns, cast; absent columns (or an absent table) become nulls / no rows."""
    if frame is None:
        return pl.LazyFrame(schema=schema)
    lf = frame.lazy()
    names = set(lf.collect_schema().names())
    return lf.select(
        [(pl.col(n) if n in names else pl.lit(None)).cast(t).alias(n) for n, t in schema.items()]
    )


def _scope_expr(mode: str) -> pl.Expr:
    """Scope of an event for a source's scope mode; missing values fall back to `global`."""
    if mode == "sender_domain":
        d = pl.col("sender_domain").str.strip_chars().str.to_lowercase()
        return (
            pl.when(d.is_not_null() & (d != ""))
            .then(pl.lit("sender_domain:") + d)
            .otherwise(pl.lit("global"))
        )
    if mode == "tenant":
        t = pl.col("tenant").str.strip_chars()
        return pl.when(t.is_not_null() & (t != "")).then(pl.lit("tenant:") + t).otherwise(pl.lit("global"))
    return pl.lit("global")


def _plus_days(col: pl.Expr, days: int | None) -> pl.Expr:
    if days is None:
        return pl.lit(None, dtype=UTC_TS)
    return col + pl.duration(days=days)


def _fmt(col: pl.Expr) -> pl.Expr:
    return col.dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _lapse_text(rule_key: str, days: int | None, what: str) -> pl.Expr:
    """Why a candidate lapsed, e.g. `bounces.retry_then_suppress.expire_after_days=90: last failure …`."""
    if days is None:
        return pl.lit(None, dtype=pl.String)
    return (
        pl.lit(f"{rule_key}.expire_after_days={days}: {what} ")
        + _fmt(pl.col("last_seen"))
        + pl.lit(", lapsed ")
        + _fmt(pl.col("expires_at"))
    )


def _event_candidates(
    rows: pl.DataFrame,
    *,
    source: str,
    rule: str,
    expire_days: int | None,
    reason: pl.Expr,
    lapse_key: str,
    lapse_what: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Candidates that start at the first event (verdicts, complaints, unsubscribes).

    ``rows`` has match_key, scope, address, category, ev_id, ev_time (already filtered).
    """
    if rows.height == 0:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA), pl.DataFrame(schema=EVIDENCE_SCHEMA)
    ordered = rows.sort("match_key", "scope", "ev_time", "ev_id")
    cands = (
        ordered.group_by("match_key", "scope", maintain_order=True)
        .agg(
            pl.col("address").first(),
            pl.col("category").first(),
            pl.col("ev_time").min().alias("first_seen"),
            pl.col("ev_time").max().alias("last_seen"),
        )
        .with_columns(
            source=pl.lit(source),
            rule=pl.lit(rule),
            reason=reason,
            expires_at=_plus_days(pl.col("last_seen"), expire_days),
        )
        .with_columns(lapse_rule=_lapse_text(lapse_key, expire_days, lapse_what))
        .select(CANDIDATE_SCHEMA.names())
        .cast(dict(CANDIDATE_SCHEMA))
    )
    evidence = (
        ordered.select("match_key", "scope", "ev_id", "ev_time")
        .with_columns(source=pl.lit(source), rule=pl.lit(rule), ev_file=pl.lit(None), ev_line=pl.lit(None))
        .select(EVIDENCE_SCHEMA.names())
        .cast(dict(EVIDENCE_SCHEMA))
    )
    return cands, evidence


def _retry_candidates(rows: pl.DataFrame, policy: SuppressionPolicy) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Repeated failures: suppressed once `failures` fall within a `window_days` window.

    Failures of one key split into runs wherever two consecutive failures are at least
    `expire_after_days` apart (the entry would have lapsed in between). The latest run that
    reached the threshold is the candidate: first_seen = the failure that reached it, last_seen =
    the run's last failure, expires_at = last_seen + expire_after_days.
    """
    if rows.height == 0:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA), pl.DataFrame(schema=EVIDENCE_SCHEMA)
    keys = ["match_key", "scope"]
    if policy.retry_count == "messages":
        rows = rows.sort(*keys, "ev_time", "ev_id").unique(
            subset=[*keys, "message_key"], keep="first", maintain_order=True
        )
    rows = rows.sort(*keys, "ev_time", "ev_id").with_columns(one=pl.lit(1, dtype=pl.Int64))
    window = f"{policy.retry_window_days}d"
    gap_break = (
        (pl.col("ev_time").diff().over(keys) >= pl.duration(days=policy.retry_expire_days)).fill_null(False)
        if policy.retry_expire_days is not None
        else pl.lit(False)
    )
    rows = rows.with_columns(
        pl.col("one")
        .rolling_sum_by("ev_time", window_size=window, closed="both")
        .over(keys)
        .alias("in_window"),
        gap_break.cast(pl.Int64).cum_sum().over(keys).alias("run"),
    ).with_columns(trigger=pl.col("in_window") >= policy.retry_failures)
    runs = (
        rows.group_by(*keys, "run", maintain_order=True)
        .agg(
            pl.col("ev_time").filter(pl.col("trigger")).first().alias("first_seen"),
            pl.col("ev_time").max().alias("last_seen"),
            pl.col("category").filter(pl.col("trigger")).first().alias("category"),
            pl.col("address").filter(pl.col("trigger")).first().alias("address"),
            pl.col("in_window").max().alias("peak"),
        )
        .filter(pl.col("first_seen").is_not_null())
        .sort(*keys, "run", descending=[False, False, True])
        .unique(subset=keys, keep="first", maintain_order=True)
    )
    n, d = policy.retry_failures, policy.retry_window_days
    cands = (
        runs.with_columns(
            source=pl.lit("bounce"),
            rule=pl.lit("bounces.retry_then_suppress"),
            reason=pl.lit(f"repeated failures: {n} or more within {d} days (")
            + pl.col("category").fill_null("uncategorised")
            + pl.lit(")"),
            expires_at=_plus_days(pl.col("last_seen"), policy.retry_expire_days),
        )
        .with_columns(
            lapse_rule=_lapse_text("bounces.retry_then_suppress", policy.retry_expire_days, "last failure")
        )
        .select(CANDIDATE_SCHEMA.names())
        .cast(dict(CANDIDATE_SCHEMA))
    )
    evidence = (
        rows.join(runs.select(*keys, "run"), on=[*keys, "run"], how="semi")
        .select("match_key", "scope", "ev_id", "ev_time")
        .with_columns(
            source=pl.lit("bounce"),
            rule=pl.lit("bounces.retry_then_suppress"),
            ev_file=pl.lit(None),
            ev_line=pl.lit(None),
        )
        .select(EVIDENCE_SCHEMA.names())
        .cast(dict(EVIDENCE_SCHEMA))
    )
    return cands, evidence


def _domain_candidates(rows: pl.DataFrame, policy: SuppressionPolicy) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Whole recipient domains with enough distinct recipients given a domain verdict."""
    rows = rows.filter(pl.col("category").is_in(list(policy.domain_categories)))
    if rows.height == 0:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA), pl.DataFrame(schema=EVIDENCE_SCHEMA)
    keys = ["domain", "scope"]
    per_rcpt = (
        rows.sort(*keys, "ev_time", "ev_id")
        .group_by(*keys, "match_key", maintain_order=True)
        .agg(pl.col("ev_time").min().alias("rcpt_first"))
        .sort(*keys, "rcpt_first", "match_key")
    )
    k = policy.domain_min_recipients
    qualified = (
        per_rcpt.group_by(*keys, maintain_order=True)
        .agg(
            pl.len().alias("recipients"),
            pl.col("rcpt_first").get(k - 1, null_on_oob=True).alias("first_seen"),
        )
        .filter(pl.col("recipients") >= k)
    )
    if qualified.height == 0:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA), pl.DataFrame(schema=EVIDENCE_SCHEMA)
    ev = rows.join(qualified.select(keys), on=keys, how="semi").sort(*keys, "ev_time", "ev_id")
    last = ev.group_by(*keys, maintain_order=True).agg(
        pl.col("ev_time").max().alias("last_seen"), pl.col("category").first()
    )
    cands = (
        qualified.join(last, on=keys, how="left", maintain_order="left")
        .with_columns(
            match_key=pl.lit("@") + pl.col("domain"),
            address=pl.lit("@") + pl.col("domain"),
            source=pl.lit("bounce"),
            rule=pl.lit("bounces.domain"),
            reason=pl.lit("domain verdict: ")
            + pl.col("recipients").cast(pl.String)
            + pl.lit(" distinct recipients (")
            + pl.col("category")
            + pl.lit(")"),
            expires_at=_plus_days(pl.col("last_seen"), policy.domain_expire_days),
        )
        .with_columns(lapse_rule=_lapse_text("bounces.domain", policy.domain_expire_days, "last verdict"))
        .select(CANDIDATE_SCHEMA.names())
        .cast(dict(CANDIDATE_SCHEMA))
    )
    evidence = (
        ev.with_columns(
            match_key=pl.lit("@") + pl.col("domain"),
            source=pl.lit("bounce"),
            rule=pl.lit("bounces.domain"),
            ev_file=pl.lit(None),
            ev_line=pl.lit(None),
        )
        .select(EVIDENCE_SCHEMA.names())
        .cast(dict(EVIDENCE_SCHEMA))
    )
    return cands, evidence


def legacy_scoped(legacy: pl.DataFrame | pl.LazyFrame | None, policy: SuppressionPolicy) -> pl.DataFrame:
    """Legacy entries with their effective scope (file column, else policy file_scopes, else global)."""
    if legacy is None:
        return pl.DataFrame(schema=LEGACY_SCHEMA).with_columns(
            pl.lit(None, dtype=pl.String).alias("eff_scope")
        )
    frame = _conform(legacy, dict(LEGACY_SCHEMA)).collect()
    files = frame["source_file"].unique().to_list()

    def under_folder(rel: str) -> str:
        parts = PurePosixPath(rel).parts
        return "/".join(parts[1:]) if parts and parts[0] == "suppression" else rel

    by_file = {f: policy.legacy_scope_for(under_folder(f)) for f in files if f is not None}
    return frame.with_columns(
        pl.coalesce(
            pl.col("scope"),
            pl.col("source_file").replace_strict(by_file, default="global", return_dtype=pl.String),
        ).alias("eff_scope")
    )


def _legacy_candidates(legacy: pl.DataFrame, policy: SuppressionPolicy) -> tuple[pl.DataFrame, pl.DataFrame]:
    if legacy.height == 0:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA), pl.DataFrame(schema=EVIDENCE_SCHEMA)
    rows = legacy.with_columns(scope=pl.col("eff_scope")).sort(
        "match_key", "scope", "source_file", "source_line"
    )
    cands = (
        rows.group_by("match_key", "scope", maintain_order=True)
        .agg(
            pl.col("address").first(),
            pl.col("reason").drop_nulls().first().alias("legacy_reason"),
            pl.col("added").min().alias("first_seen"),
            pl.col("added").max().alias("last_seen"),
        )
        .with_columns(
            source=pl.lit("legacy"),
            rule=pl.lit("legacy"),
            category=pl.col("legacy_reason").str.to_lowercase(),
            reason=pl.when(pl.col("legacy_reason").is_not_null())
            .then(pl.lit("legacy list: ") + pl.col("legacy_reason"))
            .otherwise(pl.lit("legacy list")),
            expires_at=_plus_days(pl.col("last_seen"), policy.legacy_expire_days),
        )
        .with_columns(lapse_rule=_lapse_text("legacy", policy.legacy_expire_days, "dated"))
        .select(CANDIDATE_SCHEMA.names())
        .cast(dict(CANDIDATE_SCHEMA))
    )
    evidence = (
        rows.select(
            "match_key",
            "scope",
            pl.col("provenance").alias("ev_id"),
            pl.col("added").alias("ev_time"),
            pl.col("source_file").alias("ev_file"),
            pl.col("source_line").alias("ev_line"),
        )
        .with_columns(source=pl.lit("legacy"), rule=pl.lit("legacy"))
        .select(EVIDENCE_SCHEMA.names())
        .cast(dict(EVIDENCE_SCHEMA))
    )
    return cands, evidence


def compute_as_of(
    *,
    bounces: pl.LazyFrame | pl.DataFrame | None,
    complaints: pl.LazyFrame | pl.DataFrame | None,
    legacy: pl.LazyFrame | pl.DataFrame | None = None,
) -> datetime:
    """The newest event time in the data (bounces, complaints); else the newest legacy date; else 1970."""
    times: list[datetime] = []
    for frame, col in ((bounces, "event_time"), (complaints, "complaint_time")):
        value = _conform(frame, {col: UTC_TS}).select(pl.col(col).max()).collect().item()
        if value is not None:
            times.append(value)
    if not times:
        value = _conform(legacy, {"added": UTC_TS}).select(pl.col("added").max()).collect().item()
        if value is not None:
            times.append(value)
    return max(times) if times else EPOCH


def evaluate_suppression(
    *,
    legacy: pl.LazyFrame | pl.DataFrame | None,
    bounces: pl.LazyFrame | pl.DataFrame | None,
    complaints: pl.LazyFrame | pl.DataFrame | None,
    policy: SuppressionPolicy,
    as_of: datetime | None = None,
) -> SuppressionBuild:
    """The suppression table, the lapsed keys and counts, as of ``as_of`` (default: newest event)."""
    if as_of is None:
        as_of = compute_as_of(bounces=bounces, complaints=complaints, legacy=legacy)
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    as_of_lit = pl.lit(as_of).cast(UTC_TS)
    stats: dict[str, int] = {}

    # ---- bounces -------------------------------------------------------------------------
    b = _conform(bounces, BOUNCE_INPUT).filter(pl.col("event_time") <= as_of_lit)
    overrides = policy.consequence_overrides
    b = b.with_columns(
        consequence=pl.col("category").replace_strict(
            overrides, default=pl.col("consequence"), return_dtype=pl.String
        )
        if overrides
        else pl.col("consequence")
    )
    is_verdict = pl.col("event_type").is_in(list(policy.verdict_event_types)) & (
        (pl.col("consequence") == "suppress") | pl.col("category").is_in(list(policy.unsubscribe_categories))
    )
    is_failure = pl.col("event_type").is_in(list(policy.failure_event_types)) & (
        pl.col("consequence") == "retry-then-suppress"
    )
    verdicts = b.filter(is_verdict | is_failure)
    verdicts = normalize_column(verdicts, "recipient", prefix="r_").collect()
    stats["bounce_verdict_rows"] = verdicts.height
    stats["bounce_invalid_recipients"] = verdicts.filter(pl.col("r_invalid").is_not_null()).height
    verdicts = verdicts.filter(pl.col("r_invalid").is_null()).select(
        pl.col("r_match_key").alias("match_key"),
        pl.col("r_address").alias("address"),
        pl.col("r_domain").alias("domain"),
        "category",
        "consequence",
        pl.col("event_id").alias("ev_id"),
        pl.col("event_time").alias("ev_time"),
        pl.coalesce("message_id", "event_id").alias("message_key"),
        "sender_domain",
        "tenant",
        pl.col("event_type").is_in(list(policy.verdict_event_types)).alias("is_verdict"),
    )
    is_unsub = pl.col("category").is_in(list(policy.unsubscribe_categories))
    unsub_rows = verdicts.filter(is_unsub & pl.col("is_verdict")).with_columns(
        scope=_scope_expr(policy.scopes["unsubscribe"])
    )
    bounce_rows = verdicts.filter(~is_unsub).with_columns(scope=_scope_expr(policy.scopes["bounce"]))
    hard = bounce_rows.filter((pl.col("consequence") == "suppress") & pl.col("is_verdict"))
    soft = bounce_rows.filter(pl.col("consequence") == "retry-then-suppress")

    parts = [
        _event_candidates(
            hard,
            source="bounce",
            rule="bounces.suppress",
            expire_days=policy.suppress_expire_days,
            reason=pl.lit("bounce verdict: ") + pl.col("category").fill_null("uncategorised"),
            lapse_key="bounces.suppress",
            lapse_what="last verdict",
        ),
        _retry_candidates(soft, policy),
        _event_candidates(
            unsub_rows,
            source="unsubscribe",
            rule="unsubscribes",
            expire_days=policy.unsubscribe_expire_days,
            reason=pl.lit("unsubscribe request (")
            + pl.col("category").fill_null("unsubscribe")
            + pl.lit(")"),
            lapse_key="unsubscribes",
            lapse_what="last request",
        ),
    ]
    if policy.domain_enabled:
        parts.append(_domain_candidates(hard, policy))

    # ---- complaints ----------------------------------------------------------------------
    c = _conform(complaints, COMPLAINT_INPUT).filter(pl.col("complaint_time") <= as_of_lit)
    c = c.with_columns(feedback_type=pl.col("feedback_type").str.to_lowercase())
    c_all = normalize_column(c, "recipient", prefix="r_").collect()
    ignored = pl.col("feedback_type").is_in(list(policy.complaint_ignore_types)).fill_null(False)
    redacted = pl.col("recipient_redacted").fill_null(False)
    stats["complaint_rows"] = c_all.height
    stats["complaints_ignored_feedback_type"] = c_all.filter(ignored).height
    stats["complaints_unusable_recipient"] = c_all.filter(
        ~ignored & (redacted | pl.col("r_invalid").is_not_null())
    ).height
    c_rows = c_all.filter(~ignored & ~redacted & pl.col("r_invalid").is_null()).select(
        pl.col("r_match_key").alias("match_key"),
        pl.col("r_address").alias("address"),
        pl.col("feedback_type").alias("category"),
        pl.col("complaint_id").alias("ev_id"),
        pl.col("complaint_time").alias("ev_time"),
        _scope_expr(policy.scopes["complaint"]).alias("scope"),
    )
    parts.append(
        _event_candidates(
            c_rows,
            source="complaint",
            rule="complaints",
            expire_days=policy.complaint_expire_days,
            reason=pl.lit("complaint (")
            + pl.col("category").fill_null("unknown feedback type")
            + pl.lit(")"),
            lapse_key="complaints",
            lapse_what="last complaint",
        )
    )

    # ---- legacy --------------------------------------------------------------------------
    leg = legacy_scoped(legacy, policy)
    stats["legacy_entries"] = leg.height
    parts.append(_legacy_candidates(leg, policy))

    cands = pl.concat([p[0] for p in parts], how="vertical")
    evidence = pl.concat([p[1] for p in parts], how="vertical")
    table, expired = _combine(cands, evidence, policy=policy, as_of=as_of)
    stats["rows"] = table.height
    stats["expired_keys"] = expired.height
    return SuppressionBuild(table=table, expired=expired, as_of=as_of, stats=stats)


def _combine(
    cands: pl.DataFrame, evidence: pl.DataFrame, *, policy: SuppressionPolicy, as_of: datetime
) -> tuple[pl.DataFrame, pl.DataFrame]:
    keys = ["match_key", "scope"]
    src_rank = {s: i for i, s in enumerate(policy.precedence)}
    rule_rank = {r: i for i, r in enumerate(RULE_ORDER)}
    cands = cands.with_columns(
        active=pl.col("expires_at").is_null() | (pl.col("expires_at") > pl.lit(as_of).cast(UTC_TS)),
        src_rank=pl.col("source").replace_strict(src_rank, return_dtype=pl.Int32),
        rule_rank=pl.col("rule").replace_strict(rule_rank, return_dtype=pl.Int32),
    ).sort(*keys, "src_rank", "rule_rank", "first_seen", "address", nulls_last=True)

    act = cands.filter(pl.col("active"))
    winners = act.group_by(keys, maintain_order=True).agg(
        pl.col("address", "reason", "category", "source", "rule").first(),
        pl.col("first_seen").min(),
        pl.col("last_seen").max(),
        pl.when(pl.col("expires_at").is_null().any())
        .then(pl.lit(None, dtype=UTC_TS))
        .otherwise(pl.col("expires_at").max())
        .alias("expires_at"),
        pl.col("source").unique(maintain_order=True).alias("sources"),
    )
    ev = (
        evidence.join(act.select(*keys, "source", "rule"), on=[*keys, "source", "rule"], how="semi")
        .sort(*keys, "ev_time", "ev_file", "ev_line", "ev_id", nulls_last=True)
        .unique(subset=[*keys, "ev_id"], keep="first", maintain_order=True)
        .group_by(keys, maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64).alias("evidence_count"),
            pl.col("ev_id").head(policy.evidence_cap).alias("evidence"),
        )
    )
    table = (
        winners.join(ev, on=keys, how="left", maintain_order="left")
        .with_columns(
            pl.col("evidence_count").fill_null(0),
            pl.col("evidence").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        )
        .select(SUPPRESSION_SCHEMA.names())
        .cast(dict(SUPPRESSION_SCHEMA))
        .sort(keys)
    )

    lapsed = cands.join(act.select(keys).unique(), on=keys, how="anti")
    expired = (
        lapsed.group_by(keys, maintain_order=True)
        .agg(
            pl.col("address", "source").first(),
            pl.col("source").unique(maintain_order=True).alias("sources"),
            pl.col("expires_at").max(),
            pl.col("lapse_rule").drop_nulls().str.join("; ").alias("rule"),
        )
        .select(EXPIRED_SCHEMA.names())
        .cast(dict(EXPIRED_SCHEMA))
        .sort(keys)
    )
    return table, expired


def build_suppression(
    *,
    legacy: pl.LazyFrame | pl.DataFrame | None,
    bounces: pl.LazyFrame | pl.DataFrame | None,
    complaints: pl.LazyFrame | pl.DataFrame | None,
    policy: SuppressionPolicy,
    as_of: datetime | None = None,
) -> pl.DataFrame:
    """One row per (match_key, scope) suppressed as of ``as_of`` (SUPPRESSION_SCHEMA)."""
    return evaluate_suppression(
        legacy=legacy, bounces=bounces, complaints=complaints, policy=policy, as_of=as_of
    ).table
