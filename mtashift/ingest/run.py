"""The per-kind ingest registry the landing assets drive: one function per landing kind.

Each function reads one landing file, writes its canonical rows and its quarantine atomically, and
returns counts that reconcile: lines_read == rows + quarantined + duplicates + other_lines.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from mtashift.ingest.common import stored_size
from mtashift.ingest.worker import (
    WorkerError,
    raise_if_stopping,
    run_in_worker,
    run_in_workers,
    wants_worker,
)
from mtashift.lake import Lake
from mtashift.manifest import failure


def _as_dict(stats: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(stats):
        return dataclasses.asdict(stats)  # type: ignore[arg-type]
    return dict(stats)


def _normalise(stats: dict[str, Any]) -> dict[str, Any]:
    rows = stats.get("rows", stats.get("events"))
    return {
        "lines_read": stats.get("lines_read", stats.get("records_read")),
        "rows": rows,
        "quarantined": stats.get("quarantined", 0),
        "duplicates": stats.get("duplicates", 0),
        "other_lines": stats.get("other_lines", 0),
        "fanout": stats.get("fanout", 0),
        "extra": {
            k: v
            for k, v in stats.items()
            if isinstance(v, int | float | str | bool)
            and k not in {"lines_read", "rows", "quarantined", "duplicates", "other_lines", "fanout"}
        },
    }


def ingest_pmta(path: Path, *, rel_path: str, events_out: Path, quarantine_out: Path) -> dict[str, Any]:
    """One accounting file; a large one in a worker process tuned for the reader (see ``worker``)."""
    if wants_worker(path):
        return run_in_worker(
            "pmta", path=path, rel_path=rel_path, events_out=events_out, quarantine_out=quarantine_out
        )
    return _ingest_pmta_here(path, rel_path=rel_path, events_out=events_out, quarantine_out=quarantine_out)


def _ingest_pmta_here(path: Path, *, rel_path: str, events_out: Path, quarantine_out: Path) -> dict[str, Any]:
    from mtashift.ingest.pmta import ingest_pmta_file

    parts = rel_path.split("/")
    node = parts[1] if len(parts) > 2 else None
    stats = ingest_pmta_file(
        path, rel_path=rel_path, node=node, events_out=events_out, quarantine_out=quarantine_out
    )
    return _normalise(_as_dict(stats))


def ingest_kumo(
    path: Path, *, rel_path: str, events_out: Path, quarantine_out: Path, include_open: bool = False
) -> dict[str, Any]:
    from mtashift.ingest.kumo import ingest_kumo_file

    stats = ingest_kumo_file(
        path,
        rel_path=rel_path,
        include_open=include_open,
        events_out=events_out,
        quarantine_out=quarantine_out,
    )
    return _normalise(_as_dict(stats))


# One file of a batch: path, rel_path, events_out, quarantine_out and the ingest function's other arguments.
BatchJob = tuple[Path, str, Path, Path, dict[str, Any]]

KUMO_WORKER_MIN_BYTES = 64 * 2**20  # a batch of KumoMTA files at least this large (as stored) goes to workers
KUMO_PROCESSES = 2  # worker processes a batch is split over (at most one per core)


def ingest_kumo_batch(jobs: list[BatchJob]) -> list[dict[str, Any]]:
    """Several KumoMTA files at once; per file ``{"ok": True, **counts}``, or the manifest's failure record.

    A large batch of several files is split over ``KUMO_PROCESSES`` tuned worker processes that each read
    their files one at a time on one thread (see ``worker``): on two cores that costs less CPU than the
    same files on threads of this process, where three files at a time share one GIL, one polars pool and
    allocators that hand freed pages back to the kernel. A small batch (or a single file) is read here on
    threads, as :func:`mtashift.ingest.kumo.ingest_kumo_files` reads them.
    """
    processes = min(KUMO_PROCESSES, os.cpu_count() or 1, len(jobs))
    sizes = [stored_size(Path(j[0])) for j in jobs]
    if processes < 2 or sum(sizes) < KUMO_WORKER_MIN_BYTES:
        return _ingest_kumo_batch_here(jobs)
    groups = _balanced(sizes, processes)
    replies = run_in_workers([("kumo", {"jobs": [jobs[i] for i in g]}) for g in groups])
    results: list[dict[str, Any]] = [{}] * len(jobs)
    for group, reply in zip(groups, replies, strict=True):
        if isinstance(reply, WorkerError) and len(group) > 1:
            # The child died (killed for memory, most likely) after writing some of its files and before its
            # reply: each file is read again in a child of its own (the writes are atomic, so a finished file
            # is simply replaced), so only a file that kills its reader is recorded as failed.
            for i in group:
                (alone,) = run_in_workers([("kumo", {"jobs": [jobs[i]]})])
                results[i] = failure(alone) if isinstance(alone, WorkerError) else alone[0]
            continue
        for k, i in enumerate(group):
            results[i] = failure(reply) if isinstance(reply, WorkerError) else reply[k]
    return results


def _ingest_kumo_batch_here(jobs: list[BatchJob], *, single_thread: bool = False) -> list[dict[str, Any]]:
    from mtashift.ingest.kumo import KumoFileJob, ingest_kumo_files_reporting

    kumo_jobs = [
        KumoFileJob(
            path=Path(path),
            rel_path=rel_path,
            events_out=Path(events_out),
            quarantine_out=Path(quarantine_out),
            include_open=bool(kw.get("include_open", False)),
        )
        for path, rel_path, events_out, quarantine_out, kw in jobs
    ]
    results = (
        ingest_kumo_files_reporting(kumo_jobs, workers=1, threads=1)
        if single_thread
        else ingest_kumo_files_reporting(kumo_jobs)
    )
    return [
        failure(r) if isinstance(r, Exception) else {"ok": True, **_normalise(_as_dict(r))} for r in results
    ]


def _worker_kumo_batch(jobs: list[BatchJob]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for job in jobs:  # file by file, so that a worker told to stop starts no further file
        raise_if_stopping()
        results += _ingest_kumo_batch_here([job], single_thread=True)
    return results


def _balanced(sizes: list[int], n: int) -> list[list[int]]:
    """Indices of ``sizes`` in ``n`` groups of about equal total (largest first, each to the lightest group)."""
    groups: list[list[int]] = [[] for _ in range(n)]
    loads = [0] * n
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        g = loads.index(min(loads))
        groups[g].append(i)
        loads[g] += sizes[i]
    return [g for g in groups if g]


@dataclass(frozen=True)
class Ingestor:
    fn: Callable[..., dict[str, Any]]
    skips_open: bool
    takes_include_open: bool
    batch: Callable[[list[BatchJob]], list[dict[str, Any]]] | None = None  # several files at once, if better
    alone: Callable[[Path], bool] | None = None  # files read one at a time (they start their own worker)

    def kwargs(self, *, include_open: bool) -> Callable[[Any], dict[str, Any]] | None:
        if not self.takes_include_open:
            return None
        return lambda _f: {"include_open": include_open}


# what a worker process runs for each kind (in its own process, so never a worker again)
IN_PROCESS: dict[str, Callable[..., Any]] = {"pmta": _ingest_pmta_here, "kumo": _worker_kumo_batch}

INGESTORS: dict[str, Ingestor] = {
    "pmta": Ingestor(fn=ingest_pmta, skips_open=False, takes_include_open=False, alone=wants_worker),
    "kumo": Ingestor(fn=ingest_kumo, skips_open=True, takes_include_open=True, batch=ingest_kumo_batch),
}


def reconcile_file_stats(*, lake: Lake, manifest: pl.DataFrame) -> pl.DataFrame:
    """Loaded files whose counts do not reconcile, or whose files on disk disagree with the manifest."""
    bad: list[dict[str, Any]] = []
    for r in manifest.iter_rows(named=True):
        parts = (r["rows"] or 0) + (r["quarantined"] or 0) + (r["duplicates"] or 0) + (r["other_lines"] or 0)
        parts -= r["fanout"] or 0
        raw_rows = (
            pl.scan_parquet(lake.root / r["raw_path"]).select(pl.len()).collect().item()
            if r["raw_path"]
            else 0
        )
        qp = lake.root / r["quarantine_path"] if r["quarantine_path"] else None
        q_rows = pl.scan_parquet(qp).select(pl.len()).collect().item() if qp and qp.exists() else 0
        problems = []
        if r["lines_read"] != parts:
            problems.append(
                f"lines_read {r['lines_read']} != rows + quarantined + duplicates + other - fanout = {parts}"
            )
        if raw_rows != (r["rows"] or 0):
            problems.append(f"raw file has {raw_rows} rows, manifest says {r['rows']}")
        if q_rows != (r["quarantined"] or 0):
            problems.append(f"quarantine file has {q_rows} rows, manifest says {r['quarantined']}")
        if problems:
            bad.append({"path": r["path"], "problems": "; ".join(problems)})
    return pl.DataFrame(bad, schema={"path": pl.String, "problems": pl.String})
