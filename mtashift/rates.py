"""Per-provider delivery rates by pool × source × source IP × MTA, per hour or per day.

Pure functions over polars LazyFrames; definitions of every column (denominators, percentiles)
are in ``schemas/rates.py`` and ``schemas/docs/rates.md``.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from mtashift.lake import Lake
from mtashift.providers import ProviderMap, add_provider, domain_mx_map
from schemas.events import EVENT_SCHEMA
from schemas.rates import (
    ATTEMPT_EVENT_TYPES,
    BOUNDED_RATES,
    CONSEQUENCE_COLUMNS,
    LATENCY_QUANTILES,
    PROVIDER_RATES_DAILY_SCHEMA,
    PROVIDER_RATES_HOURLY_SCHEMA,
    RATE_KEYS,
    UNCLASSIFIED_COLUMN,
)

Grain = Literal["hour", "day"]

# Event types rates read at all; everything else is dropped before attribution.
_COUNTED_TYPES: tuple[str, ...] = (*ATTEMPT_EVENT_TYPES, "queue_deferred", "remote_bounce", "complaint")

_NEEDED = ("event_type", "event_time", "queued_time", "recipient_domain", "mx_host", *RATE_KEYS[1:])


def _bucket_values() -> dict[str, list[str]]:
    """bounced_* column -> the consequence values counted in it (column order as in the schema)."""
    out: dict[str, list[str]] = {}
    for value, column in CONSEQUENCE_COLUMNS.items():
        out.setdefault(column, []).append(value)
    return out


def rates_schema(grain: Grain) -> pl.Schema:
    return PROVIDER_RATES_HOURLY_SCHEMA if grain == "hour" else PROVIDER_RATES_DAILY_SCHEMA


def period_keys(grain: Grain) -> list[str]:
    return ["day", "hour"] if grain == "hour" else ["day"]


def _ratio(num: str, den: str) -> pl.Expr:
    return pl.when(pl.col(den) > 0).then(pl.col(num) / pl.col(den)).otherwise(None).cast(pl.Float64)


def _count(cond: pl.Expr) -> pl.Expr:
    return cond.sum().cast(pl.Int64)


def rates(
    *,
    events: pl.LazyFrame,
    consequences: pl.LazyFrame | None,
    grain: Grain,
    domain_map: pl.LazyFrame | None = None,
    pmap: ProviderMap | None = None,
) -> pl.LazyFrame:
    """Rates by provider × pool × source × source_ip × mta × (day[, hour]) — one row per group.

    ``events``: canonical events (any number of days); a ``provider`` column is used as is when
    present, otherwise it is added with :func:`add_provider` using ``domain_map`` (default: the
    MX observations of ``events`` themselves). ``consequences``: ``event_id, consequence`` rows
    (the ``bounces`` table) or None when that classification is not available, in which case
    every bounce is ``bounced_unclassified`` and ``consequence_source`` is ``none``.
    Output columns and order: ``schemas.rates.PROVIDER_RATES_{HOURLY,DAILY}_SCHEMA``, sorted by
    period and keys (nulls last) so identical inputs give identical bytes.
    """
    if grain not in ("hour", "day"):
        raise ValueError(f"grain must be 'hour' or 'day', not {grain!r}")
    names = events.collect_schema().names()
    has_provider = "provider" in names
    keep = [c for c in _NEEDED if c in names]
    if has_provider:
        keep.append("provider")
    if consequences is not None:
        keep.append("event_id")
    frame = events.filter(pl.col("event_type").is_in(_COUNTED_TYPES)).select(keep)
    if not has_provider:
        dm = domain_map if domain_map is not None else domain_mx_map(events=events, pmap=pmap)
        frame = add_provider(frame, domain_map=dm, pmap=pmap)

    if consequences is not None:
        cons = consequences.select(
            pl.col("event_id").cast(pl.String),
            pl.col("consequence").cast(pl.String).str.to_lowercase().alias("__consequence"),
        ).unique("event_id", keep="first", maintain_order=True)
        frame = frame.join(cons, on="event_id", how="left", maintain_order="left")
        source_label = "bounces"
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("__consequence"))
        source_label = "none"

    et = pl.col("event_type")
    period = [pl.col("event_time").dt.date().alias("day")]
    if grain == "hour":
        period.append(pl.col("event_time").dt.truncate("1h").alias("hour"))
    is_delivered = et == "delivered"
    frame = frame.with_columns(
        *period,
        # µs -> s; null for non-deliveries so quantile() ignores them.
        pl.when(is_delivered)
        .then((pl.col("event_time") - pl.col("queued_time")).dt.total_microseconds() / 1_000_000)
        .otherwise(None)
        .alias("__latency_s"),
    )
    group = [*period_keys(grain), *RATE_KEYS]

    is_bounced = et == "bounced"
    known = list(CONSEQUENCE_COLUMNS)
    aggs = [
        _count(et.is_in(ATTEMPT_EVENT_TYPES)).alias("attempts"),
        _count(is_delivered).alias("delivered"),
        _count(et == "deferred").alias("deferred"),
        _count(is_bounced).alias("bounced"),
        *[
            _count(is_bounced & pl.col("__consequence").is_in(values).fill_null(False)).alias(column)
            for column, values in _bucket_values().items()
        ],
        _count(is_bounced & ~pl.col("__consequence").is_in(known).fill_null(False)).alias(
            UNCLASSIFIED_COLUMN
        ),
        _count(et == "expired").alias("expired"),
        _count(et == "queue_deferred").alias("queue_deferred"),
        _count(et == "remote_bounce").alias("remote_bounced"),
        _count(et == "complaint").alias("complaints"),
        pl.col("__latency_s").count().cast(pl.Int64).alias("latency_samples"),
        *[
            pl.col("__latency_s").quantile(q, interpolation="linear").alias(name)
            for name, q in LATENCY_QUANTILES.items()
        ],
        pl.col("event_time").filter(et.is_in(ATTEMPT_EVENT_TYPES)).max().alias("last_attempt_time"),
    ]
    aggs.append(
        # Occurrences of each clock minute among the group's deliveries; the largest is the peak.
        pl.col("event_time")
        .filter(is_delivered)
        .dt.truncate("1m")
        .unique_counts()
        .max()
        .alias("peak_delivered_per_minute")
    )
    out = (
        frame.group_by(group)
        .agg(aggs)
        .with_columns(
            pl.col("peak_delivered_per_minute").fill_null(0),
            _ratio("delivered", "attempts").alias("delivery_rate"),
            _ratio("deferred", "attempts").alias("deferral_rate"),
            _ratio("bounced", "attempts").alias("bounce_rate"),
            _ratio("expired", "attempts").alias("expiry_rate"),
            _ratio("complaints", "delivered").alias("complaint_rate"),
            pl.when(pl.col("delivered") > 0)
            .then((pl.col("delivered") + pl.col("deferred")) / pl.col("delivered"))
            .otherwise(None)
            .alias("attempts_per_delivered"),
            # Inputs have µs resolution; rounding to it removes float noise from interpolation, so
            # a hand-computed percentile compares exactly.
            *[pl.col(name).round(6) for name in LATENCY_QUANTILES],
            pl.lit(source_label).alias("consequence_source"),
        )
    )
    schema = rates_schema(grain)
    return out.select([pl.col(n).cast(t) for n, t in schema.items()]).sort(group, nulls_last=True)


def empty_rates(grain: Grain) -> pl.DataFrame:
    return pl.DataFrame(schema=rates_schema(grain))


# --------------------------------------------------------------------------- lake inputs


def day_events(*, lake: Lake, day: str) -> pl.LazyFrame:
    """The day's canonical events, or an empty frame when the partition is absent."""
    part = lake.partition_dir("events", day)
    if not any(part.glob("*.parquet")):
        return pl.LazyFrame(schema=EVENT_SCHEMA)
    return pl.scan_parquet(part / "*.parquet", hive_partitioning=False)


def day_consequences(*, lake: Lake, day: str) -> pl.LazyFrame | None:
    """``event_id, consequence`` from ``LAKE/bounces/date=day`` when it exists (and has them)."""
    part = lake.partition_dir("bounces", day)
    if not any(part.glob("*.parquet")):
        return None
    frame = pl.scan_parquet(part / "*.parquet", hive_partitioning=False)
    if not {"event_id", "consequence"} <= set(frame.collect_schema().names()):
        return None
    return frame.select("event_id", "consequence")


def history(*, lake: Lake, table: str, schema: pl.Schema | None = None) -> pl.LazyFrame | None:
    """All ``date=*`` partitions of a daily table (None, or an empty frame of ``schema``, if none)."""
    folder = lake.table_dir(table)
    if not any(folder.glob("date=*/*.parquet")):
        return None if schema is None else pl.LazyFrame(schema=schema)
    return pl.scan_parquet(folder / "date=*" / "*.parquet", hive_partitioning=False)


def raw_events(*, lake: Lake) -> pl.LazyFrame:
    """Every canonical row of the raw layer (PowerMTA and KumoMTA files; copies not yet removed)."""
    from mtashift.events import scan_raw_files

    return scan_raw_files(
        sorted(p for kind in ("pmta", "kumo") for p in lake.raw_dir(kind).glob("*.parquet"))
    )


# --------------------------------------------------------------------------- checks


def bounded_rate_violations(frame: pl.DataFrame) -> dict[str, int]:
    """Rows per rate column outside [0, 1] (nulls are fine: zero denominators)."""
    return {
        name: int(frame.select(((pl.col(name) < 0) | (pl.col(name) > 1)).sum()).item() or 0)
        for name in BOUNDED_RATES
    }


def reconcile_with_events(*, rates_frame: pl.DataFrame, events: pl.LazyFrame) -> dict[str, dict[str, int]]:
    """Totals of the rates table against direct counts of the events (must be equal)."""
    direct = (
        events.select(
            *[
                (pl.col("event_type") == t).sum().cast(pl.Int64).alias(c)
                for t, c in (
                    ("delivered", "delivered"),
                    ("deferred", "deferred"),
                    ("bounced", "bounced"),
                    ("expired", "expired"),
                    ("complaint", "complaints"),
                )
            ],
            pl.col("event_type").is_in(ATTEMPT_EVENT_TYPES).sum().cast(pl.Int64).alias("attempts"),
        )
        .collect()
        .row(0, named=True)
    )
    split = [*dict.fromkeys(CONSEQUENCE_COLUMNS.values()), UNCLASSIFIED_COLUMN]
    in_table = {c: int(rates_frame[c].sum() or 0) for c in direct}
    in_table["bounced_by_consequence"] = int(sum(int(rates_frame[c].sum() or 0) for c in split))
    direct = {k: int(v or 0) for k, v in direct.items()}
    direct["bounced_by_consequence"] = direct["bounced"]
    return {"table": in_table, "events": direct}
