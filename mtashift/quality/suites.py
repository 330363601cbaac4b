"""Generate the Great Expectations suites (``schemas/expectations/<suite>.json``) from the contracts.

Every allowed value, column, type and key below comes from the schema modules (``schemas/*.py``),
the bounce taxonomy, the provider set and ``schemas/expectations/thresholds.yaml``; nothing is
restated by hand, so a contract change shows up as a diff of the committed JSON (a test regenerates
it and compares). Regenerate after a change with ``python -m mtashift.quality.suites``.

Every expectation carries ``meta.severity``: ``ERROR`` (the contract: the blocking asset checks fail
on it) or ``WARN`` (drift: non-blocking checks report it). GX's own ``severity`` field mirrors it
(``critical`` / ``warning``) so Data Docs show the same thing. ``meta.scope = "schema"`` marks the
column-list and type expectations, which are evaluated on a zero-row frame with the table's schema.

Suites and the frame each validates (``meta.frame``):

- ``events``, ``bounces``, ``complaints``, ``provider_rates_daily``: one daily partition of the table;
  ``event_time``-like columns are bounded by the suite parameters ``day_start`` / ``day_end``.
- ``events_record_mix``: one row per (mta, raw_type, event_type) of an events partition, every known
  record type of both MTAs present (zero rows counted as 0) — :func:`mtashift.quality.drift.record_mix`.
- ``events_clock``: one row per node of an events partition — :func:`mtashift.quality.drift.node_clock`.
- ``quarantine``: the quarantine files of one landing kind; ``suppression``: the whole table.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from mtashift.providers import PROVIDERS
from mtashift.quality.frames import pandas_dtype_names
from mtashift.taxonomy import CONSEQUENCES, OTHER, load_taxonomy
from schemas.bounces import BOUNCE_SCHEMA
from schemas.complaints import COMPLAINT_SCHEMA, IDENTITY_BASES, MATCHED_BY
from schemas.events import (
    EVENT_SCHEMA,
    EVENT_TYPES,
    FAILURE_EVENT_TYPES,
    KUMO_RECORD_TYPES,
    MTAS,
    PMTA_RECORD_TYPES,
)
from schemas.quarantine import QUARANTINE_SCHEMA, REASONS
from schemas.rates import (
    ATTEMPT_EVENT_TYPES,
    BOUNDED_RATES,
    PROVIDER_RATES_DAILY_SCHEMA,
    RATE_KEYS,
)
from schemas.suppression import SOURCES, SUPPRESSION_SCHEMA

ERROR = "ERROR"
WARN = "WARN"
SEVERITIES = (ERROR, WARN)
_GX_SEVERITY = {ERROR: "critical", WARN: "warning"}

# Landing kinds that write quarantine files (schemas/quarantine.py `source_kind`).
QUARANTINE_KINDS: tuple[str, ...] = ("pmta", "kumo", "fbl", "suppression", "seedlist", "pmta-config")

# Event types whose timestamps come from the external world (a receiver's report, a DSN's
# Last-Attempt-Date) or from another node (transfers): queued_time <= event_time does not hold.
_EXTERNAL_TIME_TYPES: tuple[str, ...] = ("remote_bounce", "remote_status", "complaint", "other")
# One row per recipient: these always name the recipient (queue-level and report rows may not).
RECIPIENT_EVENT_TYPES: tuple[str, ...] = ("received", "delivered", "deferred", "bounced", "expired")

# raw type per MTA -> canonical event types it may become (PowerMTA `b` is bounced or expired).
RECORD_TYPES: dict[str, dict[str, tuple[str, ...]]] = {
    "pmta": {raw: (etype, "expired") if raw == "b" else (etype,) for raw, etype in PMTA_RECORD_TYPES.items()},
    "kumo": {raw: (etype,) for raw, etype in KUMO_RECORD_TYPES.items()},
}


def thresholds_path() -> Path:
    return Path(str(resources.files("schemas") / "expectations" / "thresholds.yaml"))


def expectations_dir() -> Path:
    return Path(str(resources.files("schemas") / "expectations"))


@cache
def thresholds() -> dict[str, Any]:
    return yaml.safe_load(thresholds_path().read_text(encoding="utf-8"))


def raw_key(mta: str, raw_type: str) -> str:
    return f"{mta}:{raw_type}"


def mapping_key(mta: str, raw_type: str, event_type: str) -> str:
    return f"{mta}:{raw_type}->{event_type}"


# ----------------------------------------------------------------------------- building blocks


def _gx():  # GX is imported only when suites are built or validated (slow import)
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    return gx, Column


def _exp(cls_name: str, severity: str, description: str, *, scope: str = "rows", **kwargs: Any) -> Any:
    gx, _ = _gx()
    cls = getattr(gx.expectations, cls_name)
    return cls(
        **kwargs,
        description=description,
        meta={"severity": severity, "scope": scope},
        severity=_GX_SEVERITY[severity],
    )


def _schema_expectations(table: str, schema: pl.Schema) -> list[Any]:
    out = [
        _exp(
            "ExpectTableColumnsToMatchOrderedList",
            ERROR,
            f"{table} has exactly the contract's columns, in order",
            scope="schema",
            column_list=list(schema.names()),
        )
    ]
    for name, dtype_name in pandas_dtype_names(schema).items():
        if "list<" in dtype_name:  # pandas cannot parse nested Arrow type names; the column list covers them
            continue
        out.append(
            _exp(
                "ExpectColumnTypeToBe",
                ERROR,
                f"{name} is {schema[name]}",
                scope="schema",
                column=name,
                type_=dtype_name,
            )
        )
    return out


def _not_null(columns: Sequence[str], severity: str = ERROR, why: str = "always present") -> list[Any]:
    return [_exp("ExpectColumnValuesToNotBeNull", severity, f"{c}: {why}", column=c) for c in columns]


def _in_set(column: str, values: Sequence[str], description: str, severity: str = ERROR, **kw: Any) -> Any:
    return _exp(
        "ExpectColumnValuesToBeInSet", severity, description, column=column, value_set=list(values), **kw
    )


def _within_day(column: str, what: str) -> Any:
    return _exp(
        "ExpectColumnValuesToBeBetween",
        ERROR,
        f"{column} ({what}) falls on the partition's UTC day",
        column=column,
        min_value={"$PARAMETER": "day_start"},
        max_value={"$PARAMETER": "day_end"},
        strict_max=True,
    )


def _suite(
    name: str,
    expectations: list[Any],
    *,
    table: str,
    frame: str,
    description: str,
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    gx, _ = _gx()
    meta: dict[str, Any] = {"table": table, "frame": frame, "description": description}
    if parameters:
        meta["parameters"] = parameters  # how the derived frame is computed (part of the contract)
    suite = gx.ExpectationSuite(name=name, expectations=expectations, meta=meta)
    return _canonical_json(suite.to_json_dict())


def _canonical_json(doc: Any) -> Any:
    """Drop run-specific keys (random ids, the GX version) so regeneration is byte-identical."""
    if isinstance(doc, dict):
        return {
            k: _canonical_json(v)
            for k, v in doc.items()
            if k not in ("id", "great_expectations_version") and not (k == "notes" and v is None)
        }
    if isinstance(doc, list):
        return [_canonical_json(v) for v in doc]
    return doc


# ----------------------------------------------------------------------------- suites


def events_suite() -> dict[str, Any]:
    _, Column = _gx()
    t = thresholds()["events"]
    exps = _schema_expectations("events", EVENT_SCHEMA)
    exps += _not_null(["event_id", "mta", "event_type", "raw_type", "event_time", "source_file"])
    exps += [
        _exp("ExpectColumnValuesToBeUnique", ERROR, "event_id is unique in the partition", column="event_id"),
        _in_set("mta", MTAS, "mta is one of MTAS"),
        _in_set("event_type", EVENT_TYPES, "event_type is one of EVENT_TYPES"),
        _within_day("event_time", "the day of an event is the UTC date of event_time"),
        _exp(
            "ExpectColumnPairValuesAToBeGreaterThanB",
            ERROR,
            "queued_time <= event_time (nulls allowed) for events the node timed itself",
            column_A="event_time",
            column_B="queued_time",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
            row_condition=Column("event_type").is_not_in(_EXTERNAL_TIME_TYPES),
        ),
    ]
    for col in ("recipient", "recipient_domain"):
        exps.append(
            _exp(
                "ExpectColumnValuesToNotBeNull",
                ERROR,
                f"{col} is present on per-recipient events ({', '.join(RECIPIENT_EVENT_TYPES)}); "
                "queue-level and report rows may lack it",
                column=col,
                row_condition=Column("event_type").is_in(RECIPIENT_EVENT_TYPES),
            )
        )
    exps += [
        _exp(
            "ExpectColumnValuesToNotMatchRegex",
            ERROR,
            "recipient_domain is lower-case ASCII (IDNA)",
            column="recipient_domain",
            regex=r"[A-Z]|[^\x00-\x7F]",
        ),
        _exp("ExpectColumnValuesToBeBetween", ERROR, "size_bytes >= 0", column="size_bytes", min_value=0),
        _exp("ExpectColumnValuesToBeBetween", ERROR, "attempts >= 0", column="attempts", min_value=0),
        _exp(
            "ExpectColumnValuesToBeBetween",
            ERROR,
            "source_line is 1-based",
            column="source_line",
            min_value=1,
        ),
        # --- WARN: usable but degraded
        _exp(
            "ExpectColumnValuesToNotBeNull",
            WARN,
            "delivery outcomes carry queued_time (latency percentiles need it)",
            column="queued_time",
            row_condition=Column("event_type").is_in(ATTEMPT_EVENT_TYPES),
        ),
        *_not_null(["node"], WARN, "per-node analyses (clock offsets, drain) need the writing node"),
        _exp(
            "ExpectColumnValuesToBeBetween",
            WARN,
            "smtp_code is a reply code (200-599)",
            column="smtp_code",
            min_value=200,
            max_value=599,
        ),
        _exp(
            "ExpectColumnValuesToNotBeInSet",
            WARN,
            f"at most {t['max_other_share']:.0%} of the rows are event_type `other`",
            column="event_type",
            value_set=["other"],
            mostly=round(1 - float(t["max_other_share"]), 6),
        ),
    ]
    return _suite(
        "events",
        exps,
        table="events",
        frame="partition",
        description="one events partition (schemas/events.py)",
    )


def record_mix_suite() -> dict[str, Any]:
    _, Column = _gx()
    t = thresholds()
    mix = t["record_mix"]
    known = [raw_key(m, r) for m, types in RECORD_TYPES.items() for r in types]
    allowed = [
        mapping_key(m, r, e) for m, types in RECORD_TYPES.items() for r, es in types.items() for e in es
    ]
    exps = [
        _in_set(
            "mapping",
            allowed,
            "known record types map to their canonical event_type (schemas/events.py)",
            row_condition=(Column("raw_key").is_in(known)) & (Column("rows") >= 1),
        ),
        _in_set(
            "event_type",
            ["other"],
            "unknown record types become `other`",
            row_condition=(Column("raw_key").is_not_in(known)) & (Column("rows") >= 1),
        ),
        _exp(
            "ExpectColumnValuesToBeBetween",
            WARN,
            f"event_type `other` is at most {t['events']['max_other_share']:.0%} of an MTA's rows",
            column="mta_share",
            max_value=float(t["events"]["max_other_share"]),
            row_condition=Column("event_type") == "other",
        ),
    ]
    for mta, raws in mix["expected_with_deliveries"].items():
        for raw in raws:
            exps.append(
                _exp(
                    "ExpectColumnValuesToBeBetween",
                    WARN,
                    f"{mta} `{raw}` records are logged on a day with >= {mix['min_delivered']} {mta} "
                    "deliveries (none means that record type's logging is off)",
                    column="rows",
                    min_value=1,
                    row_condition=(Column("raw_key") == raw_key(mta, raw))
                    & (Column("mta_delivered") >= int(mix["min_delivered"])),
                )
            )
    return _suite(
        "events_record_mix",
        exps,
        table="events",
        frame="record_mix",
        description="one row per (mta, raw_type, event_type) of an events partition",
    )


def clock_suite() -> dict[str, Any]:
    c = thresholds()["clock"]
    tol = float(c["tolerance_seconds"])
    lag = float(c["reception_lag_tolerance_seconds"])
    exps = [
        _exp(
            "ExpectColumnValuesToBeBetween",
            WARN,
            f"each node's clock agrees with its peers within {tol:g} s (activity profile alignment)",
            column="clock_offset_s",
            min_value=-tol,
            max_value=tol,
        ),
        _exp(
            "ExpectColumnValuesToBeBetween",
            WARN,
            f"a node's reception records have event_time - queued_time within {lag:g} s (median)",
            column="reception_lag_median_s",
            min_value=-lag,
            max_value=lag,
        ),
    ]
    return _suite(
        "events_clock",
        exps,
        table="events",
        frame="node_clock",
        description="one row per node of an events partition (schemas/docs/quality.md, clock skew)",
        parameters={
            k: c[k]
            for k in ("bin_seconds", "max_lag_seconds", "min_events", "min_correlation", "tolerance_seconds")
        },
    )


def quarantine_suite() -> dict[str, Any]:
    exps = _schema_expectations("quarantine", QUARANTINE_SCHEMA)
    exps += _not_null(["source_kind", "source_file", "reason"])
    exps += [
        _in_set("reason", list(REASONS), "reason is one of schemas/quarantine.py REASONS"),
        _in_set("source_kind", QUARANTINE_KINDS, "source_kind is a landing kind"),
        _exp(
            "ExpectColumnValuesToBeBetween",
            ERROR,
            "source_line is 1-based",
            column="source_line",
            min_value=1,
        ),
        _exp("ExpectColumnValuesToBeBetween", ERROR, "byte_offset >= 0", column="byte_offset", min_value=0),
        *_not_null(["raw_text"], WARN, "the rejected text is kept"),
    ]
    return _suite(
        "quarantine",
        exps,
        table="quarantine",
        frame="table",
        description="quarantine files of one landing kind (schemas/quarantine.py)",
    )


def bounces_suite() -> dict[str, Any]:
    tax = load_taxonomy()
    t = thresholds()["bounces"]
    exps = _schema_expectations("bounces", BOUNCE_SCHEMA)
    exps += _not_null(["event_id", "mta", "event_type", "event_time", "category", "consequence", "rule"])
    exps += [
        _exp("ExpectColumnValuesToBeUnique", ERROR, "one row per failure event", column="event_id"),
        _in_set("mta", MTAS, "mta is one of MTAS"),
        _in_set("event_type", FAILURE_EVENT_TYPES, "only failure events are classified"),
        _within_day("event_time", "bounces are partitioned like events"),
        _in_set("category", tax.names, "category is a taxonomy category"),
        _in_set("raw_category", tax.names, "raw_category is a taxonomy category (or null)"),
        _in_set("classifier_category", tax.names, "classifier_category is a taxonomy category"),
        _in_set("consequence", CONSEQUENCES, "consequence is one of the taxonomy's consequences"),
        _in_set("provider", PROVIDERS, "provider is one of the closed provider set (or null)"),
        _exp(
            "ExpectColumnValuesToNotBeInSet",
            WARN,
            f"at most {float(t['max_unclassified_share']):.0%} of the failures stay unclassified (`{OTHER}`)",
            column="category",
            value_set=[OTHER],
            mostly=round(1 - float(t["max_unclassified_share"]), 6),
        ),
    ]
    return _suite(
        "bounces",
        exps,
        table="bounces",
        frame="partition",
        description="one bounces partition (schemas/bounces.py)",
    )


def complaints_suite() -> dict[str, Any]:
    exps = _schema_expectations("complaints", COMPLAINT_SCHEMA)
    exps += _not_null(["complaint_id", "complaint_time", "identity_basis"])
    exps += [
        _exp("ExpectColumnValuesToBeUnique", ERROR, "each complaint is counted once", column="complaint_id"),
        _within_day("complaint_time", "a complaint is counted on the day of its earliest sighting"),
        _in_set("matched_by", MATCHED_BY, "matched_by is one of MATCHED_BY (or null: unmatched)"),
        _in_set("identity_basis", IDENTITY_BASES, "identity_basis is one of IDENTITY_BASES"),
        _in_set("mta", MTAS, "mta is one of MTAS (or null)"),
        _in_set("provider", PROVIDERS, "provider is one of the closed provider set (or null)"),
        _exp("ExpectColumnValuesToBeBetween", ERROR, "route_rows >= 1", column="route_rows", min_value=1),
        _exp(
            "ExpectColumnPairValuesAToBeGreaterThanB",
            WARN,
            "a complaint comes after the delivery it is matched to",
            column_A="complaint_time",
            column_B="delivery_time",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        ),
    ]
    return _suite(
        "complaints",
        exps,
        table="complaints",
        frame="partition",
        description="one complaints partition (schemas/complaints.py)",
    )


def provider_rates_daily_suite() -> dict[str, Any]:
    count_cols = [n for n, t in PROVIDER_RATES_DAILY_SCHEMA.items() if t == pl.Int64]
    exps = _schema_expectations("provider_rates_daily", PROVIDER_RATES_DAILY_SCHEMA)
    exps += _not_null(["day", "provider", "mta", "attempts", "delivered"])
    exps += [
        _within_day("day", "the partition's day"),
        _in_set("provider", PROVIDERS, "provider is one of the closed provider set"),
        _in_set("mta", MTAS, "mta is one of MTAS"),
        _exp(
            "ExpectCompoundColumnsToBeUnique",
            ERROR,
            f"one row per ({', '.join(RATE_KEYS)})",
            column_list=list(RATE_KEYS),
            ignore_row_if="never",
        ),
        *[
            _exp(
                "ExpectColumnValuesToBeBetween",
                ERROR,
                f"{r} within [0, 1]",
                column=r,
                min_value=0,
                max_value=1,
            )
            for r in BOUNDED_RATES
        ],
        _exp(
            "ExpectColumnValuesToBeBetween",
            ERROR,
            "complaint_rate >= 0",
            column="complaint_rate",
            min_value=0,
        ),
        *[
            _exp("ExpectColumnValuesToBeBetween", ERROR, f"{c} >= 0", column=c, min_value=0)
            for c in count_cols
        ],
        _exp(
            "ExpectColumnPairValuesAToBeGreaterThanB",
            ERROR,
            "attempts >= delivered",
            column_A="attempts",
            column_B="delivered",
            or_equal=True,
        ),
        _exp(
            "ExpectColumnValuesToBeBetween",
            WARN,
            "complaint_rate <= 1 (an arrival-time approximation can exceed 1 only in a tiny group)",
            column="complaint_rate",
            max_value=1,
        ),
    ]
    return _suite(
        "provider_rates_daily",
        exps,
        table="provider_rates_daily",
        frame="partition",
        description="one provider_rates_daily partition (schemas/rates.py)",
    )


def suppression_suite() -> dict[str, Any]:
    exps = _schema_expectations("suppression", SUPPRESSION_SCHEMA)
    exps += _not_null(["match_key", "scope", "source", "rule"])
    exps += [
        _exp(
            "ExpectCompoundColumnsToBeUnique",
            ERROR,
            "one row per (match_key, scope)",
            column_list=["match_key", "scope"],
        ),
        _in_set("source", SOURCES, "source is one of SOURCES"),
        _exp(
            "ExpectColumnValuesToMatchRegex",
            ERROR,
            "scope is `global`, `sender_domain:<domain>` or `tenant:<tenant>`",
            column="scope",
            regex=r"^(?:global|sender_domain:.+|tenant:.+)$",
        ),
        _exp(
            "ExpectColumnValuesToBeBetween",
            ERROR,
            "evidence_count >= 1",
            column="evidence_count",
            min_value=1,
        ),
        _exp(
            "ExpectColumnPairValuesAToBeGreaterThanB",
            ERROR,
            "first_seen <= last_seen",
            column_A="last_seen",
            column_B="first_seen",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        ),
        _exp(
            "ExpectColumnPairValuesAToBeGreaterThanB",
            WARN,
            "an entry expires after it was first seen",
            column_A="expires_at",
            column_B="first_seen",
            or_equal=False,
            ignore_row_if="either_value_is_missing",
        ),
    ]
    return _suite(
        "suppression",
        exps,
        table="suppression",
        frame="table",
        description="the suppression table (schemas/suppression.py)",
    )


BUILDERS = {
    "events": events_suite,
    "events_record_mix": record_mix_suite,
    "events_clock": clock_suite,
    "quarantine": quarantine_suite,
    "bounces": bounces_suite,
    "complaints": complaints_suite,
    "provider_rates_daily": provider_rates_daily_suite,
    "suppression": suppression_suite,
}
SUITE_NAMES: tuple[str, ...] = tuple(BUILDERS)


def build_suites() -> dict[str, dict[str, Any]]:
    """suite name -> GX 1.x suite JSON document, generated from the contracts."""
    return {name: build() for name, build in BUILDERS.items()}


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_suites(directory: Path | None = None) -> list[Path]:
    """(Re)write ``schemas/expectations/<suite>.json``; returns the files written."""
    from mtashift.lake import write_text

    directory = directory or expectations_dir()
    return [write_text(dumps(doc), directory / f"{name}.json") for name, doc in build_suites().items()]


@cache
def load_suite(name: str) -> dict[str, Any]:
    """The committed suite document ``schemas/expectations/<name>.json``."""
    if name not in BUILDERS:
        raise KeyError(f"unknown suite {name!r}; known: {', '.join(SUITE_NAMES)}")
    return json.loads((expectations_dir() / f"{name}.json").read_text(encoding="utf-8"))


def main(argv: Sequence[str] | None = None) -> int:
    for path in write_suites(Path(argv[0]) if argv else None):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
