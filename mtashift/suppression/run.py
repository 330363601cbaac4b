"""Lake-level steps of the suppression stage: read inputs, build, diff, write. Assets call these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from mtashift.lake import Lake, replace_dir, write_parquet, write_table
from mtashift.suppression.build import BOUNCE_INPUT, COMPLAINT_INPUT, _conform, evaluate_suppression
from mtashift.suppression.diff import diff_suppression, legacy_unaccounted
from mtashift.suppression.export import write_exports
from mtashift.suppression.legacy import LegacyImport, import_legacy
from mtashift.suppression.policy import SuppressionPolicy, load_policy
from schemas.suppression import LEGACY_SCHEMA, SUPPRESSION_SCHEMA

LEGACY_TABLE = "legacy_suppression"
LEGACY_FILES_TABLE = "legacy_suppression_files"
TABLE = "suppression"
DIFF_TABLE = "suppression_diff"
QUARANTINE_KIND = "suppression"
EXPORT_DIR = "suppression"


def quarantine_dir(lake: Lake) -> Path:
    return lake.quarantine / QUARANTINE_KIND


def export_dir(lake: Lake) -> Path:
    return lake.exports / EXPORT_DIR


def write_legacy(imported: LegacyImport, *, lake: Lake) -> None:
    """Entries, per-file accounting and per-file quarantine (the quarantine folder is swapped whole,
    so a list removed from landing leaves no stale quarantine behind)."""
    write_table(imported.entries, lake=lake, table=LEGACY_TABLE)
    write_table(imported.stats, lake=lake, table=LEGACY_FILES_TABLE)

    def fill(tmp: Path) -> None:
        for key, frame in sorted(imported.quarantine.items()):
            write_parquet(frame, tmp / f"{key}.parquet")

    replace_dir(quarantine_dir(lake), fill)


def import_legacy_to_lake(*, lake: Lake, landing_root: Path) -> LegacyImport:
    imported = import_legacy(landing_root=landing_root)
    write_legacy(imported, lake=lake)
    return imported


def scan_daily(lake: Lake, table: str, schema: dict[str, pl.DataType]) -> pl.LazyFrame | None:
    """All partitions of a daily table, each conformed to ``schema`` (partitions written by older
    code may lack newer columns); None when the table has no partition yet."""
    files = sorted(lake.table_dir(table).glob("date=*/*.parquet"))
    if not files:
        return None
    return pl.concat([_conform(pl.scan_parquet(f), schema) for f in files], how="vertical")


def read_whole(lake: Lake, table: str) -> pl.DataFrame | None:
    path = lake.table_dir(table) / "data.parquet"
    return pl.read_parquet(path) if path.exists() else None


@dataclass(frozen=True)
class SuppressionRun:
    table: pl.DataFrame
    diff: pl.DataFrame
    expired: pl.DataFrame
    as_of: datetime
    policy: SuppressionPolicy
    stats: dict[str, int]
    exports: dict[str, Path]


def rebuild_suppression(*, lake: Lake, landing_root: Path | None) -> SuppressionRun:
    """Rebuild the list from the whole lake; diff against the stored build; write table, diff, exports."""
    policy = load_policy(landing_root=landing_root)
    legacy = read_whole(lake, LEGACY_TABLE)
    bounces = scan_daily(lake, "bounces", BOUNCE_INPUT)
    complaints = scan_daily(lake, "complaints", COMPLAINT_INPUT)
    previous = read_whole(lake, TABLE)
    built = evaluate_suppression(legacy=legacy, bounces=bounces, complaints=complaints, policy=policy)
    diff = diff_suppression(previous=previous, current=built.table, expired=built.expired)
    write_table(built.table, lake=lake, table=TABLE)
    write_table(diff, lake=lake, table=DIFF_TABLE)
    exports = write_exports(
        folder=export_dir(lake),
        table=built.table,
        diff=diff,
        as_of=built.as_of,
        policy_fingerprint=policy.fingerprint,
    )
    return SuppressionRun(
        table=built.table,
        diff=diff,
        expired=built.expired,
        as_of=built.as_of,
        policy=policy,
        stats=built.stats,
        exports=exports,
    )


def check_legacy_kept(*, lake: Lake, landing_root: Path | None) -> tuple[int, pl.DataFrame]:
    """(valid legacy entries, those unaccounted for) from the stored tables."""
    policy = load_policy(landing_root=landing_root)
    legacy = read_whole(lake, LEGACY_TABLE)
    table = read_whole(lake, TABLE)
    diff = read_whole(lake, DIFF_TABLE)
    legacy = legacy if legacy is not None else pl.DataFrame(schema=LEGACY_SCHEMA)
    table = table if table is not None else pl.DataFrame(schema=SUPPRESSION_SCHEMA)
    if diff is None:
        diff = pl.DataFrame(
            schema={"change": pl.String, "match_key": pl.String, "scope": pl.String, "rule": pl.String}
        )
    missing = legacy_unaccounted(legacy=legacy, table=table, diff=diff, policy=policy)
    return legacy.height, missing


def count_physical_lines(path: Path) -> int:
    """Physical lines of a file as the legacy parser counts them (a final newline ends a line)."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", errors="replace")
        return text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    data = data.removeprefix(b"\xef\xbb\xbf")
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
