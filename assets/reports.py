"""The migration lead's reports: audit, cutover and cost, as self-contained HTML."""

import dagster as dg

from mtashift import catalog as duck_catalog
from mtashift.reports.spec import render_all
from pipelines.resources import LakeResource

# Reports read the catalog, so they follow every table they show.
_UPSTREAM: list[str] = [
    "events", "bounces", "classifier_stats", "complaints", "complaint_rates", "provider_rates_daily",
    "provider_rates_hourly", "deferral_signatures", "recipient_domains", "warmup_state", "estate_inventory",
    "kumo_config", "cutover_plan", "cutover_comparison", "seedlist_placement", "inflight_drain",
    "cutover_verdicts", "tco", "quality_docs", "catalog",
]  # fmt: skip


@dg.asset(deps=_UPSTREAM, group_name="reports", tags={"cadence": "history"}, kinds={"html"})
def reports(lake: LakeResource) -> dg.MaterializeResult:
    """One HTML file per report (audit, cutover, cost), rendered from the refreshed catalog."""
    lk = lake.lake()
    duck_catalog.refresh(lk)
    paths = render_all(lk)
    return dg.MaterializeResult(
        metadata={
            **{f"{name}_html": dg.MetadataValue.path(path) for name, path in paths.items()},
            "reports": dg.MetadataValue.md("\n".join(f"- [{n}]({p})" for n, p in paths.items())),
        }
    )
