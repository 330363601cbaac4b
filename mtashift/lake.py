"""Lake layout and atomic writes. Every writer in the project goes through here."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

PARQUET_COMPRESSION = "zstd"


@dataclass(frozen=True)
class Lake:
    """Paths of one lake root. The only place that knows the lake's folder layout."""

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> Lake:
        return cls(Path(root).expanduser().resolve())

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    def raw_dir(self, source_kind: str) -> Path:
        return self.raw / source_kind

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest"

    @property
    def events(self) -> Path:
        return self.root / "events"

    def table_dir(self, name: str) -> Path:
        return self.root / name

    def partition_dir(self, table: str, day: str) -> Path:
        return self.root / table / f"date={day}"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.duckdb"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def kumo(self) -> Path:
        return self.root / "kumo"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def quality(self) -> Path:
        return self.root / "quality"

    @property
    def tmp(self) -> Path:
        return self.root / ".tmp"


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it over ``target`` (same filesystem)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def write_parquet(frame: pl.DataFrame | pl.LazyFrame | pa.Table, target: Path) -> Path:
    """Write one Parquet file atomically (zstd, statistics on)."""
    with atomic_path(target) as tmp:
        if isinstance(frame, pl.LazyFrame):
            frame.sink_parquet(tmp, compression=PARQUET_COMPRESSION, statistics=True)
        elif isinstance(frame, pl.DataFrame):
            frame.write_parquet(tmp, compression=PARQUET_COMPRESSION, statistics=True)
        else:
            pq.write_table(frame, tmp, compression=PARQUET_COMPRESSION)
    return target


def replace_dir(target: Path, fill: callable) -> Path:  # type: ignore[valid-type]
    """Build a directory next to ``target`` with ``fill(tmp_dir)``, then swap it in.

    Readers see either the old or the new directory, never a half-written one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; lake folders are shared with readers
    old = target.parent / f".{target.name}.old.{uuid.uuid4().hex}"
    try:
        fill(tmp)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target


def write_partition(frame: pl.DataFrame | pl.LazyFrame, *, lake: Lake, table: str, day: str) -> Path:
    """Replace the ``date=day`` partition of ``table`` with ``frame`` (one file, atomic swap)."""

    def fill(tmp: Path) -> None:
        write_parquet(frame, tmp / "part-0.parquet")

    return replace_dir(lake.partition_dir(table, day), fill)


def write_table(frame: pl.DataFrame | pl.LazyFrame, *, lake: Lake, table: str) -> Path:
    """Replace an unpartitioned table (``LAKE/<table>/data.parquet``) atomically."""
    return write_parquet(frame, lake.table_dir(table) / "data.parquet")


def write_text(text: str, target: Path) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def write_bytes(data: bytes, target: Path) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return target
