"""Bounce taxonomy stage: classified failure events per day and the classifier's own report tables."""

import dagster as dg
import polars as pl

from mtashift.bounces import build_bounces, classifier_reports
from mtashift.complaints import scan_event_days
from mtashift.lake import write_partition
from mtashift.providers import add_provider, daily_domain_map
from pipelines.partitions import daily_partitions
from pipelines.resources import LakeResource
from schemas.bounces import BOUNCE_SCHEMA
from schemas.events import FAILURE_EVENT_TYPES


def _preview(frame: pl.DataFrame, n: int = 5) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.head(n).to_pandas().to_markdown() if frame.height else "empty")


@dg.asset(
    partitions_def=daily_partitions,
    deps=["events"],
    group_name="bounces",
    tags={"cadence": "daily"},
    kinds={"polars", "parquet"},
)
def bounces(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """One row per failure event of the UTC day, with unified category, consequence and deciding rule."""
    day = context.partition_key
    lk = lake.lake()
    events = scan_event_days(lake=lk, days=[day])
    with_provider = add_provider(events, domain_map=daily_domain_map(events=events, lake=lk))
    out = build_bounces(events=with_provider).collect()
    write_partition(out, lake=lk, table="bounces", day=day)
    by_category = out.group_by("category").len().sort("len", descending=True) if out.height else out.clear()
    unclassified = int((out["category"] == "other").sum()) if out.height else 0
    return dg.MaterializeResult(
        metadata={
            "rows": out.height,
            "unclassified": unclassified,
            "unclassified_rate": (unclassified / out.height) if out.height else 0.0,
            "by_category": _preview(by_category, 30),
            "preview": _preview(
                out.select(
                    "event_time", "mta", "provider", "smtp_code", "enhanced_status", "category", "rule"
                )
            ),
        }
    )


@dg.asset_check(
    asset=bounces, blocking=True, description="bounces rows = failure events of the day; schema as declared"
)
def bounces_match_failures(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    day = context.partition_key
    lk = lake.lake()
    failures = (
        scan_event_days(lake=lk, days=[day])
        .filter(pl.col("event_type").is_in(list(FAILURE_EVENT_TYPES)))
        .select(pl.len())
        .collect()
        .item()
    )
    part = lk.partition_dir("bounces", day)
    if any(part.glob("*.parquet")):
        lf = pl.scan_parquet(part / "*.parquet", hive_partitioning=False)
        schema_ok = lf.collect_schema() == BOUNCE_SCHEMA
        stats = (
            lf.select(
                pl.len().alias("rows"),
                pl.col("event_id").n_unique().alias("unique_event_ids"),
                pl.col("category").is_null().sum().alias("null_category"),
            )
            .collect()
            .row(0, named=True)
        )
    else:
        schema_ok, stats = True, {"rows": 0, "unique_event_ids": 0, "null_category": 0}
    passed = (
        schema_ok and stats["rows"] == failures == stats["unique_event_ids"] and stats["null_category"] == 0
    )
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"failure_events": failures, "schema_ok": schema_ok, **stats},
    )


@dg.asset(
    partitions_def=daily_partitions,
    deps=[bounces],
    group_name="bounces",
    tags={"cadence": "daily"},
    kinds={"polars", "parquet"},
)
def classifier_stats(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Per day × provider × MTA classifier coverage; also writes rule_hits, unmatched_replies, category_agreement."""
    day = context.partition_key
    lk = lake.lake()
    part = lk.partition_dir("bounces", day)
    frame = (
        pl.scan_parquet(part / "*.parquet", hive_partitioning=False)
        if any(part.glob("*.parquet"))
        else pl.LazyFrame(schema=BOUNCE_SCHEMA)
    )
    tables = {name: lf.collect() for name, lf in classifier_reports(bounces=frame).items()}
    for name, out in tables.items():
        write_partition(out, lake=lk, table=name, day=day)
    stats = tables["classifier_stats"]
    agreement = tables["category_agreement"].filter(pl.col("mta") == "pmta")
    agree_rows = int(agreement.filter(pl.col("agree"))["rows"].sum() or 0)
    total_rows = int(agreement["rows"].sum() or 0)
    failures = int(stats["failures"].sum() or 0)
    return dg.MaterializeResult(
        metadata={
            "failures": failures,
            "unclassified": int(stats["unclassified"].sum() or 0),
            "unclassified_rate": (int(stats["unclassified"].sum() or 0) / failures) if failures else 0.0,
            "pmta_rows_with_bouncecat": total_rows,
            "pmta_agreement": (agree_rows / total_rows) if total_rows else 0.0,
            "rows_per_table": dg.MetadataValue.json({k: v.height for k, v in tables.items()}),
            "top_unmatched": _preview(
                tables["unmatched_replies"].select("provider", "rank", "template", "failures"), 10
            ),
        }
    )
