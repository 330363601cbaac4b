"""PowerMTA accounting files (``acct-*.csv``, ``acct-*.csv.gz``) -> canonical events + quarantine.

The field-by-field mapping and the value rules are documented in ``schemas/docs/pmta_mapping.md``; this
docstring covers how a file is read.

Reading plan (bounded memory whatever the file size). A reader thread cuts the decompressed stream into
blocks of about ``CHUNK_BYTES`` that end on a line end. Each block is first read as one string per
physical line (polars CSV reader with quoting off: line count, text for ids and quarantine), then:

* fast path (the usual block): valid UTF-8, a header at most on its first line, and one polars CSV read
  by position returning exactly one row per line. A quoted field running over a line end makes polars
  return fewer rows, and a row longer than the header or a badly quoted field makes it fail, so anything
  unusual falls through to
* the careful path: per-line quote parity, blank and header detection in bulk; the rare odd lines
  (header lines, invalid UTF-8, an odd number of ``"``) are resolved one by one with the standard ``csv``
  module in strict mode — a record spanning lines is accepted only when the lines up to the next
  odd-parity line form exactly one valid record, otherwise the first line alone is quarantined
  (``malformed_csv``) and reading resumes on the next line; every other line is parsed by polars by
  position, one header segment at a time; when polars refuses a segment it is bisected and the small
  failing slices are parsed line by line with ``csv`` to find the culprits.

The positional rows are then mapped to the canonical columns (``_map_events``), rows without a type or
a usable ``timeLogged`` are quarantined, and event ids are hashed. Fast-path blocks are prepared by two
worker threads ahead of time and finished strictly in file order (line numbers, repeated-line counters,
statistics); a block prepared under a header assumption that turned out wrong is redone. The streaming
entry point hands the frames to ``RawEventsWriter`` (columns derived from codes stay dictionary-encoded,
see ``schemas.events.RAW_DICTIONARY_COLUMNS``) and writes atomically.

Line accounting (exact): ``lines_read == rows + quarantined + header_lines + blank_lines +
continuation_lines`` where a *line* is a ``\\n``-terminated piece of the decompressed file (a last piece
without ``\\n`` counts too; a trailing ``\\r`` belongs to the line end), *blank* = empty or whitespace
only, *continuation* = the 2nd..nth physical line of a record whose quoted field spans lines, and every
quarantine row stands for exactly one record (one line, or the lines of one accepted multi-line record,
or the damaged end of a compressed stream, which counts as one line).
``other_lines`` = header + blank + continuation lines; ``duplicates`` is always 0 (repeated lines are
kept, see ``mtashift.ingest.common``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl
import polars.selectors as cs
import pyarrow.parquet as pq

from mtashift.ingest.common import (
    Coded,
    RawEventsWriter,
    SeenKeys,
    byte_positions,
    coded,
    constant_categorical,
    event_hash,
    hash_key,
    newline_positions,
    normalise_domain,
    occurrences,
    prefetched,
    raw_categorical,
    to_raw,
    with_occurrence,
)
from mtashift.ingest.worker import raise_if_stopping
from mtashift.lake import PARQUET_COMPRESSION, atomic_path
from schemas.events import EVENT_SCHEMA, PMTA_RECORD_TYPES, UTC_TS, conform
from schemas.quarantine import QUARANTINE_SCHEMA

MTA = "pmta"
UTC = UTC_TS
SOURCE_KIND = "pmta"
CHUNK_BYTES = 24 * 2**20  # below glibc's 32 MiB mmap ceiling: freed blocks are reused, not faulted in afresh
MAX_RECORD_LINES = 64  # a quoted field may continue over at most this many further physical lines
PROBE_BYTES = 64 * 1024  # how far past a block's nominal end the plain-file reader looks for its line end
MAX_LINE_BYTES = 16 * 2**20  # a longer line is quarantined (only its first QUARANTINE_TEXT_MAX chars kept)
QUARANTINE_TEXT_MAX = 64 * 1024
LEAF_LINES = 256  # below this, a slice polars refuses is read line by line by the csv module
WORKERS = 3  # batches prepared concurrently (three keep two cores busy through the serial steps)
AHEAD = 3  # batches read and submitted ahead of the one being finished (bounds memory)
# A field may be as long as a line, or as a whole multi-line record: the csv module's default limit (128 KiB)
# would refuse records that polars reads, so their fate would depend on the path their block takes.
csv.field_size_limit(max(csv.field_size_limit(), (MAX_RECORD_LINES + 1) * MAX_LINE_BYTES))

BOM = b"\xef\xbb\xbf"
QUOTE, COMMA, LF, CR = (ord(ch) for ch in '",\n\r')
TIME_FORMAT = "%Y-%m-%d %H:%M:%S%z"
EPOCH_MAX = 4_102_444_800  # 2100-01-01: a larger integer is not a plausible epoch-seconds timestamp
# the first field is `type`, bare or quoted (`"type,x"` is a data value, not a header)
HEADER_RE = r"^[\s\x{FEFF}]*(?:\"(?i:type)\"|(?i:type))\s*(?:,|$)"
_HEADER_LINE = re.compile(r'^[\s\ufeff]*(?:"type"|type)\s*(?:,|$)', re.IGNORECASE)
# The quoting polars reads exactly as the strict csv module does: a field that opens with a quote ends at its
# closing quote and doubles the quotes inside it. polars reads other quoting leniently and can drop or shift
# what follows a stray quote without an error, even a quote inside an unquoted field (literal to the csv
# module) once the block is long enough, so a line with any other quote never reaches polars: the csv module
# reads it (a literal quote) or refuses it (malformed_csv).
_STRICT_FIELD = r'(?:"(?:[^"]|"")*"|[^",]*)'
STRICT_LINE_RE = rf"^{_STRICT_FIELD}(?:,{_STRICT_FIELD})*$"
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
        first: dict[str, int] = {}
        for i, name in enumerate(names):
            first.setdefault(name.lower(), i)
        # a repeated name takes the next `#n` no column is named and no earlier repeat took (`x,x,x#2` gives
        # `x`, `x#3`, `x#2`): `extra` must never hold one key twice
        keys: list[str] = []
        taken = {names[i] for i in first.values()}
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            low = name.lower()
            if first[low] == i:
                keys.append(name)
                continue
            seen[low] = _free_number(name, taken, start=seen.get(low, 1) + 1)
            keys.append(f"{name}#{seen[low]}")
            taken.add(keys[-1])
        return cls(tuple(names), tuple(keys), first)

    def derived_key(self, name: str, suffix: str) -> str:
        """The `extra` key of a value derived from column ``name`` (its key + ``suffix``, e.g.
        `dsnDiagPrefix`), suffixed `#n` like a repeated name when a column of the file already uses it."""
        base = self.keys[self.first[name.lower()]] + suffix
        return base if base not in self.keys else f"{base}#{_free_number(base, set(self.keys), start=2)}"

    def col(self, name: str) -> pl.Expr:
        pos = self.first.get(name.lower())
        return pl.col(f"c{pos}") if pos is not None else pl.lit(None, dtype=pl.String)

    def has(self, name: str) -> bool:
        return name.lower() in self.first


def _free_number(name: str, taken: set[str], *, start: int) -> int:
    """The first ``n >= start`` for which `name#n` is not ``taken``."""
    n = start
    while f"{name}#{n}" in taken:
        n += 1
    return n


def _same_header(a: _Header | None, b: _Header | None) -> bool:
    return a is b or (a is not None and b is not None and a.names == b.names)


def _header_of(text: str) -> _Header:
    """The header a header line declares (a BOM before it ignored); csv.Error unless it is one CSV record."""
    rows = _csv_fields(text.lstrip("\ufeff"))
    if len(rows) != 1:
        raise csv.Error("not one record")
    return _Header.parse(rows[0])


def _csv_fields(text: str) -> list[list[str]]:
    """All records of ``text`` by the csv module in strict mode (raises csv.Error when malformed)."""
    return list(csv.reader(io.StringIO(text, newline=""), strict=True))


def _csv_record(idx: int, text: str, width: int) -> _Record:
    """One line read by the strict csv module: its record, or the reason it is refused."""
    try:
        rows = _csv_fields(text)
    except csv.Error as exc:
        return _Record(idx, [], text, "malformed_csv", f"csv: {exc}")
    if len(rows) > 1:  # a bare carriage return ends a record for the csv module: the rest would be lost
        return _Record(idx, [], text, "malformed_csv", "csv: a carriage return inside the line")
    return _Record(idx, rows[0] if rows else [], text).fit(width)


# --------------------------------------------------------------------------------------------- byte source


class _StreamError:
    """The decompressed stream broke off (corrupt or truncated gzip); ``partial`` is its unfinished line."""

    def __init__(self, detail: str, partial: bytes = b"") -> None:
        self.detail = detail
        self.partial = partial


class _LongLine:
    """A line longer than MAX_LINE_BYTES: its first bytes and its full length (without the newline)."""

    def __init__(self, head: bytes, length: int, terminated: bool) -> None:
        self.head = head
        self.length = length
        self.terminated = terminated


class _GzipRaw(io.RawIOBase):
    """Inflates a (multi-member) gzip stream; a truncated or corrupt stream ends the data early and sets
    ``error`` instead of raising, so everything decoded before the damage is still delivered."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.d = zlib.decompressobj(wbits=31)
        self.started = False
        self.buf = b""
        self.pos = 0
        self.done = False
        self.error: str | None = None

    def readable(self) -> bool:
        return True

    def _feed(self, data: bytes) -> None:
        try:
            self.buf, self.pos = self.d.decompress(data), 0
            self.started = True
        except zlib.error as exc:
            self.error, self.done = f"zlib.error: {exc}", True

    def _fill(self) -> None:
        while self.pos >= len(self.buf) and not self.done:
            if self.d.eof:  # member finished: the rest (if any) starts the next member
                rest = self.d.unused_data
                self.d, self.started = zlib.decompressobj(wbits=31), False
                if rest:
                    self._feed(rest)
                    continue
            chunk = self.fh.read(1 << 20)
            if not chunk:
                if self.started and not self.d.eof:
                    self.error = "compressed stream ended before its end-of-stream marker"
                self.done = True
                return
            self._feed(chunk)

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        self._fill()
        n = min(len(b), len(self.buf) - self.pos)
        b[:n] = self.buf[self.pos : self.pos + n]
        self.pos += n
        return n

    def close(self) -> None:
        self.fh.close()
        super().close()


def _open(path: Path) -> BinaryIO:
    fh = open(path, "rb")  # noqa: SIM115 - closed by the caller
    magic = fh.read(2)
    fh.seek(0)
    if magic == b"\x1f\x8b":
        return io.BufferedReader(_GzipRaw(fh), buffer_size=1 << 20)  # type: ignore[return-value]
    return fh


def _read_blocks(fh: BinaryIO, size: int) -> Iterator[bytes | _StreamError | _LongLine]:
    """Blocks of about ``size`` bytes that end on a line end (only the file's last block may not).

    Each block is handed over one read late: when the stream then turns out to be damaged, the unfinished
    last line of the previous block goes with the stream error instead of being parsed as a record.
    """
    held: bytes | None = None
    while True:
        block = fh.read(size)
        if not block:
            error = getattr(getattr(fh, "raw", None), "error", None)
            partial = b""
            if held is not None and error and not held.endswith(b"\n"):
                cut = held.rfind(b"\n") + 1
                held, partial = held[:cut], held[cut:]
            if held:
                yield held
            if error:
                yield _StreamError(error, partial)
            return
        if not block.endswith(b"\n"):
            tail = fh.readline(MAX_LINE_BYTES)
            if tail.endswith(b"\n") or len(tail) < MAX_LINE_BYTES:
                block += tail  # the one copy of a block, made here in the reader thread
            else:  # an over-long line: hand over the complete lines, then the line's summary
                if held is not None:
                    yield held
                    held = None
                cut = block.rfind(b"\n") + 1
                if cut:
                    yield block[:cut]
                start = block[cut:] + tail
                length, more = len(start), tail
                while more and not more.endswith(b"\n"):
                    more = fh.readline(MAX_LINE_BYTES)
                    length += len(more)
                terminated = more.endswith(b"\n")
                yield _LongLine(start[:QUARANTINE_TEXT_MAX], length - (1 if terminated else 0), terminated)
                continue
        if held is not None:
            yield held
        held = block


def _read_plain_blocks(fh: BinaryIO, size: int) -> Generator[bytes, None, bool]:
    """The blocks of :func:`_read_blocks` from a plain file, each read by one ``pread`` of exactly its bytes.

    A small probe finds the line end after ``size`` bytes first, so the kernel copies each block once with
    the GIL released; appending the rest of the last line to a 24 MiB block would copy it again while
    holding the GIL, which stalls every other thread of the ingest. Returns False, with ``fh`` at the first
    byte not handed over, when a line runs past the probe: the generic reader takes over there.
    """
    fd, off = fh.fileno(), fh.tell()
    reach = min(PROBE_BYTES, MAX_LINE_BYTES)  # never past where the generic reader would call a line too long
    while True:
        probe = os.pread(fd, reach, off + size - 1)
        nl = probe.find(b"\n")
        if nl < 0 and len(probe) == reach:
            fh.seek(off)
            return False
        end = off + size - 1 + (nl + 1 if nl >= 0 else len(probe))
        block = os.pread(fd, end - off, off)
        if block:
            yield block
        if nl < 0 or len(block) < end - off:  # the file's end
            return True
        off = end


def _blocks(path: Path, size: int) -> Iterator[bytes | _StreamError | _LongLine]:
    """Decompressed blocks, read ahead by one thread (file reads and inflating release the GIL)."""
    return prefetched(_block_stream(path, size), depth=2, name="pmta-reader")


def _block_stream(path: Path, size: int) -> Iterator[bytes | _StreamError | _LongLine]:
    try:
        with _open(path) as fh:
            if isinstance(fh, io.BufferedReader) and isinstance(fh.raw, io.FileIO) and fh.seekable():
                finished = yield from _read_plain_blocks(fh, size)
                if finished:
                    return
            yield from _read_blocks(fh, size)
    except (EOFError, OSError, zlib.error) as exc:
        yield _StreamError(f"{type(exc).__name__}: {exc}")


def _fast_parse(
    data: bytes, texts: pl.Series, header: _Header | None
) -> tuple[pl.DataFrame, _Header, int, int] | None:
    """The common case in one polars read: valid UTF-8, one header (in force, or on the first line),
    no record spanning lines, no line refused by polars or quoted loosely. None means: take the careful path.

    A quoted field running over a line end makes polars return fewer rows than there are lines, and a
    row longer than the header or a badly quoted field makes it fail, so both are caught here.
    Returns the positional frame of the data lines, the header, header lines (0/1) and blank lines.
    """
    n = len(texts)
    skip = 0
    first = texts[0]
    if first is not None and _HEADER_LINE.match(first):
        try:
            header, skip = _header_of(first), 1
        except csv.Error:
            return None
    if header is None:
        return None
    if not data.endswith(b"\n"):
        # at the very end of the data polars closes an unterminated quoted field and ignores one surplus
        # empty field instead of refusing the line; with a line end it refuses both
        data += b"\n"
    if skip == n:
        parsed = _empty_positional(header.width).drop("_text")
    else:
        try:
            parsed = _read_positional(data, header.width, skip)
        except pl.exceptions.PolarsError:
            return None
        if len(parsed) != n - skip:
            return None
    lines = texts.slice(skip)
    if b'"' in data and _loose_quoting(lines, data, skip).any():
        return None
    c0 = parsed["c0"]
    firsts = c0.drop_nulls().unique()
    if firsts.str.contains(HEADER_RE).any():
        return None  # a header line further down: segments needed
    blank = lines.is_null()
    spaces = firsts.filter(firsts.str.strip_chars() == "")
    if len(spaces):
        maybe = c0.is_in(spaces)
        blank = blank | (maybe & (lines.str.strip_chars() == "")).fill_null(False)
    n_blank = int(blank.sum())
    parsed = parsed.with_columns(_idx=pl.int_range(skip, n, dtype=pl.Int64), _text=lines)
    if n_blank:
        parsed = parsed.filter(~blank)
    return parsed, header, skip, n_blank


def _loose_quoting(lines: pl.Series, buf: bytes, skip_lines: int = 0) -> np.ndarray:
    """Mask of ``lines`` holding a quote other than those around whole fields (see STRICT_LINE_RE): the
    csv module reads them (a quote inside an unquoted field) or refuses them (any other stray quote).

    ``buf`` holds exactly these lines, one per ``\\n``, after ``skip_lines`` others. Its quotes are paired in order first: when
    every pair opens a field (after a ``,`` or a line start) and closes it (before a ``,`` or a line end),
    every line is strict. That one vectorised pass settles the usual block, where the only quotes are those
    around fields holding commas; only the lines holding any other quote are matched against the pattern.
    """
    loose = np.zeros(len(lines), dtype=bool)
    arr = np.frombuffer(buf, dtype=np.uint8)[_line_offset(buf, skip_lines) :]
    q = byte_positions(arr, QUOTE)
    if not len(q):
        return loose
    n = len(arr)
    if len(q) % 2:
        odd = q
    else:
        o, c = q[0::2], q[1::2]
        before = arr[np.maximum(o - 1, 0)]
        after = arr[np.minimum(c + 1, n - 1)]
        after2 = arr[np.minimum(c + 2, n - 1)]
        opens = (o == 0) | (before == COMMA) | (before == LF)
        closes = (
            (c == n - 1)
            | (after == COMMA)
            | (after == LF)
            | ((after == CR) & ((c + 2 == n) | (after2 == LF)))
        )
        bad = ~(opens & closes)
        if not bad.any():
            return loose
        odd = np.concatenate([o[bad], c[bad]])
    starts = np.r_[0, newline_positions(arr) + 1]
    idx = np.unique(np.searchsorted(starts, odd, side="right") - 1)
    idx = idx[idx < len(lines)]
    loose[idx] = ~lines.gather(idx).str.contains(STRICT_LINE_RE).fill_null(True).to_numpy()
    return loose


def _line_offset(buf: bytes, k: int) -> int:
    """Byte offset of line ``k`` of ``buf``."""
    off = 0
    for _ in range(k):
        off = buf.index(b"\n", off) + 1
    return off


def _joined(texts: pl.Series, consumed: np.ndarray, lo: int, hi: int) -> bytes:
    """Lines [lo, hi) as one newline-terminated buffer, consumed lines left empty (so line numbers hold)."""
    seg = (
        texts.slice(lo, hi - lo)
        .to_frame("t")
        .select(pl.when(pl.Series(consumed[lo:hi])).then(pl.lit("")).otherwise(pl.col("t")).fill_null(""))
    )
    return seg.to_series().str.join("\n").item().encode("utf-8") + b"\n"


def _first_line_header(block: bytes) -> _Header | None:
    """The header on a block's first line, if that line is one (what the fast path would see)."""
    end = block.find(b"\n")
    line = block[: end if end >= 0 else len(block)]
    if line.startswith(BOM):
        line = line[3:]
    try:
        text = line.rstrip(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not _HEADER_LINE.match(text):
        return None
    try:
        return _header_of(text)
    except csv.Error:
        return None


def _to_events(
    df: pl.DataFrame, h: _Header, *, node: str | None, rel_path: str
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Positional rows -> canonical rows (with _idx, _text), and the rows rejected for type or time."""
    out = _map_events(df, h)
    n = len(out)
    out = out.with_columns(node=constant_categorical(node, n), source_file=constant_categorical(rel_path, n))
    bad = out["raw_type"].is_null() | out["event_time"].is_null()
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
                    pl.lit("' is neither 'YYYY-MM-DD HH:MM:SS+hhmm' nor epoch seconds, 1970-2099 UTC"),
                )
            ),
            _text=pl.col("_text"),
        )
    )
    return out.filter(~bad), rejected


@dataclass
class _Prepared:
    """The stateless part of a batch (fast path), computed ahead of time in a worker thread."""

    data: bytes  # without a leading BOM
    bom: bool
    header: _Header  # in force after the batch
    n_lines: int
    n_header: int
    n_blank: int
    events: pl.DataFrame | None  # mapped rows with their digest `_h`, not yet numbered
    rejected: pl.DataFrame | None  # rows rejected for type or time


def _prepare(
    data: bytes, header: _Header | None, *, file_start: bool, node: str | None, rel_path: str
) -> _Prepared | None:
    bom = file_start and data.startswith(BOM)
    if bom:
        data = data[3:]
    texts, invalid = _read_lines(data)
    if invalid is not None or not len(texts):
        return None
    fast = _fast_parse(data, texts, header)
    if fast is None:
        return None
    parsed, h, n_header, n_blank = fast
    events = rejected = None
    if len(parsed):
        events, rejected = _to_events(parsed, h, node=node, rel_path=rel_path)
        events = events.with_columns(_h=event_hash(MTA, pl.col("_text"))) if len(events) else None
    return _Prepared(data, bom, h, len(texts), n_header, n_blank, events, rejected)


# ------------------------------------------------------------------------------------------------ the reader


@dataclass
class _Record:
    """A record parsed by the csv module (odd lines), positioned at its first line within the batch."""

    idx: int
    fields: list[str]
    text: str
    reason: str | None = None  # set when the record itself is rejected (too_many_fields)
    detail: str = ""

    def fit(self, width: int) -> _Record:
        """This record, rejected as `too_many_fields` if it has more fields than a header of ``width``."""
        if self.reason is None and len(self.fields) > width:
            self.reason, self.detail = "too_many_fields", f"{len(self.fields)} fields, header has {width}"
        return self


@dataclass
class _Reject:
    idx: int
    reason: str
    detail: str
    text: str


class _Reader:
    """Turns one file into canonical event frames (``batches``) and quarantine frames (``quarantine``)."""

    def __init__(
        self,
        path: Path,
        *,
        rel_path: str,
        node: str | None,
        chunk_bytes: int = CHUNK_BYTES,
        on_quarantine: Callable[[pl.DataFrame], None],
    ) -> None:
        self.path = path
        self.on_quarantine = on_quarantine
        self.rel_path = rel_path
        self.node = node
        self.chunk_bytes = chunk_bytes
        self.stats = PmtaFileStats()
        self.header: _Header | None = None
        self.seen = SeenKeys()
        self.lines_done = 0
        self.bytes_done = 0

    # -- driving ------------------------------------------------------------------------------------------

    def batches(self) -> Iterator[pl.DataFrame]:
        """Canonical event frames in file order; quarantine frames go to ``on_quarantine``.

        Batches are prepared ahead by a small thread pool (polars releases the GIL), each assuming the
        header its predecessors leave in force; they are then finished strictly in order here (line
        numbers, occurrence counts, counters). A batch whose assumption did not hold, or that the fast
        path refused, is redone on the careful path.
        """
        ahead: deque[tuple[bytes | _StreamError | _LongLine, Future | None, _Header | None]] = deque()
        spec = self.header
        file_start = True
        exhausted = False
        carry = b""  # lines of a possibly multi-line record, held back until the next block
        with (
            contextlib.closing(_blocks(self.path, self.chunk_bytes)) as items,
            ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="pmta-batch") as pool,
        ):

            def fill() -> None:
                nonlocal spec, file_start, exhausted
                while not exhausted and len(ahead) < AHEAD:
                    item = next(items, None)
                    if item is None:
                        exhausted = True
                        return
                    if not isinstance(item, bytes):
                        ahead.append((item, None, None))
                        continue
                    fut = pool.submit(
                        _prepare, item, spec, file_start=file_start, node=self.node, rel_path=self.rel_path
                    )
                    ahead.append((item, fut, spec))
                    spec = _first_line_header(item) or spec
                    file_start = False

            fill()
            while ahead:
                raise_if_stopping()
                item, fut, assumed = ahead.popleft()
                fill()
                if isinstance(item, bytes):
                    self.stats.bytes_read += len(item)
                    prepared = None
                    if not carry and _same_header(assumed, self.header):
                        prepared = fut.result()
                    else:
                        fut.cancel()
                    if prepared is not None:
                        events = self._finish_prepared(prepared)
                        if events is not None:
                            yield events
                        continue
                    data = carry + item if carry else item
                    final = not (ahead and isinstance(ahead[0][0], bytes))
                    kept = yield from self._batch(data, final=final)
                    carry = data[len(data) - kept :] if kept else b""
                    spec = self.header  # later submissions assume what the careful path left in force
                else:
                    if carry:
                        yield from self._batch(carry, final=True)
                        carry = b""
                    if isinstance(item, _LongLine):
                        self.stats.bytes_read += item.length + item.terminated
                        self._reject_long_line(item)
                    else:
                        self.stats.bytes_read += len(item.partial)
                        self._reject_stream(item)
            if carry:
                yield from self._batch(carry, final=True)
        st = self.stats
        st.other_lines = st.header_lines + st.blank_lines + st.continuation_lines
        st.quarantined = sum(st.reasons.values())

    def _finish_prepared(self, p: _Prepared) -> pl.DataFrame | None:
        base_off, base_line = self.bytes_done + (3 if p.bom else 0), self.lines_done
        self.header = p.header
        self.stats.header_lines += p.n_header
        self.stats.blank_lines += p.n_blank
        frames = [p.events] if p.events is not None else []
        row_rejects = [p.rejected] if p.rejected is not None and len(p.rejected) else []
        return self._close_batch(p.data, base_line, base_off, p.n_lines, len(p.data), [], row_rejects, frames)

    def _reject_long_line(self, line: _LongLine) -> None:
        text = line.head.decode("utf-8", "replace")
        self._quarantine_rows(
            [
                (
                    self.lines_done + 1,
                    self.bytes_done,
                    "malformed_csv",
                    f"line of {line.length} bytes is longer than {MAX_LINE_BYTES} (first {QUARANTINE_TEXT_MAX} kept)",
                    text,
                )
            ]
        )
        self.lines_done += 1
        self.stats.lines_read += 1
        self.bytes_done += line.length + line.terminated

    def _reject_stream(self, err: _StreamError) -> None:
        """One quarantine row for the damaged end of a compressed stream; it counts as one line (the
        unfinished last line, or the unknown remainder when the damage fell on a line end)."""
        line = self.lines_done + 1 if err.partial else None
        detail = (
            f"stream unreadable after {self.bytes_done + len(err.partial)} decompressed bytes: {err.detail}"
        )
        self._quarantine_rows(
            [(line, self.bytes_done, "truncated_stream", detail, err.partial.decode("utf-8", "replace"))]
        )
        self.lines_done += 1
        self.stats.lines_read += 1
        self.bytes_done += len(err.partial)

    def _quarantine_rows(self, rows: list[tuple[int | None, int | None, str, str, str]]) -> None:
        if not rows:
            return
        for r in rows:
            self.stats.reasons[r[2]] = self.stats.reasons.get(r[2], 0) + 1
        self.on_quarantine(
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
                    headers.append((i, _header_of(text)))
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
                if end == n and not final:
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
            data_len = int(_line_starts(data, n_keep + 1)[n_keep])
            carry = len(data) - data_len
            texts, consumed, blank = texts.slice(0, n_keep), consumed[:n_keep], blank[:n_keep]
            records = [r for r in records if r.idx < n_keep]
            rejects = [r for r in rejects if r.idx < n_keep]
            headers = [h for h in headers if h[0] < n_keep]
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
            if header is not None:  # quoted records must fit the header they fall under
                seg_records = [r.fit(header.width) for r in seg_records]
            if header is None:
                live = np.flatnonzero(~consumed[s:e] & ~blank[s:e]) + s
                for i in live.tolist():
                    rejects.append(
                        _Reject(i, "no_header", "data line before any header line", texts[i] or "")
                    )
                for r in seg_records:
                    rejects.append(_Reject(r.idx, "no_header", "data line before any header line", r.text))
                continue
            if not (~consumed[s:e] & ~blank[s:e]).any() and not seg_records:
                continue
            # fast path: the raw bytes can be parsed as they are when no line of the segment needs hiding
            whole = e == n_keep and s <= 1 and consumed[:s].all() and not consumed[s:e].any()
            parsed, more = self._parse_segment(
                (data if data_len == len(data) else data[:data_len]) if whole else None,
                texts,
                consumed,
                blank,
                s,
                e,
                header,
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
        # a blank line inside a quoted field is a continuation line of its record, not a blank line as well
        self.stats.blank_lines += int((blank[:n_keep] & ~consumed[:n_keep]).sum())
        events = self._close_batch(data, base_line, base_off, n_keep, data_len, rejects, row_rejects, frames)
        if events is not None:
            yield events
        return carry

    def _close_batch(
        self,
        data: bytes,
        base_line: int,
        base_off: int,
        n_keep: int,
        data_len: int,
        rejects: list[_Reject],
        row_rejects: list[pl.DataFrame],
        frames: list[pl.DataFrame],
    ) -> pl.DataFrame | None:
        """Quarantine rows, event ids, counters for a processed batch; the batch's events (or None)."""
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

        if len(frames) > 1:  # each frame's Categorical columns have categories of their own
            frames = [f.with_columns(cs.categorical().cast(pl.String)) for f in frames]
        events = pl.concat(frames, how="vertical") if len(frames) > 1 else (frames[0] if frames else None)
        self.lines_done += n_keep
        self.stats.lines_read += n_keep
        self.bytes_done = base_off + data_len
        if events is None or not len(events):
            return None
        events = self._finish(events, base_line)
        self.stats.rows += len(events)
        lo, hi = events["event_time"].min(), events["event_time"].max()
        st = self.stats
        st.first_event_time = lo if st.first_event_time is None else min(st.first_event_time, lo)
        st.last_event_time = hi if st.last_event_time is None else max(st.last_event_time, hi)
        return events

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
        Lines whose quoting is not strict are read by the csv module, never by polars (see STRICT_LINE_RE).
        """
        width = header.width
        records: list[_Record] = []
        pieces: list[pl.DataFrame] = []
        if raw is None:
            raw, skip = _joined(texts, consumed, s, e), 0
        else:
            raw, skip = (raw if raw.endswith(b"\n") else raw + b"\n"), s  # see _fast_parse
        loose = _loose_quoting(texts.slice(s, e - s), raw, skip)
        loose &= ~consumed[s:e] & ~blank[s:e]
        if loose.any():
            # hidden from polars like the continuation lines; the csv module reads them below
            idx = np.flatnonzero(loose) + s
            consumed = consumed.copy()
            consumed[idx] = True
            records.extend(_csv_record(i, texts[i] or "", width) for i in idx.tolist())
            raw, skip = _joined(texts, consumed, s, e), 0

        # an explicit work list rather than a recursive closure: a closure cycle would keep every batch's
        # frames alive until the next garbage collection
        work: list[tuple[int, int, bytes | None, int]] = [(s, e, raw, skip)]
        while work:
            lo, hi, buf, skip = work.pop()
            if buf is None:
                buf = _joined(texts, consumed, lo, hi)
            try:
                df = _read_positional(buf, width, skip)
                if len(df) != hi - lo:
                    raise pl.exceptions.ComputeError(f"{len(df)} rows for {hi - lo} lines")
                pieces.append(df.with_columns(_idx=pl.int_range(lo, hi, dtype=pl.Int64)))
                continue
            except pl.exceptions.PolarsError:
                pass
            del buf
            if hi - lo > LEAF_LINES:
                mid = (lo + hi) // 2
                work.append((mid, hi, None, 0))
                work.append((lo, mid, None, 0))
                continue
            for i in range(lo, hi):
                if consumed[i] or blank[i]:
                    continue
                records.append(_csv_record(i, texts[i] or "", width))

        if not pieces:
            df = _empty_positional(width).drop("_text")
        else:
            pieces.sort(key=lambda f: f["_idx"][0] if len(f) else 0)
            df = pl.concat(pieces, how="vertical") if len(pieces) > 1 else pieces[0]
        live = ~consumed & ~blank
        mask = live[df["_idx"].to_numpy()]
        if not mask.all():
            df = df.filter(pl.Series(mask))
        df = df.with_columns(_text=texts.gather(df["_idx"]))
        return df, records

    # -- mapping ------------------------------------------------------------------------------------------

    def _to_events(self, df: pl.DataFrame, h: _Header) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        return _to_events(df, h, node=self.node, rel_path=self.rel_path)

    def _finish(self, ev: pl.DataFrame, base_line: int) -> pl.DataFrame:
        """Event ids (with per-file occurrence numbers), line numbers, canonical column order."""
        if "_h" not in ev.columns:
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
            mta=constant_categorical(MTA, len(ev)),
        )
        return to_raw(ev)


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
        texts = df.to_series()
        if data.startswith(BOM) and len(texts):
            # polars drops a BOM that opens its buffer; past the file's start (whose BOM the callers remove)
            # it belongs to the line, as it does when the line lies further into a block
            texts = texts.scatter(0, "\ufeff" + (texts[0] or ""))
        return texts, None
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
    nl = newline_positions(np.frombuffer(data, dtype=np.uint8))
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
# within a batch (type, dsnStatus, dsnMta, queue, srcMta, ...): for those the parsing and the JSON encoding
# are done once per distinct value and gathered back by code, which is what keeps the ingest close to the
# cost of a plain CSV read.

MAX_COMBO = 1 << 62


def _per_value(s: pl.Series, fn: Callable[[pl.Series], pl.Series], *, categorical: bool = False) -> pl.Series:
    """``fn`` (element-wise, null -> null) computed once per distinct value when that is cheaper; as a
    Categorical then, if asked (for output columns stored dictionary-encoded)."""
    c = coded(s)
    return _rows(c, fn(s if c is None else c.u), categorical=categorical)


def _rows(c: Coded | None, values: pl.Series, *, categorical: bool = False) -> pl.Series:
    """Per-row ``values``: as they are when ``c`` is None, else gathered from one value per distinct input."""
    if c is None:
        return values
    return c.categorical(values) if categorical else c.gather(values)


def _split(
    s: pl.Series, parts: Callable[[pl.Series, str], pl.DataFrame], key: str
) -> tuple[Coded | None, pl.DataFrame, _Piece]:
    """``parts`` of a column computed once per distinct value when it repeats (else per row), and its
    `extra` piece from the ``frag`` column of those parts."""
    c = coded(s)
    p = parts(s if c is None else c.u, key)
    return c, p, _Piece(rows=p["frag"]) if c is None else _Piece(coded=c, table=p["frag"])


def _nulls(n: int, dtype: pl.DataType) -> pl.Series:
    return pl.Series(values=[None], dtype=dtype).extend_constant(None, n - 1) if n else pl.Series(dtype=dtype)


def _ev(s: pl.Series, expr: pl.Expr) -> pl.Series:
    """Evaluate ``expr`` over ``s`` bound to ``pl.col("v")``."""
    return s.rename("v").to_frame().select(expr.alias("v")).to_series()


def _frag(key: str, s: pl.Series) -> pl.Series:
    """``,"key":"value"`` (JSON-escaped) per element; null for null or empty values."""
    f = (
        s.rename(key)
        .to_frame()
        .select(
            pl.when(pl.col(key) != "").then(
                pl.concat_str(
                    pl.lit(","),
                    pl.struct(pl.col(key)).struct.json_encode().str.strip_prefix("{").str.strip_suffix("}"),
                )
            )
        )
    )
    return f.to_series()


def _masked_frag(key: str, s: pl.Series, mask: pl.Series) -> pl.Series | None:
    """Fragment only where ``mask`` holds (encoded for those rows only); None when it never holds."""
    mask = mask.fill_null(False)
    if not mask.any():
        return None
    if mask.all():
        return _frag(key, s)
    idx = mask.arg_true()
    return _nulls(len(s), pl.String).scatter(idx, _frag(key, s.gather(idx)))


def _parse_times(v: pl.Series) -> pl.Series:
    dt = v.str.to_datetime(TIME_FORMAT, strict=False, time_unit="us", cache=False)
    miss = dt.is_null() & v.is_not_null()
    if miss.any():
        idx = miss.arg_true()
        w = v.gather(idx).str.strip_chars()
        secs = w.str.to_integer(strict=False)
        alt = pl.select(
            pl.coalesce(
                pl.lit(w).str.to_datetime(TIME_FORMAT, strict=False, time_unit="us", cache=False),
                pl.when(pl.lit(secs).is_between(0, EPOCH_MAX - 1))
                .then(pl.from_epoch(pl.lit(secs), time_unit="s"))
                .dt.cast_time_unit("us")
                .dt.replace_time_zone("UTC"),
            )
        ).to_series()
        dt = dt.scatter(idx, alt)
    return dt


def _split_times(s: pl.Series) -> pl.Series | None:
    """The usual timestamps parsed as a naive `YYYY-MM-DD HH:MM:SS` plus a per-value offset suffix, which
    polars does several times faster than one `%z` parse. Rows it cannot read are null (the caller parses
    them the slow way); None when the offsets are too varied to be worth it."""
    first = s.drop_nulls().head(1)
    suffix = first.str.slice(19).item() if len(first) else ""
    oc = None
    if (
        suffix
        and s.null_count() == 0
        and (s.str.len_bytes() == 19 + len(suffix.encode())).all()
        and s.str.ends_with(suffix).all()
    ):
        suffixes = pl.Series([suffix])  # one offset in the whole batch (the usual case): nothing to code
    else:
        oc = coded(s.str.slice(19))
        if oc is None:
            return None
        suffixes = oc.u
    # the offset as the UTC epoch of 1970-01-01 00:00:00 at that offset: the same %z parser decides
    offset = _ev(
        suffixes,
        pl.concat_str(pl.lit("1970-01-01 00:00:00"), pl.col("v"))
        .str.to_datetime(TIME_FORMAT, strict=False, time_unit="us", cache=False)
        .dt.epoch("us"),
    )
    base = s.str.slice(0, 19).str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False, time_unit="us", cache=False)
    if oc is None or oc.constant:
        o = offset.item()
        if o is None:
            return _nulls(len(s), UTC)
        return (base.dt.epoch("us") + o).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    frame = pl.DataFrame({"b": base, "o": oc.gather(offset)})
    return frame.select(
        pl.from_epoch(pl.col("b").dt.epoch("us") + pl.col("o"), time_unit="us").dt.replace_time_zone("UTC")
    ).to_series()


def _times(s: pl.Series | None, n: int) -> pl.Series:
    """``YYYY-MM-DD HH:MM:SS±hhmm`` or integer epoch seconds -> UTC; anything else -> null."""
    if s is None:
        return _nulls(n, UTC)
    if s.is_sorted():  # log order: polars' own cache of the previous value does the per-value work
        dt = s.str.to_datetime(TIME_FORMAT, strict=False, time_unit="us", cache=True)
    else:
        dt = _split_times(s)
        if dt is None:
            return _per_value(s, _parse_times)
    miss = dt.is_null() & s.is_not_null()
    if miss.any():
        idx = miss.arg_true()
        dt = dt.scatter(idx, _parse_times(s.gather(idx)))
    # the same window as epoch seconds: a time outside it is no accounting time (and years 1 or 9999 in UTC
    # could not even become Python datetimes for the file's statistics)
    us = dt.dt.epoch("us")
    lo = us.min()
    if lo is not None and (lo < 0 or us.max() >= EPOCH_MAX * 1_000_000):
        dt = pl.select(
            pl.when(pl.lit(us).is_between(0, EPOCH_MAX * 1_000_000, closed="left")).then(pl.lit(dt))
        ).to_series()
    return dt


def _normalise_domains(u: pl.Series) -> pl.Series:
    return _ev(u, normalise_domain(pl.col("v")))


def _domains(addr: pl.Series | None, n: int) -> pl.Series:
    if addr is None:
        return _nulls(n, pl.String)
    first = addr.drop_nulls().head(1)
    if len(first) and first.str.count_matches("@", literal=True).item() == 1 and addr.null_count() == 0:
        # one sending domain (VERP return paths): a suffix test replaces the slicing and the coding. The
        # suffix holds the only `@` of the first address, so in every row it ends it is after the last `@`.
        suffix = first.str.slice(first.str.find("@", literal=True)).item()
        if addr.str.ends_with(suffix).all():
            return constant_categorical(_normalise_domains(pl.Series([suffix[1:]])).item(), n)
    at = addr.str.find("@", literal=True)
    dom = addr.str.slice(at + 1)  # null where there is no `@`
    several = dom.str.contains("@", literal=True)
    if several.any():  # a quoted local part may hold `@`: the domain follows the last one
        idx = several.arg_true()
        dom = dom.scatter(idx, addr.gather(idx).str.split("@").list.last())
    return _per_value(dom, _normalise_domains, categorical=True)


def _status_parts(u: pl.Series, key: str, *, text_key: str) -> pl.DataFrame:
    """dsnStatus -> enhanced status, and the `extra` fragment: its text (under ``text_key``), or the raw value
    if irregular."""
    f = (
        u.rename("v")
        .to_frame()
        .with_columns(
            enh=pl.col("v").str.extract(rf"^\s*({ENHANCED})"),
            text=pl.col("v").str.extract(rf"^\s*{ENHANCED} \((.*)\)$"),
        )
    )
    exact = pl.concat_str(pl.col("enh"), pl.lit(" ("), pl.col("text"), pl.lit(")")).eq_missing(pl.col("v"))
    f = f.with_columns(
        # an empty text has no fragment: `5.1.1 ()` keeps its raw value
        text_ok=exact & (pl.col("text") != ""),
        plain=pl.col("v").eq_missing(pl.col("enh")),
    )
    text_frag = _frag(text_key, f["text"])
    raw_frag = _frag(key, f["v"])
    frag = pl.select(
        pl.when(pl.lit(f["text_ok"])).then(pl.lit(text_frag)).when(~pl.lit(f["plain"])).then(pl.lit(raw_frag))
    ).to_series()
    return pl.DataFrame({"enh": f["enh"], "frag": frag})


def _mta_parts(u: pl.Series, key: str) -> pl.DataFrame:
    """`host (ip)` -> mx host (lower-case, no trailing dot), mx ip, and the raw value's fragment unless
    ``host (ip)`` rebuilds it exactly."""
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
    f = f.with_columns(
        host=pl.when(pl.col("host") != "").then(pl.col("host")),
        ip=pl.when(pl.col("ip") != "").then(pl.col("ip")),
    )
    ok = pl.concat_str(pl.col("host"), pl.lit(" ("), pl.col("ip"), pl.lit(")")).eq_missing(pl.col("v")) | (
        pl.col("ip").is_null() & pl.col("host").eq_missing(pl.col("v"))
    )
    f = f.with_columns(ok=ok)
    frag = _ev(_frag(key, f["v"]), pl.when(~pl.lit(f["ok"])).then(pl.col("v")))
    return pl.DataFrame({"host": f["host"], "ip": f["ip"], "frag": frag})


def _diag_prefix_parts(u: pl.Series) -> pl.DataFrame:
    f = (
        u.rename("v")
        .to_frame()
        .with_columns(
            code=pl.col("v")
            .str.extract(r"^(?:[A-Za-z][A-Za-z0-9-]*;)?[ \t]*(\d{3})")
            .cast(pl.Int16, strict=False),
            enh=pl.col("v").str.extract(rf"({ENHANCED})"),
            plen=pl.col("v").str.len_chars().cast(pl.Int64),
        )
    )
    canon = pl.concat_str(
        pl.lit("smtp;"), pl.col("code").cast(pl.String), pl.lit(" "), pl.col("enh"), pl.lit(" ")
    )
    return f.with_columns(canon=canon.eq_missing(pl.col("v"))).drop("v")


def _diag(d: pl.Series) -> tuple[pl.DataFrame, pl.Series, Coded | None]:
    """dsnDiag -> (smtp_code, the diag's own enhanced status, response, `smtp;<code> <enh> ` shape), the
    prefix before the response, and that prefix coded by value (None when it hardly repeats)."""
    prefix = d.str.extract(DIAG_FAST, 0)
    slow = prefix.is_null() & d.is_not_null()
    if slow.any():
        idx = slow.arg_true()
        prefix = prefix.scatter(idx, d.gather(idx).str.extract(DIAG_PREFIX, 0))
    c = coded(prefix)
    if c is None:
        parts = _diag_prefix_parts(prefix)
    else:
        p = _diag_prefix_parts(c.u)
        parts = pl.DataFrame([c.gather(p[k]) for k in p.columns])
    resp = d.str.slice(parts["plen"].fill_null(0))
    resp = pl.select(pl.when(pl.lit(resp) != "").then(pl.lit(resp))).to_series()
    frame = pl.DataFrame({"code": parts["code"], "enh": parts["enh"], "resp": resp, "canon": parts["canon"]})
    return frame, prefix, c


def _diag_piece(
    d: pl.Series,
    dp: pl.DataFrame,
    prefix: pl.Series,
    pc: Coded | None,
    enh: pl.Series,
    *,
    key: str,
    prefix_key: str,
) -> _Piece:
    """What `extra` keeps of dsnDiag: nothing when it is exactly `smtp;<code> <enh> <response>`, else its
    prefix (`dsnDiagPrefix`, the diag being prefix + response), else — no response — the raw value."""
    has_resp = dp["resp"].is_not_null()
    rebuilt = dp["canon"].fill_null(False) & dp["enh"].eq_missing(enh) & has_resp
    prefixed = ~rebuilt & has_resp & (prefix != "").fill_null(False)
    raw = d.is_not_null() & ~rebuilt & ~prefixed
    if pc is not None and not raw.any():
        codes = pl.select(pl.when(pl.lit(prefixed)).then(pl.lit(pc.codes))).to_series()
        return _Piece(coded=Coded(pc.u, codes, int((~prefixed).sum())), table=_frag(prefix_key, pc.u))
    pre = _masked_frag(prefix_key, prefix, prefixed)
    whole = _masked_frag(key, d, raw)
    if pre is None or whole is None:
        return _Piece(rows=pre if whole is None else whole)
    return _Piece(rows=pl.select(pl.coalesce(pl.lit(pre), pl.lit(whole))).to_series())


@dataclass
class _Piece:
    """One contribution to `extra`, in header order: per-distinct-value fragments + codes, or per-row."""

    coded: Coded | None = None
    table: pl.Series | None = None  # fragment per distinct value (len(coded.u))
    rows: pl.Series | None = None  # fragment per row


def _extra(pieces: list[_Piece], n: int) -> pl.Series:
    """Concatenate the fragments into one JSON object per row (keys in header order).

    Adjacent coded pieces are merged into runs whose combined code still has few distinct values; a run's
    fragment is then built once per combination and gathered, which keeps the per-row concatenation down
    to a few columns.
    """
    pieces = [
        p
        for p in pieces
        if (p.coded is not None and p.table.null_count() < len(p.table)) or p.rows is not None
    ]
    if pieces and all(p.coded is not None for p in pieces):
        objects = _coded_extra(pieces, n)
        if objects is not None:
            return objects
    runs: list[list[_Piece] | pl.Series] = []
    run: list[_Piece] = []
    key = np.zeros(n, dtype=np.int64)
    stride = 1
    limit = max(256, n // 16)
    for p in pieces:
        if p.coded is None:
            if run:
                runs.append(run)
                run, key, stride = [], np.zeros(n, dtype=np.int64), 1
            runs.append(p.rows)
            continue
        k = len(p.coded.u) + 1
        if p.coded.constant:
            run.append(p)
            continue
        code = p.coded.codes.fill_null(k - 1).to_numpy().astype(np.int64)
        if run and stride * k < MAX_COMBO:
            trial = key + code * stride
            if pl.Series(trial).n_unique() <= limit:
                run.append(p)
                key, stride = trial, stride * k
                continue
        if run:
            runs.append(run)
        run, key, stride = [p], code, k
    if run:
        runs.append(run)
    if not runs:
        return pl.repeat("{}", n, eager=True, dtype=pl.String)

    columns: list[pl.Series | str] = []
    for r in runs:
        if isinstance(r, pl.Series):
            columns.append(r)
        elif all(p.coded.constant for p in r):
            columns.append("".join(p.table[0] or "" for p in r))
        elif len(r) == 1:
            columns.append(r[0].coded.gather(r[0].table))
        else:
            columns.append(_combine(r, n))
    # the first fragment loses its leading comma when it is there on every row; otherwise strip "{," after
    first = columns[0]
    fixed = False
    if isinstance(first, str):
        columns[0], fixed = first[1:], True
    elif first.null_count() == 0:
        columns[0], fixed = first.str.strip_prefix(","), True
    if all(isinstance(c, str) for c in columns):
        return pl.repeat("{" + "".join(columns) + "}", n, eager=True, dtype=pl.String)
    exprs: list[pl.Expr] = [pl.lit("{")]
    frame: dict[str, pl.Series] = {}
    for c in columns:
        if isinstance(c, str):
            if c:
                exprs.append(pl.lit(c))
        else:
            name = f"p{len(frame)}"
            frame[name] = c.rename(name)
            exprs.append(pl.col(name))
    exprs.append(pl.lit("}"))
    out = pl.DataFrame(frame).select(pl.concat_str(exprs, ignore_nulls=True).alias("extra")).to_series()
    return out if fixed else out.str.replace("{,", "{", literal=True, n=1)


def _combo_table(run: list[_Piece], n: int) -> tuple[pl.Series, pl.Series] | None:
    """The concatenated fragments of several coded pieces once per distinct combination of their values
    (null where none has a fragment), and each row's combination; None when the codes cannot be combined."""
    key = np.zeros(n, dtype=np.int64)
    strides = []
    stride = 1
    for p in run:
        k = len(p.coded.u) + 1
        if stride * k >= MAX_COMBO:
            return None
        if p.coded.constant:  # always value 0: no digit of the combined code
            strides.append(0)
            continue
        key += p.coded.codes.fill_null(k - 1).to_numpy() * np.int64(stride)
        strides.append(stride)
        stride *= k
    if stride <= max(1 << 20, 8 * n):
        # few possible combinations: a dense table numbers the ones present without sorting or hashing
        present = np.zeros(stride, dtype=bool)
        present[key] = True
        combos = np.flatnonzero(present)
        number = np.empty(stride, dtype=np.uint32)
        number[combos] = np.arange(len(combos), dtype=np.uint32)
        inverse = number[key]
    else:
        combos, inverse = np.unique(key, return_inverse=True)
    parts = []
    for p, st in zip(run, strides, strict=True):
        k = len(p.coded.u) + 1
        digit = (combos // st) % k if st else np.zeros(len(combos), dtype=np.int64)
        idx = pl.Series(digit.astype(np.uint32))  # numpy-typed already: no conversion pass
        table = p.table.extend_constant(None, 1)  # the extra slot: a null value has no fragment
        parts.append(table.gather(idx).rename(f"t{len(parts)}"))
    merged = pl.DataFrame(parts).select(pl.concat_str(pl.all(), ignore_nulls=True)).to_series()
    merged = _ev(merged, pl.when(pl.col("v") != "").then(pl.col("v")))
    return merged, pl.Series(inverse.astype(np.uint32, copy=False))


def _combine(run: list[_Piece], n: int) -> pl.Series:
    """The concatenated fragments of several coded pieces, built once per distinct combination."""
    merged, inverse = _combo_table(run, n)
    return merged.gather(inverse)


def _coded_extra(pieces: list[_Piece], n: int) -> pl.Series | None:
    """`extra` when every piece is coded: each distinct object built once, returned as a Categorical."""
    combo = _combo_table(pieces, n)
    if combo is None:
        return None
    merged, inverse = combo
    objects = _ev(
        merged, pl.concat_str(pl.lit("{"), pl.col("v").str.strip_prefix(","), pl.lit("}")).fill_null("{}")
    )
    return objects.cast(raw_categorical()).gather(inverse)


def _map_events(df: pl.DataFrame, h: _Header) -> pl.DataFrame:
    """Positional frame -> canonical columns (+ _idx, _text); rows are not filtered here."""
    n = len(df)

    def col(name: str) -> pl.Series | None:
        pos = h.first.get(name.lower())
        return df[f"c{pos}"] if pos is not None else None

    def or_nulls(s: pl.Series | None, dtype: pl.DataType = pl.String) -> pl.Series:
        return s if s is not None else _nulls(n, dtype)

    def key(name: str) -> str:
        return h.keys[h.first[name.lower()]]

    cols: dict[str, pl.Series] = {}
    pieces: dict[int, _Piece] = {}  # header position -> its `extra` contribution

    # type -> raw_type, event_type (b + message-expired -> expired)
    t, bc = col("type"), col("bounceCat")
    tc = coded(t) if t is not None else None
    expired_cat = None
    if bc is not None:
        expired_cat = _per_value(
            bc, lambda u: _ev(u, pl.col("v").str.strip_chars().str.to_lowercase() == "message-expired")
        ).fill_null(False)
    # every rule is applied once per distinct type value (per row only if the column hardly repeats)
    src = tc.u if tc is not None else (t if t is not None else _nulls(n, pl.String))
    # polars drops a BOM that opens its buffer, so a line's leading BOM must not count where a block's
    # boundary falls elsewhere (a BOM-only line is then `missing_type` wherever it lies)
    stripped = pl.col("v").str.strip_chars_start("\ufeff").str.strip_chars()
    raw_u = _ev(src, pl.when(stripped != "").then(stripped))
    lower_u = raw_u.str.to_lowercase()
    event_u = lower_u.replace_strict(PMTA_RECORD_TYPES, default="other", return_dtype=pl.String)
    is_r = _rows(tc, lower_u == "r").fill_null(False)
    expired = None if expired_cat is None else _rows(tc, lower_u == "b").fill_null(False) & expired_cat
    if expired is None or not expired.any():
        cols["event_type"] = _rows(tc, event_u, categorical=True)
    elif tc is None:
        cols["event_type"] = pl.select(
            pl.when(pl.lit(expired)).then(pl.lit("expired")).otherwise(pl.lit(event_u))
        ).to_series()
    else:  # a second table of types, `b` -> `expired`, indexed past the first
        table = pl.concat(
            [event_u, _ev(event_u, pl.when(lower_u == "b").then(pl.lit("expired")).otherwise(pl.col("v")))]
        )
        codes = (tc.codes + expired.cast(pl.UInt32) * len(event_u)).rename("codes")
        cols["event_type"] = table.cast(raw_categorical()).gather(codes)
    cols["raw_type"] = _rows(tc, raw_u, categorical=True)
    any_r = bool(is_r.any())

    cols["event_time"] = _times(col("timeLogged"), n)
    tq = col("timeQueued")
    cols["queued_time"] = _times(tq, n)
    if tq is not None:
        pieces[h.first["timequeued"]] = _Piece(
            rows=_masked_frag(key("timeQueued"), tq, cols["queued_time"].is_null() & tq.is_not_null())
        )

    cols["sender"] = or_nulls(col("orig"))
    cols["sender_domain"] = _domains(col("orig"), n)
    cols["recipient"] = or_nulls(col("rcpt"))
    cols["recipient_domain"] = _domains(col("rcpt"), n)

    vmta, pool = col("vmta"), col("vmtaPool")
    if any_r and vmta is not None:
        cols["pool"] = pl.select(
            pl.when(pl.lit(is_r))
            .then(pl.coalesce(pl.lit(or_nulls(pool)), pl.lit(vmta)))
            .otherwise(pl.lit(or_nulls(pool)))
        ).to_series()
        cols["source"] = pl.select(pl.when(~pl.lit(is_r)).then(pl.lit(vmta))).to_series()
        pieces[h.first["vmta"]] = _Piece(rows=_masked_frag(key("vmta"), vmta, is_r))
    else:
        cols["pool"] = or_nulls(pool)
        cols["source"] = or_nulls(vmta)
    cols["source_ip"] = or_nulls(col("dlvSourceIp"))

    # dsnMta -> mx_host / mx_ip
    mta = col("dsnMta")
    mx_ip_dsn = None
    if mta is not None:
        mc, mp, pieces[h.first["dsnmta"]] = _split(mta, _mta_parts, key("dsnMta"))
        cols["mx_host"], mx_ip_dsn = _rows(mc, mp["host"], categorical=True), _rows(mc, mp["ip"])
    else:
        cols["mx_host"] = _nulls(n, pl.String)
    dest = col("dlvDestinationIp")
    if mx_ip_dsn is not None and dest is not None:
        mx_ip = (
            mx_ip_dsn
            if mx_ip_dsn.null_count() == 0
            else pl.select(pl.coalesce(pl.lit(mx_ip_dsn), pl.lit(dest))).to_series()
        )
    else:
        mx_ip = mx_ip_dsn if mx_ip_dsn is not None else or_nulls(dest)
    cols["mx_ip"] = (
        _rows(mc, mp["ip"], categorical=True) if mx_ip is mx_ip_dsn and mx_ip is not None else mx_ip
    )
    if dest is not None:
        pieces[h.first["dlvdestinationip"]] = _Piece(
            rows=_masked_frag(key("dlvDestinationIp"), dest, dest.is_not_null() & ~dest.eq_missing(mx_ip))
        )

    # dsnStatus / dsnDiag -> enhanced_status, smtp_code, response
    st = col("dsnStatus")
    st_enh = None
    if st is not None:
        parts = partial(_status_parts, text_key=h.derived_key("dsnStatus", "Text"))
        sc, sp, pieces[h.first["dsnstatus"]] = _split(st, parts, key("dsnStatus"))
        st_enh = _rows(sc, sp["enh"])
    d = col("dsnDiag")
    if d is not None:
        dp, prefix, pc = _diag(d)
        if st_enh is None:
            enh = dp["enh"]
        elif st_enh.null_count() == 0:
            enh = st_enh
        else:
            enh = pl.select(pl.coalesce(pl.lit(st_enh), pl.lit(dp["enh"]))).to_series()
        cols["smtp_code"] = dp["code"]
        cols["response"] = dp["resp"]
        pieces[h.first["dsndiag"]] = _diag_piece(
            d, dp, prefix, pc, enh, key=key("dsnDiag"), prefix_key=h.derived_key("dsnDiag", "Prefix")
        )
    else:
        enh = or_nulls(st_enh)
        cols["smtp_code"] = _nulls(n, pl.Int16)
        cols["response"] = _nulls(n, pl.String)
    cols["enhanced_status"] = (
        _rows(sc, sp["enh"], categorical=True) if enh is st_enh and enh is not None else enh
    )
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
            pieces[h.first["dlvsize"]] = _Piece(
                rows=_masked_frag(key("dlvSize"), size, sz.is_null() & size.is_not_null())
            )
        cols["size_bytes"] = sz.cast(pl.Int64)
    else:
        cols["size_bytes"] = _nulls(n, pl.Int64)
    cols["tls_protocol"] = or_nulls(col("dlvTlsProtocol"))
    cols["tls_cipher"] = or_nulls(col("dlvTlsCipher"))

    # every other column goes to `extra` verbatim (a repeated header name's later columns included)
    for pos, (name, k) in enumerate(zip(h.names, h.keys, strict=True)):
        low = name.lower()
        if h.first.get(low) == pos and low in MAPPED:
            continue
        v = df[f"c{pos}"]
        if v.null_count() == n:
            continue
        c = coded(v)
        pieces[pos] = _Piece(rows=_frag(k, v)) if c is None else _Piece(coded=c, table=_frag(k, c.u))

    ordered = [pieces[p] for p in sorted(pieces) if pieces[p].coded is not None or pieces[p].rows is not None]
    cols["extra"] = _extra(ordered, n)
    out = pl.DataFrame(cols)
    return out.with_columns(df["_idx"], df["_text"])


# --------------------------------------------------------------------------------------------- entry points


class _QuarantineFile:
    """Quarantine rows streamed to one Parquet file in slices, so a file of garbage needs no memory."""

    FLUSH_ROWS = 50_000

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending: list[pl.DataFrame] = []
        self.rows = 0
        self.writer: pq.ParquetWriter | None = None

    def add(self, frame: pl.DataFrame) -> None:
        self.pending.append(frame)
        self.rows += len(frame)
        if self.rows >= self.FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        table = (
            pl.concat(self.pending) if self.pending else pl.DataFrame(schema=QUARANTINE_SCHEMA)
        ).to_arrow()
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema, compression=PARQUET_COMPRESSION)
        if len(table) or not self.pending:
            self.writer.write_table(table)
        self.pending, self.rows = [], 0

    def close(self) -> None:
        if self.pending or self.writer is None:
            self.flush()
        self.writer.close()


def parse_pmta_file(
    path: Path, *, rel_path: str, node: str | None, chunk_bytes: int = CHUNK_BYTES
) -> PmtaParseResult:
    """Parse one accounting file into memory: canonical events, quarantine rows, stats."""
    quarantine: list[pl.DataFrame] = []
    reader = _Reader(
        Path(path), rel_path=rel_path, node=node, chunk_bytes=chunk_bytes, on_quarantine=quarantine.append
    )
    frames = [conform(f.lazy()).collect() for f in reader.batches()]
    events = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=EVENT_SCHEMA)
    q = pl.concat(quarantine, how="vertical") if quarantine else pl.DataFrame(schema=QUARANTINE_SCHEMA)
    return PmtaParseResult(events=events, quarantine=q, stats=reader.stats)


def ingest_pmta_file(
    path: Path,
    *,
    rel_path: str,
    node: str | None,
    events_out: Path,
    quarantine_out: Path,
    chunk_bytes: int = CHUNK_BYTES,
) -> PmtaFileStats:
    """Stream one accounting file to ``events_out`` (canonical Parquet) and ``quarantine_out`` (always
    written, possibly empty). Memory stays bounded by a few batches whatever the file size; both files
    are written atomically (a failure leaves neither changed).
    """
    with atomic_path(quarantine_out) as qtmp:
        qfile = _QuarantineFile(qtmp)
        reader = _Reader(
            Path(path), rel_path=rel_path, node=node, chunk_bytes=chunk_bytes, on_quarantine=qfile.add
        )

        with atomic_path(events_out) as tmp:
            writer = RawEventsWriter(tmp)
            try:
                for frame in reader.batches():
                    writer.write(frame)
            finally:
                writer.close()
            qfile.close()
    return reader.stats
