"""The DuckDB catalog: views (no copies) over the lake's Parquet files, rebuilt atomically.

DuckDB allows one writer process, so the catalog is never written in place: a fresh database file is
built next to it and renamed over it. Analysts and notebooks open it read-only; a refresh never
blocks them (they keep reading the file they opened).
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import duckdb
import polars as pl

from mtashift.lake import Lake, atomic_path
from schemas.events import EVENT_SCHEMA
from schemas.quarantine import QUARANTINE_SCHEMA

log = logging.getLogger(__name__)

# Folders of the lake that are not tables (or are exposed under another name below).
_NOT_TABLES = {"raw", "quarantine", "manifest", "kumo", "reports", "exports", "quality"}

_DUCK_TYPES: dict[type[pl.DataType], str] = {
    pl.String: "VARCHAR",
    pl.Int16: "SMALLINT",
    pl.Int32: "INTEGER",
    pl.Int64: "BIGINT",
    pl.Float64: "DOUBLE",
    pl.Boolean: "BOOLEAN",
    pl.Date: "DATE",
}


def _duck_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ" if dtype.time_zone else "TIMESTAMP"
    return _DUCK_TYPES.get(type(dtype), "VARCHAR")


def _empty_select(schema: pl.Schema, extra: dict[str, str] | None = None) -> str:
    cols = [f"CAST(NULL AS {_duck_type(t)}) AS {name}" for name, t in schema.items()]
    cols += [f"CAST(NULL AS {t}) AS {name}" for name, t in (extra or {}).items()]
    return "SELECT " + ", ".join(cols) + " WHERE false"


def _sql_str(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _has_parquet(pattern_root: Path, glob: str) -> bool:
    return any(pattern_root.glob(glob))


def table_views(lake: Lake) -> dict[str, str]:
    """Discover the lake's tables and return view name -> SELECT over their Parquet files."""
    views: dict[str, str] = {}
    root = lake.root
    if root.exists():
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            if d.name.startswith(".") or d.name in _NOT_TABLES:
                continue
            if _has_parquet(d, "date=*/*.parquet"):
                views[d.name] = (
                    f"SELECT * FROM read_parquet({_sql_str(d / 'date=*' / '*.parquet')}, "
                    "hive_partitioning = true, union_by_name = true)"
                )
            elif (d / "data.parquet").exists():
                views[d.name] = f"SELECT * FROM read_parquet({_sql_str(d / 'data.parquet')})"
    if "events" not in views:
        views["events"] = _empty_select(EVENT_SCHEMA, {"date": "DATE"})
    if _has_parquet(lake.quarantine, "*/*.parquet"):
        views["quarantine"] = (
            f"SELECT * FROM read_parquet({_sql_str(lake.quarantine / '*' / '*.parquet')}, union_by_name = true)"
        )
    else:
        views["quarantine"] = _empty_select(QUARANTINE_SCHEMA)
    if _has_parquet(lake.manifest, "*.parquet"):
        views["ingest_files"] = (
            f"SELECT * FROM read_parquet({_sql_str(lake.manifest / '*.parquet')}, union_by_name = true)"
        )
    return views


def _extra_view_sql() -> list[tuple[str, str]]:
    folder = resources.files("schemas") / "views"
    if not folder.is_dir():
        return []
    return sorted(
        (f.name, f.read_text(encoding="utf-8")) for f in folder.iterdir() if f.name.endswith(".sql")
    )


def refresh(lake: Lake) -> dict[str, list[str]]:
    """Rebuild LAKE/catalog.duckdb from what is on disk. Returns created and skipped view names."""
    lake.root.mkdir(parents=True, exist_ok=True)
    created: list[str] = []
    skipped: list[str] = []
    with atomic_path(lake.catalog) as tmp:
        con = duckdb.connect(str(tmp))
        try:
            for name, select in table_views(lake).items():
                con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {select}')
                created.append(name)
            for fname, sql in _extra_view_sql():
                try:
                    con.execute(sql)
                    created.append(fname.removesuffix(".sql"))
                except duckdb.Error as exc:  # a derived view whose base table is not built yet
                    log.info("catalog: skipped view %s: %s", fname, exc)
                    skipped.append(fname.removesuffix(".sql"))
            con.execute("CHECKPOINT")
        finally:
            con.close()
    return {"created": created, "skipped": skipped}


def connect(lake: Lake) -> duckdb.DuckDBPyConnection:
    """Open the catalog read-only (what analysts, notebooks and reports use)."""
    return duckdb.connect(str(lake.catalog), read_only=True)


def query(lake: Lake, sql: str) -> pl.DataFrame:
    con = connect(lake)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()
