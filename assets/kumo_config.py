"""PowerMTA estate -> KumoMTA helper files (sources, shaping, queue, dkim_data) and the translation report."""

import dagster as dg
import polars as pl

from mtashift.lake import Lake, write_table, write_text
from mtashift.pmta_config import parse_estate
from mtashift.rates import history
from mtashift.translate import KUMO_FILES, translate_estate, validate_kumo_text
from pipelines.resources import LakeResource, LandingResource


def _optional_table(lk: Lake, name: str) -> pl.DataFrame | None:
    path = lk.table_dir(name) / "data.parquet"
    return pl.read_parquet(path) if path.exists() else None


def _optional_history(lk: Lake, name: str, columns: list[str]) -> pl.DataFrame | None:
    frame = history(lake=lk, table=name)
    if frame is None:
        return None
    present = [c for c in columns if c in frame.collect_schema().names()]
    return frame.select(present).collect()


@dg.asset(
    deps=[
        "pmta_vmtas",
        "pmta_pools",
        "pmta_domain_rules",
        "pmta_dkim_keys",
        "events",
        "warmup_state",
        "provider_rates_hourly",
        "deferral_signatures",
    ],
    group_name="kumo",
    tags={"cadence": "history"},
    kinds={"polars", "toml"},
)
def kumo_config(lake: LakeResource, landing: LandingResource) -> dg.MaterializeResult:
    """The four KumoMTA helper files for the estate, and one translation-report row per PowerMTA directive."""
    lk = lake.lake()
    configs = parse_estate(landing.path() / "pmta-config")
    events = history(lake=lk, table="events")
    result = translate_estate(
        configs=configs,
        warmup=_optional_table(lk, "warmup_state"),
        provider_rates=_optional_history(
            lk, "provider_rates_hourly", ["hour", "provider", "source", "mta", "delivered"]
        ),
        deferral_signatures=_optional_history(lk, "deferral_signatures", ["provider", "template", "count"]),
        events=events,
    )
    for name, text in result.files.items():
        write_text(text, lk.kumo / name)
    write_table(result.report, lake=lk, table="translation_report")
    write_text(result.report_md, lk.kumo / "translation_report.md")
    write_text(result.report_json, lk.kumo / "translation_report.json")
    counts = result.report.group_by("status").len().sort("status")
    return dg.MaterializeResult(
        metadata={
            "nodes": len(configs),
            "directives": result.report.height,
            **{f"{r['status']}": int(r["len"]) for r in counts.iter_rows(named=True)},
            "validation_errors": sum(len(v) for v in result.errors.values()),
            "shaping_toml_bytes": len(result.files["shaping.toml"]),
            "not_translated": dg.MetadataValue.md(
                result.report.filter(pl.col("status") == "not_translated")
                .select("node", "file", "line", "directive", "note")
                .head(20)
                .to_pandas()
                .to_markdown(index=False)
                if result.report.height
                else "(none)"
            ),
        }
    )


@dg.asset_check(asset=kumo_config, blocking=True)
def kumo_config_documented_options(lake: LakeResource) -> dg.AssetCheckResult:
    """Every generated file parses as TOML and uses only option names the KumoMTA docs list."""
    lk = lake.lake()
    errors: dict[str, list[str]] = {}
    for name in KUMO_FILES:
        path = lk.kumo / name
        errors[name] = validate_kumo_text(name, path.read_text("utf-8")) if path.exists() else ["missing"]
    total = sum(len(v) for v in errors.values())
    return dg.AssetCheckResult(
        passed=total == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"errors": total, "detail": dg.MetadataValue.json({k: v[:20] for k, v in errors.items()})},
    )


@dg.asset_check(asset=kumo_config, blocking=True)
def kumo_config_rules_reported(lake: LakeResource) -> dg.AssetCheckResult:
    """Every configured domain rule (pmta_domain_rules) has its directive line in the translation report."""
    lk = lake.lake()
    rules = _optional_table(lk, "pmta_domain_rules")
    report = _optional_table(lk, "translation_report")
    if report is None:
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata={"missing": "report"}
        )
    if rules is None or rules.is_empty():
        return dg.AssetCheckResult(passed=True, metadata={"rules": 0})
    keys = ["node", "file", "line", "directive"]
    missing = rules.select(keys).unique().join(report.select(keys).unique(), on=keys, how="anti")
    return dg.AssetCheckResult(
        passed=missing.is_empty(),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rule_lines": rules.select(keys).unique().height,
            "missing": missing.height,
            "examples": dg.MetadataValue.json(missing.head(10).to_dicts()),
        },
    )
