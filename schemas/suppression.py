"""Suppression tables: the imported legacy lists, the rebuilt list, and the diff between builds.

- ``legacy_suppression`` (LAKE/legacy_suppression/data.parquet, cadence landing): one row per valid
  entry line of ``landing/suppression/*.csv|*.txt``; invalid lines go to
  LAKE/quarantine/suppression/<file>.parquet (reason ``invalid_address``).
- ``suppression`` (LAKE/suppression/data.parquet, cadence history): one row per (match_key, scope)
  suppressed as of the newest event in the data, rebuilt from the whole history.
- ``suppression_diff`` (LAKE/suppression_diff/data.parquet, also exports/suppression/suppression_diff.csv):
  what changed against the previous build.

Rules: ``schemas/docs/suppression.md``; policy: ``schemas/suppression_policy.yaml``.
"""

from __future__ import annotations

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")

# Where an entry came from. Also the default precedence, strongest first: when several sources
# suppress one (match_key, scope), the row shows the strongest and keeps everyone's evidence.
SOURCES: tuple[str, ...] = ("complaint", "unsubscribe", "bounce", "legacy")

ENTRY_KINDS: tuple[str, ...] = ("address", "domain")

DIFF_CHANGES: tuple[str, ...] = ("added", "removed", "changed", "expired")

LEGACY_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "address": (
        pl.String(),
        "display form: local part as written, domain lower-case IDNA; `@domain` for domains",
    ),
    "match_key": (
        pl.String(),
        "lookup key: canonical local part lower-cased @ domain; `@domain` for domains",
    ),
    "kind": (pl.String(), "`address` or `domain` (a whole-domain entry)"),
    "scope": (
        pl.String(),
        "scope written in the file (`scope`/`tenant`/`sender_domain` column); null = policy default",
    ),
    "reason": (pl.String(), "reason/category cell as written (trimmed), null when absent"),
    "added": (UTC_TS, "date/added/created cell parsed as UTC; null when absent or unparseable"),
    "added_raw": (pl.String(), "the date cell as written"),
    "provenance": (pl.String(), "`<file>:<line>` (file relative to the landing root, 1-based line)"),
    "source_file": (pl.String(), "file relative to the landing root"),
    "source_line": (pl.Int64(), "1-based physical line number"),
}
LEGACY_SCHEMA: pl.Schema = pl.Schema({n: t for n, (t, _d) in LEGACY_COLUMNS.items()})

SUPPRESSION_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "address": (pl.String(), "display form of the winning source's earliest spelling"),
    "match_key": (pl.String(), "lookup key (see mtashift/suppression/address.py); `@domain` = whole domain"),
    "scope": (pl.String(), "`global`, `sender_domain:<domain>` or `tenant:<tenant>`"),
    "reason": (pl.String(), "why, in words (rule and category), of the winning source"),
    "category": (
        pl.String(),
        "bounce category / complaint feedback type / legacy reason of the winning source",
    ),
    "first_seen": (UTC_TS, "earliest time any applying source suppressed it (null: undated legacy only)"),
    "last_seen": (UTC_TS, "latest evidence time of the applying sources"),
    "evidence_count": (pl.Int64(), "number of evidence items of all applying sources (before the cap)"),
    "evidence": (
        pl.List(pl.String()),
        "event ids / complaint ids / legacy `file:line`, chronological (undated last by file, line), capped",
    ),
    "source": (pl.String(), "winning source, one of SOURCES (policy precedence)"),
    "expires_at": (UTC_TS, "when the entry lapses; null = never"),
    "rule": (pl.String(), "policy rule of the winning source (e.g. `bounces.retry_then_suppress`)"),
    "sources": (pl.List(pl.String()), "every source that applies, in precedence order"),
}
SUPPRESSION_SCHEMA: pl.Schema = pl.Schema({n: t for n, (t, _d) in SUPPRESSION_COLUMNS.items()})

DIFF_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "change": (pl.String(), "added | removed | changed | expired (a legacy entry the policy lapsed)"),
    "match_key": (pl.String(), "key of the entry"),
    "scope": (pl.String(), "scope of the entry"),
    "address": (pl.String(), "display form (current build, else previous)"),
    "source_before": (pl.String(), "source in the previous build"),
    "source_after": (pl.String(), "source in this build"),
    "reason_before": (pl.String(), "reason in the previous build"),
    "reason_after": (pl.String(), "reason in this build"),
    "expires_at_before": (UTC_TS, "expiry in the previous build"),
    "expires_at_after": (UTC_TS, "expiry in this build"),
    "detail": (pl.String(), "what changed (`field: before -> after; ...`) or why it left the list"),
    "rule": (pl.String(), "for expired/removed-by-expiry rows: the policy rule that lapsed it"),
}
DIFF_SCHEMA: pl.Schema = pl.Schema({n: t for n, (t, _d) in DIFF_COLUMNS.items()})


def empty_legacy() -> pl.DataFrame:
    return pl.DataFrame(schema=LEGACY_SCHEMA)


def empty_suppression() -> pl.DataFrame:
    return pl.DataFrame(schema=SUPPRESSION_SCHEMA)


def empty_diff() -> pl.DataFrame:
    return pl.DataFrame(schema=DIFF_SCHEMA)
