"""Data-quality validation time of one events partition vs the time to write that partition.

    .venv/bin/python bench/bench_quality.py [--rows 5000000] [--seed 1]

Generates a clean canonical events partition (mtashift.quality.synthetic), writes it with the
lake writer (the baseline: what the `events` asset spends on output), then times what the asset
checks do for the same partition: read the needed columns, validate the ERROR expectations of
`events` and `events_record_mix` (the blocking check), the WARN ones, and the clock suite. GX's
import and context start-up are paid once per process and reported separately.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC
from pathlib import Path

import polars as pl

from mtashift.lake import Lake, write_partition
from mtashift.quality.synthetic import synthetic_events

DAY = "2024-03-01"


def polars_equivalent(path: Path) -> dict[str, int]:
    """The row-level ERROR expectations of `events`, hand-written in polars (the raw-engine reference)."""
    from datetime import datetime, timedelta

    from mtashift.quality.suites import RECIPIENT_EVENT_TYPES
    from schemas.events import EVENT_TYPES, MTAS

    start = datetime.fromisoformat(DAY).replace(tzinfo=UTC)
    own_clock = ~pl.col("event_type").is_in(["remote_bounce", "remote_status", "complaint", "other"])
    per_rcpt = pl.col("event_type").is_in(list(RECIPIENT_EVENT_TYPES))
    return (
        pl.scan_parquet(path)
        .select(
            pl.len().alias("rows"),
            pl.col("event_id").is_duplicated().sum().alias("duplicate_ids"),
            sum(
                pl.col(c).is_null().sum()
                for c in ("event_id", "mta", "event_type", "raw_type", "event_time", "source_file")
            ).alias("nulls"),
            (~pl.col("mta").is_in(list(MTAS))).sum().alias("bad_mta"),
            (~pl.col("event_type").is_in(list(EVENT_TYPES))).sum().alias("bad_type"),
            (~pl.col("event_time").is_between(start, start + timedelta(days=1), closed="left"))
            .sum()
            .alias("off_day"),
            (own_clock & (pl.col("queued_time") > pl.col("event_time"))).sum().alias("queued_after"),
            (per_rcpt & (pl.col("recipient").is_null() | pl.col("recipient_domain").is_null()))
            .sum()
            .alias("no_rcpt"),
            pl.col("recipient_domain").str.contains(r"[A-Z]|[^\x00-\x7F]").sum().alias("not_lower"),
            (
                (pl.col("size_bytes") < 0).sum()
                + (pl.col("attempts") < 0).sum()
                + (pl.col("source_line") < 1).sum()
            ).alias("negative"),
        )
        .collect()
        .row(0, named=True)
    )


def _timed(label: str, fn, results: dict[str, float]):
    start = time.perf_counter()
    out = fn()
    results[label] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    t: dict[str, float] = {}
    events = _timed("generate", lambda: synthetic_events(rows=args.rows, day=DAY, seed=args.seed), t)
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        lake = Lake.at(Path(tmp))
        _timed(
            "write partition (baseline)",
            lambda: write_partition(events, lake=lake, table="events", day=DAY),
            t,
        )
        path = lake.partition_dir("events", DAY) / "part-0.parquet"

        from mtashift.quality import validate as v

        def warm() -> None:  # GX import + context, once per process
            v._context()

        _timed("gx import + context (once per process)", warm, t)
        reference = _timed(
            "polars equivalent of the events contract (reference)", lambda: polars_equivalent(path), t
        )
        schema = pl.read_parquet_schema(path)
        outcomes = {}
        for label, suite, severity in (
            ("events ERROR", "events", "ERROR"),
            ("events_record_mix ERROR", "events_record_mix", "ERROR"),
            ("events WARN", "events", "WARN"),
            ("events_record_mix WARN", "events_record_mix", "WARN"),
            ("events_clock WARN", "events_clock", "WARN"),
        ):
            cols = v.needed_columns(suite, severity)
            frame = _timed(
                f"read {label} ({len(cols)} cols)", lambda cols=cols: pl.read_parquet(path, columns=cols), t
            )
            outcomes[label] = _timed(
                f"validate {label}",
                lambda frame=frame, suite=suite, severity=severity: v.validate(
                    frame, suite=suite, day=DAY, severity=severity, schema=schema
                ),
                t,
            )

    write = t["write partition (baseline)"]
    blocking = sum(val for k, val in t.items() if "ERROR" in k)
    drift = sum(val for k, val in t.items() if "WARN" in k)
    print(f"rows: {args.rows:,}")
    for label, seconds in t.items():
        print(f"  {label:<48} {seconds:8.2f} s")
    print(
        f"blocking check (read + ERROR suites): {blocking:.2f} s = {blocking / write:.2f}x the partition write"
    )
    print(f"warn checks (read + WARN suites):     {drift:.2f} s = {drift / write:.2f}x the partition write")
    print(
        f"all validation:                       {blocking + drift:.2f} s = {(blocking + drift) / write:.2f}x"
    )
    gx_rows = t["read events ERROR (13 cols)"] + t["validate events ERROR"]
    raw = t["polars equivalent of the events contract (reference)"]
    print(
        f"GX events ERROR vs the same row checks in polars: {gx_rows:.2f} s vs {raw:.2f} s = {gx_rows / raw:.1f}x"
    )
    print(f"  polars reference counts (all 0 but rows on a clean partition): {reference}")
    for label, o in outcomes.items():
        print(f"  {label:<28} passed={o.passed} evaluated={o.evaluated} failed={len(o.failed)}")


if __name__ == "__main__":
    main()
