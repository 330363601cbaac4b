"""Run the asset graph in process for one landing folder and lake: what `mtashift run` does.

Same definitions as the UI (`pipelines.definitions.defs`), same persistent Dagster instance
(DAGSTER_HOME), so runs made here show in `make ui`.
"""

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import polars as pl

from mtashift import catalog, landing, manifest
from mtashift.lake import Lake, write_text
from pipelines.partitions import daily_partitions

STATE_FILE = "run_state.json"


@dataclass
class RunSummary:
    nothing_new: bool = False
    days: list[str] = field(default_factory=list)
    skipped_days: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    checks_failed: list[str] = field(default_factory=list)  # "asset:check[partition] SEVERITY"


def ensure_dagster_home(default: Path | None = None) -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or (default or Path.cwd() / ".dagster_home")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch(exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def landing_fingerprint(root: Path, *, include_open: bool) -> str:
    files = [(f.rel, f.size, f.mtime_ns, f.writable) for f in landing.scan(root)]
    return hashlib.sha256(json.dumps([files, include_open]).encode()).hexdigest()


def _state_path(lake: Lake) -> Path:
    return lake.manifest / STATE_FILE


def run_pipeline(
    *,
    landing_dir: Path,
    lake_dir: Path,
    include_open: bool = False,
    on_step: Callable[[str, int, int], None] | None = None,
) -> RunSummary:
    landing_dir, lake_dir = landing_dir.resolve(), lake_dir.resolve()
    os.environ["MTASHIFT_LANDING"] = str(landing_dir)
    os.environ["MTASHIFT_LAKE"] = str(lake_dir)
    ensure_dagster_home()
    from pipelines.definitions import defs  # after the environment is set

    lake = Lake.at(lake_dir)
    summary = RunSummary()
    fingerprint = landing_fingerprint(landing_dir, include_open=include_open)
    state_path = _state_path(lake)
    if state_path.exists() and json.loads(state_path.read_text()).get("fingerprint") == fingerprint:
        summary.nothing_new = True
        return summary

    instance = dg.DagsterInstance.get()
    # The console shows progress bars; step-by-step logs stay in the instance for `make ui`.
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    run_config = (
        {**quiet, "resources": {"landing": {"config": {"include_open": True}}}} if include_open else quiet
    )

    def record_checks(result: dg.ExecuteInProcessResult, partition: str = "") -> None:
        for e in result.get_asset_check_evaluations():
            if not e.passed:
                where = f"[{partition}]" if partition else ""
                summary.checks_failed.append(
                    f"{e.asset_key.to_user_string()}:{e.check_name}{where} {e.severity.value}"
                )

    def step(name: str, i: int, n: int) -> None:
        if on_step:
            on_step(name, i, n)

    step("landing", 0, 1)
    res = defs.resolve_job_def("landing_job").execute_in_process(
        instance=instance, raise_on_error=False, run_config=run_config
    )
    summary.runs.append(res.run_id)
    record_checks(res)
    if not res.success:
        summary.failed.append("landing_job")
        return summary
    batch = manifest.load_all(lake).filter(pl.col("batch_id") == res.run_id)
    days = manifest.days_touched(batch)
    valid = set(daily_partitions.get_partition_keys())
    summary.days = [d for d in days if d in valid]
    summary.skipped_days = [d for d in days if d not in valid]

    daily = defs.resolve_job_def("daily_job")
    for i, day in enumerate(summary.days):
        step(f"day {day}", i, len(summary.days))
        r = daily.execute_in_process(
            instance=instance, partition_key=day, raise_on_error=False, run_config=quiet
        )
        summary.runs.append(r.run_id)
        record_checks(r, day)
        if not r.success:
            summary.failed.append(f"daily_job[{day}]")

    step("history", 0, 1)
    r = defs.resolve_job_def("history_job").execute_in_process(
        instance=instance, raise_on_error=False, run_config=quiet
    )
    summary.runs.append(r.run_id)
    record_checks(r)
    if not r.success:
        summary.failed.append("history_job")

    summary.views = catalog.refresh(lake)["created"]
    if not summary.failed:
        write_text(json.dumps({"fingerprint": fingerprint}), state_path)
    return summary
