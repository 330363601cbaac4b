"""Data quality: Great Expectations suites as asset checks, and the Data Docs site of their results.

Per table, a blocking check runs the ERROR expectations of its suites (a failure stops the
downstream assets) and a non-blocking check runs the WARN ones (drift: record mix, node clocks,
unclassified share). Suites: ``schemas/expectations/*.json``; meaning: ``schemas/docs/quality.md``.
Every result is stored under ``LAKE/quality/results/`` and rendered by ``quality_docs``.
"""

from pathlib import Path

import dagster as dg
import polars as pl

from mtashift.lake import Lake, write_table
from mtashift.quality.docs import build_data_docs, results_table, save_result
from mtashift.quality.validate import ValidationOutcome, needed_columns, validate
from pipelines.resources import LakeResource

_SEVERITY = {"ERROR": dg.AssetCheckSeverity.ERROR, "WARN": dg.AssetCheckSeverity.WARN}


def _files(lk: Lake, table: str, day: str | None) -> list[Path]:
    if day is None:
        data = lk.table_dir(table) / "data.parquet"
        return [data] if data.exists() else []
    return sorted(lk.partition_dir(table, day).glob("*.parquet"))


def _quarantine_files(lk: Lake, kind: str) -> list[Path]:
    return sorted((lk.quarantine / kind).glob("*.parquet"))


def _load(files: list[Path], columns: list[str]) -> tuple[pl.DataFrame, pl.Schema]:
    schema = pl.read_parquet_schema(files[0])
    frame = pl.read_parquet(files, columns=[c for c in columns if c in schema], hive_partitioning=False)
    return frame, schema


def _result(outcomes: list[ValidationOutcome], *, severity: str, **extra: object) -> dg.AssetCheckResult:
    failed = [f for o in outcomes for f in o.failed]
    return dg.AssetCheckResult(
        passed=not failed,
        severity=_SEVERITY[severity],
        metadata={
            "evaluated": sum(o.evaluated for o in outcomes),
            "failed": len(failed),
            "rows": outcomes[0].rows if outcomes else 0,
            "seconds": round(sum(o.seconds for o in outcomes), 3),
            # untrusted values (addresses, replies) travel as JSON, never as markdown
            "failed_expectations": dg.MetadataValue.json(
                [{k: v for k, v in f.as_dict().items() if k != "examples"} for f in failed]
            ),
            "unexpected_counts": dg.MetadataValue.json(
                {k: v for o in outcomes for k, v in o.unexpected_counts().items()}
            ),
            "examples": dg.MetadataValue.json(
                {f"{f.expectation}({', '.join(f.columns)})": f.examples for f in failed}
            ),
            "suites": dg.MetadataValue.json([o.summary() for o in outcomes]),
            **extra,
        },
    )


def _check(
    lk: Lake,
    *,
    files: list[Path],
    suites: list[str],
    severity: str,
    day: str | None,
    batch: str | None = None,
) -> dg.AssetCheckResult:
    if not files:
        return dg.AssetCheckResult(passed=True, severity=_SEVERITY[severity], metadata={"note": "no data"})
    columns = list(dict.fromkeys(c for s in suites for c in needed_columns(s, severity)))
    frame, schema = _load(files, columns)
    outcomes = []
    for suite in suites:
        outcome = validate(frame, suite=suite, day=day, severity=severity, schema=schema, batch=batch)
        save_result(outcome, lake=lk)
        outcomes.append(outcome)
    return _result(outcomes, severity=severity, files=len(files))


# ----------------------------------------------------------------------------- daily tables


def _daily_check(
    asset: str, *, name: str, suites: list[str], severity: str, description: str
) -> dg.AssetChecksDefinition:
    """A GX check of one day partition of ``asset``; the ERROR ones block downstream, the WARN ones do not."""

    @dg.asset_check(asset=asset, name=name, blocking=severity == "ERROR", description=description)
    def _day_check(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        lk, day = lake.lake(), context.partition_key
        return _check(lk, files=_files(lk, asset, day), suites=suites, severity=severity, day=day)

    return _day_check


events_expectations = _daily_check(
    "events",
    name="events_expectations",
    suites=["events", "events_record_mix"],
    severity="ERROR",
    description="GX ERROR expectations: schema, allowed values, day bounds, queued<=event, keys, record-type mapping",
)
events_expectations_warn = _daily_check(
    "events",
    name="events_expectations_warn",
    suites=["events"],
    severity="WARN",
    description="GX WARN expectations: queued_time and node present, reply codes, share of `other`",
)
events_record_mix_drift = _daily_check(
    "events",
    name="events_record_mix_drift",
    suites=["events_record_mix"],
    severity="WARN",
    description="record-type mix per MTA: transient/reception logging on, unknown record types rare",
)
events_clock_skew = _daily_check(
    "events",
    name="events_clock_skew",
    suites=["events_clock"],
    severity="WARN",
    description="node clocks agree (activity-profile offsets, reception lag)",
)
bounces_expectations = _daily_check(
    "bounces",
    name="bounces_expectations",
    suites=["bounces"],
    severity="ERROR",
    description="GX ERROR expectations of the bounces partition",
)
bounces_unclassified_share = _daily_check(
    "bounces",
    name="bounces_unclassified_share",
    suites=["bounces"],
    severity="WARN",
    description="share of failures left unclassified (`other`)",
)
complaints_expectations = _daily_check(
    "complaints",
    name="complaints_expectations",
    suites=["complaints"],
    severity="ERROR",
    description="GX ERROR expectations of the complaints partition",
)
complaints_expectations_warn = _daily_check(
    "complaints",
    name="complaints_expectations_warn",
    suites=["complaints"],
    severity="WARN",
    description="complaints come after their matched delivery",
)
provider_rates_daily_expectations = _daily_check(
    "provider_rates_daily",
    name="provider_rates_daily_expectations",
    suites=["provider_rates_daily"],
    severity="ERROR",
    description="GX ERROR expectations: rates within [0, 1], counts >= 0, one row per group",
)
provider_rates_daily_expectations_warn = _daily_check(
    "provider_rates_daily",
    name="provider_rates_daily_expectations_warn",
    suites=["provider_rates_daily"],
    severity="WARN",
    description="complaint_rate <= 1",
)


# ----------------------------------------------------------------------------- whole tables


@dg.asset_check(
    asset="suppression", blocking=True, description="GX ERROR expectations of the suppression table"
)
def suppression_expectations(lake: LakeResource) -> dg.AssetCheckResult:
    lk = lake.lake()
    return _check(
        lk, files=_files(lk, "suppression", None), suites=["suppression"], severity="ERROR", day=None
    )


def _quarantine(lake: LakeResource, kind: str) -> dg.AssetCheckResult:
    lk = lake.lake()
    return _check(
        lk, files=_quarantine_files(lk, kind), suites=["quarantine"], severity="ERROR", day=None, batch=kind
    )


@dg.asset_check(asset="pmta_files", blocking=True, description="quarantine/pmta: schema, closed reason codes")
def pmta_quarantine_expectations(lake: LakeResource) -> dg.AssetCheckResult:
    return _quarantine(lake, "pmta")


@dg.asset_check(asset="kumo_files", blocking=True, description="quarantine/kumo: schema, closed reason codes")
def kumo_quarantine_expectations(lake: LakeResource) -> dg.AssetCheckResult:
    return _quarantine(lake, "kumo")


@dg.asset_check(asset="fbl_reports", blocking=True, description="quarantine/fbl: schema, closed reason codes")
def fbl_quarantine_expectations(lake: LakeResource) -> dg.AssetCheckResult:
    return _quarantine(lake, "fbl")


@dg.asset_check(
    asset="legacy_suppression",
    blocking=True,
    description="quarantine/suppression: schema, closed reason codes",
)
def suppression_quarantine_expectations(lake: LakeResource) -> dg.AssetCheckResult:
    return _quarantine(lake, "suppression")


# ----------------------------------------------------------------------------- Data Docs


@dg.asset(
    # After the checked tables, so the Data Docs show this run's validation results.
    deps=["events", "bounces", "complaints", "provider_rates_daily", "suppression"],
    group_name="quality",
    tags={"cadence": "history"},
    kinds={"great_expectations", "html"},
)
def quality_docs(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """One Data Docs site (LAKE/quality/index.html) over every stored validation result; quality_results: one row per expectation run."""
    lk = lake.lake()
    index = build_data_docs(lk)
    table = results_table(lk)
    write_table(table, lake=lk, table="quality_results")
    failing = table.filter(~pl.col("success"))
    by_severity = failing.group_by("severity").len().sort("severity") if failing.height else failing
    return dg.MaterializeResult(
        metadata={
            "index": dg.MetadataValue.path(str(index)),
            "results": table.select("suite", "batch").unique().height,
            "expectations_evaluated": table.height,
            "failing": failing.height,
            "failing_by_severity": dg.MetadataValue.json(
                {r["severity"]: r["len"] for r in by_severity.iter_rows(named=True)} if failing.height else {}
            ),
        }
    )
