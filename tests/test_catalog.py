import os
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from mtashift import catalog
from mtashift.lake import Lake, write_partition, write_table
from schemas.events import EVENT_SCHEMA


def _events(day: str, n: int) -> pl.DataFrame:
    base = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return pl.DataFrame(
        {
            "event_id": [f"{day}-{i}" for i in range(n)],
            "mta": ["pmta"] * n,
            "event_type": ["delivered"] * n,
            "event_time": [base.replace(hour=i % 24) for i in range(n)],
        }
    ).pipe(
        lambda df: df.select(
            [pl.col(c) if c in df.columns else pl.lit(None).cast(t).alias(c) for c, t in EVENT_SCHEMA.items()]
        )
    )


def test_empty_lake_has_typed_events_and_quarantine_views(tmp_path: Path) -> None:
    lake = Lake.at(tmp_path / "lake")
    out = catalog.refresh(lake)
    assert {"events", "quarantine"} <= set(out["created"])
    con = duckdb.connect(str(lake.catalog), read_only=True)
    assert con.execute("SELECT count(*) FROM events").fetchone() == (0,)
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name='events'"
        ).fetchall()
    )
    assert types["event_time"] == "TIMESTAMP WITH TIME ZONE"
    assert types["smtp_code"] == "SMALLINT"


def test_views_follow_partitions_and_work_from_another_directory(tmp_path: Path) -> None:
    lake = Lake.at(tmp_path / "lake")
    write_partition(_events("2026-10-01", 3), lake=lake, table="events", day="2026-10-01")
    write_partition(_events("2026-10-02", 5), lake=lake, table="events", day="2026-10-02")
    write_table(pl.DataFrame({"a": [1, 2]}), lake=lake, table="thing")
    catalog.refresh(lake)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = os.getcwd()
    try:
        os.chdir(elsewhere)
        con = duckdb.connect(str(lake.catalog), read_only=True)
        rows = con.execute(
            "SELECT CAST(date AS VARCHAR), count(*) FROM events GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert rows == [("2026-10-01", 3), ("2026-10-02", 5)]
        assert con.execute("SELECT sum(a) FROM thing").fetchone() == (3,)
        con.close()
    finally:
        os.chdir(cwd)
    # A new partition shows after the pipeline refreshes the views.
    write_partition(_events("2026-10-03", 2), lake=lake, table="events", day="2026-10-03")
    catalog.refresh(lake)
    assert catalog.query(lake, "SELECT count(*) AS n FROM events")["n"].item() == 10


def test_refresh_is_atomic_while_a_reader_holds_the_old_catalog(tmp_path: Path) -> None:
    lake = Lake.at(tmp_path / "lake")
    write_partition(_events("2026-10-01", 4), lake=lake, table="events", day="2026-10-01")
    catalog.refresh(lake)
    reader = catalog.connect(lake)
    catalog.refresh(lake)  # a second writer process would fail on an in-place write
    assert reader.execute("SELECT count(*) FROM events").fetchone() == (4,)
    reader.close()
    assert not list(lake.root.glob(".catalog.duckdb*"))
