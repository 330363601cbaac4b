"""PowerMTA configuration -> flat inventory tables; configuration joined with the logs (estate inventory)."""

import dagster as dg
import polars as pl

from mtashift.inventory import ESTATE_INVENTORY_SCHEMA, build_estate_inventory, config_tables
from mtashift.lake import Lake, write_table
from mtashift.pmta_config import parse_estate
from mtashift.rates import history
from pipelines.resources import LakeResource, LandingResource
from schemas.events import EVENT_SCHEMA

# table -> grain (each becomes LAKE/<table>/data.parquet)
CONFIG_TABLES: dict[str, str] = {
    "pmta_vmtas": "One row per node × PowerMTA VirtualMTA × source IP (EHLO name, pools, file:line).",
    "pmta_pools": "One row per node × VirtualMTA pool × member VirtualMTA.",
    "pmta_source_ips": "One row per node × configured source IP, with the VirtualMTAs and EHLO names using it.",
    "pmta_domain_rules": "One row per node × VirtualMTA × domain pattern × directive: effective value and origin.",
    "pmta_dkim_keys": "One row per PowerMTA domain-key line: domain, selector, key path (never key material).",
    "pmta_directives": "One row per directive or block tag of every PowerMTA config file, in file order.",
    "pmta_config_issues": "One row per parse issue: unknown directive or tag, syntax error, missing include.",
}


def _preview(frame: pl.DataFrame, n: int = 5) -> dg.MetadataValue:
    return dg.MetadataValue.md(
        frame.head(n).to_pandas().to_markdown(index=False) if frame.height else "(empty)"
    )


@dg.multi_asset(
    name="pmta_config",
    group_name="inventory",
    specs=[
        dg.AssetSpec(name, description=grain, tags={"cadence": "landing"}, kinds={"polars", "parquet"})
        for name, grain in CONFIG_TABLES.items()
    ],
)
def pmta_config(context: dg.AssetExecutionContext, lake: LakeResource, landing: LandingResource):
    """Parse landing/pmta-config/<node>/config (+ includes) into the flat PowerMTA inventory tables."""
    lk = lake.lake()
    configs = parse_estate(landing.path() / "pmta-config")
    tables = config_tables(configs)
    errors = tables["pmta_config_issues"].filter(pl.col("severity") == "error")
    if errors.height:
        context.log.warning(f"{errors.height} PowerMTA config errors, e.g. {errors.head(3).to_dicts()}")
    for name, frame in tables.items():
        write_table(frame, lake=lk, table=name)
        meta = {"rows": frame.height, "nodes": len(configs), "preview": _preview(frame)}
        if name == "pmta_config_issues":
            meta["errors"] = errors.height
        yield dg.MaterializeResult(asset_key=name, metadata=meta)


def _table(lk: Lake, name: str) -> pl.LazyFrame | None:
    path = lk.table_dir(name) / "data.parquet"
    return pl.scan_parquet(path) if path.exists() else None


@dg.asset(
    deps=["events", "pmta_vmtas", "pmta_source_ips", "pmta_dkim_keys"],
    group_name="inventory",
    tags={"cadence": "history"},
    kinds={"polars", "parquet"},
)
def estate_inventory(lake: LakeResource) -> dg.MaterializeResult:
    """One row per node × configured-or-seen VMTA / source IP / sending domain: configured, used, or both."""
    lk = lake.lake()
    events = history(lake=lk, table="events", schema=EVENT_SCHEMA)
    parts = {n: _table(lk, n) for n in ("pmta_vmtas", "pmta_source_ips", "pmta_dkim_keys")}
    if any(v is None for v in parts.values()):
        tables = config_tables([])
        parts = {n: v if v is not None else tables[n].lazy() for n, v in parts.items()}
    out = build_estate_inventory(
        events=events,
        vmtas=parts["pmta_vmtas"],
        source_ips=parts["pmta_source_ips"],
        dkim_keys=parts["pmta_dkim_keys"],
    ).collect()
    write_table(out, lake=lk, table="estate_inventory")
    counts = out.group_by("kind", "status").len().sort("kind", "status")
    return dg.MaterializeResult(
        metadata={
            "rows": out.height,
            "used_unconfigured": out.filter(pl.col("status") == "used_unconfigured").height,
            "configured_unused": out.filter(pl.col("status") == "configured_unused").height,
            "by_status": _preview(counts, 20),
        }
    )


@dg.asset_check(asset=estate_inventory, blocking=False)
def estate_inventory_statuses(lake: LakeResource) -> dg.AssetCheckResult:
    """Every inventory row has a status consistent with its configured/seen flags."""
    path = lake.lake().table_dir("estate_inventory") / "data.parquet"
    if not path.exists():
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.WARN, metadata={"missing": str(path)}
        )
    df = pl.read_parquet(path)
    expected = (
        pl.when(pl.col("configured") & pl.col("seen"))
        .then(pl.lit("configured_and_used"))
        .when(pl.col("configured"))
        .then(pl.lit("configured_unused"))
        .otherwise(pl.lit("used_unconfigured"))
    )
    bad = df.filter((pl.col("status") != expected) | (~pl.col("configured") & ~pl.col("seen"))).height
    schema_ok = df.schema == ESTATE_INVENTORY_SCHEMA
    return dg.AssetCheckResult(
        passed=bad == 0 and schema_ok,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"inconsistent_rows": bad, "schema_ok": schema_ok},
    )
