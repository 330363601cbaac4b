"""Seed-list placement results: parse ``landing/seedlist/*.csv`` and compare inbox rates around a cutover.

A seed test sends one message to a set of monitored mailboxes and records where each landed:
``inbox``, ``spam`` or ``missing``. Required columns (header names matched case-insensitively):
test_id, sent_at, pool, provider, seed_address, placement. Any other column is kept in ``extra``
(a JSON object). A row that fails validation goes to quarantine with reason ``invalid_row``; the
line counts reconcile: ``lines_read = rows + quarantined + duplicates + other_lines``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from mtashift.cutover import (
    ALL,
    COMPARISON_SCHEMA,
    UTC_TS,
    PoolResolver,
    frame_from_rows,
    min_n_for,
    parse_time,
    policy_stats,
    proportion_row,
)
from mtashift.providers import PROVIDERS
from schemas.quarantine import QUARANTINE_SCHEMA

REQUIRED: tuple[str, ...] = ("test_id", "sent_at", "pool", "provider", "seed_address", "placement")
PLACEMENTS: tuple[str, ...] = ("inbox", "spam", "missing")

SEEDLIST_SCHEMA = pl.Schema(
    {
        "test_id": pl.String(),
        "sent_at": UTC_TS,
        "pool": pl.String(),
        "provider": pl.String(),
        "seed_address": pl.String(),
        "placement": pl.String(),
        "extra": pl.String(),
        "source_file": pl.String(),
        "source_line": pl.Int64(),
    }
)

# The comparison's columns (same statistics), with one window bound on each side: a seed test is a point
# in time, so the before window ends and the after window starts at the cutover itself.
PLACEMENT_SCHEMA = pl.Schema(
    {n: t for n, t in COMPARISON_SCHEMA.items() if n not in {"before_end", "after_start"}}
)


def parse_sent_at(text: str) -> datetime | None:
    """ISO 8601 (offset or ``Z``; naive = UTC) or epoch seconds."""
    text = text.strip()
    if not text:
        return None
    try:
        return parse_time(float(text)) if text.replace(".", "", 1).isdigit() else _iso(text)
    except (ValueError, OverflowError, OSError):
        return None


def _iso(text: str) -> datetime | None:
    dt = datetime.fromisoformat(text)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _validate(rec: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
    """(clean row, None) or (None, what is wrong)."""
    problems = []
    test_id = rec.get("test_id", "").strip()
    if not test_id:
        problems.append("test_id: empty")
    sent_at = parse_sent_at(rec.get("sent_at", ""))
    if sent_at is None:
        problems.append(f"sent_at: not a timestamp: {rec.get('sent_at', '')!r}")
    pool = rec.get("pool", "").strip()
    if not pool:
        problems.append("pool: empty")
    provider = rec.get("provider", "").strip().lower()
    if provider not in PROVIDERS:
        problems.append(f"provider: {provider!r} not one of {', '.join(PROVIDERS)}")
    address = rec.get("seed_address", "").strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or " " in address or "." not in domain:
        problems.append(f"seed_address: not an e-mail address: {address!r}")
    placement = rec.get("placement", "").strip().lower()
    if placement not in PLACEMENTS:
        problems.append(f"placement: {placement!r} not one of {', '.join(PLACEMENTS)}")
    if problems:
        return None, "; ".join(problems)
    return {
        "test_id": test_id,
        "sent_at": sent_at,
        "pool": pool,
        "provider": provider,
        "seed_address": f"{local}@{domain.lower()}",
        "placement": placement,
    }, None


def _quarantine(rel: str, line: int, offset: int, reason: str, detail: str, raw: str) -> dict[str, Any]:
    return {
        "source_kind": "seedlist",
        "source_file": rel,
        "source_line": line,
        "byte_offset": offset,
        "reason": reason,
        "detail": detail,
        "raw_text": raw,
    }


def read_seedlist_file(path: Path, *, rel: str) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """(rows, quarantine, stats) of one seed-list CSV. Never raises on content.

    Lines are split on ``\\n`` (a trailing ``\\r`` is dropped) so every row keeps its line number
    and byte offset; each line is one CSV record (seed exports have no embedded newlines, and a
    line with an unterminated quote is rejected as ``malformed_csv`` instead of swallowing the
    following lines). Blank lines and the header are ``other_lines``.
    """
    data = path.read_bytes()
    rows: list[dict[str, Any]] = []
    quarantine: list[dict[str, Any]] = []
    stats = {"lines_read": 0, "rows": 0, "quarantined": 0, "duplicates": 0, "other_lines": 0}
    header: list[str] | None = None
    missing: list[str] = []
    offset = 0
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, raw_line in enumerate(lines, start=1):
        line_offset = offset
        offset += len(raw_line) + 1
        stats["lines_read"] += 1
        raw_bytes = raw_line[:-1] if raw_line.endswith(b"\r") else raw_line
        if number == 1 and raw_bytes.startswith(b"\xef\xbb\xbf"):
            raw_bytes = raw_bytes[3:]
        try:
            text = raw_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            quarantine.append(
                _quarantine(
                    rel, number, line_offset, "invalid_utf8", str(exc), raw_bytes.decode("utf-8", "replace")
                )
            )
            continue
        if not text.strip():
            stats["other_lines"] += 1
            continue
        try:
            fields = next(csv.reader([text], strict=True))
        except csv.Error as exc:
            quarantine.append(_quarantine(rel, number, line_offset, "malformed_csv", str(exc), text))
            continue
        if header is None:
            header = [f.strip().lower() for f in fields]
            missing = [c for c in REQUIRED if c not in header]
            stats["other_lines"] += 1
            continue
        if len(fields) > len(header):
            quarantine.append(
                _quarantine(
                    rel,
                    number,
                    line_offset,
                    "too_many_fields",
                    f"{len(fields)} fields, header has {len(header)}",
                    text,
                )
            )
            continue
        if missing:
            quarantine.append(
                _quarantine(
                    rel,
                    number,
                    line_offset,
                    "invalid_row",
                    f"header lacks required columns: {', '.join(missing)}",
                    text,
                )
            )
            continue
        rec: dict[str, str] = {}
        for name, value in zip(header, fields, strict=False):
            rec.setdefault(name, value)
        clean, problem = _validate(rec)
        if clean is None:
            quarantine.append(_quarantine(rel, number, line_offset, "invalid_row", problem or "", text))
            continue
        extra = {k: v for k, v in rec.items() if k not in REQUIRED and k}
        clean.update(
            extra=json.dumps(extra, sort_keys=True, ensure_ascii=False) if extra else None,
            source_file=rel,
            source_line=number,
        )
        rows.append(clean)
    out = frame_from_rows(rows, SEEDLIST_SCHEMA)
    q = (
        pl.DataFrame(quarantine, schema=QUARANTINE_SCHEMA)
        if quarantine
        else pl.DataFrame(schema=QUARANTINE_SCHEMA)
    )
    stats["rows"] = out.height
    stats["quarantined"] = q.height
    return out, q, stats


def read_seedlists(
    landing_root: Path,
) -> tuple[pl.DataFrame, dict[str, pl.DataFrame], dict[str, dict[str, int]]]:
    """All ``seedlist/*.csv`` files: (rows, quarantine per file, stats per file).

    The same (test_id, seed_address) reported again (a re-export) is one observation: the first
    copy by file name and line is kept, the others are counted as ``duplicates``.
    """
    folder = landing_root / "seedlist"
    frames: list[pl.DataFrame] = []
    quarantine: dict[str, pl.DataFrame] = {}
    stats: dict[str, dict[str, int]] = {}
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        rel = path.relative_to(landing_root).as_posix()
        rows, q, st = read_seedlist_file(path, rel=rel)
        frames.append(rows)
        quarantine[rel] = q
        stats[rel] = st
    if not frames:
        return pl.DataFrame(schema=SEEDLIST_SCHEMA), quarantine, stats
    allrows = pl.concat(frames, how="vertical").sort("source_file", "source_line")
    first = allrows.unique(["test_id", "seed_address"], keep="first", maintain_order=True)
    dropped = allrows.join(
        first.select("source_file", "source_line"), on=["source_file", "source_line"], how="anti"
    )
    for rel, n in dropped.group_by("source_file").len().iter_rows():
        stats[rel]["duplicates"] = n
        stats[rel]["rows"] -= n
    return first, quarantine, stats


def seedlist_placement(
    *,
    seeds: pl.DataFrame,
    plan: pl.DataFrame,
    policy: Mapping[str, Any],
    resolver: PoolResolver | None = None,
    data_end: datetime | None = None,
) -> pl.DataFrame:
    """Inbox / spam / missing rate per pool x provider (and ``all``) before vs after the cutover.

    Before = tests sent in [cutover - seed_baseline_days, cutover); after = [cutover,
    cutover + after_max_days). Denominator: seed placements of the side (inbox+spam+missing).
    """
    confidence, alpha, min_expected, _cap = policy_stats(policy)
    w = policy.get("windows") or {}
    seed_days = float(w.get("seed_baseline_days", 30))
    after_max = w.get("after_max_days")
    if seeds.is_empty():
        return pl.DataFrame(schema=PLACEMENT_SCHEMA)
    pools = seeds["pool"].to_list()
    canon = [resolver.canonical(p) if resolver else p for p in pools]
    s = seeds.with_columns(pl.Series("pool", canon, dtype=pl.String))
    rows = []
    for pool, cutover in (
        plan.filter(pl.col("cutover_time").is_not_null()).select("pool", "cutover_time").iter_rows()
    ):
        before_start = cutover - timedelta(days=seed_days)
        after_end = cutover + timedelta(days=float(after_max)) if after_max is not None else None
        if data_end is not None:
            after_end = data_end + timedelta(microseconds=1) if after_end is None else after_end
        t = pl.col("sent_at")
        mine = s.filter(pl.col("pool") == pool).with_columns(
            pl.when((t >= before_start) & (t < cutover))
            .then(pl.lit("before"))
            .when((t >= cutover) & ((t < after_end) if after_end is not None else pl.lit(True)))
            .then(pl.lit("after"))
            .otherwise(None)
            .alias("side")
        )
        mine = mine.filter(pl.col("side").is_not_null())
        if mine.is_empty():
            continue
        both = pl.concat([mine, mine.with_columns(pl.lit(ALL).alias("provider"))])
        counts = both.group_by("provider", "side", "placement").len()
        tally: dict[tuple[str, str], dict[str, int]] = {}
        for provider, side, placement, n in counts.iter_rows():
            tally.setdefault((provider, side), {})[placement] = n
        for provider in sorted({k[0] for k in tally}):
            b, a = tally.get((provider, "before"), {}), tally.get((provider, "after"), {})
            nb, na = sum(b.values()), sum(a.values())
            for placement in PLACEMENTS:
                metric = f"{placement}_rate"
                row = proportion_row(
                    k_before=b.get(placement, 0),
                    n_before=nb,
                    k_after=a.get(placement, 0),
                    n_after=na,
                    min_n=min_n_for(policy, "inbox_rate"),
                    min_expected=min_expected,
                    confidence=confidence,
                    alpha=alpha,
                )
                row.update(
                    pool=pool,
                    provider=provider,
                    metric=metric,
                    cutover_time=cutover,
                    before_start=before_start,
                    after_end=after_end,
                )
                rows.append(row)
    return frame_from_rows(rows, PLACEMENT_SCHEMA).sort("pool", "provider", "metric")
