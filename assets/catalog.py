"""The analysts' DuckDB catalog: views over every table in the lake."""

import dagster as dg

from mtashift import catalog as duck_catalog
from pipelines.resources import LakeResource

# Tables the catalog should follow; it is refreshed after them so their views exist.
_UPSTREAM: list[str] = [
    "events", "bounces", "classifier_stats", "complaints", "complaint_rates", "provider_rates_daily",
    "provider_rates_hourly", "deferral_signatures", "recipient_domains", "warmup_state", "estate_inventory",
    "kumo_config", "cutover_plan", "cutover_comparison", "seedlist_placement", "inflight_drain",
    "cutover_verdicts", "tco", "quality_docs", "suppression",
]  # fmt: skip


@dg.asset(deps=_UPSTREAM, group_name="catalog", tags={"cadence": "history"}, kinds={"duckdb"})
def catalog(lake: LakeResource) -> dg.MaterializeResult:
    """One DuckDB file of views (one per lake table), rebuilt atomically."""
    lk = lake.lake()
    out = duck_catalog.refresh(lk)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(lk.catalog)),
            "views": dg.MetadataValue.json(out["created"]),
            "skipped_views": dg.MetadataValue.json(out["skipped"]),
        }
    )
