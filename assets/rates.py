"""Provider attribution, per-provider rates, deferral signatures and IP warm-up state."""

import dagster as dg
import polars as pl

from mtashift.deferrals import deferral_signatures as build_deferral_signatures
from mtashift.lake import Lake, write_partition, write_table
from mtashift.providers import daily_domain_map
from mtashift.providers import recipient_domains as build_recipient_domains
from mtashift.rates import (
    Grain,
    bounded_rate_violations,
    day_consequences,
    day_events,
    history,
    rates,
    raw_events,
    reconcile_with_events,
)
from mtashift.warmup import warmup_daily as build_warmup_daily
from mtashift.warmup import warmup_state as build_warmup_state
from pipelines.partitions import daily_partitions
from pipelines.resources import LakeResource
from schemas.rates import PROVIDER_RATES_DAILY_SCHEMA


def _preview(frame: pl.DataFrame, n: int = 5) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.head(n).to_pandas().to_markdown() if frame.height else "empty")


def _rates_partition(
    context: dg.AssetExecutionContext, lk: Lake, *, grain: Grain, table: str
) -> dg.MaterializeResult:
    day = context.partition_key
    events = day_events(lake=lk, day=day)
    consequences = day_consequences(lake=lk, day=day)
    if consequences is None:
        context.log.info(f"{table} {day}: no bounces partition; bounces counted as unclassified")
    out = rates(
        events=events,
        consequences=consequences,
        grain=grain,
        domain_map=daily_domain_map(events=events, lake=lk),
    ).collect()
    write_partition(out, lake=lk, table=table, day=day)
    return dg.MaterializeResult(
        metadata={
            "rows": out.height,
            "delivered": int(out["delivered"].sum() or 0),
            "attempts": int(out["attempts"].sum() or 0),
            "consequence_source": "bounces" if consequences is not None else "none",
            "preview": _preview(out.sort("attempts", descending=True)),
        }
    )


@dg.asset(
    deps=["pmta_files", "kumo_files"],
    group_name="providers",
    tags={"cadence": "landing"},
    kinds={"polars", "parquet"},
)
def recipient_domains(lake: LakeResource) -> dg.MaterializeResult:
    """One row per recipient domain ever seen: provider (observed MX, else domain list), MX sample, first/last seen."""
    # Built from the per-file raw layer, right after ingest, so every daily stage of the same run
    # attributes providers with the whole history's MX evidence (no daily -> history -> daily cycle).
    lk = lake.lake()
    events = raw_events(lake=lk)
    out = build_recipient_domains(events=events).collect()
    write_table(out, lake=lk, table="recipient_domains")
    by_provider = out.group_by("provider").len().sort("provider")
    return dg.MaterializeResult(
        metadata={
            "rows": out.height,
            "by_provider": dg.MetadataValue.md(
                by_provider.to_pandas().to_markdown() if out.height else "empty"
            ),
            "by_basis": dg.MetadataValue.json(
                {
                    r["provider_basis"]: r["len"]
                    for r in out.group_by("provider_basis").len().iter_rows(named=True)
                }
            ),
        }
    )


@dg.asset(
    partitions_def=daily_partitions,
    deps=["events", "bounces"],
    group_name="providers",
    tags={"cadence": "daily"},
    kinds={"polars", "parquet"},
)
def provider_rates_hourly(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """One row per UTC hour × provider × pool × source × source_ip × mta of the day: counts, rates, latency."""
    return _rates_partition(context, lake.lake(), grain="hour", table="provider_rates_hourly")


@dg.asset(
    partitions_def=daily_partitions,
    deps=["events", "bounces"],
    group_name="providers",
    tags={"cadence": "daily"},
    kinds={"polars", "parquet"},
)
def provider_rates_daily(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """One row per UTC day × provider × pool × source × source_ip × mta: counts, rates, latency."""
    return _rates_partition(context, lake.lake(), grain="day", table="provider_rates_daily")


@dg.asset(
    partitions_def=daily_partitions,
    deps=["events"],
    group_name="providers",
    tags={"cadence": "daily"},
    kinds={"polars", "parquet"},
)
def deferral_signatures(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """One row per day × provider × 4xx code × enhanced status × reply template, with counts and share."""
    day = context.partition_key
    lk = lake.lake()
    events = day_events(lake=lk, day=day)
    out = build_deferral_signatures(
        events=events, domain_map=daily_domain_map(events=events, lake=lk)
    ).collect()
    write_partition(out, lake=lk, table="deferral_signatures", day=day)
    return dg.MaterializeResult(
        metadata={
            "rows": out.height,
            "deferrals": int(out["count"].sum() or 0),
            "top": _preview(
                out.sort("count", descending=True).select("provider", "smtp_code", "template", "count"), 10
            ),
        }
    )


@dg.asset(
    deps=[provider_rates_daily],
    group_name="providers",
    tags={"cadence": "history"},
    kinds={"polars", "parquet"},
)
def warmup_daily(lake: LakeResource) -> dg.MaterializeResult:
    """One row per source IP × provider × day from the IP's first day to the last day of history (0-filled)."""
    lk = lake.lake()
    rd = history(lake=lk, table="provider_rates_daily", schema=PROVIDER_RATES_DAILY_SCHEMA)
    out = build_warmup_daily(rates_daily=rd).collect()
    write_table(out, lake=lk, table="warmup_daily")
    return dg.MaterializeResult(metadata={"rows": out.height})


@dg.asset(
    deps=[provider_rates_daily],
    group_name="providers",
    tags={"cadence": "history"},
    kinds={"polars", "parquet"},
)
def warmup_state(lake: LakeResource) -> dg.MaterializeResult:
    """One row per source IP × provider: first day, days active, sustained 7-day level, trend, last MTA."""
    lk = lake.lake()
    rd = history(lake=lk, table="provider_rates_daily", schema=PROVIDER_RATES_DAILY_SCHEMA)
    out = build_warmup_state(rates_daily=rd)
    write_table(out, lake=lk, table="warmup_state")
    return dg.MaterializeResult(
        metadata={
            "rows": out.height,
            "as_of": str(out["as_of"].max()) if out.height else "none",
            "preview": _preview(out.drop("delivered_history").sort("sustained_level", descending=True), 10),
        }
    )


# --------------------------------------------------------------------------- checks


def _check_bounded(lk: Lake, table: str, day: str) -> dg.AssetCheckResult:
    part = lk.partition_dir(table, day)
    if not any(part.glob("*.parquet")):
        return dg.AssetCheckResult(passed=True, metadata={"note": "no partition"})
    frame = pl.read_parquet(part / "*.parquet", hive_partitioning=False)
    bad = bounded_rate_violations(frame)
    over_one = int(frame.select((pl.col("complaint_rate") > 1).sum()).item() or 0)
    return dg.AssetCheckResult(
        passed=sum(bad.values()) == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={**{f"outside_0_1_{k}": v for k, v in bad.items()}, "complaint_rate_over_1": over_one},
    )


def _check_reconcile(lk: Lake, table: str, day: str) -> dg.AssetCheckResult:
    part = lk.partition_dir(table, day)
    frame = (
        pl.read_parquet(part / "*.parquet", hive_partitioning=False)
        if any(part.glob("*.parquet"))
        else pl.DataFrame(schema=PROVIDER_RATES_DAILY_SCHEMA)
    )
    sums = reconcile_with_events(rates_frame=frame, events=day_events(lake=lk, day=day))
    return dg.AssetCheckResult(
        passed=sums["table"] == sums["events"],
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "table": dg.MetadataValue.json(sums["table"]),
            "events": dg.MetadataValue.json(sums["events"]),
        },
    )


@dg.asset_check(
    asset=provider_rates_daily,
    blocking=True,
    description="delivery/deferral/bounce/expiry rates within [0, 1]",
)
def provider_rates_daily_bounded(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    return _check_bounded(lake.lake(), "provider_rates_daily", context.partition_key)


@dg.asset_check(
    asset=provider_rates_daily, blocking=True, description="counts summed over groups = the day's events"
)
def provider_rates_daily_reconcile(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    return _check_reconcile(lake.lake(), "provider_rates_daily", context.partition_key)


@dg.asset_check(
    asset=provider_rates_hourly,
    blocking=True,
    description="delivery/deferral/bounce/expiry rates within [0, 1]",
)
def provider_rates_hourly_bounded(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    return _check_bounded(lake.lake(), "provider_rates_hourly", context.partition_key)


@dg.asset_check(
    asset=provider_rates_hourly, blocking=True, description="counts summed over groups = the day's events"
)
def provider_rates_hourly_reconcile(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    return _check_reconcile(lake.lake(), "provider_rates_hourly", context.partition_key)


@dg.asset_check(
    asset=deferral_signatures,
    blocking=False,
    description="signature counts = the day's 4xx deferrals; shares sum to 1 per provider",
)
def deferral_signatures_reconcile(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    lk = lake.lake()
    day = context.partition_key
    part = lk.partition_dir("deferral_signatures", day)
    if not any(part.glob("*.parquet")):
        return dg.AssetCheckResult(passed=True, metadata={"note": "no partition"})
    frame = pl.read_parquet(part / "*.parquet", hive_partitioning=False)
    direct = (
        day_events(lake=lk, day=day)
        .filter(
            pl.col("event_type").is_in(["deferred", "queue_deferred"])
            & pl.col("smtp_code").is_between(400, 499)
        )
        .select(pl.len())
        .collect()
        .item()
    )
    worst = (
        frame.group_by("provider").agg(pl.col("share").sum()).select((pl.col("share") - 1).abs().max()).item()
    )
    passed = int(frame["count"].sum() or 0) == direct and (worst is None or worst < 1e-9)
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"signature_count": int(frame["count"].sum() or 0), "deferrals_4xx": direct},
    )
