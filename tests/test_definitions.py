import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]


def test_workspace_validates() -> None:
    env = dict(os.environ)
    out = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "All code locations passed validation" in out.stderr + out.stdout


def test_definitions_compose_jobs_sensors_and_cadences() -> None:
    from pipelines.definitions import defs

    assert {j.name for j in [defs.resolve_job_def(n) for n in ("landing_job", "daily_job", "history_job")]} == {
        "landing_job", "daily_job", "history_job",
    }  # fmt: skip
    assert {s.name for s in defs.sensors} >= {"landing_sensor", "ingested_days_sensor", "history_sensor"}
    graph = defs.resolve_asset_graph()
    cadences = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        cadences[key.to_user_string()] = node.tags.get("cadence")
    # Every asset declares its cadence; the CLI and jobs select by it.
    assert None not in cadences.values(), {k: v for k, v in cadences.items() if v is None}
    assert cadences["events"] == "daily"
    assert cadences["pmta_files"] == cadences["kumo_files"] == "landing"
    assert graph.get(dg.AssetKey("events")).partitions_def is not None
