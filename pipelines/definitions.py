"""The code location: composes assets, checks, jobs, sensors and resources. Nothing else."""

import dagster as dg

import assets
from pipelines.jobs import all_jobs
from pipelines.resources import default_resources
from pipelines.sensors import all_sensors

defs = dg.Definitions(
    assets=dg.load_assets_from_package_module(assets),
    asset_checks=dg.load_asset_checks_from_package_module(assets),
    jobs=all_jobs,
    sensors=all_sensors,
    resources=default_resources(),
)
