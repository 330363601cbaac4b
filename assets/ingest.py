"""Landing files -> raw layer (per file), and raw layer -> canonical events (per UTC day)."""

import dagster as dg
import polars as pl

from mtashift import landing, manifest
from mtashift.events import build_events_day
from mtashift.ingest.run import INGESTORS, reconcile_file_stats
from mtashift.lake import Lake, write_partition
from pipelines.partitions import daily_partitions
from pipelines.resources import LakeResource, LandingResource
from schemas.events import EVENT_SCHEMA, EVENT_TYPES, MTAS


def _ingest_kind(
    context: dg.AssetExecutionContext, *, kind: str, lake: LakeResource, landing_dir: LandingResource
) -> dg.MaterializeResult:
    lk = lake.lake()
    files = [f for f in landing.scan(landing_dir.path()) if f.kind == kind]
    spec = INGESTORS[kind]
    batch = manifest.ingest(
        kind=kind,
        files=files,
        lake=lk,
        fn=spec.fn,
        fn_kwargs=spec.kwargs(include_open=landing_dir.include_open),
        batch_id=context.run_id,
        skip_open=spec.skips_open and not landing_dir.include_open,
        progress=lambda i, n: context.log.info(f"{kind}: {i}/{n} files"),
        batch=spec.batch,
        alone=spec.alone,
    )
    loaded = batch.filter(pl.col("status") == "loaded")
    unknown = landing.unknown_files(landing.scan(landing_dir.path()))
    if unknown:
        context.log.warning(f"unknown files in landing (not ingested): {unknown[:20]}")
    return dg.MaterializeResult(
        metadata={
            "files_in_landing": len(files),
            "files_loaded": loaded.height,
            "files_duplicate": batch.filter(pl.col("status") == "duplicate").height,
            "files_skipped_open": batch.filter(pl.col("status") == "skipped_open").height,
            "files_failed": batch.filter(pl.col("status") == "failed").height,
            "rows": int(loaded["rows"].sum() or 0),
            "quarantined": int(loaded["quarantined"].sum() or 0),
            "duplicates": int(loaded["duplicates"].sum() or 0),
            "days_touched": dg.MetadataValue.json(manifest.days_touched(batch)),
            "unknown_files": dg.MetadataValue.json(unknown),
            "batch": dg.MetadataValue.md(
                batch.select("path", "status", "rows", "quarantined", "duplicates")
                .head(50)
                .to_pandas()
                .to_markdown()
                if batch.height
                else "no new or changed files"
            ),
        }
    )


@dg.asset(group_name="ingest", tags={"cadence": "landing"}, kinds={"polars", "parquet"})
def pmta_files(
    context: dg.AssetExecutionContext, lake: LakeResource, landing: LandingResource
) -> dg.MaterializeResult:
    """One raw Parquet per PowerMTA accounting file (canonical rows), plus quarantine and manifest rows."""
    return _ingest_kind(context, kind="pmta", lake=lake, landing_dir=landing)


@dg.asset(group_name="ingest", tags={"cadence": "landing"}, kinds={"polars", "parquet"})
def kumo_files(
    context: dg.AssetExecutionContext, lake: LakeResource, landing: LandingResource
) -> dg.MaterializeResult:
    """One raw Parquet per KumoMTA log segment / JSONL / webhook capture (canonical rows), plus quarantine."""
    return _ingest_kind(context, kind="kumo", lake=lake, landing_dir=landing)


def _file_reconciliation(lk: Lake, kind: str) -> dg.AssetCheckResult:
    m = manifest.load(lk, kind).filter(pl.col("status") == "loaded")
    bad = reconcile_file_stats(lake=lk, manifest=m)
    failed = m.filter(pl.col("status") == "failed") if "status" in m.columns else m.clear()
    return dg.AssetCheckResult(
        passed=bad.is_empty(),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "files_checked": m.height,
            "lines_read": int(m["lines_read"].sum() or 0),
            "rows": int(m["rows"].sum() or 0),
            "quarantined": int(m["quarantined"].sum() or 0),
            "duplicates": int(m["duplicates"].sum() or 0),
            "other_lines": int(m["other_lines"].sum() or 0),
            "files_not_reconciling": dg.MetadataValue.json(bad.to_dicts()[:20]),
            "files_failed": failed.height,
        },
    )


@dg.asset_check(
    asset=pmta_files, blocking=True, description="lines read = rows + quarantined + other lines, per file"
)
def pmta_files_reconcile(lake: LakeResource) -> dg.AssetCheckResult:
    return _file_reconciliation(lake.lake(), "pmta")


@dg.asset_check(
    asset=kumo_files,
    blocking=True,
    description="records read = rows + quarantined + duplicates + other, per file",
)
def kumo_files_reconcile(lake: LakeResource) -> dg.AssetCheckResult:
    return _file_reconciliation(lake.lake(), "kumo")


@dg.asset(
    partitions_def=daily_partitions,
    # recipient_domains: daily stages attribute providers from it, so it is built before any day.
    deps=[pmta_files, kumo_files, "recipient_domains"],
    group_name="events",
    tags={"cadence": "daily"},
    kinds={"polars", "parquet"},
)
def events(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """One row per canonical event (message × recipient × event) of the UTC day, both MTAs, de-duplicated."""
    day = context.partition_key
    lk = lake.lake()
    built = build_events_day(lake=lk, day=day)
    write_partition(built.events, lake=lk, table="events", day=day)
    write_partition(built.duplicates, lake=lk, table="event_duplicates", day=day)
    counts = (
        built.events.group_by("mta", "event_type").len().sort("mta", "event_type")
        if built.events.height
        else pl.DataFrame()
    )
    return dg.MaterializeResult(
        metadata={
            "rows": built.events.height,
            "input_rows": built.input_rows,
            "duplicates_removed": int(built.duplicates["duplicates"].sum() or 0),
            "files": len(built.files),
            "by_type": dg.MetadataValue.md(counts.to_pandas().to_markdown() if counts.height else "empty"),
            "preview": dg.MetadataValue.md(
                built.events.head(5)
                .select("event_time", "mta", "event_type", "recipient_domain", "pool", "smtp_code")
                .to_pandas()
                .to_markdown()
                if built.events.height
                else "empty"
            ),
        }
    )


@dg.asset_check(
    asset=events, blocking=True, description="partition rows + duplicates removed = raw rows of the day"
)
def events_reconcile(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    day = context.partition_key
    lk = lake.lake()
    part = lk.partition_dir("events", day)
    rows = pl.scan_parquet(part / "*.parquet").select(pl.len()).collect().item() if part.exists() else 0
    dup_dir = lk.partition_dir("event_duplicates", day)
    dups = int(pl.read_parquet(dup_dir / "*.parquet")["duplicates"].sum() or 0) if dup_dir.exists() else 0
    files = manifest.loaded_files_for_day(lk, day)
    from mtashift.events import raw_rows_for_day

    raw = (
        raw_rows_for_day(raw_paths=[str(lk.root / p) for p in files["raw_path"]], day=day)
        .select(pl.len())
        .collect()
        .item()
    )
    return dg.AssetCheckResult(
        passed=rows + dups == raw,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"partition_rows": rows, "duplicates_removed": dups, "raw_rows": raw, "files": files.height},
    )


@dg.asset_check(asset=events, blocking=True, description="canonical schema, allowed values, unique event_id")
def events_contract(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    day = context.partition_key
    part = lake.lake().partition_dir("events", day)
    if not part.exists():
        return dg.AssetCheckResult(passed=True, metadata={"note": "no partition"})
    lf = pl.scan_parquet(part / "*.parquet")
    schema_ok = lf.collect_schema() == EVENT_SCHEMA
    stats = (
        lf.select(
            pl.len().alias("rows"),
            pl.col("event_id").n_unique().alias("unique_ids"),
            (~pl.col("event_type").is_in(list(EVENT_TYPES))).fill_null(True).sum().alias("bad_event_type"),
            (~pl.col("mta").is_in(list(MTAS))).fill_null(True).sum().alias("bad_mta"),
            pl.col("event_time").is_null().sum().alias("null_event_time"),
        )
        .collect()
        .row(0, named=True)
    )
    passed = (
        schema_ok
        and stats["rows"] == stats["unique_ids"]
        and stats["bad_event_type"] == 0
        and stats["bad_mta"] == 0
        and stats["null_event_time"] == 0
    )
    return dg.AssetCheckResult(
        passed=passed, severity=dg.AssetCheckSeverity.ERROR, metadata={"schema_ok": schema_ok, **stats}
    )
