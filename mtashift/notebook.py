"""What every analyst notebook opens with: the catalog, read-only, and guards for missing views."""

import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
from IPython.display import Markdown, display


@dataclass
class NotebookCatalog:
    con: duckdb.DuckDBPyConnection
    views: set[str]
    path: Path

    def have(self, *views: str) -> bool:
        """True when every view exists; otherwise say which are missing."""
        missing = [v for v in views if v not in self.views]
        if missing:
            display(
                Markdown(
                    f"_Not in the catalog yet: {', '.join(f'`{v}`' for v in missing)} — section skipped._"
                )
            )
        return not missing

    def q(self, sql: str, *params: object) -> pl.DataFrame:
        return self.con.sql(sql, params=list(params) or None).pl()


def open_catalog() -> NotebookCatalog:
    """`$MTASHIFT_LAKE/catalog.duckdb` (default `demo/lake`), opened read-only."""
    root = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
    lake = Path(os.environ.get("MTASHIFT_LAKE") or root / "demo" / "lake")
    path = lake / "catalog.duckdb"
    if path.exists():
        con = duckdb.connect(str(path), read_only=True)
    else:
        display(Markdown(f"**No catalog at `{path}`** — build the lake first (`make demo`)."))
        con = duckdb.connect()  # empty: every section reports its view as missing
    views = {r[0] for r in con.sql("SELECT table_name FROM information_schema.tables").fetchall()}
    return NotebookCatalog(con=con, views=views, path=path)
