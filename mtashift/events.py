"""Build one UTC day of canonical events from the per-file raw layer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from mtashift.lake import Lake
from mtashift.manifest import loaded_files_for_day
from schemas.events import EVENT_SCHEMA, conform


@dataclass(frozen=True)
class EventsDay:
    events: pl.DataFrame
    input_rows: int  # raw rows of the day across all files
    duplicates: pl.DataFrame  # source_file, duplicates (rows dropped because an earlier copy exists)
    files: list[str]


def scan_raw_files(paths: list[str] | list[Path]) -> pl.LazyFrame:
    """Canonical rows of raw (per-file) events files. Each file is conformed on its own: raw files store
    some columns dictionary-encoded (Categorical on read, with each file's own categories), and files
    written before that store them as strings, so one scan over several files could not agree on a type."""
    frames = [conform(pl.scan_parquet(p)) for p in paths]
    return pl.concat(frames, how="vertical") if frames else pl.LazyFrame(schema=EVENT_SCHEMA)


def raw_rows_for_day(*, raw_paths: list[str], day: str) -> pl.LazyFrame:
    d = date.fromisoformat(day)
    return scan_raw_files(raw_paths).filter(pl.col("event_time").dt.date() == d)


def dedupe(frame: pl.LazyFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Keep the first copy of each event_id (ordered by file and line); return kept rows and drop counts.

    KumoMTA webhooks deliver at least once and the same record can also arrive in a segment; the
    event_id is a content key, so copies collapse here whatever file they came in.
    """
    ordered = frame.sort(["source_file", "source_line", "event_id"], nulls_last=True)
    ranked = ordered.with_columns(pl.int_range(pl.len()).over("event_id").alias("_copy"))
    kept = ranked.filter(pl.col("_copy") == 0).drop("_copy")
    dropped = (
        ranked.filter(pl.col("_copy") > 0)
        .group_by("source_file")
        .agg(pl.len().cast(pl.Int64).alias("duplicates"))
        .sort("source_file")
    )
    return kept, dropped


def build_events_day(*, lake: Lake, day: str) -> EventsDay:
    files = loaded_files_for_day(lake, day)
    raw_paths = [str(lake.root / p) for p in files["raw_path"].to_list()]
    rows = raw_rows_for_day(raw_paths=raw_paths, day=day).collect()
    kept, dropped = dedupe(rows.lazy())
    # A stable physical order makes re-runs byte-identical.
    events = kept.sort(["event_time", "event_id"]).collect()
    return EventsDay(
        events=events, input_rows=rows.height, duplicates=dropped.collect(), files=files["path"].to_list()
    )
