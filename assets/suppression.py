"""Suppression stage: legacy lists imported, the list rebuilt from the whole history, exports for KumoMTA."""

import dagster as dg
import polars as pl

from mtashift.suppression.legacy import legacy_files
from mtashift.suppression.run import (
    LEGACY_FILES_TABLE,
    LEGACY_TABLE,
    check_legacy_kept,
    count_physical_lines,
    import_legacy_to_lake,
    quarantine_dir,
    read_whole,
    rebuild_suppression,
)
from pipelines.resources import LakeResource, LandingResource


def _preview(frame: pl.DataFrame, n: int = 5) -> dg.MetadataValue:
    if not frame.height:
        return dg.MetadataValue.md("empty")
    shown = frame.head(n).with_columns(
        [pl.col(c).list.join(" ") for c, t in frame.schema.items() if isinstance(t, pl.List)]
    )
    return dg.MetadataValue.md(shown.to_pandas().to_markdown())


@dg.asset(group_name="suppression", tags={"cadence": "landing"}, kinds={"python", "parquet"})
def legacy_suppression(
    context: dg.AssetExecutionContext, lake: LakeResource, landing: LandingResource
) -> dg.MaterializeResult:
    """One row per valid entry line of the landing/suppression lists; invalid lines quarantined per file."""
    imported = import_legacy_to_lake(lake=lake.lake(), landing_root=landing.path())
    quarantined = int(imported.stats["quarantined"].sum() or 0)
    if quarantined:
        context.log.warning(f"legacy suppression: {quarantined} line(s) quarantined")
    return dg.MaterializeResult(
        metadata={
            "files": imported.stats.height,
            "entries": imported.entries.height,
            "domain_entries": imported.entries.filter(pl.col("kind") == "domain").height,
            "quarantined": quarantined,
            "per_file": _preview(imported.stats, 50),
            "preview": _preview(imported.entries),
        }
    )


@dg.asset_check(
    asset=legacy_suppression,
    blocking=True,
    description="Every line of every list is accounted for: blank + comment + header + entry + quarantined",
)
def legacy_suppression_reconciles(lake: LakeResource, landing: LandingResource) -> dg.AssetCheckResult:
    lk = lake.lake()
    root = landing.path()
    stats = read_whole(lk, LEGACY_FILES_TABLE)
    entries = read_whole(lk, LEGACY_TABLE)
    problems: list[str] = []
    files = {p.relative_to(root).as_posix(): p for p in legacy_files(root / "suppression")}
    recorded = {} if stats is None else {r["source_file"]: r for r in stats.iter_rows(named=True)}
    if set(files) != set(recorded):
        problems.append(f"files on disk {sorted(files)} != files imported {sorted(recorded)}")
    per_file_entries = {} if entries is None else dict(entries.group_by("source_file").len().iter_rows())
    for rel, row in sorted(recorded.items()):
        parts = row["blank"] + row["comments"] + row["header"] + row["entries"] + row["quarantined"]
        if parts != row["lines"]:
            problems.append(f"{rel}: {row['lines']} lines != {parts} accounted")
        if rel in files and count_physical_lines(files[rel]) != row["lines"]:
            problems.append(
                f"{rel}: file has {count_physical_lines(files[rel])} lines, import saw {row['lines']}"
            )
        if per_file_entries.get(rel, 0) != row["entries"]:
            problems.append(
                f"{rel}: {per_file_entries.get(rel, 0)} rows in table != {row['entries']} entries"
            )
    q_rows = sum(pl.read_parquet(p).height for p in quarantine_dir(lk).glob("*.parquet"))
    if stats is not None and q_rows != int(stats["quarantined"].sum() or 0):
        problems.append(
            f"quarantine holds {q_rows} rows, import counted {int(stats['quarantined'].sum() or 0)}"
        )
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"files": len(files), "problems": dg.MetadataValue.json(problems[:50])},
    )


@dg.asset(
    deps=[legacy_suppression, "bounces", "complaints"],
    group_name="suppression",
    tags={"cadence": "history"},
    kinds={"polars", "parquet", "sqlite"},
)
def suppression(
    context: dg.AssetExecutionContext, lake: LakeResource, landing: LandingResource
) -> dg.MaterializeResult:
    """One row per (match_key, scope) suppressed as of the newest event, rebuilt from all history; diff and exports."""
    run = rebuild_suppression(lake=lake.lake(), landing_root=landing.path())
    by_source = dict(run.table.group_by("source").len().sort("source").iter_rows())
    by_change = dict(run.diff.group_by("change").len().sort("change").iter_rows())
    context.log.info(f"suppression as of {run.as_of.isoformat()}: {run.table.height} rows, diff {by_change}")
    return dg.MaterializeResult(
        metadata={
            "rows": run.table.height,
            "as_of": run.as_of.isoformat(),
            "policy": run.policy.fingerprint,
            "by_source": dg.MetadataValue.json(by_source),
            "diff": dg.MetadataValue.json(by_change),
            "stats": dg.MetadataValue.json(run.stats),
            "exports": dg.MetadataValue.json({k: str(v) for k, v in run.exports.items()}),
            "preview": _preview(run.table),
            "diff_preview": _preview(run.diff, 20),
        }
    )


@dg.asset_check(
    asset=suppression,
    blocking=True,
    description="Every valid legacy entry is in the rebuilt list, or in the diff with the policy rule that lapsed it",
)
def suppression_keeps_legacy(lake: LakeResource, landing: LandingResource) -> dg.AssetCheckResult:
    total, missing = check_legacy_kept(lake=lake.lake(), landing_root=landing.path())
    return dg.AssetCheckResult(
        passed=missing.height == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "legacy_entries": total,
            "unaccounted": missing.height,
            "unaccounted_preview": _preview(missing, 20),
        },
    )
