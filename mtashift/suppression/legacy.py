"""Import of the sender's legacy suppression lists (``landing/suppression/*.txt|*.csv|*.tsv``).

Shapes accepted (explained in ``schemas/docs/suppression.md``):

- plain lists, one entry per line (``*.txt``);
- delimited files (``*.csv``, ``*.tsv``) with or without a header; the delimiter is sniffed
  (``csv.Sniffer`` over ``, ; TAB |``); a header is recognised by its names (email/address/
  recipient…, reason/category…, date/added/created…, scope/tenant/sender_domain);
  without a header the address column is the one holding ``@`` most often, a date column is one
  whose cells parse as dates, the first other column is the reason;
- ``#`` comment lines, blank lines, UTF-8 (with or without BOM) or UTF-16 with BOM, CRLF;
- whole-domain entries ``@example.com`` / ``example.com``; ``Name <addr>`` and ``mailto:`` forms.

Every physical line is accounted for: blank, comment, header, entry, or quarantined
(``invalid_address``, ``invalid_utf8``, ``malformed_csv``) with file and line. Per file:
``lines = blank + comments + header + entries + quarantined``.
"""

from __future__ import annotations

import codecs
import csv
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from mtashift.suppression.address import normalize_column
from schemas.quarantine import QUARANTINE_SCHEMA
from schemas.suppression import LEGACY_SCHEMA

LEGACY_SUFFIXES: tuple[str, ...] = (".txt", ".csv", ".tsv")
SNIFF_DELIMITERS = ",;\t|"
SNIFF_LINES = 200

# Header names, compared after lower-casing and dropping everything but letters and digits.
ADDRESS_NAMES = frozenset(
    {
        "email",
        "emails",
        "emailaddress",
        "emailaddr",
        "mail",
        "mailaddress",
        "address",
        "addr",
        "recipient",
        "recipientaddress",
        "rcpt",
        "rcptto",
    }
)
REASON_NAMES = frozenset(
    {
        "reason",
        "category",
        "type",
        "status",
        "cause",
        "suppressionreason",
        "suppressiontype",
        "bouncetype",
        "bouncecategory",
        "bouncereason",
    }
)
DATE_NAMES = frozenset(
    {
        "date",
        "added",
        "addedat",
        "addedon",
        "dateadded",
        "created",
        "createdat",
        "createdon",
        "timestamp",
        "time",
        "datetime",
        "suppressedat",
        "suppressedon",
        "updated",
        "updatedat",
        "lastupdated",
    }
)
SCOPE_NAMES = frozenset({"scope"})
TENANT_NAMES = frozenset({"tenant", "tenantid", "customer", "customerid"})
SENDER_DOMAIN_NAMES = frozenset({"senderdomain", "sendingdomain", "fromdomain"})

# Unambiguous date spellings besides ISO 8601 (day/month order is guessed for none of them).
_DATE_FORMATS: tuple[str, ...] = (
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M:%S",
    "%d.%m.%Y",
    "%d.%m.%Y %H:%M:%S",
    "%Y%m%d",
    "%d %b %Y",
    "%d-%b-%Y",
    "%b %d %Y",
    "%b %d, %Y",
    "%a, %d %b %Y %H:%M:%S %z",
)


@dataclass(frozen=True)
class LegacyImport:
    entries: pl.DataFrame  # LEGACY_SCHEMA
    quarantine: dict[str, pl.DataFrame]  # file key -> QUARANTINE_SCHEMA rows of that file
    stats: pl.DataFrame  # one row per file: lines, blank, comments, header, entries, quarantined


def _norm_name(cell: str) -> str:
    return re.sub(r"[^a-z0-9]", "", cell.lower())


def parse_date(text: str | None) -> datetime | None:
    """A legacy date cell as an aware UTC datetime; None when it is blank or not recognised."""
    if text is None:
        return None
    t = text.strip()
    if not t:
        return None
    if re.fullmatch(r"\d{10}(\.\d+)?", t):  # epoch seconds
        return datetime.fromtimestamp(float(t), tz=UTC)
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(t.replace(" UTC", "+00:00"))
    except ValueError:
        for fmt in _DATE_FORMATS:
            try:
                parsed = datetime.strptime(t, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _decode_lines(data: bytes) -> list[tuple[int, int | None, str | None, str]]:
    """(line number, byte offset, text or None when undecodable, raw text) per physical line."""
    out: list[tuple[int, int | None, str | None, str]] = []
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Spreadsheets' "Unicode text" export; offsets in UTF-16 are not useful to anyone.
        text_lines = data.decode("utf-16", errors="replace").split("\n")
        if text_lines and text_lines[-1] == "":
            text_lines.pop()
        for n, line in enumerate(text_lines, start=1):
            body = line.removesuffix("\r")
            out.append((n, None, None if "\ufffd" in body else body, body))
        return out
    offset = 0
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
        offset = len(codecs.BOM_UTF8)
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()  # the terminator of the last line is not a line of its own
    for n, raw in enumerate(parts, start=1):
        body = raw.removesuffix(b"\r")
        try:
            text: str | None = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        out.append((n, offset, text, body.decode("utf-8", errors="replace")))
        offset += len(raw) + 1
    return out


def _sniff_dialect(sample_lines: list[str], suffix: str) -> type[csv.Dialect] | csv.Dialect:
    default = csv.excel_tab if suffix == ".tsv" else csv.excel
    if not sample_lines:
        return default
    try:
        return csv.Sniffer().sniff("\n".join(sample_lines), delimiters=SNIFF_DELIMITERS)
    except csv.Error:
        return default


def _split(line: str, dialect: type[csv.Dialect] | csv.Dialect) -> list[str]:
    """One physical line as CSV cells; raises csv.Error when it does not parse on its own."""
    rows = list(
        csv.reader(
            [line],
            delimiter=dialect.delimiter,
            quotechar=dialect.quotechar or '"',
            doublequote=True,
            skipinitialspace=bool(dialect.skipinitialspace),
            strict=True,
        )
    )
    return rows[0] if rows else []


@dataclass
class _Columns:
    address: int = 0
    reason: int | None = None
    date: int | None = None
    scope: int | None = None
    tenant: int | None = None
    sender_domain: int | None = None


def _header_columns(cells: list[str]) -> _Columns | None:
    names = [_norm_name(c) for c in cells]
    if any("@" in c for c in cells) or not any(n in ADDRESS_NAMES for n in names):
        return None

    def first(pool: frozenset[str]) -> int | None:
        return next((i for i, n in enumerate(names) if n in pool), None)

    return _Columns(
        address=first(ADDRESS_NAMES) or 0,
        reason=first(REASON_NAMES),
        date=first(DATE_NAMES),
        scope=first(SCOPE_NAMES),
        tenant=first(TENANT_NAMES),
        sender_domain=first(SENDER_DOMAIN_NAMES),
    )


def _guess_columns(rows: list[list[str]]) -> _Columns:
    """Positional roles for a file without a header, from a sample of its rows."""
    width = max((len(r) for r in rows), default=1)
    at_counts = [sum(1 for r in rows if i < len(r) and "@" in r[i]) for i in range(width)]
    address = max(range(width), key=lambda i: (at_counts[i], -i)) if width else 0
    cols = _Columns(address=address)
    for i in range(width):
        if i == address:
            continue
        cells = [r[i].strip() for r in rows if i < len(r) and r[i].strip()]
        if cells and cols.date is None and sum(parse_date(c) is not None for c in cells) * 2 > len(cells):
            cols.date = i
        elif cols.reason is None and cells:
            cols.reason = i
    return cols


def _cell(cells: list[str], idx: int | None) -> str | None:
    if idx is None or idx >= len(cells):
        return None
    value = cells[idx].strip()
    return value or None


def parse_legacy_file(data: bytes, *, rel: str) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """Entries (LEGACY_SCHEMA), quarantine (QUARANTINE_SCHEMA) and line counts of one file.

    ``rel`` is the path relative to the landing root (``suppression/<name>``); it is the
    provenance prefix and the quarantine ``source_file``.
    """
    suffix = Path(rel).suffix.lower()
    lines = _decode_lines(data)
    counts = {"lines": len(lines), "blank": 0, "comments": 0, "header": 0, "entries": 0, "quarantined": 0}
    quarantine: list[dict] = []
    content: list[tuple[int, int | None, str]] = []
    for n, off, text, raw in lines:
        if text is None:
            quarantine.append(
                {
                    "source_line": n,
                    "byte_offset": off,
                    "reason": "invalid_utf8",
                    "detail": "line is not valid UTF-8",
                    "raw_text": raw,
                }
            )
            continue
        stripped = text.strip().lstrip("\ufeff").strip()
        if not stripped:
            counts["blank"] += 1
        elif stripped.startswith("#"):
            counts["comments"] += 1
        else:
            content.append((n, off, text))

    delimited = suffix in (".csv", ".tsv")
    dialect = _sniff_dialect([t for _n, _o, t in content[:SNIFF_LINES]], suffix) if delimited else None

    parsed: list[tuple[int, int | None, str, list[str]]] = []
    for n, off, text in content:
        if dialect is None:
            parsed.append((n, off, text, [text]))
            continue
        try:
            cells = _split(text, dialect)
        except csv.Error as exc:
            quarantine.append(
                {
                    "source_line": n,
                    "byte_offset": off,
                    "reason": "malformed_csv",
                    "detail": f"not parseable as one CSV record: {exc}",
                    "raw_text": text,
                }
            )
            continue
        if not any(c.strip() for c in cells):
            counts["blank"] += 1  # a row of empty cells (`,,`) carries nothing
            continue
        parsed.append((n, off, text, cells))

    cols: _Columns | None = None
    if parsed:
        cols = _header_columns(parsed[0][3])
        if cols is not None:
            counts["header"] += 1
            parsed = parsed[1:]
    if cols is None:
        cols = _guess_columns([p[3] for p in parsed[:SNIFF_LINES]]) if dialect is not None else _Columns()

    rows = [
        {
            "source_line": n,
            "byte_offset": off,
            "raw_text": text,
            "cell": _cell(cells, cols.address) if dialect is not None else text,
            "reason": _cell(cells, cols.reason),
            "added_raw": _cell(cells, cols.date),
            "scope_cell": _cell(cells, cols.scope),
            "tenant_cell": _cell(cells, cols.tenant),
            "sender_domain_cell": _cell(cells, cols.sender_domain),
        }
        for n, off, text, cells in parsed
    ]
    frame = pl.DataFrame(
        rows,
        schema={
            "source_line": pl.Int64,
            "byte_offset": pl.Int64,
            "raw_text": pl.String,
            "cell": pl.String,
            "reason": pl.String,
            "added_raw": pl.String,
            "scope_cell": pl.String,
            "tenant_cell": pl.String,
            "sender_domain_cell": pl.String,
        },
    )
    normalized = normalize_column(frame, "cell", allow_domain=True).collect()
    if dialect is not None:
        # In an address column a bare `example.com` is far more often a mangled address
        # (`name-at-example.com`) than a domain entry; there, only `@example.com` means a domain.
        bare = (pl.col("kind") == "domain") & ~pl.col("cell").str.starts_with("@")
        normalized = normalized.with_columns(
            pl.when(bare)
            .then(pl.lit("a bare domain in an address column (write @domain for a whole-domain entry)"))
            .otherwise(pl.col("invalid"))
            .alias("invalid")
        )
    bad = normalized.filter(pl.col("invalid").is_not_null())
    good = normalized.filter(pl.col("invalid").is_null())
    quarantine.extend(
        {
            "source_line": r["source_line"],
            "byte_offset": r["byte_offset"],
            "reason": "invalid_address",
            "detail": f"{r['invalid']} ({r['cell']!r})" if r["cell"] else f"{r['invalid']} (no address cell)",
            "raw_text": r["raw_text"],
        }
        for r in bad.iter_rows(named=True)
    )
    dates = {v: parse_date(v) for v in good["added_raw"].unique().to_list() if v is not None}
    entries = good.select(
        "address",
        "match_key",
        "kind",
        pl.coalesce(
            pl.col("scope_cell"),
            pl.when(pl.col("tenant_cell").is_not_null()).then(pl.lit("tenant:") + pl.col("tenant_cell")),
            pl.when(pl.col("sender_domain_cell").is_not_null()).then(
                pl.lit("sender_domain:") + pl.col("sender_domain_cell").str.to_lowercase()
            ),
        ).alias("scope"),
        "reason",
        pl.col("added_raw")
        .replace_strict(dates, default=None, return_dtype=LEGACY_SCHEMA["added"])
        .alias("added"),
        "added_raw",
        (pl.lit(f"{rel}:") + pl.col("source_line").cast(pl.String)).alias("provenance"),
        pl.lit(rel).alias("source_file"),
        "source_line",
    ).cast(dict(LEGACY_SCHEMA))
    q = (
        pl.DataFrame(
            quarantine,
            schema={
                "source_line": pl.Int64,
                "byte_offset": pl.Int64,
                "reason": pl.String,
                "detail": pl.String,
                "raw_text": pl.String,
            },
        )
        .with_columns(source_kind=pl.lit("suppression"), source_file=pl.lit(rel))
        .select(list(QUARANTINE_SCHEMA.names()))
        .cast(dict(QUARANTINE_SCHEMA))
        .sort("source_line")
    )
    counts["entries"] = entries.height
    counts["quarantined"] = q.height
    return entries, q, counts


def legacy_files(folder: Path) -> list[Path]:
    """The list files of ``landing/suppression`` (any depth), sorted; hidden files skipped."""
    if not folder.exists():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in LEGACY_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def quarantine_key(rel_in_folder: str) -> str:
    """File key of a list's quarantine parquet: its path under suppression/ with `/` as `__`."""
    return rel_in_folder.replace("/", "__")


def import_legacy(*, landing_root: Path) -> LegacyImport:
    """Parse every legacy list under ``landing_root/suppression``."""
    folder = landing_root / "suppression"
    entries: list[pl.DataFrame] = []
    quarantine: dict[str, pl.DataFrame] = {}
    stats: list[dict] = []
    for path in legacy_files(folder):
        rel = path.relative_to(landing_root).as_posix()
        e, q, counts = parse_legacy_file(path.read_bytes(), rel=rel)
        entries.append(e)
        quarantine[quarantine_key(path.relative_to(folder).as_posix())] = q
        stats.append({"source_file": rel, **counts})
    all_entries = pl.concat(entries, how="vertical") if entries else pl.DataFrame(schema=LEGACY_SCHEMA)
    stats_frame = pl.DataFrame(
        stats,
        schema={
            "source_file": pl.String,
            "lines": pl.Int64,
            "blank": pl.Int64,
            "comments": pl.Int64,
            "header": pl.Int64,
            "entries": pl.Int64,
            "quarantined": pl.Int64,
        },
    )
    return LegacyImport(
        entries=all_entries.sort("source_file", "source_line"), quarantine=quarantine, stats=stats_frame
    )
