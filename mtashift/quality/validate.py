"""Validate a frame against one of the committed GX suites and summarise what failed.

``validate(frame, suite="events", day="2024-03-01")`` runs the suite ``schemas/expectations/events.json``
with Great Expectations (1.x, pandas engine, an ephemeral context kept per process) and returns a
:class:`ValidationOutcome`: passed, the worst failing severity, each failed expectation with its
unexpected count and example rows, and the GX result document (what Data Docs render).

Speed (a 5M-row events partition): only the columns the expectations read are converted
(:func:`needed_columns`), in the dtypes GX vectorises (``mtashift/quality/frames.py``); the
expectations run in groups that share a column set, each on a frame of just those columns — GX
filters the whole batch frame for every conditional or null-skipping metric, so narrow frames are
what keeps the cost near the raw pandas cost; and GX's batch fingerprint (an md5 over every cell,
pathologically slow on timestamp columns) is switched off: our batches are identified by suite
and day instead. ``bench/bench_quality.py`` measures it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from numbers import Integral
from typing import Any

import polars as pl

from mtashift.quality import drift
from mtashift.quality.frames import schema_frame, to_pandas
from mtashift.quality.suites import ERROR, SEVERITIES, WARN, load_suite

# Counts for every expectation; the examples (row numbers, value counts) only where it failed:
# a failing group is run again with SUMMARY, which costs GX several more passes over the rows.
FAST_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 10}
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 10}
MAX_EXAMPLES = 5

# Derived frames: the suite's ``meta.frame`` -> (builder, columns of the table it reads).
DERIVED: dict[str, tuple[Callable[[pl.DataFrame], pl.DataFrame], tuple[str, ...]]] = {
    "record_mix": (drift.record_mix, ("mta", "raw_type", "event_type")),
    "node_clock": (
        lambda events: drift.node_clock(events),  # thresholds read at call time
        ("node", "mta", "event_type", "event_time", "queued_time"),
    ),
}

# Columns shown next to each failing value, per validated frame (the row's identity).
KEYS: dict[str, tuple[str, ...]] = {
    "events": ("event_id", "node"),
    "events_record_mix": ("mta", "raw_type", "event_type"),
    "events_clock": ("node", "mta"),
    "quarantine": ("source_file", "source_line"),
    "bounces": ("event_id",),
    "complaints": ("complaint_id",),
    "provider_rates_daily": ("provider", "pool", "source", "source_ip", "mta"),
    "suppression": ("match_key", "scope"),
}


@dataclass(frozen=True)
class FailedExpectation:
    expectation: str  # GX expectation type
    description: str
    severity: str  # ERROR | WARN
    columns: tuple[str, ...]
    unexpected_count: int | None
    unexpected_percent: float | None
    element_count: int | None
    observed_value: Any
    examples: list[dict[str, Any]]
    exception: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "expectation": self.expectation,
            "description": self.description,
            "severity": self.severity,
            "columns": list(self.columns),
            "unexpected_count": self.unexpected_count,
            "unexpected_percent": self.unexpected_percent,
            "element_count": self.element_count,
            "observed_value": _jsonable(self.observed_value),
            "examples": _jsonable(self.examples),
            "exception": self.exception,
        }


@dataclass
class ValidationOutcome:
    suite: str
    batch: str  # the day, the quarantine kind, or `all`
    severity_filter: str | None  # which expectations ran (None: all)
    passed: bool
    severity: str | None  # worst severity among the failures; None when passed
    failed: list[FailedExpectation]
    evaluated: int
    rows: int
    seconds: float
    result: dict[str, Any] = field(repr=False)  # GX ExpectationSuiteValidationResult, JSON form

    def failed_by_severity(self) -> dict[str, int]:
        return {s: sum(f.severity == s for f in self.failed) for s in SEVERITIES}

    def unexpected_counts(self) -> dict[str, int | None]:
        return {f"{f.expectation}({', '.join(f.columns)})": f.unexpected_count for f in self.failed}

    def summary(self) -> dict[str, Any]:
        """Plain JSON-able summary (Dagster metadata, logs)."""
        return {
            "suite": self.suite,
            "batch": self.batch,
            "passed": self.passed,
            "severity": self.severity,
            "evaluated": self.evaluated,
            "failed": len(self.failed),
            "failed_by_severity": self.failed_by_severity(),
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
        }


# ----------------------------------------------------------------------------- suite helpers


def _columns_of(expectation: dict[str, Any]) -> list[str]:
    kw = expectation["kwargs"]
    cols = [kw[k] for k in ("column", "column_A", "column_B") if k in kw]
    cols += list(kw.get("column_list") or [])
    return cols


def _condition_columns(condition: Any) -> list[str]:
    if isinstance(condition, dict):
        if "column" in condition and isinstance(condition["column"], dict):
            return [condition["column"]["name"]]
        return [c for sub in condition.get("conditions", []) for c in _condition_columns(sub)]
    return []


def _row_columns(expectation: dict[str, Any]) -> list[str]:
    return _columns_of(expectation) + _condition_columns(expectation["kwargs"].get("row_condition"))


def _is_schema(expectation: dict[str, Any]) -> bool:
    return expectation.get("meta", {}).get("scope") == "schema"


def _severity(expectation: dict[str, Any]) -> str:
    return expectation.get("meta", {}).get("severity", ERROR)


def expectations(suite: str, severity: str | None = None) -> list[dict[str, Any]]:
    """The suite's expectation documents, optionally only those of one severity."""
    if severity is not None and severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}")
    return [e for e in load_suite(suite)["expectations"] if severity is None or _severity(e) == severity]


def has_expectations(suite: str, severity: str | None = None) -> bool:
    return bool(expectations(suite, severity))


def needed_columns(suite: str, severity: str | None = None) -> list[str]:
    """Columns of the *table* a validation reads: read only these from Parquet."""
    frame_kind = load_suite(suite)["meta"]["frame"]
    if frame_kind in DERIVED:
        return list(DERIVED[frame_kind][1])
    cols: list[str] = []
    for e in expectations(suite, severity):
        if not _is_schema(e):
            cols += _row_columns(e)
    cols += list(KEYS.get(suite, ()))
    return list(dict.fromkeys(cols))


def day_parameters(day: str) -> dict[str, datetime]:
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return {"day_start": start, "day_end": start + timedelta(days=1)}


# ----------------------------------------------------------------------------- GX


@cache
def _context() -> Any:
    import great_expectations as gx
    import great_expectations.execution_engine.pandas_execution_engine as pandas_engine
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # The batch fingerprint hashes every cell (tens of seconds on 5M timestamps); batches are
    # identified by suite and day here, so it is not needed. Frames above the limit skip it anyway.
    pandas_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.data_sources.add_pandas("mtashift")
    return context


@cache
def _batch_definition(asset: str) -> Any:
    source = _context().data_sources.get("mtashift")
    return source.add_dataframe_asset(asset).add_batch_definition_whole_dataframe(asset)


def _run(
    asset: str,
    suite_name: str,
    docs: list[dict[str, Any]],
    frame: Any,
    params: dict[str, Any],
    result_format: dict[str, Any] = RESULT_FORMAT,
) -> Any:
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=suite_name, expectations=[dict(d) for d in docs])
    batch = _batch_definition(asset).get_batch(batch_parameters={"dataframe": frame})
    return batch.validate(suite, result_format=result_format, expectation_parameters=params or None)


_NULL_TYPES = frozenset({"expect_column_values_to_not_be_null", "expect_column_values_to_be_null"})
_MEMBERSHIP_TYPES = _NULL_TYPES | {
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set",
}
_UNIQUE_TYPES = _NULL_TYPES | {"expect_column_values_to_be_unique"}


def _conversion_modes(
    docs: Iterable[dict[str, Any]], data: pl.DataFrame
) -> tuple[list[str], list[str], list[str]]:
    """(null_only, categorical, hashed) columns for :func:`mtashift.quality.frames.to_pandas`."""
    uses: dict[str, set[str]] = {}
    for d in docs:
        for c in _columns_of(d):
            uses.setdefault(c, set()).add(d["type"])
        for c in _condition_columns(d["kwargs"].get("row_condition")):
            uses.setdefault(c, set()).add("row_condition")
    null_only = [c for c, u in uses.items() if u <= _NULL_TYPES]
    categorical = [
        c
        for c, u in uses.items()
        if c not in null_only
        and u <= _MEMBERSHIP_TYPES | {"row_condition"}
        and c in data.columns
        and data[c].dtype == pl.String
    ]
    hashed = [
        c
        for c, u in uses.items()
        if "expect_column_values_to_be_unique" in u
        and u <= _UNIQUE_TYPES
        and c in data.columns
        and data[c].dtype == pl.String
    ]
    return null_only, categorical, hashed


def _groups(docs: Iterable[dict[str, Any]]) -> list[tuple[tuple[str, ...], list[dict[str, Any]]]]:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for d in docs:
        groups.setdefault(tuple(sorted(set(_row_columns(d)))), []).append(d)
    return list(groups.items())


# ----------------------------------------------------------------------------- results


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy / pandas scalars
        try:
            return value.item()
        except (ValueError, TypeError):
            pass
    if value is None or str(value) in ("<NA>", "NaT", "nan"):
        return None
    return str(value)


def _examples(
    data: pl.DataFrame, result: dict[str, Any], columns: list[str], keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    index = [int(i) for i in (result.get("partial_unexpected_index_list") or []) if isinstance(i, Integral)]
    show = [c for c in dict.fromkeys([*keys, *columns]) if c in data.columns]
    if index and show:
        rows = data.select(show)[index[:MAX_EXAMPLES]]
        return _jsonable(rows.to_dicts())
    values = result.get("partial_unexpected_list") or []
    return [{"value": _jsonable(v)} for v in values[:MAX_EXAMPLES]]


def validate(
    frame: pl.DataFrame,
    *,
    suite: str,
    day: str | None,
    severity: str | None = None,
    schema: pl.Schema | None = None,
    batch: str | None = None,
) -> ValidationOutcome:
    """Validate ``frame`` (a table partition, or the events partition for derived suites) with ``suite``.

    ``day`` bounds the day-parameterised expectations (required by suites that have them);
    ``severity`` runs only the ERROR or the WARN expectations; ``schema`` is the table's full schema
    when ``frame`` holds only :func:`needed_columns` (the column and type expectations use it);
    ``batch`` names the batch in results (default: the day, else ``all``).
    """
    started = time.perf_counter()
    doc = load_suite(suite)
    docs = expectations(suite, severity)
    frame_kind = doc["meta"]["frame"]
    data = DERIVED[frame_kind][0](frame) if frame_kind in DERIVED else frame
    params = day_parameters(day) if day else {}
    uses_day = any("$PARAMETER" in json.dumps(d["kwargs"]) for d in docs)
    if uses_day and not day:
        raise ValueError(f"suite {suite} is bounded by the partition day: pass day=")

    schema_docs = [d for d in docs if _is_schema(d)]
    row_docs = [d for d in docs if not _is_schema(d)]
    gx_results: dict[int, Any] = {}  # position in docs -> ExpectationValidationResult
    position = {id(d): i for i, d in enumerate(docs)}
    if schema_docs:
        res = _run(suite, suite, schema_docs, schema_frame(schema or data.schema), params)
        for d, r in zip(schema_docs, res.results, strict=True):
            gx_results[position[id(d)]] = r
    if row_docs:
        null_only, categorical, hashed = _conversion_modes(row_docs, data)
        pdf = to_pandas(
            data,
            [c for d in row_docs for c in _row_columns(d)],
            null_only=null_only,
            categorical=categorical,
            hashed=hashed,
        )
        missing = sorted({c for d in row_docs for c in _row_columns(d)} - set(pdf.columns))
        if missing:
            raise ValueError(f"suite {suite}: frame lacks columns {missing}")
        for cols, group in _groups(row_docs):
            res = _run(suite, suite, group, pdf[list(cols)], params, FAST_FORMAT)
            if not res.success:
                # details for the report; a hashed column may have collided: decide on the real values
                exact = to_pandas(data, cols) if set(cols) & set(hashed) else pdf[list(cols)]
                res = _run(suite, suite, group, exact, params)
            for d, r in zip(group, res.results, strict=True):
                gx_results[position[id(d)]] = r

    ordered = [gx_results[i] for i in range(len(docs))]
    failed: list[FailedExpectation] = []
    keys = KEYS.get(suite, ())
    for d, r in zip(docs, ordered, strict=True):
        exc = r.exception_info or {}
        raised = bool(exc.get("raised_exception"))
        if r.success and not raised:
            continue
        result = r.result or {}
        failed.append(
            FailedExpectation(
                expectation=d["type"],
                description=d.get("description", ""),
                severity=_severity(d),
                columns=tuple(_columns_of(d)),
                unexpected_count=result.get("unexpected_count"),
                unexpected_percent=result.get("unexpected_percent"),
                element_count=result.get("element_count"),
                observed_value=result.get("observed_value"),
                examples=_examples(data, result, _columns_of(d), keys),
                exception=exc.get("exception_message") if raised else None,
            )
        )
    worst = ERROR if any(f.severity == ERROR for f in failed) else (WARN if failed else None)
    batch_name = batch or day or "all"
    result_doc = _result_document(
        suite=suite, batch=batch_name, severity=severity, results=ordered, params=params, rows=data.height
    )
    return ValidationOutcome(
        suite=suite,
        batch=batch_name,
        severity_filter=severity,
        passed=not failed,
        severity=worst,
        failed=failed,
        evaluated=len(docs),
        rows=data.height,
        seconds=time.perf_counter() - started,
        result=result_doc,
    )


def _result_document(
    *, suite: str, batch: str, severity: str | None, results: list[Any], params: dict[str, Any], rows: int
) -> dict[str, Any]:
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult

    ok = sum(bool(r.success) for r in results)
    merged = ExpectationSuiteValidationResult(
        success=ok == len(results),
        results=results,
        suite_name=suite,
        suite_parameters=_jsonable(params),
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": ok,
            "unsuccessful_expectations": len(results) - ok,
            "success_percent": 100.0 * ok / len(results) if results else 100.0,
        },
        meta={
            "batch": batch,
            "severity_filter": severity,
            "rows": rows,
            "active_batch_definition": {
                "datasource_name": "mtashift",
                "data_connector_name": "fluent",
                "data_asset_name": suite,
                "batch_identifiers": {"batch": batch},
            },
        },
    )
    return _jsonable(merged.to_json_dict())
