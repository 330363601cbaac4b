import json
from pathlib import Path

import dagster as dg
import polars as pl

from mtashift.lake import Lake, write_parquet
from mtashift.manifest import MANIFEST_SCHEMA, manifest_path
from pipelines.resources import LakeResource, LandingResource
from pipelines.sensors import ingested_days_sensor, landing_sensor


def _eval_landing(root: Path, cursor: str | None) -> dg.SensorResult:
    ctx = dg.build_sensor_context(cursor=cursor, resources={"landing": LandingResource(root=str(root))})
    return landing_sensor(ctx)


def test_landing_sensor_requests_only_for_new_changed_or_completed_files(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    (root / "pmta" / "n1").mkdir(parents=True)
    (root / "kumo" / "k1").mkdir(parents=True)
    (root / "pmta" / "n1" / "acct-2026-10-01-0000.csv").write_text("type\n")
    seg = root / "kumo" / "k1" / "20261001-000000.000000001"
    seg.write_bytes(b"x")
    seg.chmod(0o644)
    (root / "notes.docx").write_text("ignored")

    first = _eval_landing(root, None)
    assert len(first.run_requests) == 1
    again = _eval_landing(root, None)
    assert again.run_requests[0].run_key == first.run_requests[0].run_key  # deterministic
    cursor = json.loads(first.cursor)
    assert set(cursor) == {"pmta/n1/acct-2026-10-01-0000.csv", "kumo/k1/20261001-000000.000000001"}

    # No change: no run.
    assert _eval_landing(root, first.cursor).run_requests == []
    # The open segment grows: still no run (it is read once complete).
    seg.write_bytes(b"xy")
    grown = _eval_landing(root, first.cursor)
    assert grown.run_requests == []
    # Completed (write bit removed): a run.
    seg.chmod(0o444)
    done = _eval_landing(root, grown.cursor)
    assert len(done.run_requests) == 1


def test_ingested_days_sensor_requests_exactly_the_touched_days(tmp_path: Path) -> None:
    lake = Lake.at(tmp_path / "lake")
    rows = [
        {"kind": "pmta", "path": "pmta/a.csv", "status": "loaded", "days": ["2026-10-01"],
         "days_touched": ["2026-10-01", "2026-10-02"], "ingested_at": "2026-11-01T00:00:00+00:00"},
    ]  # fmt: skip
    df = pl.DataFrame(rows).with_columns(pl.col("ingested_at").str.to_datetime(time_zone="UTC"))
    full = df.select(
        [pl.col(c) if c in df.columns else pl.lit(None).alias(c) for c in MANIFEST_SCHEMA.names()]
    ).cast(MANIFEST_SCHEMA)  # type: ignore[arg-type]
    write_parquet(full, manifest_path(lake, "pmta"))
    ctx = dg.build_sensor_context(cursor=None, resources={"lake": LakeResource(root=str(lake.root))})
    res = ingested_days_sensor(ctx)
    assert [r.partition_key for r in res.run_requests] == ["2026-10-01", "2026-10-02"]
    ctx2 = dg.build_sensor_context(cursor=res.cursor, resources={"lake": LakeResource(root=str(lake.root))})
    assert ingested_days_sensor(ctx2).run_requests == []


def test_cutover_verdict_sensor_alerts_once_when_a_pool_turns(tmp_path: Path) -> None:
    from mtashift.lake import write_table
    from pipelines.sensors import cutover_verdict_sensor

    lake = Lake.at(tmp_path / "lake")
    res = {"lake": LakeResource(root=str(lake.root))}
    write_table(
        pl.DataFrame({"pool": ["a", "b"], "verdict": ["proceed", "watch"]}),
        lake=lake,
        table="cutover_verdicts",
    )
    ctx = dg.build_sensor_context(cursor=None, resources=res)
    assert "no verdict turned" in cutover_verdict_sensor(ctx).skip_message
    write_table(
        pl.DataFrame({"pool": ["a", "b"], "verdict": ["hold", "watch"]}), lake=lake, table="cutover_verdicts"
    )
    ctx2 = dg.build_sensor_context(cursor=ctx.cursor, resources=res)
    assert cutover_verdict_sensor(ctx2).skip_message == "ALERT: a=hold"
    ctx3 = dg.build_sensor_context(cursor=ctx2.cursor, resources=res)
    assert "no verdict turned" in cutover_verdict_sensor(ctx3).skip_message
