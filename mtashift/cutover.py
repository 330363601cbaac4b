"""Per-pool cutover evidence: plan, before/after comparison, in-flight drain, verdicts.

A pool is cut over when its traffic moves from PowerMTA to KumoMTA. For every pool this module
compares the PowerMTA baseline window with the KumoMTA window after the cutover, per mailbox
provider, with confidence intervals and tests from statsmodels/scipy, checks that the old queue
drained and nothing was left behind or sent twice, and turns the evidence into a verdict with the
rows that triggered it. Thresholds live in ``schemas/cutover_policy.yaml``; definitions of every
metric and denominator are in ``schemas/docs/cutover.md``.

All functions are pure: frames in, frames out. The caller adds the ``provider`` column
(``mtashift.providers.add_provider``) before handing events in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from mtashift.lake import Lake
from mtashift.settings import deep_merge, load_yaml
from schemas.events import EVENT_SCHEMA

UTC_TS = pl.Datetime("us", "UTC")

VERDICTS: tuple[str, ...] = ("proceed", "watch", "hold", "rollback")
_RANK = {v: i for i, v in enumerate(VERDICTS)}
CUTOVER_SOURCES: tuple[str, ...] = ("plan", "inferred", "none")
ALL = "all"  # the pool-aggregate pseudo provider

ATTEMPT_TYPES: tuple[str, ...] = ("delivered", "deferred", "bounced")
FINAL_TYPES: tuple[str, ...] = ("delivered", "bounced", "expired")
# Types that show a message was handed to the delivery machinery of an MTA (volume, messages).
ATTEMPTED_MESSAGE_TYPES: tuple[str, ...] = ("delivered", "deferred", "bounced", "expired")
# KumoMTA records that carry no egress information and so cannot date a pool's first traffic.
_NO_EGRESS_TYPES: tuple[str, ...] = ("received", "rejected", "complaint", "remote_bounce", "other")
_UNSPECIFIED = "unspecified"

RULE_KINDS: tuple[str, ...] = (
    "significant_rise",
    "significant_drop",
    "after_at_least",
    "small_sample",
    "volume_parity",
    "double_sent",
    "left_behind",
)

CUTOVER_PLAN_SCHEMA = pl.Schema(
    {
        "pool": pl.String(),
        "cutover_time": UTC_TS,
        "cutover_source": pl.String(),
        "planned_cutover_time": UTC_TS,
        "first_kumo_event": UTC_TS,
        "last_pmta_event": UTC_TS,
        "pmta_events": pl.Int64(),
        "kumo_events": pl.Int64(),
        "pmta_vmtas": pl.List(pl.String()),
        "kumo_egress_sources": pl.List(pl.String()),
        "kumo_egress_pools": pl.List(pl.String()),
        "in_plan": pl.Boolean(),
    }
)

COMPARISON_SCHEMA = pl.Schema(
    {
        "pool": pl.String(),
        "provider": pl.String(),
        "metric": pl.String(),
        "unit": pl.String(),
        "before_num": pl.Int64(),
        "before_n": pl.Int64(),
        "before_value": pl.Float64(),
        "before_ci_low": pl.Float64(),
        "before_ci_high": pl.Float64(),
        "after_num": pl.Int64(),
        "after_n": pl.Int64(),
        "after_value": pl.Float64(),
        "after_ci_low": pl.Float64(),
        "after_ci_high": pl.Float64(),
        "abs_change": pl.Float64(),
        "rel_change": pl.Float64(),
        "test": pl.String(),
        "statistic": pl.Float64(),
        "p_value": pl.Float64(),
        "significant": pl.Boolean(),
        "small_sample": pl.Boolean(),
        "cutover_time": UTC_TS,
        "before_start": UTC_TS,
        "before_end": UTC_TS,
        "after_start": UTC_TS,
        "after_end": UTC_TS,
    }
)

DRAIN_SCHEMA = pl.Schema(
    {
        "pool": pl.String(),
        "cutover_time": UTC_TS,
        "drained_messages": pl.Int64(),
        "drained_delivered": pl.Int64(),
        "drained_bounced": pl.Int64(),
        "drained_expired": pl.Int64(),
        "tail_last_s": pl.Float64(),
        "tail_p50_s": pl.Float64(),
        "tail_p95_s": pl.Float64(),
        "last_finish_time": UTC_TS,
        "pmta_queued_before": pl.Int64(),
        "unfinished_messages": pl.Int64(),
        "unfinished_share": pl.Float64(),
        "before_daily_volume": pl.Float64(),
        "after_daily_volume": pl.Float64(),
        "volume_ratio": pl.Float64(),
        "after_hours": pl.Float64(),
        "parity_flag": pl.String(),
        "double_sent": pl.Int64(),
        "double_sent_by_job": pl.Int64(),
        "double_sent_by_message_id": pl.Int64(),
    }
)

EVIDENCE_STRUCT = pl.Struct(
    {
        "provider": pl.String(),
        "metric": pl.String(),
        "before": pl.Float64(),
        "after": pl.Float64(),
        "p_value": pl.Float64(),
        "rule": pl.String(),
        "verdict": pl.String(),
        "detail": pl.String(),
    }
)

VERDICT_SCHEMA = pl.Schema(
    {
        "pool": pl.String(),
        "cutover_time": UTC_TS,
        "cutover_source": pl.String(),
        "verdict": pl.String(),
        "rules_fired": pl.List(pl.String()),
        "evidence": pl.List(EVIDENCE_STRUCT),
        "evidence_count": pl.Int64(),
    }
)


# --------------------------------------------------------------------------- plan and policy


def default_policy_path() -> Path:
    return Path(str(resources.files("schemas") / "cutover_policy.yaml"))


def load_policy(
    *, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The cutover policy (``schemas/cutover_policy.yaml``) with plan.yaml ``cutover:`` merged over it."""
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ValueError("plan.yaml `cutover:` must be a mapping of policy overrides")
    base = load_yaml(path or default_policy_path())
    policy = deep_merge(base, overrides)
    for rule in policy.get("rules") or []:
        if rule.get("kind") not in RULE_KINDS:
            raise ValueError(
                f"cutover policy: rule {rule.get('name')!r} has unknown kind {rule.get('kind')!r}"
            )
        if rule.get("verdict") not in VERDICTS:
            raise ValueError(
                f"cutover policy: rule {rule.get('name')!r} has unknown verdict {rule.get('verdict')!r}"
            )
    return policy


def parse_time(value: Any) -> datetime | None:
    """A plan time (ISO string, YAML datetime/date, epoch seconds) as an aware UTC datetime.

    Naive values are taken as UTC, the project's only time zone.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), tz=UTC)
    else:
        text = str(value).strip()
        try:
            dt = datetime.fromisoformat(text.replace(" UTC", "+00:00"))
        except ValueError:
            return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _mapping(plan: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = plan.get(key) or {}
    if not isinstance(value, Mapping):
        raise ValueError(f"plan.yaml `{key}:` must be a mapping, got {type(value).__name__}")
    return value


def _pool_entry_time(entry: Any) -> Any:
    if isinstance(entry, Mapping):
        return entry.get("cutover", entry.get("cutover_time"))
    return entry  # `pools: {p1: 2024-05-01T00:00:00Z}` shorthand


# --------------------------------------------------------------------------- pool resolution


@dataclass(frozen=True)
class PoolResolver:
    """Maps every event to the migration unit: the PowerMTA VMTA pool.

    PowerMTA rows use their ``pool`` (vmtaPool), else the VMTA. KumoMTA rows use the plan's
    ``vmta_map`` backwards: egress source -> VMTA -> that VMTA's PowerMTA pool, else egress pool
    -> PowerMTA pool, else the egress pool name itself (the common case: names kept).
    """

    source_to_pool: dict[str, str] = field(default_factory=dict)
    egress_pool_to_pool: dict[str, str] = field(default_factory=dict)
    pmta_pools: frozenset[str] = frozenset()

    def canonical(self, name: str | None) -> str | None:
        """A pool name from the plan or a seed list, as a PowerMTA pool when it names an egress pool."""
        if name is None:
            return None
        if name in self.pmta_pools:
            return name
        return self.egress_pool_to_pool.get(name, name)

    def expr(self) -> pl.Expr:
        """``pool_key`` for frames with mta, pool and source columns."""
        pool = pl.col("pool").cast(pl.String)
        source = pl.col("source").cast(pl.String)
        pool = pl.when(pool == _UNSPECIFIED).then(None).otherwise(pool)
        source = pl.when(source == _UNSPECIFIED).then(None).otherwise(source)
        kumo = pl.coalesce(
            _lookup(source, self.source_to_pool), _lookup(pool, self.egress_pool_to_pool), pool, source
        )
        return (
            pl.when(pl.col("mta") == "kumo").then(kumo).otherwise(pl.coalesce(pool, source)).alias("pool_key")
        )


def _lookup(expr: pl.Expr, mapping: Mapping[str, str]) -> pl.Expr:
    if not mapping:
        return pl.lit(None, dtype=pl.String)
    return expr.replace_strict(dict(mapping), default=None, return_dtype=pl.String)


def vmta_pools_from_events(events: pl.LazyFrame) -> dict[str, str]:
    """VMTA -> its PowerMTA pool, the pool most PowerMTA rows of that VMTA carry (ties: name)."""
    rows = (
        events.filter(
            (pl.col("mta") == "pmta") & pl.col("source").is_not_null() & pl.col("pool").is_not_null()
        )
        .group_by("source", "pool")
        .agg(pl.len().alias("n"))
        .sort(["source", "n", "pool"], descending=[False, True, False])
        .group_by("source", maintain_order=True)
        .first()
        .collect()
    )
    return dict(zip(rows["source"].to_list(), rows["pool"].to_list(), strict=True))


def pool_resolver(
    *,
    plan: Mapping[str, Any],
    events: pl.LazyFrame | None = None,
    vmta_pools: Mapping[str, str] | None = None,
) -> PoolResolver:
    """Build the resolver from plan.yaml ``vmta_map`` and the VMTA -> pool pairs PowerMTA logged."""
    observed = vmta_pools_from_events(events) if events is not None else {}
    known = {**observed, **dict(vmta_pools or {})}
    pmta_pools = set(known.values())
    if events is not None:
        pools = (
            events.filter((pl.col("mta") == "pmta") & pl.col("pool").is_not_null())
            .select(pl.col("pool").unique())
            .collect()
        )
        pmta_pools |= set(pools["pool"].to_list())
    source_to_pool: dict[str, str] = {}
    egress_pool_to_pool: dict[str, str] = {}
    vmta_map = _mapping(plan, "vmta_map")
    # Sorted so an egress pool shared by VMTAs of several PowerMTA pools resolves the same way every run.
    for vmta in sorted(vmta_map):
        entry = vmta_map[vmta] or {}
        if not isinstance(entry, Mapping):
            continue
        pmta_pool = entry.get("pool") or entry.get("vmta_pool") or entry.get("pmta_pool") or known.get(vmta)
        if not pmta_pool:
            continue
        pmta_pools.add(str(pmta_pool))
        if entry.get("egress_source"):
            source_to_pool.setdefault(str(entry["egress_source"]), str(pmta_pool))
        if entry.get("egress_pool"):
            egress_pool_to_pool.setdefault(str(entry["egress_pool"]), str(pmta_pool))
    return PoolResolver(
        source_to_pool=source_to_pool,
        egress_pool_to_pool=egress_pool_to_pool,
        pmta_pools=frozenset(pmta_pools),
    )


def message_key_expr() -> pl.Expr:
    """One key per (MTA, message, recipient).

    KumoMTA ``message_id`` is the spool id (unique per message). PowerMTA's is the Message-Id
    header and may be absent, so the queue time and sender complete the key.
    """
    return pl.concat_str(
        [
            pl.col("mta"),
            pl.col("message_id").fill_null(""),
            pl.col("sender").fill_null(""),
            pl.col("queued_time").cast(pl.Int64).cast(pl.String).fill_null(""),
            pl.col("recipient").str.to_lowercase().fill_null(""),
        ],
        separator="\x1f",
    ).alias("msg_key")


def annotate(events: pl.LazyFrame, *, resolver: PoolResolver) -> pl.LazyFrame:
    """Add ``pool_key`` and ``msg_key`` (needs the canonical columns; ``provider`` passes through)."""
    if "provider" not in events.collect_schema().names():
        events = events.with_columns(pl.lit("other").alias("provider"))
    return events.with_columns(resolver.expr(), message_key_expr())


# --------------------------------------------------------------------------- the plan


def cutover_plan(*, plan: Mapping[str, Any], events: pl.LazyFrame, resolver: PoolResolver) -> pl.DataFrame:
    """One row per pool: cutover time from the plan, else inferred from its first KumoMTA event.

    ``events`` must be annotated (:func:`annotate`). Pools seen only on PowerMTA with no planned
    time have ``cutover_source = 'none'`` (not cut over yet).
    """
    observed = (
        events.filter(pl.col("pool_key").is_not_null())
        .group_by("pool_key")
        .agg(
            pl.col("event_time")
            .filter((pl.col("mta") == "kumo") & ~pl.col("event_type").is_in(_NO_EGRESS_TYPES))
            .min()
            .alias("first_kumo_event"),
            pl.col("event_time").filter(pl.col("mta") == "pmta").max().alias("last_pmta_event"),
            (pl.col("mta") == "pmta").sum().cast(pl.Int64).alias("pmta_events"),
            (pl.col("mta") == "kumo").sum().cast(pl.Int64).alias("kumo_events"),
            pl.col("source").filter(pl.col("mta") == "pmta").drop_nulls().unique().sort().alias("pmta_vmtas"),
            pl.col("source")
            .filter(pl.col("mta") == "kumo")
            .drop_nulls()
            .unique()
            .sort()
            .alias("kumo_egress_sources"),
            pl.col("pool")
            .filter(pl.col("mta") == "kumo")
            .drop_nulls()
            .unique()
            .sort()
            .alias("kumo_egress_pools"),
        )
        .rename({"pool_key": "pool"})
        .collect()
    )
    planned: dict[str, datetime | None] = {}
    for name, entry in _mapping(plan, "pools").items():
        key = resolver.canonical(str(name))
        when = parse_time(_pool_entry_time(entry))
        # Two plan names resolving to one pool: the earliest time wins (traffic moved by then).
        if key not in planned or (when is not None and (planned[key] is None or when < planned[key])):
            planned[key] = when
    plan_frame = pl.DataFrame(
        {
            "pool": list(planned),
            "planned_cutover_time": list(planned.values()),
            "in_plan": [True] * len(planned),
        },
        schema={"pool": pl.String, "planned_cutover_time": UTC_TS, "in_plan": pl.Boolean},
    )
    out = (
        plan_frame.join(observed, on="pool", how="full", coalesce=True)
        .with_columns(
            pl.col("in_plan").fill_null(False),
            pl.col("pmta_events").fill_null(0),
            pl.col("kumo_events").fill_null(0),
            pl.coalesce("planned_cutover_time", "first_kumo_event").alias("cutover_time"),
            pl.when(pl.col("planned_cutover_time").is_not_null())
            .then(pl.lit("plan"))
            .when(pl.col("first_kumo_event").is_not_null())
            .then(pl.lit("inferred"))
            .otherwise(pl.lit("none"))
            .alias("cutover_source"),
        )
        .with_columns(
            [pl.col(c).fill_null([]) for c in ("pmta_vmtas", "kumo_egress_sources", "kumo_egress_pools")]
        )
    )
    return out.select([pl.col(n).cast(t) for n, t in CUTOVER_PLAN_SCHEMA.items()]).sort("pool")


# --------------------------------------------------------------------------- statistics


def wilson(k: int, n: int, *, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval of k successes in n trials (statsmodels)."""
    if n <= 0:
        return None, None
    low, high = proportion_confint(k, n, alpha=1 - confidence, method="wilson")
    return float(low), float(high)


def two_proportion_test(
    k_before: int, n_before: int, k_after: int, n_after: int, *, min_expected: float = 5
) -> tuple[str | None, float | None, float | None]:
    """(test, statistic, two-sided p) comparing after with before.

    The z-test (statsmodels ``proportions_ztest``, pooled variance) when every expected cell of
    the 2x2 table is at least ``min_expected``, else Fisher's exact test (scipy; statistic = odds
    ratio after/before). Positive z means the after rate is higher.
    """
    if n_before <= 0 or n_after <= 0:
        return None, None, None
    pooled = (k_before + k_after) / (n_before + n_after)
    expected = (n_before * pooled, n_before * (1 - pooled), n_after * pooled, n_after * (1 - pooled))
    if min(expected) < min_expected:
        res = sps.fisher_exact([[k_after, n_after - k_after], [k_before, n_before - k_before]])
        return "fisher", _finite(res.statistic), _finite(res.pvalue)
    z, p = proportions_ztest([k_after, k_before], [n_after, n_before])
    return "z", _finite(z), _finite(p)


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _changes(before: float | None, after: float | None) -> tuple[float | None, float | None]:
    if before is None or after is None:
        return None, None
    rel = (after - before) / before if before != 0 else None
    return after - before, rel


def proportion_row(
    *,
    k_before: int,
    n_before: int,
    k_after: int,
    n_after: int,
    min_n: int,
    min_expected: float,
    confidence: float,
    alpha: float,
) -> dict[str, Any]:
    """Columns of one rate row of the comparison (values, Wilson intervals, test, flags)."""
    bv = k_before / n_before if n_before > 0 else None
    av = k_after / n_after if n_after > 0 else None
    bl, bh = wilson(k_before, n_before, confidence=confidence)
    al, ah = wilson(k_after, n_after, confidence=confidence)
    test, stat, p = two_proportion_test(k_before, n_before, k_after, n_after, min_expected=min_expected)
    abs_change, rel_change = _changes(bv, av)
    return {
        "unit": "rate",
        "before_num": k_before,
        "before_n": n_before,
        "before_value": bv,
        "before_ci_low": bl,
        "before_ci_high": bh,
        "after_num": k_after,
        "after_n": n_after,
        "after_value": av,
        "after_ci_low": al,
        "after_ci_high": ah,
        "abs_change": abs_change,
        "rel_change": rel_change,
        "test": test,
        "statistic": stat,
        "p_value": p,
        "significant": (p is not None and p < alpha),
        "small_sample": n_before < min_n or n_after < min_n,
    }


def thin(values: np.ndarray, cap: int) -> np.ndarray:
    """Sorted values thinned to ``cap`` evenly spaced order statistics (deterministic)."""
    values = np.sort(np.asarray(values, dtype=float))
    if cap <= 0 or values.size <= cap:
        return values
    idx = np.round(np.linspace(0, values.size - 1, cap)).astype(int)
    return values[idx]


def quantile_ci(
    values: np.ndarray, q: float, *, confidence: float
) -> tuple[float | None, float | None, float | None]:
    """(quantile, CI low, CI high): linear-interpolated sample quantile, distribution-free
    order-statistic interval from scipy ``quantile_test``."""
    if values.size == 0:
        return None, None, None
    value = float(np.quantile(values, q))
    try:
        ci = sps.quantile_test(values, q=value, p=q).confidence_interval(confidence_level=confidence)
        low, high = _finite(ci.low), _finite(ci.high)
    except ValueError:
        low, high = None, None
    return value, low, high


def mean_ci(values: np.ndarray, *, confidence: float) -> tuple[float | None, float | None, float | None]:
    """(mean, CI low, CI high) with a Student-t interval (scipy)."""
    if values.size == 0:
        return None, None, None
    mean = float(np.mean(values))
    if values.size < 2:
        return mean, None, None
    sem = float(sps.sem(values))
    if sem == 0:
        return mean, mean, mean
    low, high = sps.t.interval(confidence, values.size - 1, loc=mean, scale=sem)
    return mean, _finite(low), _finite(high)


def mann_whitney(before: np.ndarray, after: np.ndarray) -> tuple[float | None, float | None]:
    """(U of after vs before, two-sided p) from scipy; None when a side is empty or all values tie."""
    if before.size == 0 or after.size == 0:
        return None, None
    if np.all(before == before[0]) and np.all(after == before[0]):
        return None, 1.0
    res = sps.mannwhitneyu(after, before, alternative="two-sided")
    return _finite(res.statistic), _finite(res.pvalue)


def sample_rows(
    *, before: np.ndarray, after: np.ndarray, kind: str, min_n: int, confidence: float, alpha: float, cap: int
) -> list[tuple[str, dict[str, Any]]]:
    """Rows for a numeric sample: latency p50/p95 (kind ``latency``) or the mean (``attempts``)."""
    n_b, n_a = int(before.size), int(after.size)
    b, a = thin(before, cap), thin(after, cap)
    u, p = mann_whitney(b, a)
    base = {
        "before_num": None,
        "before_n": n_b,
        "after_num": None,
        "after_n": n_a,
        "test": "mannwhitney" if u is not None else None,
        "statistic": u,
        "p_value": p,
        "significant": (p is not None and p < alpha),
        "small_sample": n_b < min_n or n_a < min_n,
    }
    out = []
    stats_of = (
        [
            ("latency_p50_s", lambda x: quantile_ci(x, 0.5, confidence=confidence)),
            ("latency_p95_s", lambda x: quantile_ci(x, 0.95, confidence=confidence)),
        ]
        if kind == "latency"
        else [("attempts_per_message", lambda x: mean_ci(x, confidence=confidence))]
    )
    for metric, fn in stats_of:
        bv, bl, bh = fn(b)
        av, al, ah = fn(a)
        abs_change, rel_change = _changes(bv, av)
        row = dict(base)
        row.update(
            unit="seconds" if kind == "latency" else "attempts",
            before_value=bv,
            before_ci_low=bl,
            before_ci_high=bh,
            after_value=av,
            after_ci_low=al,
            after_ci_high=ah,
            abs_change=abs_change,
            rel_change=rel_change,
        )
        out.append((metric, row))
    return out


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Windows:
    cutover: datetime
    before_start: datetime
    before_end: datetime
    after_start: datetime
    after_end: datetime


def windows_for(cutover: datetime, *, policy: Mapping[str, Any], data_end: datetime | None) -> Windows:
    """Before = [cutover - baseline_days, cutover); after = [cutover, cutover + after_max_days),
    cut at the first microsecond after the last event in the lake."""
    w = policy.get("windows") or {}
    before_start = cutover - timedelta(days=float(w.get("baseline_days", 7)))
    after_max = w.get("after_max_days")
    after_end = cutover + timedelta(days=float(after_max)) if after_max is not None else None
    if data_end is not None:
        limit = data_end + timedelta(microseconds=1)
        after_end = limit if after_end is None else min(after_end, limit)
    if after_end is None:
        after_end = cutover
    after_end = max(after_end, cutover)
    return Windows(cutover, before_start, cutover, cutover, after_end)


def plan_windows(plan: pl.DataFrame, *, policy: Mapping[str, Any], data_end: datetime | None) -> pl.DataFrame:
    """Pool -> window bounds, for pools with a cutover time."""
    rows = []
    for pool, cutover in (
        plan.filter(pl.col("cutover_time").is_not_null()).select("pool", "cutover_time").iter_rows()
    ):
        w = windows_for(cutover, policy=policy, data_end=data_end)
        rows.append(
            {
                "pool": pool,
                "cutover_time": w.cutover,
                "before_start": w.before_start,
                "before_end": w.before_end,
                "after_start": w.after_start,
                "after_end": w.after_end,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "pool": pl.String,
            "cutover_time": UTC_TS,
            "before_start": UTC_TS,
            "before_end": UTC_TS,
            "after_start": UTC_TS,
            "after_end": UTC_TS,
        },
    )


def window_events(events: pl.LazyFrame, *, windows: pl.DataFrame) -> pl.LazyFrame:
    """Annotated events tagged ``side`` = before (PowerMTA, baseline) / after (KumoMTA); others dropped."""
    t = pl.col("event_time")
    side = (
        pl.when((pl.col("mta") == "pmta") & (t >= pl.col("before_start")) & (t < pl.col("before_end")))
        .then(pl.lit("before"))
        .when((pl.col("mta") == "kumo") & (t >= pl.col("after_start")) & (t < pl.col("after_end")))
        .then(pl.lit("after"))
        .otherwise(None)
        .alias("side")
    )
    return (
        events.join(windows.lazy().rename({"pool": "pool_key"}), on="pool_key", how="inner")
        .with_columns(side)
        .filter(pl.col("side").is_not_null())
        .rename({"pool": "raw_pool"})
        .rename({"pool_key": "pool"})
    )


# --------------------------------------------------------------------------- comparison


def policy_stats(policy: Mapping[str, Any]) -> tuple[float, float, float, int]:
    s = policy.get("statistics") or {}
    return (
        float(s.get("confidence", 0.95)),
        float(s.get("alpha", 0.01)),
        float(s.get("min_expected", 5)),
        int(s.get("max_test_sample", 200_000)),
    )


def min_n_for(policy: Mapping[str, Any], metric: str) -> int:
    table = policy.get("min_n") or {}
    base = metric.split(":", 1)[0]
    return int(table.get(metric, table.get(base, table.get("default", 500))))


def _complaint_sides(
    *,
    complaints: pl.LazyFrame | None,
    deliveries: pl.DataFrame,
    windows: pl.DataFrame,
    resolver: PoolResolver,
    lag_days: float,
) -> pl.DataFrame:
    """(pool, provider, side) of each complaint, attributed to the delivery it complains about:

    1. ``delivery_event_id`` (the complaints table's own match) when given: counted only if that
       delivery is one of the window deliveries;
    2. else the latest window delivery to the same recipient before the complaint, within the lag;
    3. else (e.g. redacted recipients) the complaint's own pool/MTA, on the side whose window its
       time falls in.
    """
    out_schema = {"pool": pl.String, "provider": pl.String, "side": pl.String}
    if complaints is None:
        return pl.DataFrame(schema=out_schema)
    names = complaints.collect_schema().names()
    c = (
        complaints.select(
            pl.col("complaint_time").cast(UTC_TS),
            (
                pl.col("recipient").cast(pl.String).str.to_lowercase()
                if "recipient" in names
                else pl.lit(None, pl.String)
            ).alias("rcpt"),
            *[
                (pl.col(n).cast(pl.String) if n in names else pl.lit(None, pl.String)).alias(n)
                for n in ("pool", "source", "provider", "mta", "delivery_event_id")
            ],
        )
        .filter(pl.col("complaint_time").is_not_null())
        .with_row_index("cid")
        .collect()
    )
    if c.is_empty():
        return pl.DataFrame(schema=out_schema)
    by_id = c.filter(pl.col("delivery_event_id").is_not_null()).join(
        deliveries.select(
            pl.col("event_id").alias("delivery_event_id"),
            pl.col("pool").alias("d_pool"),
            pl.col("provider").alias("d_provider"),
            pl.col("side").alias("d_side"),
        ),
        on="delivery_event_id",
        how="inner",
    )
    by_id = by_id.select(
        "cid",
        pl.col("d_pool").alias("pool"),
        pl.col("d_provider").alias("provider"),
        pl.col("d_side").alias("side"),
    )
    c = c.filter(pl.col("delivery_event_id").is_null())
    d = (
        deliveries.select(
            pl.col("recipient").cast(pl.String).str.to_lowercase().alias("rcpt"),
            pl.col("event_time"),
            pl.col("pool").alias("d_pool"),
            pl.col("provider").alias("d_provider"),
            pl.col("side").alias("d_side"),
        )
        .filter(pl.col("rcpt").is_not_null())
        .sort("event_time")
    )
    matched = (
        c.filter(pl.col("rcpt").is_not_null())
        .sort("complaint_time")
        .join_asof(
            d,
            left_on="complaint_time",
            right_on="event_time",
            by="rcpt",
            strategy="backward",
            tolerance=timedelta(days=lag_days),
            check_sortedness=False,
        )
        .filter(pl.col("d_side").is_not_null())
        .select(
            "cid",
            pl.col("d_pool").alias("pool"),
            pl.col("d_provider").alias("provider"),
            pl.col("d_side").alias("side"),
        )
    )
    rest = c.join(matched.select("cid"), on="cid", how="anti")
    # Fallback: the complaint's own pool and MTA; the side is the window its time falls in.
    rest = (
        rest.with_columns(pl.coalesce("mta", pl.lit("")).alias("mta_f"))
        .with_columns(
            resolver.expr().alias("pool_key") if rest.height else pl.lit(None, pl.String).alias("pool_key")
        )
        .join(windows.rename({"pool": "pool_key"}), on="pool_key", how="inner")
    )
    t = pl.col("complaint_time")
    fallback = rest.with_columns(
        pl.when(
            (pl.col("mta_f").is_in(["pmta", ""])) & (t >= pl.col("before_start")) & (t < pl.col("before_end"))
        )
        .then(pl.lit("before"))
        .when(
            (pl.col("mta_f").is_in(["kumo", ""])) & (t >= pl.col("after_start")) & (t < pl.col("after_end"))
        )
        .then(pl.lit("after"))
        .otherwise(None)
        .alias("side")
    ).filter(pl.col("side").is_not_null() & pl.col("provider").is_not_null())
    fallback = fallback.select(pl.col("pool_key").alias("pool"), "provider", "side")
    return pl.concat([by_id.drop("cid"), matched.drop("cid"), fallback], how="vertical").cast(out_schema)


def cutover_comparison(
    *,
    events: pl.LazyFrame,
    plan: pl.DataFrame,
    policy: Mapping[str, Any],
    resolver: PoolResolver,
    bounces: pl.LazyFrame | None = None,
    complaints: pl.LazyFrame | None = None,
    data_end: datetime | None = None,
) -> pl.DataFrame:
    """Before/after metrics per pool x provider (plus the pool aggregate ``all``), long format.

    ``events``: annotated (:func:`annotate`) canonical events with ``provider``. ``bounces``:
    (event_id, consequence) for the consequence split. ``complaints``: (complaint_time,
    recipient, pool, provider, mta); when absent, complaint events of ``events`` are used.
    """
    confidence, alpha, min_expected, cap = policy_stats(policy)
    if data_end is None:
        data_end = events.select(pl.col("event_time").max()).collect().item()
    windows = plan_windows(plan, policy=policy, data_end=data_end)
    if windows.is_empty():
        return pl.DataFrame(schema=COMPARISON_SCHEMA)
    w = (
        window_events(events.filter(pl.col("event_type").is_in(ATTEMPTED_MESSAGE_TYPES)), windows=windows)
        .select(
            "pool",
            "provider",
            "side",
            "event_type",
            "event_id",
            "event_time",
            "queued_time",
            "msg_key",
            "recipient",
        )
        .collect()
    )
    both = pl.concat([w, w.with_columns(pl.lit(ALL).alias("provider"))], how="vertical")
    keys = ["pool", "provider", "side"]
    et = pl.col("event_type")
    counts = both.group_by(keys).agg(
        et.is_in(ATTEMPT_TYPES).sum().alias("attempts"),
        (et == "deferred").sum().alias("deferred"),
        (et == "bounced").sum().alias("bounced"),
        (et == "expired").sum().alias("expired"),
        (et == "delivered").sum().alias("delivered"),
        et.is_in(FINAL_TYPES).sum().alias("finals"),
        pl.col("msg_key").n_unique().alias("messages"),
    )
    c = {(r["pool"], r["provider"], r["side"]): r for r in counts.iter_rows(named=True)}

    consequences: dict[tuple[str, str, str], dict[str, int]] = {}
    if bounces is not None:
        bnames = bounces.collect_schema().names()
        if "consequence" in bnames and "event_id" in bnames:
            b = (
                bounces.select("event_id", pl.col("consequence").cast(pl.String).fill_null("unknown"))
                .unique("event_id")
                .collect()
            )
            per = (
                both.filter(et == "bounced")
                .join(b, on="event_id", how="left")
                .with_columns(pl.col("consequence").fill_null("unclassified"))
                .group_by([*keys, "consequence"])
                .agg(pl.len().alias("n"))
            )
            for r in per.iter_rows(named=True):
                consequences.setdefault((r["pool"], r["provider"], r["side"]), {})[r["consequence"]] = r["n"]
    all_consequences = sorted({k for v in consequences.values() for k in v})

    if complaints is None:
        complaints = events.filter(pl.col("event_type") == "complaint").select(
            pl.col("event_time").alias("complaint_time"), "recipient", "pool", "source", "provider", "mta"
        )
    lag = float((policy.get("windows") or {}).get("complaint_max_lag_days", 30))
    sides = _complaint_sides(
        complaints=complaints,
        deliveries=w.filter(pl.col("event_type") == "delivered"),
        windows=windows,
        resolver=resolver,
        lag_days=lag,
    )
    sides = pl.concat([sides, sides.with_columns(pl.lit(ALL).alias("provider"))])
    complaint_counts = {
        (r["pool"], r["provider"], r["side"]): r["n"]
        for r in sides.group_by(keys).agg(pl.len().alias("n")).iter_rows(named=True)
    }

    latency = (
        both.filter((et == "delivered") & pl.col("queued_time").is_not_null())
        .with_columns(
            ((pl.col("event_time") - pl.col("queued_time")).dt.total_microseconds() / 1e6).alias("v")
        )
        .filter(pl.col("v") >= 0)
        .group_by(keys)
        .agg(pl.col("v"))
    )
    lat = {
        (r["pool"], r["provider"], r["side"]): np.asarray(r["v"], dtype=float)
        for r in latency.iter_rows(named=True)
    }
    per_msg = (
        both.filter(et.is_in(ATTEMPTED_MESSAGE_TYPES))
        .group_by([*keys, "msg_key"])
        .agg(et.is_in(ATTEMPT_TYPES).sum().alias("a"))
        .group_by(keys)
        .agg(pl.col("a"))
    )
    apm = {
        (r["pool"], r["provider"], r["side"]): np.asarray(r["a"], dtype=float)
        for r in per_msg.iter_rows(named=True)
    }

    win = {r["pool"]: r for r in windows.iter_rows(named=True)}
    pairs = sorted({(p, pr) for (p, pr, _s) in c} | {(p, ALL) for p in win})
    empty = np.asarray([], dtype=float)
    rows: list[dict[str, Any]] = []
    for pool, provider in pairs:
        cb, ca = c.get((pool, provider, "before"), {}), c.get((pool, provider, "after"), {})

        def g(d: Mapping[str, Any], k: str) -> int:
            return int(d.get(k) or 0)

        def emit(metric: str, values: dict[str, Any], pool: str = pool, provider: str = provider) -> None:
            rows.append(
                {"pool": pool, "provider": provider, "metric": metric, **values, **_window_cols(win[pool])}
            )

        emit(
            "messages",
            {
                "unit": "messages",
                "before_value": float(g(cb, "messages")),
                "after_value": float(g(ca, "messages")),
                "before_n": g(cb, "messages"),
                "after_n": g(ca, "messages"),
                **dict(
                    zip(
                        ("abs_change", "rel_change"),
                        _changes(float(g(cb, "messages")), float(g(ca, "messages"))),
                        strict=True,
                    )
                ),
                "significant": False,
                "small_sample": False,
            },
        )
        spec = [
            ("deferral_rate", "deferred", "attempts"),
            ("bounce_rate", "bounced", "finals"),
            ("expiry_rate", "expired", "finals"),
        ]
        for metric, num, den in spec:
            emit(
                metric,
                _prow(
                    g(cb, num),
                    g(cb, den),
                    g(ca, num),
                    g(ca, den),
                    metric,
                    policy,
                    confidence,
                    alpha,
                    min_expected,
                ),
            )
        for cons in all_consequences:
            kb = consequences.get((pool, provider, "before"), {}).get(cons, 0)
            ka = consequences.get((pool, provider, "after"), {}).get(cons, 0)
            metric = f"bounce_rate:{cons}"
            emit(
                metric,
                _prow(
                    kb, g(cb, "finals"), ka, g(ca, "finals"), metric, policy, confidence, alpha, min_expected
                ),
            )
        emit(
            "complaint_rate",
            _prow(
                complaint_counts.get((pool, provider, "before"), 0),
                g(cb, "delivered"),
                complaint_counts.get((pool, provider, "after"), 0),
                g(ca, "delivered"),
                "complaint_rate",
                policy,
                confidence,
                alpha,
                min_expected,
            ),
        )
        for metric, row in sample_rows(
            before=lat.get((pool, provider, "before"), empty),
            after=lat.get((pool, provider, "after"), empty),
            kind="latency",
            min_n=min_n_for(policy, "latency_p50_s"),
            confidence=confidence,
            alpha=alpha,
            cap=cap,
        ):
            emit(metric, row)
        for metric, row in sample_rows(
            before=apm.get((pool, provider, "before"), empty),
            after=apm.get((pool, provider, "after"), empty),
            kind="attempts",
            min_n=min_n_for(policy, "attempts_per_message"),
            confidence=confidence,
            alpha=alpha,
            cap=cap,
        ):
            emit(metric, row)
    return frame_from_rows(rows, COMPARISON_SCHEMA).sort("pool", "provider", "metric")


def _prow(
    kb: int,
    nb: int,
    ka: int,
    na: int,
    metric: str,
    policy: Mapping[str, Any],
    confidence: float,
    alpha: float,
    min_expected: float,
) -> dict[str, Any]:
    return proportion_row(
        k_before=kb,
        n_before=nb,
        k_after=ka,
        n_after=na,
        min_n=min_n_for(policy, metric),
        min_expected=min_expected,
        confidence=confidence,
        alpha=alpha,
    )


def _window_cols(w: Mapping[str, Any]) -> dict[str, Any]:
    return {k: w[k] for k in ("cutover_time", "before_start", "before_end", "after_start", "after_end")}


def frame_from_rows(rows: list[dict[str, Any]], schema: pl.Schema) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame([{n: r.get(n) for n in schema.names()} for r in rows], schema=schema)


# --------------------------------------------------------------------------- in-flight drain


def inflight_drain(
    *, events: pl.LazyFrame, plan: pl.DataFrame, policy: Mapping[str, Any], data_end: datetime | None = None
) -> pl.DataFrame:
    """Per pool: the PowerMTA queue's drain after the cutover, messages left behind, volume parity
    and double sends. ``events``: annotated canonical events."""
    if data_end is None:
        data_end = events.select(pl.col("event_time").max()).collect().item()
    windows = plan_windows(plan, policy=policy, data_end=data_end)
    if windows.is_empty():
        return pl.DataFrame(schema=DRAIN_SCHEMA)
    band = policy.get("volume_parity_band") or [0.8, 1.25]
    min_after_h = float(policy.get("volume_parity_min_after_hours", 24))
    data_start = events.select(pl.col("event_time").min()).collect().item()
    ev = events.join(windows.lazy().rename({"pool": "pool_key"}), on="pool_key", how="inner").rename(
        {"pool_key": "pool_k"}
    )
    et, t = pl.col("event_type"), pl.col("event_time")
    is_pmta = pl.col("mta") == "pmta"

    drained = (
        ev.filter(
            is_pmta
            & et.is_in(FINAL_TYPES)
            & (pl.col("queued_time") < pl.col("cutover_time"))
            & (t >= pl.col("cutover_time"))
        )
        .with_columns(((t - pl.col("cutover_time")).dt.total_microseconds() / 1e6).alias("tail"))
        .group_by("pool_k")
        .agg(
            pl.col("msg_key").n_unique().alias("drained_messages"),
            (et == "delivered").sum().alias("drained_delivered"),
            (et == "bounced").sum().alias("drained_bounced"),
            (et == "expired").sum().alias("drained_expired"),
            pl.col("tail").max().alias("tail_last_s"),
            pl.col("tail").quantile(0.5, interpolation="linear").alias("tail_p50_s"),
            pl.col("tail").quantile(0.95, interpolation="linear").alias("tail_p95_s"),
            t.max().alias("last_finish_time"),
        )
        .collect()
    )
    # Messages PowerMTA queued in the baseline window and tried at least once, and which of them
    # never reached a final outcome anywhere in the lake.
    queued = (
        ev.filter(
            is_pmta
            & et.is_in(ATTEMPTED_MESSAGE_TYPES)
            & (pl.col("queued_time") >= pl.col("before_start"))
            & (pl.col("queued_time") < pl.col("cutover_time"))
        )
        .select("pool_k", "msg_key")
        .unique()
    )
    finals = ev.filter(is_pmta & et.is_in(FINAL_TYPES)).select("pool_k", "msg_key").unique()
    left = (
        queued.group_by("pool_k")
        .agg(pl.len().alias("pmta_queued_before"))
        .join(
            queued.join(finals, on=["pool_k", "msg_key"], how="anti")
            .group_by("pool_k")
            .agg(pl.len().alias("unfinished_messages")),
            on="pool_k",
            how="left",
        )
        .collect()
    )
    volume = (
        ev.filter(et.is_in(FINAL_TYPES))
        .group_by("pool_k")
        .agg(
            ((t >= pl.col("before_start")) & (t < pl.col("before_end"))).sum().alias("before_finals"),
            ((t >= pl.col("after_start")) & (t < pl.col("after_end"))).sum().alias("after_finals"),
        )
        .collect()
    )
    deliveries = (
        ev.filter(
            (et == "delivered")
            & (t >= pl.col("before_start"))
            & (t < pl.col("after_end"))
            & pl.col("recipient").is_not_null()
        )
        .select("pool_k", "mta", pl.col("recipient").str.to_lowercase().alias("rcpt"), "job_id", "message_id")
        .collect()
    )
    double = _double_sent(deliveries)

    def by_pool(frame: pl.DataFrame) -> dict[str, dict[str, Any]]:
        return {r["pool_k"]: r for r in frame.iter_rows(named=True)}

    d_map, l_map, v_map = by_pool(drained), by_pool(left), by_pool(volume)
    rows = []
    for wrow in windows.iter_rows(named=True):
        pool = wrow["pool"]
        d, lft, v, dbl = (
            d_map.get(pool, {}),
            l_map.get(pool, {}),
            v_map.get(pool, {}),
            double.get(pool, (0, 0, 0)),
        )
        before_start = (
            max(wrow["before_start"], data_start) if data_start is not None else wrow["before_start"]
        )
        before_days = max((wrow["before_end"] - before_start).total_seconds(), 0) / 86400
        after_hours = max((wrow["after_end"] - wrow["after_start"]).total_seconds(), 0) / 3600
        before_daily = (v.get("before_finals") or 0) / before_days if before_days > 0 else None
        after_daily = (v.get("after_finals") or 0) / (after_hours / 24) if after_hours > 0 else None
        ratio = after_daily / before_daily if before_daily and after_daily is not None else None
        if not before_daily:
            flag = "no_baseline"
        elif after_hours < min_after_h:
            flag = "insufficient_after"
        elif ratio < float(band[0]):
            flag = "low"
        elif ratio > float(band[1]):
            flag = "high"
        else:
            flag = "in_band"
        queued_n = int(lft.get("pmta_queued_before") or 0)
        unfinished = int(lft.get("unfinished_messages") or 0)
        rows.append(
            {
                "pool": pool,
                "cutover_time": wrow["cutover_time"],
                "drained_messages": int(d.get("drained_messages") or 0),
                "drained_delivered": int(d.get("drained_delivered") or 0),
                "drained_bounced": int(d.get("drained_bounced") or 0),
                "drained_expired": int(d.get("drained_expired") or 0),
                "tail_last_s": d.get("tail_last_s"),
                "tail_p50_s": d.get("tail_p50_s"),
                "tail_p95_s": d.get("tail_p95_s"),
                "last_finish_time": d.get("last_finish_time"),
                "pmta_queued_before": queued_n,
                "unfinished_messages": unfinished,
                "unfinished_share": unfinished / queued_n if queued_n else None,
                "before_daily_volume": before_daily,
                "after_daily_volume": after_daily,
                "volume_ratio": ratio,
                "after_hours": after_hours,
                "parity_flag": flag,
                "double_sent": dbl[0],
                "double_sent_by_job": dbl[1],
                "double_sent_by_message_id": dbl[2],
            }
        )
    return frame_from_rows(rows, DRAIN_SCHEMA).sort("pool")


def _double_sent(deliveries: pl.DataFrame) -> dict[str, tuple[int, int, int]]:
    """Per pool: (double sends, recipient+job pairs delivered by both MTAs, recipient+Message-Id pairs).

    Only the same Message-Id delivered by both MTAs is proof of a double send; a job legitimately
    reaches one recipient several times (recurring campaigns), so the job match is informational.
    """
    out: dict[str, tuple[int, int, int]] = {}
    if deliveries.is_empty():
        return out
    pm = deliveries.filter(pl.col("mta") == "pmta")
    km = deliveries.filter(pl.col("mta") == "kumo").with_row_index("kid")
    by_job = km.filter(pl.col("job_id").is_not_null()).join(
        pm.filter(pl.col("job_id").is_not_null()).select("pool_k", "rcpt", "job_id").unique(),
        on=["pool_k", "rcpt", "job_id"],
        how="semi",
    )
    by_mid = km.filter(pl.col("message_id").is_not_null()).join(
        pm.filter(pl.col("message_id").is_not_null()).select("pool_k", "rcpt", "message_id").unique(),
        on=["pool_k", "rcpt", "message_id"],
        how="semi",
    )

    def count(frame: pl.DataFrame, key: list[str]) -> dict[str, int]:
        agg = frame.select(["pool_k", *key]).unique().group_by("pool_k").agg(pl.len().alias("n"))
        return {r["pool_k"]: r["n"] for r in agg.iter_rows(named=True)}

    nj = count(by_job, ["rcpt", "job_id"])
    nm = count(by_mid, ["rcpt", "message_id"])
    for pool in set(nj) | set(nm):
        out[pool] = (nm.get(pool, 0), nj.get(pool, 0), nm.get(pool, 0))
    return out


# --------------------------------------------------------------------------- verdicts


def _provider_selected(provider: str, selector: Any, majors: Iterable[str]) -> bool:
    majors = set(majors)
    if isinstance(selector, list | tuple):
        return provider in selector
    if selector == "all":
        return provider == ALL
    if selector == "major":
        return provider in majors
    if selector == "major_and_all":
        return provider in majors or provider == ALL
    return True  # "any"


def _evidence(
    row: Mapping[str, Any] | None,
    *,
    rule: Mapping[str, Any],
    detail: str,
    provider: str = ALL,
    metric: str = "",
    before: float | None = None,
    after: float | None = None,
) -> dict[str, Any]:
    if row is not None:
        provider, metric = row["provider"], row["metric"]
        before, after = row.get("before_value"), row.get("after_value")
    return {
        "provider": provider,
        "metric": metric,
        "before": before,
        "after": after,
        "p_value": row.get("p_value") if row is not None else None,
        "rule": rule["name"],
        "verdict": rule["verdict"],
        "detail": detail,
    }


def _judged(row: Mapping[str, Any]) -> bool:
    return not (
        row["small_sample"]
        or row["p_value"] is None
        or row["before_value"] is None
        or row["after_value"] is None
    )


def _adjusted_p_values(tests: list[tuple[int, float]], method: str) -> dict[int, float]:
    """Family-wise correction over one pool's significance tests (statsmodels' multipletests).

    A pool is compared on many metrics at many providers; without a correction some rows come out
    "significant" by chance alone. `method` is a statsmodels name (`holm` by default) or `none`.
    """
    if not tests or method == "none":
        return {i: p for i, p in tests}
    adjusted = multipletests([p for _, p in tests], method=method)[1]
    return {i: float(a) for (i, _), a in zip(tests, adjusted, strict=True)}


def _rise_met(row: Mapping[str, Any], rule: Mapping[str, Any], alpha: float, *, drop: bool, p: float) -> bool:
    if not _judged(row):
        return False
    if p >= float(rule.get("alpha", alpha)):
        return False
    min_rel = float(rule.get("min_relative_change", 0))
    b, a = row["before_value"], row["after_value"]
    if drop:
        return a < b and (b == 0 or (a - b) / b <= -min_rel)
    return a > b and (b == 0 or (a - b) / b >= min_rel)


def evaluate_pool(
    *,
    pool: str,
    comparison: list[dict[str, Any]],
    seedlist: list[dict[str, Any]],
    drain: Mapping[str, Any] | None,
    policy: Mapping[str, Any],
) -> tuple[str, list[dict[str, Any]]]:
    """(verdict, evidence rows) of one pool under the policy's rules."""
    _c, alpha, _e, _cap = policy_stats(policy)
    majors = policy.get("major_providers") or []
    evidence: list[dict[str, Any]] = []
    rules = policy.get("rules") or []

    def selected(rule: Mapping[str, Any]) -> list[dict[str, Any]]:
        rows = seedlist if rule.get("source") == "seedlist" else comparison
        return [
            r
            for r in rows
            if r["metric"] == rule.get("metric")
            and _provider_selected(r["provider"], rule.get("providers", "any"), majors)
        ]

    selections = [(rule, selected(rule)) for rule in rules]
    family = [
        (id(r), float(r["p_value"]))
        for rule, sel in selections
        if rule["kind"] in ("significant_rise", "significant_drop")
        for r in sel
        if _judged(r)
    ]
    family = list(dict(family).items())  # a row judged by two rules is one test
    method = str((policy.get("statistics") or {}).get("multiple_testing", "holm"))
    adjusted = _adjusted_p_values(family, method)
    for rule, sel in selections:
        kind = rule["kind"]
        if kind in ("significant_rise", "significant_drop"):
            drop = kind == "significant_drop"
            for r in sel:
                p_adj = adjusted.get(id(r), 1.0)
                if _rise_met(r, rule, alpha, drop=drop, p=p_adj):
                    evidence.append(
                        _evidence(
                            r,
                            rule=rule,
                            detail=(
                                f"{r['metric']} {'fell' if drop else 'rose'} from {_fmt(r['before_value'])} to "
                                f"{_fmt(r['after_value'])} (p={r['p_value']:.3g}, {method}-adjusted over "
                                f"{len(family)} tests {p_adj:.3g}, n={r['before_n']}/{r['after_n']})"
                            ),
                        )
                    )
        elif kind == "after_at_least":
            thr = float(rule["threshold"])
            for r in sel:
                if (
                    r["after_value"] is not None
                    and r["after_n"] >= min_n_for(policy, r["metric"])
                    and r["after_value"] >= thr
                ):
                    # A ceiling is judged on the interval: it fires only when even the lower bound
                    # is at or above the threshold. A point estimate above it from a handful of events
                    # (interval reaching below) is noise at this sample size: the comparison row
                    # shows it, the verdict does not move (as with small samples).
                    low = r.get("after_ci_low")
                    if low is not None and low < thr:
                        continue
                    evidence.append(
                        _evidence(
                            r,
                            rule=rule,
                            detail=f"{r['metric']} after = {_fmt(r['after_value'])} >= {thr} (n={r['after_n']})",
                        )
                    )
        elif kind == "small_sample":
            for r in sel:
                mn = min_n_for(policy, r["metric"])
                if r["provider"] == ALL:
                    fired = r["before_n"] < mn or r["after_n"] < mn
                else:
                    fired = r["before_n"] >= mn and r["after_n"] < mn
                if fired:
                    evidence.append(
                        _evidence(
                            r,
                            rule=rule,
                            before=None,
                            after=None,
                            detail=f"n before/after = {r['before_n']}/{r['after_n']} < {mn}",
                        )
                    )
        elif drain is not None and kind == "volume_parity":
            if drain["parity_flag"] in ("low", "high"):
                evidence.append(
                    _evidence(
                        None,
                        rule=rule,
                        metric="daily_volume",
                        before=drain["before_daily_volume"],
                        after=drain["after_daily_volume"],
                        detail=f"volume ratio {_fmt(drain['volume_ratio'])} outside {policy.get('volume_parity_band')}",
                    )
                )
        elif drain is not None and kind == "double_sent":
            if drain["double_sent"] > int(rule.get("max_count", 0)):
                evidence.append(
                    _evidence(
                        None,
                        rule=rule,
                        metric="double_sent",
                        after=float(drain["double_sent"]),
                        detail=f"{drain['double_sent']} messages (same Message-Id and recipient) delivered by both MTAs",
                    )
                )
        elif drain is not None and kind == "left_behind":
            share = drain["unfinished_share"]
            if share is not None and share > float(rule.get("max_share", 0)):
                evidence.append(
                    _evidence(
                        None,
                        rule=rule,
                        metric="unfinished_share",
                        after=share,
                        detail=f"{drain['unfinished_messages']} of {drain['pmta_queued_before']} PowerMTA messages never finished",
                    )
                )
    verdict = max((e["verdict"] for e in evidence), key=_RANK.__getitem__, default="proceed")
    return verdict, evidence


def _fmt(x: float | None) -> str:
    return "null" if x is None else f"{x:.4g}"


def cutover_verdicts(
    *,
    plan: pl.DataFrame,
    comparison: pl.DataFrame,
    seedlist: pl.DataFrame | None,
    drain: pl.DataFrame | None,
    policy: Mapping[str, Any],
) -> pl.DataFrame:
    """One row per pool with a cutover time: verdict, rules fired and the evidence rows."""
    comp = {}
    for r in comparison.iter_rows(named=True):
        comp.setdefault(r["pool"], []).append(r)
    seeds = {}
    if seedlist is not None:
        for r in seedlist.iter_rows(named=True):
            seeds.setdefault(r["pool"], []).append(r)
    drains = {r["pool"]: r for r in drain.iter_rows(named=True)} if drain is not None else {}
    rows = []
    for p in plan.filter(pl.col("cutover_time").is_not_null()).iter_rows(named=True):
        verdict, evidence = evaluate_pool(
            pool=p["pool"],
            comparison=comp.get(p["pool"], []),
            seedlist=seeds.get(p["pool"], []),
            drain=drains.get(p["pool"]),
            policy=policy,
        )
        rows.append(
            {
                "pool": p["pool"],
                "cutover_time": p["cutover_time"],
                "cutover_source": p["cutover_source"],
                "verdict": verdict,
                "rules_fired": sorted({e["rule"] for e in evidence}),
                "evidence": evidence,
                "evidence_count": len(evidence),
            }
        )
    return frame_from_rows(rows, VERDICT_SCHEMA).sort("pool")


# --------------------------------------------------------------------------- lake access


def scan_events(lake: Lake) -> pl.LazyFrame:
    """All event partitions (``LAKE/events/date=*/``) as one frame; empty with the canonical schema
    when none exist yet."""
    if not any(lake.events.glob("date=*/*.parquet")):
        return pl.LazyFrame(schema=EVENT_SCHEMA)
    return pl.scan_parquet(str(lake.events / "date=*" / "*.parquet"), hive_partitioning=False)


def scan_table(lake: Lake, name: str) -> pl.LazyFrame | None:
    """A lake table (``<name>/data.parquet`` or ``<name>/date=*/``), or None when it is not built."""
    whole = lake.table_dir(name) / "data.parquet"
    if whole.exists():
        return pl.scan_parquet(whole)
    if any(lake.table_dir(name).glob("date=*/*.parquet")):
        return pl.scan_parquet(str(lake.table_dir(name) / "date=*" / "*.parquet"), hive_partitioning=False)
    return None


def read_plan(landing_root: Path) -> dict[str, Any]:
    """``landing/plan.yaml`` (or ``plan.yml``) as a mapping; ``{}`` when absent."""
    for name in ("plan.yaml", "plan.yml"):
        if (landing_root / name).exists():
            return load_yaml(landing_root / name)
    return {}
