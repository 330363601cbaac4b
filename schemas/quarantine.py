"""Quarantine: every rejected line or record, with where it came from and why."""

from __future__ import annotations

import polars as pl

# Reason codes are a closed vocabulary shared by the ingests, the simulator's truth and the checks.
REASONS: dict[str, str] = {
    "invalid_utf8": "the line is not valid UTF-8",
    "malformed_csv": "the line is not parseable CSV (e.g. an unterminated quote)",
    "too_many_fields": "the row has more fields than the header in force",
    "no_header": "a data line before any header line",
    "missing_type": "the record has no type value",
    "bad_timestamp": "the event time is missing or not a recognised timestamp",
    "invalid_json": "the line is not valid JSON",
    "not_a_record": "valid JSON but not a log record object (no `type`)",
    "truncated_stream": "compressed stream is truncated or corrupt from this point on",
    "incomplete_record": "last line has no terminating newline (open or damaged segment)",
    "arf_unparseable": "feedback report is not a parseable RFC 5965 report",
    "invalid_address": "not an e-mail address or domain",
    "invalid_row": "a row of a structured landing file that fails validation",
}

QUARANTINE_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "source_kind": (pl.String(), "landing sub-folder: pmta, kumo, fbl, suppression, seedlist, pmta-config"),
    "source_file": (pl.String(), "file path relative to the landing root"),
    "source_line": (pl.Int64(), "1-based line (or record) number in the decompressed file; null if unknown"),
    "byte_offset": (pl.Int64(), "byte offset of the line in the decompressed stream; null if unknown"),
    "reason": (pl.String(), "one of REASONS"),
    "detail": (pl.String(), "human-readable detail (parser message)"),
    "raw_text": (pl.String(), "the rejected text (invalid bytes replaced by U+FFFD)"),
}

QUARANTINE_SCHEMA: pl.Schema = pl.Schema({n: t for n, (t, _d) in QUARANTINE_COLUMNS.items()})


def empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)
