"""Jobs by cadence: landing files (unpartitioned), daily partitions, whole history."""

import dagster as dg

from pipelines.partitions import daily_partitions

# Every asset carries a `cadence` tag; jobs and the CLI select by it.
LANDING = dg.AssetSelection.tag("cadence", "landing")
DAILY = dg.AssetSelection.tag("cadence", "daily")
HISTORY = dg.AssetSelection.tag("cadence", "history")

landing_job = dg.define_asset_job(
    "landing_job", selection=LANDING, description="Ingest new or changed landing files into the raw layer."
)
daily_job = dg.define_asset_job(
    "daily_job",
    selection=DAILY,
    partitions_def=daily_partitions,
    description="Rebuild one UTC day of events and everything derived per day.",
)
history_job = dg.define_asset_job(
    "history_job", selection=HISTORY, description="Rebuild whole-history tables, configs and reports."
)

all_jobs = [landing_job, daily_job, history_job]
