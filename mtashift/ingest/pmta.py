"""PowerMTA accounting files (``acct-*.csv``, ``acct-*.csv.gz``) -> canonical events + quarantine.

The field-by-field mapping and the value rules are documented in ``schemas/docs/pmta_mapping.md``; this
docstring covers how a file is read.

Reading plan (bounded memory whatever the file size). The decompressed stream is cut into batches of
about ``CHUNK_BYTES`` ending on a line end, and each batch is handled with vectorised polars work:

1. the batch is read as one string per physical line (polars CSV reader with quoting off);
   per-line features are computed in bulk: quote parity, blank, "is a header line" (first field ``type``);
2. the rare odd lines — header lines, invalid UTF-8, lines with an odd number of ``"`` (an unterminated
   quote, or a quoted field that continues on the next lines) — are resolved one by one with the
   standard ``csv`` module (strict mode): a record spanning lines is accepted only when the lines up to
   the next odd-parity line form exactly one valid record; otherwise the first line alone is
   quarantined (``malformed_csv``) and reading resumes on the next line;
3. every other line is parsed by the polars CSV reader by position (one header segment at a time, the
   header in force naming the positions). Polars refuses rows with more fields than the header and
   unescaped quotes; when it does, the segment is bisected and the small failing slices are parsed line
   by line with ``csv`` to find the culprits (``too_many_fields`` / ``malformed_csv``);
4. the positional frame is mapped to the canonical columns with polars expressions, rows without a type
   or a usable ``timeLogged`` are quarantined, and event ids are hashed.

The streaming entry point feeds the batches to ``sink_parquet`` through a polars IO-source, so parsing
and Parquet encoding overlap and the file is written atomically.

Line accounting (exact): ``lines_read == rows + quarantined + header_lines + blank_lines +
continuation_lines`` where a *line* is a ``\\n``-terminated piece of the decompressed file (a last piece
without ``\\n`` counts too; a trailing ``\\r`` belongs to the line end), *blank* = empty or whitespace
only, *continuation* = the 2nd..nth physical line of a record whose quoted field spans lines, and every
quarantine row stands for exactly one record (one line, or the lines of one accepted multi-line record).
``other_lines`` = header + blank + continuation lines; ``duplicates`` is always 0 (repeated lines are
kept, see ``mtashift.ingest.common``).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import queue
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from polars.io.plugins import register_io_source

from mtashift.ingest.common import (
    SeenKeys,
    event_hash,
    hash_key,
    normalise_domain,
    occurrences,
    with_occurrence,
)
from mtashift.lake import PARQUET_COMPRESSION, atomic_path, write_parquet
from schemas.events import EVENT_SCHEMA, PMTA_RECORD_TYPES, UTC_TS, conform
from schemas.quarantine import QUARANTINE_SCHEMA

MTA = "pmta"
UTC = UTC_TS
SOURCE_KIND = "pmta"
CHUNK_BYTES = 32 * 2**20
MAX_RECORD_LINES = 64  # a quoted field may continue over at most this many further physical lines
MAX_LINE_BYTES = 16 * 2**20  # a longer line is quarantined (only its first QUARANTINE_TEXT_MAX chars kept)
QUARANTINE_TEXT_MAX = 64 * 1024
LEAF_LINES = 256  # below this, a slice polars refuses is parsed line by line with the csv module

BOM = b"\xef\xbb\xbf"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S%z"
EPOCH_MAX = 4_102_444_800  # 2100-01-01: a larger integer is not a plausible epoch-seconds timestamp
HEADER_RE = r"^[\s\x{FEFF}]*\"?(?i:type)\"?\s*(?:,|$)"
ENHANCED = r"[245]\.\d{1,3}\.\d{1,3}"
# dsnDiag: `<diagnostic type>;<reply code> <enhanced status> <text>`; everything but the text is optional.
# DIAG_FAST covers the usual shape cheaply; DIAG_PREFIX is tried on the rest.
DIAG_FAST = rf"^[A-Za-z][A-Za-z0-9-]*;[ \t]*\d{{3}}(?:[ \t-]+{ENHANCED})?(?:[ \t-]+|$)"
DIAG_PREFIX = rf"^(?:[A-Za-z][A-Za-z0-9-]*;)?[ \t]*(?:(\d{{3}})(?:[ \t-]+|$))?(?:({ENHANCED})(?:[ \t]+|$))?"

# Source fields with a canonical home (lower-case name -> role). Everything else goes to `extra` verbatim.
MAPPED = {
    "type",
    "timelogged",
    "timequeued",
    "orig",
    "rcpt",
    "dsnstatus",
    "dsndiag",
    "dsnmta",
    "bouncecat",
    "dlvsourceip",
    "dlvdestinationip",
    "dlvsize",
    "vmta",
    "vmtapool",
    "jobid",
    "header_message-id",
    "dlvtlsprotocol",
    "dlvtlscipher",
}


@dataclass
class PmtaFileStats:
    """Counts for one file; see the module doc for the exact reconciliation."""

    lines_read: int = 0
    rows: int = 0
    quarantined: int = 0
    header_lines: int = 0
    blank_lines: int = 0
    continuation_lines: int = 0
    other_lines: int = 0
    duplicates: int = 0
    bytes_read: int = 0
    first_event_time: datetime | None = None
    last_event_time: datetime | None = None
    reasons: dict[str, int] = field(default_factory=dict)

    def reconciles(self) -> bool:
        return self.lines_read == self.rows + self.quarantined + self.other_lines + self.duplicates


@dataclass
class PmtaParseResult:
    events: pl.DataFrame
    quarantine: pl.DataFrame
    stats: PmtaFileStats


# --------------------------------------------------------------------------------------------------- header


@dataclass(frozen=True)
class _Header:
    """Column names of one header line; position of the first occurrence of each (lower-case) name."""

    names: tuple[str, ...]
    keys: tuple[str, ...]  # `extra` keys: the names as written, a repeated name suffixed `#2`, `#3`, ...
    first: dict[str, int]

    @property
    def width(self) -> int:
        return len(self.names)

    @classmethod
    def parse(cls, fields: list[str]) -> _Header:
        names = []
        for i, raw in enumerate(fields):
            name = raw.strip().lstrip("\ufeff").strip()
            names.append(name or f"_col{i + 1}")
        keys, first, seen = [], {}, {}
        for i, name in enumerate(names):
            low = name.lower()
            seen[low] = seen.get(low, 0) + 1
            if seen[low] == 1:
                first[low] = i
                keys.append(name)
            else:
                keys.append(f"{name}#{seen[low]}")
        return cls(tuple(names), tuple(keys), first)

    def col(self, name: str) -> pl.Expr:
        pos = self.first.get(name.lower())
        return pl.col(f"c{pos}") if pos is not None else pl.lit(None, dtype=pl.String)

    def has(self, name: str) -> bool:
        return name.lower() in self.first


def _csv_fields(text: str) -> list[list[str]]:
    """All records of ``text`` by the csv module in strict mode (raises csv.Error when malformed)."""
    return list(csv.reader(io.StringIO(text, newline=""), strict=True))


# --------------------------------------------------------------------------------------------- byte source


class _StreamError:
    """The decompressed stream broke off (corrupt or truncated gzip)."""

    def __init__(self, detail: str) -> None:
        self.detail = detail


class _LongLine:
    """A line longer than MAX_LINE_BYTES: its first bytes and its full length (without the newline)."""

    def __init__(self, head: bytes, length: int, terminated: bool) -> None:
        self.head = head
        self.length = length
        self.terminated = terminated


def _open(path: Path) -> BinaryIO:
    fh = open(path, "rb")  # noqa: SIM115 - closed by the caller
    magic = fh.read(2)
    fh.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=fh, mode="rb")  # type: ignore[return-value]
    return fh


def _read_blocks(fh: BinaryIO, size: int, put: Callable[[bytes | _StreamError | _LongLine], None],
                 stop: threading.Event) -> None:
    """Blocks of about ``size`` bytes that end on a line end (only the file's last block may not)."""
    while not stop.is_set():
        block = fh.read(size)
        if not block:
            return
        if not block.endswith(b"\n"):
            tail = fh.readline(MAX_LINE_BYTES)
            if tail.endswith(b"\n") or len(tail) < MAX_LINE_BYTES:
                block += tail  # the one copy of a block, made here in the reader thread
            else:  # an over-long line: hand over the complete lines, then the line's summary
                cut = block.rfind(b"\n") + 1
                if cut:
                    put(block[:cut])
                start = block[cut:] + tail
                length, more = len(start), tail
                while more and not more.endswith(b"\n"):
                    more = fh.readline(MAX_LINE_BYTES)
                    length += len(more)
                terminated = more.endswith(b"\n")
                put(_LongLine(start[:QUARANTINE_TEXT_MAX], length - (1 if terminated else 0), terminated))
                continue
        put(block)


def _blocks(path: Path, size: int) -> Iterator[bytes | _StreamError | _LongLine]:
    """Decompressed blocks, read ahead by one thread (file reads and inflating release the GIL)."""
    q: queue.Queue[bytes | _StreamError | _LongLine | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        try:
            with _open(path) as fh:
                _read_blocks(fh, size, q.put, stop)
        except (EOFError, OSError, zlib.error) as exc:
            q.put(_StreamError(f"{type(exc).__name__}: {exc}"))
        finally:
            q.put(None)

    t = threading.Thread(target=produce, name="pmta-reader", daemon=True)
    t.start()
    try:
        while (item := q.get()) is not None:
            yield item
    finally:
        stop.set()
        while t.is_alive():
            with contextlib.suppress(queue.Empty):
                q.get(timeout=0.1)
        t.join()


# ------------------------------------------------------------------------------------------------ the reader


@dataclass
class _Record:
    """A record parsed by the csv module (odd lines), positioned at its first line within the batch."""

    idx: int
    fields: list[str]
    text: str
    reason: str | None = None  # set when the record itself is rejected (too_many_fields)
    detail: str = ""


@dataclass
class _Reject:
    idx: int
    reason: str
    detail: str
    text: str


class _Reader:
    """Turns one file into canonical event frames (``batches``) and quarantine frames (``quarantine``)."""

    def __init__(self, path: Path, *, rel_path: str, node: str | None, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.path = path
        self.rel_path = rel_path
        self.node = node
        self.chunk_bytes = chunk_bytes
        self.stats = PmtaFileStats()
        self.header: _Header | None = None
        self.seen = SeenKeys()
        self.lines_done = 0
        self.bytes_done = 0
        self.quarantine: list[pl.DataFrame] = []

    # -- driving ------------------------------------------------------------------------------------------

    def batches(self) -> Iterator[pl.DataFrame]:
        carry = b""  # lines of a possibly multi-line record, held back until the next block
        items = _blocks(self.path, self.chunk_bytes)
        current = next(items, None)
        while current is not None:
            following = next(items, None)
            if isinstance(current, bytes):
                self.stats.bytes_read += len(current)
                data = carry + current if carry else current
                final = not isinstance(following, bytes)
                kept = yield from self._batch(data, final=final)
                carry = data[len(data) - kept :] if kept else b""
            else:
                if carry:
                    yield from self._batch(carry, final=True)
                    carry = b""
                if isinstance(current, _LongLine):
                    self.stats.bytes_read += current.length + current.terminated
                    self._reject_long_line(current)
                else:
                    self._reject_stream(current.detail)
            current = following
        if carry:
            yield from self._batch(carry, final=True)
        st = self.stats
        st.other_lines = st.header_lines + st.blank_lines + st.continuation_lines
        st.quarantined = sum(st.reasons.values())

    def _reject_long_line(self, line: _LongLine) -> None:
        text = line.head.decode("utf-8", "replace")
        self._quarantine_rows(
            [(self.lines_done + 1, self.bytes_done, "malformed_csv",
              f"line of {line.length} bytes is longer than {MAX_LINE_BYTES} (first {QUARANTINE_TEXT_MAX} kept)", text)]
        )
        self.lines_done += 1
        self.stats.lines_read += 1
        self.bytes_done += line.length + line.terminated

    def _reject_stream(self, detail: str) -> None:
        self._quarantine_rows(
            [(None, self.bytes_done, "truncated_stream", f"decompression failed after {self.bytes_done} bytes: {detail}", "")]
        )

    def _quarantine_rows(self, rows: list[tuple[int | None, int | None, str, str, str]]) -> None:
        if not rows:
            return
        for r in rows:
            self.stats.reasons[r[2]] = self.stats.reasons.get(r[2], 0) + 1
        self.quarantine.append(
            pl.DataFrame(
                {
                    "source_kind": [SOURCE_KIND] * len(rows),
                    "source_file": [self.rel_path] * len(rows),
                    "source_line": [r[0] for r in rows],
                    "byte_offset": [r[1] for r in rows],
                    "reason": [r[2] for r in rows],
                    "detail": [r[3] for r in rows],
                    "raw_text": [r[4] for r in rows],
                },
                schema=QUARANTINE_SCHEMA,
            )
        )

    # -- one batch ----------------------------------------------------------------------------------------

    def _batch(self, data: bytes, *, final: bool) -> Iterator[pl.DataFrame]:
        """Process complete lines; returns (generator return value) the byte length left for the next batch."""
        base_off, base_line = self.bytes_done, self.lines_done
        if base_off == 0 and data.startswith(BOM):
            data, base_off = data[3:], 3
        texts, invalid = _read_lines(data)
        n = len(texts)
        feats = pl.DataFrame({"t": texts}).select(
            odd=(pl.col("t").str.count_matches('"', literal=True) % 2) == 1,
            blank=pl.col("t").is_null() | ~pl.col("t").str.contains(r"\S"),
            hdr=pl.col("t").str.contains(HEADER_RE),
        )
        odd = feats["odd"].fill_null(False).to_numpy()
        blank = feats["blank"].to_numpy()
        hdr = feats["hdr"].fill_null(False).to_numpy()
        if invalid is None:
            invalid = np.zeros(n, dtype=bool)
        blank &= ~invalid

        consumed = np.zeros(n, dtype=bool)  # lines the positional polars parse must not see
        records: list[_Record] = []
        rejects: list[_Reject] = []
        headers: list[tuple[int, _Header | None]] = []  # (line idx, header in force from idx + 1)
        carry_from: int | None = None
        special = np.flatnonzero(hdr | odd | invalid)
        tl = _Lines(texts)
        for i in special.tolist():
            if consumed[i]:
                continue
            text = tl[i]
            if invalid[i]:
                consumed[i] = True
                rejects.append(_Reject(i, "invalid_utf8", "line is not valid UTF-8", text))
                continue
            if hdr[i]:
                consumed[i] = True
                try:
                    rows = _csv_fields(text)
                    if len(rows) != 1:
                        raise csv.Error("not one record")
                    headers.append((i, _Header.parse(rows[0])))
                    self.stats.header_lines += 1
                except csv.Error as exc:
                    headers.append((i, None))
                    rejects.append(_Reject(i, "malformed_csv", f"unparseable header line: {exc}", text))
                continue
            # odd number of quotes: a one-line record with a stray quote, a record spanning lines, or broken
            try:
                rows = _csv_fields(text)
                if len(rows) == 1:
                    consumed[i] = True
                    records.append(_Record(i, rows[0], text))
                    continue
            except csv.Error:
                pass
            end = min(n, i + 1 + MAX_RECORD_LINES)
            j = None
            for k in range(i + 1, end):
                if hdr[k] or invalid[k]:
                    break
                if odd[k]:
                    j = k
                    break
            else:
                if end == n and not final and i > 0:
                    carry_from = i
                    break
            if j is not None:
                joined = "\n".join(tl[k] for k in range(i, j + 1))
                try:
                    rows = _csv_fields(joined)
                except csv.Error:
                    rows = []
                if len(rows) == 1:
                    consumed[i : j + 1] = True
                    records.append(_Record(i, rows[0], joined))
                    self.stats.continuation_lines += j - i
                    continue
            consumed[i] = True
            rejects.append(_Reject(i, "malformed_csv", "unterminated quoted field", text))

        if carry_from is not None:
            n_keep = carry_from
            carry = _line_starts(data, n_keep + 1)[n_keep]
            texts, consumed, blank = texts.slice(0, n_keep), consumed[:n_keep], blank[:n_keep]
            records = [r for r in records if r.idx < n_keep]
            rejects = [r for r in rejects if r.idx < n_keep]
            headers = [h for h in headers if h[0] < n_keep]
            data_len = carry
        else:
            n_keep, carry, data_len = n, 0, len(data)
        del tl

        # segments: runs of lines under one header
        bounds = [0] + [h[0] + 1 for h in headers] + [n_keep]
        seg_headers = [self.header] + [h[1] for h in headers]
        frames: list[pl.DataFrame] = []
        row_rejects: list[pl.DataFrame] = []
        for s, e, header in zip(bounds[:-1], bounds[1:], seg_headers, strict=True):
            if e <= s:
                continue
            seg_records = [r for r in records if s <= r.idx < e]
            if header is None:
                live = np.flatnonzero(~consumed[s:e] & ~blank[s:e]) + s
                for i in live.tolist():
                    rejects.append(_Reject(i, "no_header", "data line before any header line", texts[i] or ""))
                for r in seg_records:
                    rejects.append(_Reject(r.idx, "no_header", "data line before any header line", r.text))
                continue
            if not (~consumed[s:e] & ~blank[s:e]).any() and not seg_records:
                continue
            # fast path: the raw bytes can be parsed as they are when no line of the segment needs hiding
            whole = e == n_keep and s <= 1 and consumed[:s].all() and not consumed[s:e].any()
            parsed, more = self._parse_segment(
                data[:data_len] if whole else None, texts, consumed, blank, s, e, header
            )
            seg_records.extend(more)
            good = [r for r in seg_records if r.reason is None]
            for r in seg_records:
                if r.reason is not None:
                    rejects.append(_Reject(r.idx, r.reason, r.detail, r.text))
            if good:
                parsed = pl.concat([parsed, _records_frame(good, header.width)], how="vertical").sort("_idx")
            ev, bad = self._to_events(parsed, header)
            frames.append(ev)
            if bad is not None and len(bad):
                row_rejects.append(bad)

        self.header = seg_headers[-1]
        self.stats.blank_lines += int(blank[:n_keep].sum())
        # quarantine rows of this batch
        q: list[tuple[int | None, int | None, str, str, str]] = []
        all_rejects = sorted(rejects, key=lambda r: r.idx)
        if row_rejects:
            rr = pl.concat(row_rejects)
            all_rejects += [_Reject(*t) for t in rr.select("_idx", "reason", "detail", "_text").iter_rows()]
            all_rejects.sort(key=lambda r: r.idx)
        if all_rejects:
            starts = _line_starts(data, n_keep)
            for r in all_rejects:
                q.append((base_line + r.idx + 1, base_off + int(starts[r.idx]), r.reason, r.detail, r.text))
        self._quarantine_rows(q)

        events = pl.concat(frames, how="vertical") if len(frames) > 1 else (frames[0] if frames else None)
        self.lines_done += n_keep
        self.stats.lines_read += n_keep
        self.bytes_done = base_off + data_len
        if events is not None and len(events):
            events = self._finish(events, base_line)
            self.stats.rows += len(events)
            lo, hi = events["event_time"].min(), events["event_time"].max()
            st = self.stats
            st.first_event_time = lo if st.first_event_time is None else min(st.first_event_time, lo)
            st.last_event_time = hi if st.last_event_time is None else max(st.last_event_time, hi)
            yield events
        return carry

    # -- positional parse ---------------------------------------------------------------------------------

    def _parse_segment(
        self,
        raw: bytes | None,
        texts: pl.Series,
        consumed: np.ndarray,
        blank: np.ndarray,
        s: int,
        e: int,
        header: _Header,
    ) -> tuple[pl.DataFrame, list[_Record]]:
        """Positional frame (c0.., _idx, _text) of the plain lines in [s, e), plus csv-module records.

        ``raw``, when given, holds exactly the lines [0, e) of the batch with lines [0, s) to be skipped.
        """
        width = header.width
        records: list[_Record] = []
        pieces: list[pl.DataFrame] = []

        def parse(lo: int, hi: int, buf: bytes | None) -> None:
            skip = 0
            if buf is None:
                seg = texts.slice(lo, hi - lo).to_frame("t").select(
                    pl.when(pl.Series(consumed[lo:hi])).then(pl.lit("")).otherwise(pl.col("t")).fill_null("")
                )
                buf = seg.to_series().str.join("\n").item().encode("utf-8")
            else:
                skip = lo
            try:
                df = _read_positional(buf, width, skip)
                if len(df) != hi - lo:
                    raise pl.exceptions.ComputeError(f"{len(df)} rows for {hi - lo} lines")
                pieces.append(df.with_columns(_idx=pl.int_range(lo, hi, dtype=pl.Int64)))
                return
            except pl.exceptions.PolarsError:
                pass
            if hi - lo > LEAF_LINES:
                mid = (lo + hi) // 2
                parse(lo, mid, None)
                parse(mid, hi, None)
                return
            for i in range(lo, hi):
                if consumed[i] or blank[i]:
                    continue
                text = texts[i] or ""
                try:
                    rows = _csv_fields(text)
                except csv.Error as exc:
                    records.append(_Record(i, [], text, "malformed_csv", f"csv: {exc}"))
                    continue
                fields = rows[0] if rows else []
                if len(fields) > width:
                    records.append(
                        _Record(i, fields, text, "too_many_fields", f"{len(fields)} fields, header has {width}")
                    )
                else:
                    records.append(_Record(i, fields, text))

        parse(s, e, raw)
        if not pieces:
            df = _empty_positional(width).drop("_text")
        else:
            df = pl.concat(pieces, how="vertical") if len(pieces) > 1 else pieces[0]
        live = ~consumed & ~blank
        mask = live[df["_idx"].to_numpy()]
        if not mask.all():
            df = df.filter(pl.Series(mask))
        df = df.with_columns(_text=texts.gather(df["_idx"]))
        return df, records

    # -- mapping ------------------------------------------------------------------------------------------

    def _to_events(self, df: pl.DataFrame, h: _Header) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        out = _map_events(df, h)
        out = out.with_columns(node=pl.lit(self.node, pl.String), source_file=pl.lit(self.rel_path))
        bad_type = out["raw_type"].is_null()
        bad_time = out["event_time"].is_null()
        bad = bad_type | bad_time
        if not bad.any():
            return out, None
        tl_raw = h.col("timeLogged")
        rejected = (
            out.with_columns(_tl_raw=df.select(tl_raw).to_series())
            .filter(bad)
            .select(
                "_idx",
                reason=pl.when(pl.col("raw_type").is_null())
                .then(pl.lit("missing_type"))
                .otherwise(pl.lit("bad_timestamp")),
                detail=pl.when(pl.col("raw_type").is_null())
                .then(pl.lit("record has no type value"))
                .when(pl.col("_tl_raw").is_null())
                .then(pl.lit("timeLogged missing" if h.has("timeLogged") else "header has no timeLogged column"))
                .otherwise(
                    pl.concat_str(
                        pl.lit("timeLogged '"),
                        pl.col("_tl_raw"),
                        pl.lit("' is neither 'YYYY-MM-DD HH:MM:SS+hhmm' nor epoch seconds"),
                    )
                ),
                _text=pl.col("_text"),
            )
        )
        return out.filter(~bad), rejected

    def _finish(self, ev: pl.DataFrame, base_line: int) -> pl.DataFrame:
        """Event ids (with per-file occurrence numbers), line numbers, canonical column order."""
        ev = ev.with_columns(_h=event_hash(MTA, pl.col("_text")))
        keys = ev.select(hash_key(pl.col("_h"))).to_series().to_numpy()
        occ = occurrences(keys, self.seen)
        if (occ > 1).any():
            ev = ev.with_columns(_occ=pl.Series(occ)).with_columns(
                _h=pl.when(pl.col("_occ") > 1)
                .then(event_hash(MTA, with_occurrence(pl.col("_text"), pl.col("_occ"))))
                .otherwise(pl.col("_h"))
            )
        ev = ev.with_columns(
            event_id=pl.col("_h").bin.encode("hex"),
            source_line=pl.col("_idx") + (base_line + 1),
        )
        return conform(ev.lazy()).collect()


# ------------------------------------------------------------------------------------------------- helpers


class _Lines:
    """Lazy, cached access to single lines of a batch's line Series (only odd lines are ever needed)."""

    def __init__(self, texts: pl.Series) -> None:
        self.texts = texts
        self.cache: dict[int, str] = {}

    def __getitem__(self, i: int) -> str:
        if i not in self.cache:
            self.cache[i] = self.texts[i] or ""
        return self.cache[i]


def _read_lines(data: bytes) -> tuple[pl.Series, np.ndarray | None]:
    """One string per physical line (trailing CR dropped; blank lines may be null) and the invalid-UTF-8 mask."""
    # A NUL byte (the separator, so the line would split) or invalid UTF-8 make polars refuse the batch.
    with contextlib.suppress(pl.exceptions.PolarsError):
        df = pl.read_csv(
            data,
            has_header=False,
            separator="\x00",
            quote_char=None,
            new_columns=["t"],
            schema={"t": pl.String},
            raise_if_empty=False,
        )
        return df.to_series(), None
    parts = data.split(b"\n")
    if data.endswith(b"\n"):
        parts.pop()
    texts: list[str] = []
    invalid = np.zeros(len(parts), dtype=bool)
    for i, p in enumerate(parts):
        if p.endswith(b"\r"):
            p = p[:-1]
        try:
            texts.append(p.decode("utf-8"))
        except UnicodeDecodeError:
            texts.append(p.decode("utf-8", "replace"))
            invalid[i] = True
    return pl.Series("t", texts, dtype=pl.String), invalid


def _line_starts(data: bytes, n: int) -> np.ndarray:
    """Byte offset of the start of each of the first ``n`` lines of ``data``."""
    nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    return np.r_[0, nl + 1][:n]


def _positional_names(width: int) -> list[str]:
    return [f"c{i}" for i in range(width)]


def _read_positional(buf: bytes, width: int, skip_lines: int) -> pl.DataFrame:
    names = _positional_names(width)
    df = pl.read_csv(
        buf,
        has_header=False,
        new_columns=names,
        schema={n: pl.String for n in names},
        missing_columns="insert",
        skip_lines=skip_lines,
        raise_if_empty=False,
        null_values=[""],  # a quoted empty field means the same as an unquoted one: no value
    )
    return df


def _empty_positional(width: int) -> pl.DataFrame:
    schema = {n: pl.String for n in _positional_names(width)} | {"_idx": pl.Int64, "_text": pl.String}
    return pl.DataFrame(schema=schema)


def _records_frame(records: list[_Record], width: int) -> pl.DataFrame:
    cols: dict[str, list[str | None]] = {n: [] for n in _positional_names(width)}
    for r in records:
        for k in range(width):
            v = r.fields[k] if k < len(r.fields) else None
            cols[f"c{k}"].append(v if v != "" else None)
    frame = pl.DataFrame(cols, schema={n: pl.String for n in cols})
    return frame.with_columns(
        _idx=pl.Series([r.idx for r in records], dtype=pl.Int64),
        _text=pl.Series([r.text for r in records], dtype=pl.String),
    )


# ---------------------------------------------------------------------------------------------- mapping
#
# The mapping works column by column on eager Series. Most accounting columns repeat a handful of values
# within a batch (type, dsnStatus, dsnMta, queue, srcMta, ...): for those the parsing and JSON encoding is
# done once per distinct value and mapped back, which is what keeps the ingest close to the cost of a plain
# CSV read.

LOWCARD_SAMPLE = 4096


def _distinct(s: pl.Series) -> pl.Series | None:
    """Distinct non-null values of ``s`` when it repeats enough for per-value work to pay off, else None."""
    n = len(s)
    if n > LOWCARD_SAMPLE and s.head(LOWCARD_SAMPLE).n_unique() > LOWCARD_SAMPLE * 3 // 4:
        return None
    u = s.drop_nulls().unique()
    return u if len(u) * 2 <= n or n <= 64 else None


def _per_value(s: pl.Series, fn: Callable[[pl.Series], pl.Series]) -> pl.Series:
    """`fn` (element-wise, null -> null) computed once per distinct value when that is cheaper."""
    u = _distinct(s)
    if u is None:
        return fn(s)
    values = fn(u)
    return s.replace_strict(u, values, default=None, return_dtype=values.dtype)


def _nulls(n: int, dtype: pl.DataType) -> pl.Series:
    return pl.Series(values=[None], dtype=dtype).extend_constant(None, n - 1) if n else pl.Series(dtype=dtype)


def _ev(s: pl.Series, expr: pl.Expr) -> pl.Series:
    """Evaluate ``expr`` over ``s`` bound to ``pl.col("v")``."""
    return s.rename("v").to_frame().select(expr.alias("v")).to_series()


def _frag(key: str, s: pl.Series) -> pl.Series:
    """``,"key":"value"`` (JSON-escaped) per element; null for null or empty values."""
    f = s.rename(key).to_frame().select(
        pl.when(pl.col(key) != "").then(
            pl.concat_str(
                pl.lit(","),
                pl.struct(pl.col(key)).struct.json_encode().str.strip_prefix("{").str.strip_suffix("}"),
            )
        )
    )
    return f.to_series()


def _masked_frag(key: str, s: pl.Series, mask: pl.Series) -> pl.Series | None:
    """Fragment only where ``mask`` holds (computed for those rows only)."""
    mask = mask.fill_null(False)
    if not mask.any():
        return None
    idx = mask.arg_true()
    return _nulls(len(s), pl.String).scatter(idx, _frag(key, s.gather(idx)))


def _times(s: pl.Series | None, n: int) -> pl.Series:
    """``YYYY-MM-DD HH:MM:SS±hhmm`` or integer epoch seconds -> UTC; anything else -> null."""
    if s is None:
        return _nulls(n, UTC)
    dt = s.str.to_datetime(TIME_FORMAT, strict=False, time_unit="us", cache=True)
    if dt.dtype != UTC:
        dt = dt.dt.convert_time_zone("UTC")
    miss = dt.is_null() & s.is_not_null()
    if miss.any():
        idx = miss.arg_true()
        v = s.gather(idx).str.strip_chars()
        secs = v.str.to_integer(strict=False)
        alt = pl.select(
            pl.coalesce(
                pl.lit(v).str.to_datetime(TIME_FORMAT, strict=False, time_unit="us", cache=False),
                pl.when(pl.lit(secs).is_between(0, EPOCH_MAX - 1))
                .then(pl.from_epoch(pl.lit(secs), time_unit="s"))
                .dt.cast_time_unit("us")
                .dt.replace_time_zone("UTC"),
            )
        ).to_series()
        dt = dt.scatter(idx, alt)
    return dt


def _domains(addr: pl.Series | None, n: int) -> pl.Series:
    if addr is None:
        return _nulls(n, pl.String)
    dom = addr.str.split("@").list.last()
    has_at = addr.str.contains("@", literal=True).fill_null(False)
    if not has_at.all():
        dom = pl.select(pl.when(pl.lit(has_at)).then(pl.lit(dom))).to_series()
    return _per_value(dom, lambda u: _ev(u, normalise_domain(pl.col("v"))))


def _status_parts(u: pl.Series, key: str) -> pl.DataFrame:
    """dsnStatus -> enhanced status, plus the `extra` fragment (its text, or the raw value if irregular)."""
    f = u.rename("v").to_frame().with_columns(
        enh=pl.col("v").str.extract(rf"^\s*({ENHANCED})"),
        text=pl.col("v").str.extract(rf"^\s*{ENHANCED} \((.*)\)$"),
    )
    exact = pl.concat_str(pl.col("enh"), pl.lit(" ("), pl.col("text"), pl.lit(")")).eq_missing(pl.col("v"))
    f = f.with_columns(
        text_ok=exact & pl.col("text").is_not_null(),
        plain=pl.col("v").eq_missing(pl.col("enh")),
    )
    text_frag = _frag(f"{key}Text", f["text"])
    raw_frag = _frag(key, f["v"])
    frag = pl.select(
        pl.when(pl.lit(f["text_ok"])).then(pl.lit(text_frag)).when(~pl.lit(f["plain"])).then(pl.lit(raw_frag))
    ).to_series()
    return pl.DataFrame({"enh": f["enh"], "frag": frag})


def _mta_parts(u: pl.Series) -> pl.DataFrame:
    """`host (ip)` -> mx host (lower-case, no trailing dot), mx ip, and whether that rebuilds the value."""
    f = u.rename("v").to_frame().with_columns(p=pl.col("v").str.split_exact(" (", 1))
    f = f.with_columns(
        has_ip=pl.col("p").struct.field("field_1").str.ends_with(")").fill_null(False),
    ).with_columns(
        host=pl.when(pl.col("has_ip")).then(pl.col("p").struct.field("field_0")).otherwise(pl.col("v")),
        ip=pl.when(pl.col("has_ip")).then(
            pl.col("p").struct.field("field_1").str.strip_suffix(")").str.strip_chars().str.strip_chars("[]")
        ),
    )
    f = f.with_columns(host=pl.col("host").str.strip_chars().str.to_lowercase().str.strip_chars_end("."))
    f = f.with_columns(host=pl.when(pl.col("host") != "").then(pl.col("host")), ip=pl.when(pl.col("ip") != "").then(pl.col("ip")))
    ok = pl.concat_str(pl.col("host"), pl.lit(" ("), pl.col("ip"), pl.lit(")")).eq_missing(pl.col("v")) | (
        pl.col("ip").is_null() & pl.col("host").eq_missing(pl.col("v"))
    )
    return f.select("host", "ip", ok=ok)


def _diag_prefix_parts(u: pl.Series) -> pl.DataFrame:
    f = u.rename("v").to_frame().with_columns(
        code=pl.col("v").str.extract(r"^(?:[A-Za-z][A-Za-z0-9-]*;)?[ \t]*(\d{3})").cast(pl.Int16, strict=False),
        enh=pl.col("v").str.extract(rf"({ENHANCED})"),
        plen=pl.col("v").str.len_chars(),
    )
    canon = pl.concat_str(pl.lit("smtp;"), pl.col("code").cast(pl.String), pl.lit(" "), pl.col("enh"), pl.lit(" "))
    return f.with_columns(canon=canon.eq_missing(pl.col("v")))


def _diag(d: pl.Series) -> pl.DataFrame:
    """dsnDiag -> smtp_code, the diag's own enhanced status, response, and whether `smtp;code enh resp`."""
    n = len(d)
    prefix = d.str.extract(DIAG_FAST, 0)
    slow = prefix.is_null() & d.is_not_null()
    if slow.any():
        idx = slow.arg_true()
        prefix = prefix.scatter(idx, d.gather(idx).str.extract(DIAG_PREFIX, 0))
    u = _distinct(prefix)
    if u is None:
        parts = _diag_prefix_parts(prefix)
    else:
        p = _diag_prefix_parts(u)
        parts = pl.DataFrame(
            {k: prefix.replace_strict(u, p[k], default=None, return_dtype=p[k].dtype) for k in p.columns if k != "v"}
        )
    plen = parts["plen"].fill_null(0)
    resp = d.str.slice(plen)
    resp = pl.select(pl.when(pl.lit(resp) != "").then(pl.lit(resp))).to_series()
    del n
    return pl.DataFrame({"code": parts["code"], "enh": parts["enh"], "resp": resp, "canon": parts["canon"]})


def _map_events(df: pl.DataFrame, h: _Header) -> pl.DataFrame:
    """Positional frame -> canonical columns (+ _idx, _text); rows are not filtered here."""
    n = len(df)

    def col(name: str) -> pl.Series | None:
        pos = h.first.get(name.lower())
        return df[f"c{pos}"] if pos is not None else None

    def or_nulls(s: pl.Series | None, dtype: pl.DataType = pl.String) -> pl.Series:
        return s if s is not None else _nulls(n, dtype)

    cols: dict[str, pl.Series] = {}
    frags: dict[int, list[pl.Series | None]] = {}  # header position -> fragments, in that order

    # type -> raw_type, event_type
    t = col("type")
    if t is None:
        raw_type = _nulls(n, pl.String)
        base_type = _nulls(n, pl.String)
    else:
        tv = _ev(t, pl.col("v").str.strip_chars())
        raw_type = _ev(tv, pl.when(pl.col("v") != "").then(pl.col("v")))
        base_type = _per_value(
            raw_type,
            lambda u: _ev(u, pl.col("v").str.to_lowercase().replace_strict(PMTA_RECORD_TYPES, default="other",
                                                                          return_dtype=pl.String)),
        )
    lower_type = _per_value(raw_type, lambda u: _ev(u, pl.col("v").str.to_lowercase()))
    is_r = (lower_type == "r").fill_null(False)
    any_r = bool(is_r.any())
    event_type = base_type
    bc = col("bounceCat")
    if bc is not None:
        expired_cat = _per_value(bc, lambda u: _ev(u, pl.col("v").str.strip_chars().str.to_lowercase() == "message-expired"))
        expired = (lower_type == "b").fill_null(False) & expired_cat.fill_null(False)
        if expired.any():
            event_type = pl.select(pl.when(pl.lit(expired)).then(pl.lit("expired")).otherwise(pl.lit(base_type))).to_series()
    cols["event_type"] = event_type
    cols["raw_type"] = raw_type

    tl = col("timeLogged")
    cols["event_time"] = _times(tl, n)
    tq = col("timeQueued")
    cols["queued_time"] = _times(tq, n)
    if tq is not None:
        frags[h.first["timequeued"]] = [_masked_frag(h.keys[h.first["timequeued"]], tq,
                                                     cols["queued_time"].is_null() & tq.is_not_null())]

    cols["sender"] = or_nulls(col("orig"))
    cols["sender_domain"] = _domains(col("orig"), n)
    cols["recipient"] = or_nulls(col("rcpt"))
    cols["recipient_domain"] = _domains(col("rcpt"), n)

    vmta, pool = col("vmta"), col("vmtaPool")
    if any_r and vmta is not None:
        cols["pool"] = pl.select(
            pl.when(pl.lit(is_r)).then(pl.coalesce(pl.lit(or_nulls(pool)), pl.lit(vmta))).otherwise(pl.lit(or_nulls(pool)))
        ).to_series()
        cols["source"] = pl.select(pl.when(~pl.lit(is_r)).then(pl.lit(vmta))).to_series()
        frags[h.first["vmta"]] = [_masked_frag(h.keys[h.first["vmta"]], vmta, is_r)]
    else:
        cols["pool"] = or_nulls(pool)
        cols["source"] = or_nulls(vmta)
    cols["source_ip"] = or_nulls(col("dlvSourceIp"))

    # dsnMta -> mx_host / mx_ip
    mta = col("dsnMta")
    mx_ip_dsn = None
    if mta is not None:
        u = _distinct(mta)
        if u is None:
            mp = _mta_parts(mta)
            mta_frag = _masked_frag(h.keys[h.first["dsnmta"]], mta, ~mp["ok"])
        else:
            p = _mta_parts(u)
            mp = pl.DataFrame({k: mta.replace_strict(u, p[k], default=None, return_dtype=p[k].dtype) for k in p.columns})
            ufrag = _ev(_frag(h.keys[h.first["dsnmta"]], u), pl.when(~pl.lit(p["ok"])).then(pl.col("v")))
            mta_frag = mta.replace_strict(u, ufrag, default=None, return_dtype=pl.String)
        frags[h.first["dsnmta"]] = [mta_frag]
        cols["mx_host"] = mp["host"]
        mx_ip_dsn = mp["ip"]
    else:
        cols["mx_host"] = _nulls(n, pl.String)
    dest = col("dlvDestinationIp")
    if mx_ip_dsn is not None and dest is not None:
        mx_ip = pl.select(pl.coalesce(pl.lit(mx_ip_dsn), pl.lit(dest))).to_series()
    else:
        mx_ip = mx_ip_dsn if mx_ip_dsn is not None else or_nulls(dest)
    cols["mx_ip"] = mx_ip
    if dest is not None:
        frags[h.first["dlvdestinationip"]] = [
            _masked_frag(h.keys[h.first["dlvdestinationip"]], dest, dest.is_not_null() & ~dest.eq_missing(mx_ip))
        ]

    # dsnStatus / dsnDiag -> enhanced_status, smtp_code, response
    st = col("dsnStatus")
    st_enh = None
    if st is not None:
        key = h.keys[h.first["dsnstatus"]]
        u = _distinct(st)
        if u is None:
            sp = _status_parts(st, key)
            frags[h.first["dsnstatus"]] = [sp["frag"]]
            st_enh = sp["enh"]
        else:
            sp = _status_parts(u, key)
            st_enh = st.replace_strict(u, sp["enh"], default=None, return_dtype=pl.String)
            frags[h.first["dsnstatus"]] = [st.replace_strict(u, sp["frag"], default=None, return_dtype=pl.String)]
    d = col("dsnDiag")
    if d is not None:
        dp = _diag(d)
        enh = dp["enh"] if st_enh is None else pl.select(pl.coalesce(pl.lit(st_enh), pl.lit(dp["enh"]))).to_series()
        cols["smtp_code"] = dp["code"]
        cols["response"] = dp["resp"]
        rebuilt = dp["canon"].fill_null(False) & dp["enh"].eq_missing(enh) & dp["resp"].is_not_null()
        frags[h.first["dsndiag"]] = [_masked_frag(h.keys[h.first["dsndiag"]], d, d.is_not_null() & ~rebuilt)]
    else:
        enh = or_nulls(st_enh)
        cols["smtp_code"] = _nulls(n, pl.Int16)
        cols["response"] = _nulls(n, pl.String)
    cols["enhanced_status"] = enh
    cols["raw_bounce_category"] = or_nulls(bc)

    job = col("jobId")
    xjob = col("header_x-job")
    if xjob is not None:
        job = xjob if job is None else pl.select(pl.coalesce(pl.lit(job), pl.lit(xjob))).to_series()
    cols["job_id"] = or_nulls(job)
    cols["message_id"] = or_nulls(col("header_Message-Id"))
    size = col("dlvSize")
    if size is not None:
        sz = size.str.to_integer(strict=False)
        bad = sz.is_null() & size.is_not_null()
        if bad.any():
            idx = bad.arg_true()
            sz = sz.scatter(idx, size.gather(idx).str.strip_chars().str.to_integer(strict=False))
            frags[h.first["dlvsize"]] = [_masked_frag(h.keys[h.first["dlvsize"]], size, sz.is_null() & size.is_not_null())]
        cols["size_bytes"] = sz.cast(pl.Int64)
    cols["tls_protocol"] = or_nulls(col("dlvTlsProtocol"))
    cols["tls_cipher"] = or_nulls(col("dlvTlsCipher"))

    # every other column goes to `extra` verbatim (a repeated header name's later columns included)
    const_parts: dict[int, str] = {}
    for pos, (name, key) in enumerate(zip(h.names, h.keys, strict=True)):
        low = name.lower()
        if h.first.get(low) == pos and low in MAPPED:
            continue
        v = df[f"c{pos}"]
        nn = n - v.null_count()
        if nn == 0:
            continue
        u = _distinct(v)
        if u is not None and len(u) == 1 and nn == n and u[0] != "":
            const_parts[pos] = _frag(key, u)[0]
        elif u is None:
            frags[pos] = [_frag(key, v)]
        else:
            frags[pos] = [v.replace_strict(u, _frag(key, u), default=None, return_dtype=pl.String)]

    pieces: list[pl.Expr] = [pl.lit("{")]
    series: dict[str, pl.Series] = {}
    for pos in sorted(set(frags) | set(const_parts)):
        if pos in const_parts:
            pieces.append(pl.lit(const_parts[pos]))
            continue
        for k, f in enumerate(frags[pos]):
            if f is not None:
                name = f"f{pos}_{k}"
                series[name] = f.rename(name)
                pieces.append(pl.col(name))
    pieces.append(pl.lit("}"))
    extra_frame = pl.DataFrame(list(series.values())) if series else pl.DataFrame({"_": _nulls(n, pl.String)})
    extra = extra_frame.select(
        pl.concat_str(pieces, ignore_nulls=True).str.replace("{,", "{", literal=True, n=1)
    ).to_series() if len(pieces) > 2 else pl.repeat("{}", n, eager=True)
    cols["extra"] = extra

    out = pl.DataFrame(cols)
    return out.with_columns(df["_idx"], df["_text"])


# --------------------------------------------------------------------------------------------- entry points


def parse_pmta_file(
    path: Path, *, rel_path: str, node: str | None, chunk_bytes: int = CHUNK_BYTES
) -> PmtaParseResult:
    """Parse one accounting file into memory (canonical events, quarantine, stats)."""
    reader = _Reader(Path(path), rel_path=rel_path, node=node, chunk_bytes=chunk_bytes)
    frames = list(reader.batches())
    events = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=EVENT_SCHEMA)
    quarantine = (
        pl.concat(reader.quarantine, how="vertical") if reader.quarantine else pl.DataFrame(schema=QUARANTINE_SCHEMA)
    )
    return PmtaParseResult(events=events, quarantine=quarantine, stats=reader.stats)


def ingest_pmta_file(
    path: Path,
    *,
    rel_path: str,
    node: str | None,
    events_out: Path,
    quarantine_out: Path,
    chunk_bytes: int = CHUNK_BYTES,
) -> PmtaFileStats:
    """Stream one accounting file to ``events_out`` (canonical Parquet) and ``quarantine_out`` (always written).

    Memory stays bounded by a few batches whatever the file size; both files are written atomically.
    """
    reader = _Reader(Path(path), rel_path=rel_path, node=node, chunk_bytes=chunk_bytes)

    def source(with_columns, predicate, n_rows, batch_size) -> Iterator[pl.DataFrame]:
        for frame in reader.batches():
            if with_columns is not None:
                frame = frame.select(with_columns)
            yield frame

    write_parquet(register_io_source(source, schema=EVENT_SCHEMA), events_out)
    quarantine = (
        pl.concat(reader.quarantine, how="vertical") if reader.quarantine else pl.DataFrame(schema=QUARANTINE_SCHEMA)
    )
    with atomic_path(quarantine_out) as tmp:
        pq.write_table(quarantine.to_arrow(), tmp, compression=PARQUET_COMPRESSION)
    return reader.stats
