"""The ingest manifest: which landing file was loaded, as what, with what counts.

It makes re-ingest idempotent: an unchanged file (same path, size, mtime) is not read again; the same
content under another name is recorded as a duplicate and not loaded; a file that changed under the same
path (still being written) is re-read whole and replaces its earlier raw rows, so nothing is doubled.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from mtashift.lake import Lake, write_parquet
from mtashift.landing import LandingFile

MANIFEST_SCHEMA = pl.Schema(
    {
        "kind": pl.String(),
        "path": pl.String(),
        "file_key": pl.String(),
        "size": pl.Int64(),
        "mtime_ns": pl.Int64(),
        "sha256": pl.String(),
        "status": pl.String(),  # loaded | duplicate | skipped_open | failed
        "duplicate_of": pl.String(),
        "lines_read": pl.Int64(),
        "rows": pl.Int64(),
        "quarantined": pl.Int64(),
        "duplicates": pl.Int64(),
        "other_lines": pl.Int64(),
        "fanout": pl.Int64(),
        "first_event_time": pl.Datetime("us", "UTC"),
        "last_event_time": pl.Datetime("us", "UTC"),
        "days": pl.List(pl.String()),
        "days_touched": pl.List(pl.String()),
        "raw_path": pl.String(),
        "quarantine_path": pl.String(),
        "detail": pl.String(),
        "batch_id": pl.String(),
        "ingested_at": pl.Datetime("us", "UTC"),
    }
)

# What an ingest function reports for one file. `lines_read + fanout == rows + quarantined + duplicates +
# other_lines` must hold (other_lines: header or blank lines, partial tails left for a later read; fanout:
# extra rows from one line, e.g. a KumoMTA record with several recipients or a batched webhook array).
IngestFn = Callable[..., dict[str, Any]]


def file_key(rel: str) -> str:
    return hashlib.sha256(rel.encode()).hexdigest()[:20]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def manifest_path(lake: Lake, kind: str) -> Path:
    return lake.manifest / f"{kind}.parquet"


def load(lake: Lake, kind: str) -> pl.DataFrame:
    p = manifest_path(lake, kind)
    if not p.exists():
        return pl.DataFrame(schema=MANIFEST_SCHEMA)
    df = pl.read_parquet(p)
    # A manifest written by an older release lacks newer columns: they read as null.
    return df.select(
        [
            (pl.col(c) if c in df.columns else pl.lit(None)).cast(t).alias(c)
            for c, t in MANIFEST_SCHEMA.items()
        ]
    )


def load_all(lake: Lake) -> pl.DataFrame:
    frames = (
        [load(lake, p.stem) for p in sorted(lake.manifest.glob("*.parquet"))]
        if lake.manifest.exists()
        else []
    )
    return pl.concat(frames) if frames else pl.DataFrame(schema=MANIFEST_SCHEMA)


@dataclass
class Plan:
    """What to do with each landing file of one kind."""

    to_read: list[LandingFile] = field(default_factory=list)
    duplicates: list[tuple[LandingFile, str, str]] = field(default_factory=list)  # file, sha, original path
    skipped_open: list[LandingFile] = field(default_factory=list)
    unchanged: list[LandingFile] = field(default_factory=list)
    shas: dict[str, str] = field(default_factory=dict)


def plan(files: Sequence[LandingFile], manifest: pl.DataFrame, *, skip_open: bool) -> Plan:
    known = {r["path"]: r for r in manifest.iter_rows(named=True)}
    loaded_by_sha = {r["sha256"]: r["path"] for r in known.values() if r["status"] == "loaded"}
    out = Plan()
    for f in files:
        prev = known.get(f.rel)
        if skip_open and f.writable:
            if prev is None or prev["status"] == "skipped_open":
                out.skipped_open.append(f)
            else:
                out.unchanged.append(f)
            continue
        if (
            prev is not None
            and prev["size"] == f.size
            and prev["mtime_ns"] == f.mtime_ns
            and prev["status"] != "skipped_open"
        ):
            out.unchanged.append(f)
            continue
        sha = sha256_file(f.path)
        out.shas[f.rel] = sha
        if prev is not None and prev["sha256"] == sha and prev["status"] in {"loaded", "duplicate"}:
            out.unchanged.append(f)  # touched but identical
            continue
        original = loaded_by_sha.get(sha)
        if original is not None and original != f.rel:
            out.duplicates.append((f, sha, original))
            continue
        loaded_by_sha[sha] = f.rel
        out.to_read.append(f)
    return out


def _days_of(raw_path: Path) -> tuple[list[str], datetime | None, datetime | None]:
    if not raw_path.exists():
        return [], None, None
    lf = pl.scan_parquet(raw_path).select("event_time").drop_nulls()
    agg = lf.select(
        pl.col("event_time").dt.date().unique().sort().cast(pl.String).implode().alias("days"),
        pl.col("event_time").min().alias("first"),
        pl.col("event_time").max().alias("last"),
    ).collect()
    row = agg.row(0, named=True)
    return list(row["days"] or []), row["first"], row["last"]


def _run_one(args: tuple[IngestFn, LandingFile, str, Path, Path, dict[str, Any]]) -> dict[str, Any]:
    fn, f, rel, events_out, quarantine_out, kwargs = args
    try:
        stats = fn(f.path, rel_path=rel, events_out=events_out, quarantine_out=quarantine_out, **kwargs)
        return {"ok": True, **stats}
    except Exception as exc:  # one broken file must not stop the others; it is reported as failed
        return failure(exc)


def failure(exc: Exception) -> dict[str, Any]:
    """The result of a file whose ingest raised ``exc`` (recorded as `failed`, with the error as detail)."""
    return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}


def ingest(
    *,
    kind: str,
    files: Sequence[LandingFile],
    lake: Lake,
    fn: IngestFn,
    batch_id: str,
    skip_open: bool = False,
    fn_kwargs: Callable[[LandingFile], dict[str, Any]] | None = None,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    batch: Callable[[list[tuple[Path, str, Path, Path, dict[str, Any]]]], list[dict[str, Any]]] | None = None,
    alone: Callable[[Path], bool] | None = None,
) -> pl.DataFrame:
    """Bring the raw layer of one landing kind up to date. Returns the manifest rows written this batch.

    Several new files go to ``batch`` when the kind has one (it reads them together its own way and returns a
    result per file), else to a pool of ``workers`` processes running ``fn``; one file runs ``fn`` here. Files
    for which ``alone`` holds are read here one at a time before the pool starts: their ``fn`` starts a worker
    that keeps every core busy by itself, so two at once would only double the memory.
    """
    manifest = load(lake, kind)
    p = plan(files, manifest, skip_open=skip_open)
    now = datetime.now(UTC).replace(microsecond=0)
    prev = {r["path"]: r for r in manifest.iter_rows(named=True)}
    new_rows: list[dict[str, Any]] = []

    jobs = []
    for f in p.to_read:
        key = file_key(f.rel)
        jobs.append(
            (
                fn,
                f,
                f.rel,
                lake.raw_dir(kind) / f"{key}.parquet",
                lake.quarantine / kind / f"{key}.parquet",
                fn_kwargs(f) if fn_kwargs else {},
            )
        )
    results: list[dict[str, Any]] = []
    if jobs:
        if batch is not None and len(jobs) > 1:  # the kind reads several files at once its own way
            results = batch([(f.path, rel, ev, q, kw) for _fn, f, rel, ev, q, kw in jobs])
            if progress:
                progress(len(jobs), len(jobs))
        else:
            # read here: files that start their own worker (one at a time), and everything when a pool
            # would not pay; the rest in a pool of `workers` processes
            solo = {i for i, job in enumerate(jobs) if alone is not None and alone(job[1].path)}
            here = sorted(solo)
            pooled = [i for i in range(len(jobs)) if i not in solo]
            if workers <= 1 or len(pooled) <= 1:
                here, pooled = list(range(len(jobs))), []
            by_index: dict[int, dict[str, Any]] = {}

            def done(i: int, r: dict[str, Any]) -> None:
                by_index[i] = r
                if progress:
                    progress(len(by_index), len(jobs))

            for i in here:
                done(i, _run_one(jobs[i]))
            if pooled:
                # spawn, not fork: the parent runs polars/Dagster threads, and a forked child can deadlock.
                ctx = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                    for i, r in zip(pooled, pool.map(_run_one, [jobs[i] for i in pooled]), strict=True):
                        done(i, r)
            results = [by_index[i] for i in range(len(jobs))]

    for job, r in zip(jobs, results, strict=True):
        _fn, f, rel, events_out, quarantine_out, _kw = job
        days, first, last = _days_of(events_out) if r["ok"] else ([], None, None)
        old_days = list((prev.get(rel) or {}).get("days") or [])
        new_rows.append(
            {
                "kind": kind,
                "path": rel,
                "file_key": file_key(rel),
                "size": f.size,
                "mtime_ns": f.mtime_ns,
                "sha256": p.shas[rel],
                "status": "loaded" if r["ok"] else "failed",
                "duplicate_of": None,
                "lines_read": r.get("lines_read"),
                "rows": r.get("rows"),
                "quarantined": r.get("quarantined"),
                "duplicates": r.get("duplicates", 0),
                "other_lines": r.get("other_lines", 0),
                "fanout": r.get("fanout", 0),
                "first_event_time": first,
                "last_event_time": last,
                "days": days,
                "days_touched": sorted(set(days) | set(old_days)),
                "raw_path": str(events_out.relative_to(lake.root)) if r["ok"] else None,
                "quarantine_path": str(quarantine_out.relative_to(lake.root)) if r["ok"] else None,
                "detail": r.get("detail")
                or (json.dumps(r["extra"], sort_keys=True) if r.get("extra") else None),
                "batch_id": batch_id,
                "ingested_at": now,
            }
        )
    for f, sha, original in p.duplicates:
        if (prev.get(f.rel) or {}).get("sha256") == sha:
            continue
        new_rows.append(
            {
                "kind": kind, "path": f.rel, "file_key": file_key(f.rel), "size": f.size, "mtime_ns": f.mtime_ns,
                "sha256": sha, "status": "duplicate", "duplicate_of": original, "lines_read": None, "rows": 0,
                "quarantined": 0, "duplicates": 0, "other_lines": 0, "fanout": 0, "first_event_time": None, "last_event_time": None,
                "days": [], "days_touched": [], "raw_path": None, "quarantine_path": None,
                "detail": f"same content as {original}", "batch_id": batch_id, "ingested_at": now,
            }
        )  # fmt: skip
    for f in p.skipped_open:
        if (prev.get(f.rel) or {}).get("status") == "skipped_open" and prev[f.rel]["size"] == f.size:
            continue
        new_rows.append(
            {
                "kind": kind, "path": f.rel, "file_key": file_key(f.rel), "size": f.size, "mtime_ns": f.mtime_ns,
                "sha256": None, "status": "skipped_open", "duplicate_of": None, "lines_read": None, "rows": 0,
                "quarantined": 0, "duplicates": 0, "other_lines": 0, "fanout": 0, "first_event_time": None, "last_event_time": None,
                "days": [], "days_touched": [], "raw_path": None, "quarantine_path": None,
                "detail": "segment still open (write bit set); read once complete", "batch_id": batch_id,
                "ingested_at": now,
            }
        )  # fmt: skip

    if not new_rows:
        return pl.DataFrame(schema=MANIFEST_SCHEMA)
    batch = pl.DataFrame(new_rows, schema=MANIFEST_SCHEMA)
    merged = pl.concat([manifest.filter(~pl.col("path").is_in(batch["path"].implode())), batch]).sort("path")
    write_parquet(merged, manifest_path(lake, kind))
    return batch


def loaded_files_for_day(lake: Lake, day: str) -> pl.DataFrame:
    """Manifest rows of loaded files whose events touch ``day``."""
    m = load_all(lake)
    return m.filter((pl.col("status") == "loaded") & pl.col("days").list.contains(day)).sort("path")


def days_touched(batch: pl.DataFrame) -> list[str]:
    if batch.is_empty():
        return []
    return sorted(set(batch.select(pl.col("days_touched").explode().drop_nulls()).to_series().to_list()))
