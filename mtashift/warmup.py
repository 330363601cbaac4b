"""Warm-up (cadence) state per source IP × provider, from the daily provider rates.

The KumoMTA translation reads ``warmup_state`` to decide how much an IP may send per provider
(``source_selection_rate`` / ``max_message_rate``): the level it has *proven* recently, and
whether it is still ramping. Definitions: ``schemas/rates.py`` (WARMUP_* columns).
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from schemas.rates import (
    WARMUP_DAILY_SCHEMA,
    WARMUP_STATE_SCHEMA,
    WARMUP_WINDOW_DAYS,
)

_KEYS = ["source_ip", "provider"]


def _active_days(rates_daily: pl.LazyFrame) -> pl.LazyFrame:
    """Per IP × provider × day: sums over pools, sources and MTAs; only days with attempts."""
    return (
        rates_daily.filter(pl.col("source_ip").is_not_null())
        .group_by([*_KEYS, "day"])
        .agg(
            pl.col("delivered").sum().cast(pl.Int64),
            pl.col("attempts").sum().cast(pl.Int64),
            pl.col("deferred").sum().cast(pl.Int64),
        )
        .filter(pl.col("attempts") > 0)
    )


def history_end(rates_daily: pl.LazyFrame) -> date | None:
    """The last day of the whole history (the warm-up window ends there)."""
    return rates_daily.select(pl.col("day").max()).collect().item()


def warmup_daily(*, rates_daily: pl.LazyFrame, as_of: date | None = None) -> pl.LazyFrame:
    """Long table: one row per IP × provider × day from its first active day to ``as_of``, 0-filled.

    ``as_of`` defaults to the last day in ``rates_daily``. Columns: WARMUP_DAILY_SCHEMA.
    """
    as_of = as_of or history_end(rates_daily)
    if as_of is None:
        return pl.LazyFrame(schema=WARMUP_DAILY_SCHEMA)
    active = _active_days(rates_daily).filter(pl.col("day") <= as_of)
    spans = (
        active.group_by(_KEYS)
        .agg(pl.col("day").min().alias("first_day"))
        .with_columns(pl.date_ranges(pl.col("first_day"), pl.lit(as_of), interval="1d").alias("day"))
        .explode("day")
        .drop("first_day")
    )
    return (
        spans.join(active, on=[*_KEYS, "day"], how="left")
        .with_columns(pl.col("delivered", "attempts", "deferred").fill_null(0))
        .select([pl.col(n).cast(t) for n, t in WARMUP_DAILY_SCHEMA.items()])
        .sort([*_KEYS, "day"])
    )


def warmup_state(*, rates_daily: pl.LazyFrame, as_of: date | None = None) -> pl.DataFrame:
    """One row per IP × provider (WARMUP_STATE_SCHEMA); empty when there is no history.

    Window: the 7 days ending at ``as_of``, 0-filled — days before the IP's first day count as 0
    because it sent nothing then, so a fresh IP shows a positive trend. ``trend_slope`` is the
    numpy.polyfit degree-1 slope over that window (all keys fitted in one call: same x for every
    key); ``trend_ratio`` = mean(last 3 days) / mean(previous 4 days).
    """
    as_of = as_of or history_end(rates_daily)
    if as_of is None:
        return pl.DataFrame(schema=WARMUP_STATE_SCHEMA)
    daily = warmup_daily(rates_daily=rates_daily, as_of=as_of).collect()
    if daily.is_empty():
        return pl.DataFrame(schema=WARMUP_STATE_SCHEMA)

    window_start = as_of - timedelta(days=WARMUP_WINDOW_DAYS - 1)
    summary = daily.group_by(_KEYS, maintain_order=True).agg(
        pl.col("day").filter(pl.col("attempts") > 0).min().alias("first_day"),
        pl.col("day").filter(pl.col("attempts") > 0).max().alias("last_day"),
        (pl.col("attempts") > 0).sum().cast(pl.Int64).alias("days_active"),
        pl.col("delivered").sum().cast(pl.Int64).alias("delivered_total"),
        pl.col("delivered").alias("delivered_history"),
    )

    # Window matrix: one row per key, one column per day (0-filled, including days before first_day).
    offsets = pl.DataFrame({"__i": list(range(WARMUP_WINDOW_DAYS))})
    grid = (
        summary.select(_KEYS)
        .join(offsets, how="cross")
        .with_columns((pl.lit(window_start) + pl.duration(days=pl.col("__i"))).cast(pl.Date).alias("day"))
        .join(daily.select([*_KEYS, "day", "delivered"]), on=[*_KEYS, "day"], how="left")
        .with_columns(pl.col("delivered").fill_null(0))
        .sort([*_KEYS, "__i"])
    )
    matrix = grid["delivered"].to_numpy().reshape(-1, WARMUP_WINDOW_DAYS).astype(np.float64)
    x = np.arange(WARMUP_WINDOW_DAYS, dtype=np.float64)
    slopes = np.polyfit(x, matrix.T, 1)[0]
    last3 = matrix[:, -3:].mean(axis=1)
    prev4 = matrix[:, :-3].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(prev4 > 0, last3 / np.where(prev4 > 0, prev4, 1.0), np.nan)
    window = (
        grid.select(_KEYS)
        .unique(maintain_order=True)
        .with_columns(
            pl.Series("sustained_level", matrix.max(axis=1).astype(np.int64)),
            # Integer-valued inputs: rounding removes least-squares float noise (1e-12).
            pl.Series("trend_slope", np.round(slopes, 9)),
            pl.Series("trend_ratio", np.round(ratio, 9)).fill_nan(None),
        )
    )

    last_mta = (
        rates_daily.filter(
            pl.col("source_ip").is_not_null() & (pl.col("attempts") > 0) & (pl.col("day") <= as_of)
        )
        .group_by([*_KEYS, "mta"])
        .agg(pl.col("last_attempt_time").max().alias("__t"))
        .sort([*_KEYS, "__t", "mta"], nulls_last=False)
        .group_by(_KEYS, maintain_order=True)
        .agg(pl.col("mta").last().alias("mta_last_seen"))
        .collect()
    )

    out = (
        summary.join(window, on=_KEYS, how="left")
        .join(last_mta, on=_KEYS, how="left")
        .with_columns(pl.lit(as_of).alias("as_of"))
    )
    return out.select([pl.col(n).cast(t) for n, t in WARMUP_STATE_SCHEMA.items()]).sort(_KEYS)
