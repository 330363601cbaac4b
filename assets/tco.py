"""TCO: staying on PowerMTA vs migrating to KumoMTA over 36 months, from measured volumes and plan inputs."""

import dagster as dg

from mtashift import cutover as co
from mtashift import tco as model
from mtashift.lake import write_table
from pipelines.resources import LakeResource, LandingResource


@dg.asset(
    deps=["events", "estate_inventory"],
    group_name="tco",
    tags={"cadence": "history"},
    kinds={"polars", "parquet"},
)
def tco(lake: LakeResource, landing: LandingResource) -> dg.MaterializeResult:
    """One row per option (powermta, kumomta) with 3-year cost, savings, payback and range flag; plus
    cash-flow (month x option), sensitivity (input) and assumptions (input) tables."""
    lk = lake.lake()
    plan = co.read_plan(landing.path())
    inputs, assumptions = model.load_tco_inputs(plan_tco=plan.get("tco") or {})
    events = co.scan_events(lk)
    daily, peak = model.daily_volumes(events)
    estate = model.estate_counts(events=events, inventory=co.scan_table(lk, "estate_inventory"))
    volume = model.volume_profile(
        daily=daily,
        peak_hourly=peak,
        min_days_for_trend=inputs.min_days_for_trend,
        pmta_nodes=estate["pmta_nodes"],
        vmtas=estate["vmtas"],
        ips=estate["ips"],
    )
    result = model.tco_model(inputs=inputs, volume=volume)
    sensitivity = model.tco_sensitivity(inputs=inputs, volume=volume)
    write_table(result.summary, lake=lk, table="tco")
    write_table(result.cashflow, lake=lk, table="tco_cashflow")
    write_table(sensitivity, lake=lk, table="tco_sensitivity")
    write_table(
        model.assumptions_with_volume(assumptions, volume=volume, estate=estate),
        lake=lk,
        table="tco_assumptions",
    )
    return dg.MaterializeResult(
        metadata={
            "savings_3y_usd": float(result.savings_3y),
            "payback_month": result.payback_month if result.payback_month is not None else -1,
            "migration_weeks": result.migration_weeks,
            "range_flag": result.range_flag,
            "mean_daily_messages": volume.mean_daily,
            "days_observed": volume.days_observed,
            "note": result.note,
            "summary": dg.MetadataValue.md(
                result.summary.select("option", "total_3y", "one_off", "monthly_mean")
                .to_pandas()
                .to_markdown(index=False)
            ),
        }
    )
