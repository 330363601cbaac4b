"""Derived frames the drift expectations judge: the record-type mix and the node clocks of a day.

Both reduce an events partition to a few rows (per MTA record type, per node); the suites
``events_record_mix`` and ``events_clock`` then hold the thresholds. The clock-offset estimate is
explained (and its limits stated) in ``schemas/docs/quality.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from mtashift.quality.suites import RECORD_TYPES, load_suite
from schemas.events import MTAS

# Timestamps not set by the node's own clock at the moment of the event (reports, DSN dates,
# transfers): they would blur the node's activity profile.
_NOT_NODE_TIMED: tuple[str, ...] = ("remote_bounce", "remote_status", "complaint", "other")

RECORD_MIX_SCHEMA = pl.Schema(
    {
        "mta": pl.String(),
        "raw_type": pl.String(),
        "event_type": pl.String(),
        "raw_key": pl.String(),  # `<mta>:<raw_type>`
        "mapping": pl.String(),  # `<mta>:<raw_type>-><event_type>`
        "rows": pl.Int64(),
        "mta_rows": pl.Int64(),
        "mta_share": pl.Float64(),  # rows / mta_rows (null when the MTA logged nothing)
        "type_share": pl.Float64(),  # rows of this event_type over all raw types / mta_rows
        "mta_delivered": pl.Int64(),
    }
)

NODE_CLOCK_SCHEMA = pl.Schema(
    {
        "node": pl.String(),
        "mta": pl.String(),
        "events": pl.Int64(),  # node-timed events counted in the activity profile
        "reception_lag_median_s": pl.Float64(),  # median event_time - queued_time of `received` rows
        "clock_offset_s": pl.Float64(),  # estimated offset vs the majority clock (+ = ahead); null: not judged
        "peers": pl.Int32(),  # reference nodes the offset was estimated against
        "correlation": pl.Float64(),  # best profile correlation with those peers
    }
)


def record_mix(events: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """One row per (mta, raw_type, event_type): every known record type of both MTAs, plus any seen."""
    lf = events.lazy()
    observed = (
        lf.group_by("mta", "raw_type", "event_type").agg(pl.len().cast(pl.Int64).alias("rows")).collect()
    )
    expected = pl.DataFrame(
        [(m, r, e) for m in MTAS for r, es in RECORD_TYPES[m].items() for e in es],
        schema={"mta": pl.String, "raw_type": pl.String, "event_type": pl.String},
        orient="row",
    )
    keys = ["mta", "raw_type", "event_type"]
    mix = expected.join(observed, on=keys, how="full", coalesce=True, nulls_equal=True).with_columns(
        pl.col("rows").fill_null(0)
    )
    delivered = (
        observed.filter(pl.col("event_type") == "delivered")
        .group_by("mta")
        .agg(pl.col("rows").sum().alias("mta_delivered"))
    )
    mix = (
        mix.with_columns(
            pl.col("rows").sum().over("mta").alias("mta_rows"),
            pl.col("rows").sum().over("mta", "event_type").alias("_type_rows"),
        )
        .join(delivered, on="mta", how="left", nulls_equal=True)
        .with_columns(
            # the spellings of mtashift.quality.suites.raw_key / mapping_key
            pl.format("{}:{}", "mta", "raw_type").alias("raw_key"),
            pl.format("{}:{}->{}", "mta", "raw_type", "event_type").alias("mapping"),
            pl.when(pl.col("mta_rows") > 0).then(pl.col("rows") / pl.col("mta_rows")).alias("mta_share"),
            pl.when(pl.col("mta_rows") > 0)
            .then(pl.col("_type_rows") / pl.col("mta_rows"))
            .alias("type_share"),
            pl.col("mta_delivered").fill_null(0),
        )
    )
    return mix.select([pl.col(n).cast(t) for n, t in RECORD_MIX_SCHEMA.items()]).sort(
        "mta", "raw_type", "event_type", nulls_last=True
    )


@dataclass(frozen=True)
class ClockParams:
    bin_seconds: int
    max_lag_seconds: int
    min_events: int
    min_correlation: float
    tolerance_seconds: float

    @classmethod
    def load(cls, overrides: dict[str, Any] | None = None) -> ClockParams:
        """The parameters committed with the ``events_clock`` suite, optionally overridden."""
        c = {**load_suite("events_clock")["meta"]["parameters"], **(overrides or {})}
        return cls(
            bin_seconds=int(c["bin_seconds"]),
            max_lag_seconds=int(c["max_lag_seconds"]),
            min_events=int(c["min_events"]),
            min_correlation=float(c["min_correlation"]),
            tolerance_seconds=float(c["tolerance_seconds"]),
        )


def _profiles(lf: pl.LazyFrame, *, bin_seconds: int) -> tuple[list[str], np.ndarray]:
    binned = (
        lf.filter(pl.col("node").is_not_null() & ~pl.col("event_type").is_in(list(_NOT_NODE_TIMED)))
        .select("node", (pl.col("event_time").dt.epoch("us") // (bin_seconds * 1_000_000)).alias("bin"))
        .group_by("node", "bin")
        .agg(pl.len().alias("n"))
        .collect()
    )
    if binned.is_empty():
        return [], np.zeros((0, 0))
    nodes = sorted(binned["node"].unique().to_list())
    first = int(binned["bin"].min())
    width = int(binned["bin"].max()) - first + 1
    matrix = np.zeros((len(nodes), width))
    row = binned["node"].replace_strict({n: i for i, n in enumerate(nodes)}, return_dtype=pl.Int64).to_numpy()
    np.add.at(matrix, (row, binned["bin"].to_numpy() - first), binned["n"].to_numpy())
    return nodes, matrix


def _high_pass(x: np.ndarray, window: int) -> np.ndarray:
    """Remove the slow part (diurnal curve, cutover ramps): keep bursts and edges shorter than ``window``."""
    if window > 1 and len(x) > window:
        x = x - np.convolve(x, np.ones(window) / window, mode="same")
    return x - x.mean()


def _best_lag(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Lag k (bins) maximising corr(a[t], b[t - k]) for |k| <= max_lag, and that correlation."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0.0:
        return 0, 0.0
    size = 1 << int(np.ceil(np.log2(2 * len(a))))
    c = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    lags = np.arange(-max_lag, max_lag + 1)
    values = c[lags % size] / norm
    # Equal peaks: the smallest |lag| wins (a flat profile should not invent an offset).
    order = np.lexsort((np.abs(lags), -values))
    k = int(lags[order[0]])
    return k, float(values[order[0]])


def node_clock(events: pl.DataFrame | pl.LazyFrame, *, params: ClockParams | None = None) -> pl.DataFrame:
    """One row per node: reception-lag median and the clock offset against the majority of nodes.

    The offset of two nodes is the lag that best aligns their activity profiles (event counts per
    ``bin_seconds`` bin, slow components removed): mail is injected into every node by the same
    senders, so campaign bursts and load changes hit all nodes at the same instant; a node whose
    clock runs ahead shows them late. Pairs whose profiles correlate less than ``min_correlation``
    are not judged. The reference is the largest group of nodes that agree with each other within
    ``tolerance_seconds``; each node's offset is the median of its lags against that group.
    """
    p = params or ClockParams.load()
    lf = events.lazy()
    per_node = (
        lf.filter(pl.col("node").is_not_null())
        .group_by("node")
        .agg(
            pl.col("mta").drop_nulls().mode().sort().first().alias("mta"),
            ((pl.col("event_time") - pl.col("queued_time")).dt.total_microseconds() / 1e6)
            .filter((pl.col("event_type") == "received") & pl.col("queued_time").is_not_null())
            .median()
            .alias("reception_lag_median_s"),
        )
        .collect()
    )
    nodes, matrix = _profiles(lf, bin_seconds=p.bin_seconds)
    counts = dict(zip(nodes, matrix.sum(axis=1).astype(np.int64).tolist(), strict=True))
    eligible = [n for n in nodes if counts[n] >= p.min_events]
    max_lag = max(1, p.max_lag_seconds // p.bin_seconds)
    window = 2 * max_lag + 1
    filtered = {n: _high_pass(matrix[nodes.index(n)], window) for n in eligible}

    lag: dict[tuple[str, str], float] = {}
    corr: dict[tuple[str, str], float] = {}
    for i, a in enumerate(eligible):
        for b in eligible[i + 1 :]:
            k, r = _best_lag(filtered[a], filtered[b], max_lag)
            if r >= p.min_correlation:
                lag[(a, b)], lag[(b, a)] = k * p.bin_seconds, -k * p.bin_seconds
                corr[(a, b)] = corr[(b, a)] = r

    agree = {
        n: [m for m in eligible if (n, m) in lag and abs(lag[(n, m)]) <= p.tolerance_seconds]
        for n in eligible
    }
    offsets: dict[str, tuple[float | None, int, float | None]] = {}
    if eligible:
        anchor = min(eligible, key=lambda n: (-len(agree[n]), -counts[n], n))
        reference = [anchor, *agree[anchor]]
        for n in eligible:
            against = [m for m in reference if m != n and (n, m) in lag]
            if against:
                offsets[n] = (
                    float(np.median([lag[(n, m)] for m in against])),
                    len(against),
                    max(corr[(n, m)] for m in against),
                )
    rows = [
        {
            "node": n,
            "events": counts.get(n, 0),
            "clock_offset_s": offsets.get(n, (None, 0, None))[0],
            "peers": offsets.get(n, (None, 0, None))[1],
            "correlation": offsets.get(n, (None, 0, None))[2],
        }
        for n in per_node["node"].to_list()
    ]
    estimates = pl.DataFrame(
        rows,
        schema={
            "node": pl.String,
            "events": pl.Int64,
            "clock_offset_s": pl.Float64,
            "peers": pl.Int32,
            "correlation": pl.Float64,
        },
    )
    out = per_node.join(estimates, on="node", how="left")
    return out.select([pl.col(n).cast(t) for n, t in NODE_CLOCK_SCHEMA.items()]).sort("node")
