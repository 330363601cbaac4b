"""Complaints stage: FBL report files, distinct complaints per day, complaint rates against thresholds."""

import dagster as dg
import polars as pl

from mtashift.arf import FBL_SUFFIXES, parse_fbl_folder
from mtashift.complaints import (
    build_complaints,
    day_window,
    fbl_quarantine_path,
    fbl_raw_path,
    load_thresholds,
    scan_event_days,
    scan_fbl_reports,
)
from mtashift.complaints import (
    complaint_rates as compute_complaint_rates,
)
from mtashift.lake import write_parquet, write_partition
from mtashift.providers import add_provider, daily_domain_map
from pipelines.partitions import daily_partitions
from pipelines.resources import LakeResource, LandingResource
from schemas.complaints import COMPLAINT_SCHEMA

# Days of deliveries searched for the delivery a complaint refers to (recipient + nearest earlier).
JOIN_BACK_DAYS = 30


def _preview(frame: pl.DataFrame, n: int = 5) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.head(n).to_pandas().to_markdown() if frame.height else "empty")


def _fbl_files(landing: LandingResource) -> int:
    folder = landing.path() / "fbl"
    if not folder.exists():
        return 0
    return sum(
        1
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in FBL_SUFFIXES and not p.name.startswith(".")
    )


@dg.asset(group_name="complaints", tags={"cadence": "landing"}, kinds={"python", "parquet"})
def fbl_reports(
    context: dg.AssetExecutionContext, lake: LakeResource, landing: LandingResource
) -> dg.MaterializeResult:
    """One row per parseable ARF/JMRP file of landing/fbl (whole folder, rewritten each run); the rest quarantined."""
    lk = lake.lake()
    root = landing.path()
    reports, quarantine = parse_fbl_folder(root / "fbl", root)
    write_parquet(reports, fbl_raw_path(lk))
    write_parquet(quarantine, fbl_quarantine_path(lk))
    if quarantine.height:
        context.log.warning(f"fbl: {quarantine.height} file(s) quarantined as arf_unparseable")
    return dg.MaterializeResult(
        metadata={
            "reports": reports.height,
            "quarantined": quarantine.height,
            "redacted_recipients": int(reports["recipient_redacted"].sum() or 0) if reports.height else 0,
            "by_format": dg.MetadataValue.json(
                {
                    r["report_format"]: r["len"]
                    for r in reports.group_by("report_format").len().iter_rows(named=True)
                }
            ),
            "quarantine": _preview(quarantine.select("source_file", "detail"), 20),
        }
    )


@dg.asset_check(
    asset=fbl_reports, blocking=True, description="FBL files in landing = parsed reports + quarantined files"
)
def fbl_reports_reconcile(lake: LakeResource, landing: LandingResource) -> dg.AssetCheckResult:
    lk = lake.lake()
    files = _fbl_files(landing)
    rows = (
        pl.scan_parquet(fbl_raw_path(lk)).select(pl.len()).collect().item()
        if fbl_raw_path(lk).exists()
        else 0
    )
    q = fbl_quarantine_path(lk)
    quarantined = pl.scan_parquet(q).select(pl.len()).collect().item() if q.exists() else 0
    return dg.AssetCheckResult(
        passed=files == rows + quarantined,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"files": files, "reports": rows, "quarantined": quarantined},
    )


@dg.asset(
    partitions_def=daily_partitions,
    deps=["events", fbl_reports],
    group_name="complaints",
    tags={"cadence": "daily"},
    kinds={"polars", "parquet"},
)
def complaints(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """One row per distinct complaint whose complaint_time is on the UTC day, all routes merged, joined to its delivery."""
    day = context.partition_key
    lk = lake.lake()
    # Neighbouring days too: the same report logged either side of midnight by two routes merges
    # and is counted on the day of its earliest sighting only.
    near = day_window(day, before=1, after=1)
    complaint_events = scan_event_days(lake=lk, days=near, event_types=("complaint",))
    arf = scan_fbl_reports(lake=lk, days=near).collect()
    deliveries = scan_event_days(
        lake=lk, days=day_window(day, before=JOIN_BACK_DAYS, after=1), event_types=("delivered",)
    )
    domain_map = daily_domain_map(events=scan_event_days(lake=lk, days=[day]), lake=lk)
    out = build_complaints(
        events=complaint_events, arf=arf, deliveries=deliveries, day=day, domain_map=domain_map
    ).collect()
    write_partition(out, lake=lk, table="complaints", day=day)
    routes = out.select(pl.col("routes").list.join("+")).to_series().value_counts() if out.height else None
    return dg.MaterializeResult(
        metadata={
            "rows": out.height,
            "merged_rows": int((out["route_rows"] - 1).sum() or 0) if out.height else 0,
            "matched_by_message_id": int((out["matched_by"] == "message_id").sum()) if out.height else 0,
            "matched_by_recipient_time": int((out["matched_by"] == "recipient_time").sum())
            if out.height
            else 0,
            "unmatched": int(out["matched_by"].is_null().sum()) if out.height else 0,
            "routes": _preview(routes, 10) if routes is not None else dg.MetadataValue.md("empty"),
            "preview": _preview(
                out.select("complaint_time", "provider", "feedback_type", "routes", "matched_by")
            ),
        }
    )


@dg.asset_check(
    asset=complaints,
    blocking=True,
    description="each complaint counted once: complaint_id unique; schema as declared",
)
def complaints_not_double_counted(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    part = lake.lake().partition_dir("complaints", context.partition_key)
    if not any(part.glob("*.parquet")):
        return dg.AssetCheckResult(passed=True, metadata={"note": "no partition"})
    lf = pl.scan_parquet(part / "*.parquet", hive_partitioning=False)
    schema_ok = lf.collect_schema() == COMPLAINT_SCHEMA
    stats = (
        lf.select(
            pl.len().alias("rows"),
            pl.col("complaint_id").n_unique().alias("unique_ids"),
            pl.col("complaint_id").is_null().sum().alias("null_ids"),
        )
        .collect()
        .row(0, named=True)
    )
    return dg.AssetCheckResult(
        passed=schema_ok and stats["rows"] == stats["unique_ids"] and stats["null_ids"] == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"schema_ok": schema_ok, **stats},
    )


@dg.asset(
    partitions_def=daily_partitions,
    deps=[complaints, "events"],
    group_name="complaints",
    tags={"cadence": "daily"},
    kinds={"polars", "parquet"},
)
def complaint_rates(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Per day × provider × sender domain: complaints / delivered that day, flagged against the thresholds file."""
    day = context.partition_key
    lk = lake.lake()
    part = lk.partition_dir("complaints", day)
    day_complaints = (
        pl.scan_parquet(part / "*.parquet", hive_partitioning=False)
        if any(part.glob("*.parquet"))
        else pl.LazyFrame(schema=COMPLAINT_SCHEMA)
    )
    events = scan_event_days(lake=lk, days=[day])
    deliveries = add_provider(
        events.filter(pl.col("event_type") == "delivered"),
        domain_map=daily_domain_map(events=events, lake=lk),
    )
    out = compute_complaint_rates(
        complaints=day_complaints, deliveries=deliveries, thresholds=load_thresholds()
    ).collect()
    write_partition(out, lake=lk, table="complaint_rates", day=day)
    flagged = out.filter(pl.col("status").is_in(["warn", "critical"]))
    return dg.MaterializeResult(
        metadata={
            "rows": out.height,
            "warn": int((out["status"] == "warn").sum()) if out.height else 0,
            "critical": int((out["status"] == "critical").sum()) if out.height else 0,
            "flagged": _preview(
                flagged.select(
                    "provider", "sender_domain", "complaints", "delivered", "complaint_rate", "status"
                ),
                20,
            ),
        }
    )
