"""Sensors: landing files -> landing_job; newly ingested days -> daily_job; settled days -> history_job.

Every sensor keeps a JSON cursor and derives its run_key from what it saw, so a re-evaluation never
requests the same work twice.
"""

import hashlib
import json

import dagster as dg
import polars as pl

from mtashift import landing as landing_files
from mtashift import manifest
from pipelines.jobs import daily_job, history_job, landing_job
from pipelines.partitions import daily_partitions
from pipelines.resources import LakeResource, LandingResource


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@dg.sensor(job=landing_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.STOPPED)
def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingResource) -> dg.SensorResult:
    """Request an ingest when a landing file is new, changed, or became complete (write bit removed)."""
    seen: dict[str, list] = json.loads(context.cursor) if context.cursor else {}
    now = {
        f.rel: [f.size, f.mtime_ns, f.writable]
        for f in landing_files.scan(landing.path())
        if f.kind is not None
    }
    changed = {rel: state for rel, state in now.items() if seen.get(rel) != state}
    # An open KumoMTA segment is not ingested until complete; growing alone is no reason to run.
    actionable = {rel: s for rel, s in changed.items() if not (rel.startswith("kumo/") and s[2])}
    requests = []
    if actionable:
        requests.append(
            dg.RunRequest(
                run_key=f"landing-{_digest(actionable)}",
                tags={"mtashift/files": str(len(actionable))},
            )
        )
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(now, sort_keys=True))


@dg.sensor(job=daily_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.STOPPED)
def ingested_days_sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
    """Request exactly the day partitions that newly ingested files touch (read from the manifest)."""
    state = json.loads(context.cursor) if context.cursor else {"ingested_at": None}
    m = manifest.load_all(lake.lake())
    if m.is_empty():
        return dg.SensorResult(run_requests=[], cursor=json.dumps(state))
    if state["ingested_at"]:
        m = m.filter(pl.col("ingested_at").cast(pl.String) > state["ingested_at"])
    if m.is_empty():
        return dg.SensorResult(run_requests=[], cursor=json.dumps(state))
    newest = str(m["ingested_at"].cast(pl.String).max())
    days = manifest.days_touched(m)
    valid = set(daily_partitions.get_partition_keys()) if days else set()
    requests = [dg.RunRequest(partition_key=d, run_key=f"daily-{d}-{newest}") for d in days if d in valid]
    return dg.SensorResult(run_requests=requests, cursor=json.dumps({"ingested_at": newest}))


@dg.sensor(job=history_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def history_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """Rebuild whole-history tables once daily runs have settled after new events."""
    latest = context.instance.get_latest_materialization_event(dg.AssetKey("events"))
    if latest is None:
        return dg.SkipReason("no events yet")
    marker = str(latest.storage_id) if hasattr(latest, "storage_id") else str(latest.timestamp)
    if context.cursor == marker:
        return dg.SkipReason("no new events since the last history run")
    busy = context.instance.get_runs(
        filters=dg.RunsFilter(
            job_name=daily_job.name,
            statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED],
        ),
        limit=1,
    )
    if busy:
        return dg.SkipReason("daily runs still in progress")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"history-{marker}")], cursor=marker)


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def cutover_verdict_sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SkipReason:
    """Alert (a warning in the sensor log) when a pool's verdict turns to hold or rollback.

    The `cutover_verdicts_alert` asset check fails at the same time; this sensor is the push side.
    """
    table = lake.lake().table_dir("cutover_verdicts") / "data.parquet"
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    if not table.exists():
        return dg.SkipReason("no cutover verdicts yet")
    now = dict(pl.read_parquet(table).select("pool", "verdict").iter_rows())
    turned = sorted(p for p, v in now.items() if v in {"hold", "rollback"} and seen.get(p) != v)
    for pool in turned:
        context.log.warning(
            f"cutover verdict for pool {pool} is now {now[pool].upper()} (was {seen.get(pool, 'unset')})"
        )
    context.update_cursor(json.dumps(now, sort_keys=True))
    if turned:
        return dg.SkipReason(f"ALERT: {', '.join(f'{p}={now[p]}' for p in turned)}")
    return dg.SkipReason("no verdict turned to hold or rollback")


all_sensors = [landing_sensor, ingested_days_sensor, history_sensor, cutover_verdict_sensor]
