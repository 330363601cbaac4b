import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from mtashift import landing, manifest
from mtashift.events import build_events_day
from mtashift.lake import Lake, write_parquet
from schemas.events import conform


def fake_ingest(path: Path, *, rel_path: str, events_out: Path, quarantine_out: Path) -> dict[str, Any]:
    """One event per line `id,YYYY-MM-DDTHH:MM`; lines starting with '!' are quarantined."""
    lines = path.read_text().splitlines()
    good = [ln.split(",") for ln in lines if not ln.startswith("!")]
    bad = [ln for ln in lines if ln.startswith("!")]
    ev = pl.DataFrame(
        {
            "event_id": [g[0] for g in good],
            "mta": ["pmta"] * len(good),
            "event_type": ["delivered"] * len(good),
            "event_time": [datetime.fromisoformat(g[1]).replace(tzinfo=UTC) for g in good],
            "source_file": [rel_path] * len(good),
            "source_line": list(range(1, len(good) + 1)),
        },
        schema_overrides={"source_line": pl.Int64},
    )
    write_parquet(conform(ev.lazy()).collect(), events_out)
    write_parquet(pl.DataFrame({"raw_text": bad}, schema={"raw_text": pl.String}), quarantine_out)
    return {
        "lines_read": len(lines),
        "rows": len(good),
        "quarantined": len(bad),
        "duplicates": 0,
        "other_lines": 0,
    }


def pid_ingest(path: Path, **kw: Any) -> dict[str, Any]:
    """`fake_ingest`, telling which process read the file."""
    return {**fake_ingest(path, **kw), "extra": {"pid": os.getpid()}}


def _ingest(root: Path, lake: Lake, batch: str) -> pl.DataFrame:
    files = [f for f in landing.scan(root) if f.kind == "pmta"]
    return manifest.ingest(kind="pmta", files=files, lake=lake, fn=fake_ingest, batch_id=batch, workers=1)


def test_new_unchanged_duplicate_and_grown_files(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    (root / "pmta" / "n1").mkdir(parents=True)
    lake = Lake.at(tmp_path / "lake")
    a = root / "pmta" / "n1" / "acct-a.csv"
    a.write_text("e1,2026-10-01T23:00\ne2,2026-10-02T01:00\n!broken\n")
    b1 = _ingest(root, lake, "b1")
    assert b1.select("path", "status", "rows", "quarantined").rows() == [
        ("pmta/n1/acct-a.csv", "loaded", 2, 1)
    ]
    assert manifest.days_touched(b1) == ["2026-10-01", "2026-10-02"]

    # Nothing changed: nothing read, manifest untouched.
    before = manifest.manifest_path(lake, "pmta").read_bytes()
    assert _ingest(root, lake, "b2").is_empty()
    assert manifest.manifest_path(lake, "pmta").read_bytes() == before

    # The same bytes under another name: recorded as a duplicate, not loaded.
    (root / "pmta" / "n1" / "acct-copy.csv").write_bytes(a.read_bytes())
    b3 = _ingest(root, lake, "b3")
    assert b3.select("path", "status", "duplicate_of").rows() == [
        ("pmta/n1/acct-copy.csv", "duplicate", "pmta/n1/acct-a.csv")
    ]
    assert manifest.days_touched(b3) == []

    # The file grew: re-read whole, raw replaced, days touched include old and new days.
    with a.open("a") as fh:
        fh.write("e3,2026-10-03T05:00\n")
    os.utime(a, ns=(1, 2))
    b4 = _ingest(root, lake, "b4")
    assert b4.select("path", "status", "rows").rows() == [("pmta/n1/acct-a.csv", "loaded", 3)]
    assert manifest.days_touched(b4) == ["2026-10-01", "2026-10-02", "2026-10-03"]
    m = manifest.load(lake, "pmta")
    assert m.height == 2
    assert pl.read_parquet(lake.root / m.filter(pl.col("status") == "loaded")["raw_path"].item()).height == 3


def test_open_segments_are_skipped_until_complete(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    seg = root / "kumo" / "n1" / "20261001-000000.000000001"
    seg.parent.mkdir(parents=True)
    seg.write_text("e1,2026-10-01T00:00\n")
    seg.chmod(0o644)
    lake = Lake.at(tmp_path / "lake")
    files = [f for f in landing.scan(root) if f.kind == "kumo"]
    b = manifest.ingest(
        kind="kumo", files=files, lake=lake, fn=fake_ingest, batch_id="x", skip_open=True, workers=1
    )
    assert b.select("status").to_series().to_list() == ["skipped_open"]
    seg.chmod(0o444)
    files = [f for f in landing.scan(root) if f.kind == "kumo"]
    b = manifest.ingest(
        kind="kumo", files=files, lake=lake, fn=fake_ingest, batch_id="y", skip_open=True, workers=1
    )
    assert b.select("status", "rows").rows() == [("loaded", 1)]


def test_events_day_dedupes_across_files_and_counts_per_file(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    (root / "pmta" / "n1").mkdir(parents=True)
    (root / "pmta" / "n1" / "a.csv").write_text("x1,2026-10-01T10:00\nx2,2026-10-01T11:00\n")
    (root / "pmta" / "n1" / "b.csv").write_text(
        "x2,2026-10-01T11:00\nx3,2026-10-01T12:00\nx4,2026-10-02T00:30\n"
    )
    lake = Lake.at(tmp_path / "lake")
    _ingest(root, lake, "b1")
    day = build_events_day(lake=lake, day="2026-10-01")
    assert day.input_rows == 4
    assert day.events["event_id"].to_list() == ["x1", "x2", "x3"]
    # The later file's copy is the one dropped.
    assert day.duplicates.rows() == [("pmta/n1/b.csv", 1)]
    assert day.events.filter(pl.col("event_id") == "x2")["source_file"].item() == "pmta/n1/a.csv"


def test_landing_contract_classifies_and_reports_unknown(tmp_path: Path) -> None:
    assert landing.classify("pmta/n1/acct-2026-10-01-0000.csv.gz") == "pmta"
    assert landing.classify("kumo/k1/20261001-000000.123456789_recv") == "kumo"
    assert landing.classify("kumo/webhooks/hook-1.json") == "kumo"
    assert landing.classify("fbl/r1.eml") == "fbl"
    assert landing.classify("plan.yaml") == "plan"
    assert landing.classify("pmta/n1/notes.docx") is None
    assert landing.classify("random/x.csv") is None


def test_files_that_start_their_own_worker_are_read_one_at_a_time_outside_the_pool(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    (root / "pmta" / "n1").mkdir(parents=True)
    names = ["acct-big-1.csv", "acct-small-1.csv", "acct-big-2.csv", "acct-small-2.csv", "acct-small-3.csv"]
    for k, name in enumerate(names):
        (root / "pmta" / "n1" / name).write_text(f"e{k},2026-10-01T1{k}:00\n")
    seen: list[tuple[int, int]] = []

    def ingest(batch_id: str) -> pl.DataFrame:
        seen.clear()
        return manifest.ingest(
            kind="pmta",
            files=[f for f in landing.scan(root) if f.kind == "pmta"],
            lake=Lake.at(tmp_path / "lake"),
            fn=pid_ingest,
            batch_id=batch_id,
            workers=2,
            alone=lambda p: "big" in p.name,
            progress=lambda i, n: seen.append((i, n)),
        )

    b = ingest("b")
    pid = {Path(r["path"]).name: json.loads(r["detail"])["pid"] for r in b.iter_rows(named=True)}
    assert b.get_column("status").to_list() == ["loaded"] * 5
    assert b.get_column("rows").to_list() == [1] * 5  # each result with its own file
    assert pid["acct-big-1.csv"] == pid["acct-big-2.csv"] == os.getpid()  # here, one after the other
    assert {pid[n] for n in names if "small" in n}.isdisjoint({os.getpid()})  # the pool's processes
    assert seen == [(i, 5) for i in range(1, 6)]

    # one file left for the pool is read here too, and counted
    (root / "pmta" / "n1" / "acct-big-3.csv").write_text("e8,2026-10-02T10:00\n")
    (root / "pmta" / "n1" / "acct-small-4.csv").write_text("e9,2026-10-02T11:00\n")
    b = ingest("c")
    assert b.select("path", "status").rows() == [
        ("pmta/n1/acct-big-3.csv", "loaded"),
        ("pmta/n1/acct-small-4.csv", "loaded"),
    ]
    assert seen == [(1, 2), (2, 2)]
