"""Helpers shared by the ingests: domain normalisation, event ids, and the raw (per-file) events writer.

Both ingests must agree on these rules, otherwise the same recipient domain would be spelled two ways in
the lake, or re-landed content would get new ids.

Domains
    ``recipient_domain`` / ``sender_domain`` are the part after the last ``@`` of the address, stripped of
    surrounding whitespace, a trailing ``>`` and trailing dots, lower-cased, and IDNA-encoded (UTS #46,
    non-transitional: ``bücher.de`` -> ``xn--bcher-kva.de``). ASCII domains are only lower-cased (no
    validation: underscores and the like are kept as written). A non-ASCII domain that IDNA 2008 refuses is
    tried with the IDNA 2003 codec of the standard library, and kept lower-cased as written if that fails
    too. An address without ``@`` has no domain (null).

Event ids
    ``event_id`` = lower-case hex of the 128-bit XXH3 hash of ``<mta>:<record text>`` (UTF-8), e.g.
    ``xxh3_128(b"pmta:" + line)``. The record text is the source record as written (for PowerMTA the CSV
    line without its line end; for a record spanning several physical lines, those lines joined by
    ``\\n``). The n-th (n >= 2) occurrence of the very same record text within one file hashes
    ``<mta>:<record text>\\x1f<n>`` instead, so genuinely repeated lines stay distinct events while a copy
    of the file under another name, or a file that grew, yields the same ids for the same rows.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import idna
import numpy as np
import polars as pl
import polars_hash  # noqa: F401  (registers the stable `nchash` expression namespace)
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.events import EVENT_SCHEMA, RAW_DICTIONARY_COLUMNS

NON_ASCII = r"[^\x00-\x7F]"
OCCURRENCE_SEPARATOR = "\x1f"


def idna_domain(domain: str) -> str:
    """IDNA (ASCII-compatible) form of one lower-cased domain; see the module doc for the fallbacks."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        pass
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def _idna_series(s: pl.Series) -> pl.Series:
    non_ascii = s.str.contains(NON_ASCII)
    if not non_ascii.any():
        return s
    values = s.filter(non_ascii).unique().to_list()
    return s.replace({v: idna_domain(v) for v in values})


def normalise_domain(expr: pl.Expr) -> pl.Expr:
    """Lower-case, strip, IDNA-encode a domain column (nulls and empty strings become null)."""
    cleaned = expr.str.strip_chars().str.strip_chars_end(">.").str.to_lowercase()
    cleaned = pl.when(cleaned != "").then(cleaned)
    return cleaned.map_batches(_idna_series, return_dtype=pl.String)


def domain_of(address: pl.Expr) -> pl.Expr:
    """Normalised domain of an e-mail address column: the text after its last ``@``."""
    return normalise_domain(
        pl.when(address.str.contains("@", literal=True)).then(address.str.split("@").list.last())
    )


def event_hash(mta: str, text: pl.Expr) -> pl.Expr:
    """16-byte (big-endian) XXH3-128 digest of ``<mta>:<text>``, as Binary."""
    return pl.concat_str(pl.lit(f"{mta}:"), text).nchash.xxh3_128(return_binary=True, byte_order="big")


def event_id(mta: str, text: pl.Expr) -> pl.Expr:
    """Hex event id of ``<mta>:<text>`` (see the module doc)."""
    return event_hash(mta, text).bin.encode("hex")


def hash_key(digest: pl.Expr) -> pl.Expr:
    """UInt64 key (first 8 bytes) of an :func:`event_hash` digest, for :func:`occurrences`."""
    return digest.bin.slice(0, 8).bin.reinterpret(dtype=pl.UInt64, endianness="big")


def event_id_of(mta: str, text: str, occurrence: int = 1) -> str:
    """The event id of one record text (for tests, tools and small callers)."""
    frame = pl.DataFrame({"t": [text]})
    expr = pl.col("t") if occurrence == 1 else with_occurrence(pl.col("t"), pl.lit(occurrence))
    return frame.select(event_id(mta, expr)).item()


def with_occurrence(text: pl.Expr, occurrence: pl.Expr) -> pl.Expr:
    """The text hashed for the ``occurrence``-th copy of a record within one file (occurrence >= 2)."""
    return pl.concat_str(text, pl.lit(OCCURRENCE_SEPARATOR), occurrence.cast(pl.String))


def byte_positions(arr: np.ndarray, value: int, *, step: int = 1 << 18) -> np.ndarray:
    """Indices of the bytes of ``arr`` (uint8) equal to ``value``. Scanned in pieces so the comparison's mask
    stays in cache instead of being a fresh array as large as the buffer: ~40 % faster on 32 MiB chunks."""
    parts = []
    for start in range(0, len(arr), step):
        found = np.flatnonzero(arr[start : start + step] == value)
        parts.append(found + start if start else found)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.intp)


def stored_size(path: Path) -> int:
    """Bytes of ``path`` as stored (0 when it cannot be read: the reader then reports it)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def newline_positions(arr: np.ndarray) -> np.ndarray:
    """Indices of the ``\\n`` bytes of ``arr`` (uint8)."""
    return byte_positions(arr, 10)


class SeenKeys:
    """Set of 64-bit keys seen so far in one file, for counting repeated records across batches.

    A bitmap over the low bits of the key (``BITS_PER_KEY`` bits a key seen, at most ``MAX_BITS``) answers
    "certainly not seen" for almost every key at the cost of one memory access; the few possible hits are
    checked exactly against sorted arrays, merged like a binary counter (8 bytes a key, O(batch log total) to add a batch).
    ``counts`` holds the number of copies of the keys seen more than once.
    """

    MIN_BITS = 16
    MAX_BITS = 28  # 32 MiB; about 2 % false candidates at 5 million keys
    # while below MAX_BITS: ~1.5 % false candidates, and a bitmap a file's keys keep in cache
    BITS_PER_KEY = 64

    def __init__(self) -> None:
        self._bits = 0
        self._bitmap: np.ndarray | None = None
        self._levels: list[np.ndarray] = []
        self._size = 0
        self.counts: dict[int, int] = {}

    def _slots(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        low = keys & np.uint64((1 << self._bits) - 1)
        return (low >> np.uint64(3)).astype(np.int64), (np.uint8(1) << (low & np.uint64(7)).astype(np.uint8))

    def contains(self, keys: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        if self._bitmap is None or not len(keys):
            return found
        byte, bit = self._slots(keys)
        maybe = np.flatnonzero(self._bitmap[byte] & bit)
        if not len(maybe):
            return found
        cand = keys[maybe]
        hit = np.zeros(len(cand), dtype=bool)
        for level in self._levels:
            pos = np.searchsorted(level, cand)
            pos[pos == len(level)] = 0
            hit |= level[pos] == cand
        found[maybe] = hit
        return found

    def _mark(self, keys: np.ndarray) -> None:
        if not len(keys):
            return
        byte, bit = self._slots(np.sort(keys & np.uint64((1 << self._bits) - 1)))
        starts = np.flatnonzero(np.r_[True, byte[1:] != byte[:-1]])
        self._bitmap[byte[starts]] |= np.bitwise_or.reduceat(bit, starts)

    def add(self, unique_sorted_keys: np.ndarray) -> None:
        self._size += len(unique_sorted_keys)
        # the bitmap grows with the file (a fresh 32 MiB per small file costs more in page faults and cache
        # misses than the whole lookup); when the file outgrows it, a larger one is rebuilt from the keys
        bits = min(self.MAX_BITS, max(self.MIN_BITS, (self._size * self.BITS_PER_KEY - 1).bit_length()))
        if bits > self._bits:
            self._bits = bits
            self._bitmap = np.zeros(1 << (bits - 3), dtype=np.uint8)
            for level in self._levels:
                self._mark(level)
        self._mark(unique_sorted_keys)
        new = unique_sorted_keys
        while self._levels and len(self._levels[-1]) <= len(new):
            # both runs are sorted: the stable sort merges them in linear time
            new = np.sort(np.concatenate((self._levels.pop(), new)), kind="stable")
        self._levels.append(new)


def occurrences(keys: np.ndarray, seen: SeenKeys) -> np.ndarray:
    """1-based occurrence number of each key within the file (batches fed in file order); updates ``seen``."""
    n = len(keys)
    occ = np.ones(n, dtype=np.int64)
    if n == 0:
        return occ
    earlier = seen.contains(keys)
    sorted_keys = np.sort(keys)
    new_group = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    if earlier.any() or not new_group.all():
        order = np.argsort(keys, kind="stable")
        group = np.cumsum(new_group) - 1
        starts = np.flatnonzero(new_group)
        sizes = np.diff(np.r_[starts, n])
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - starts[group]
        size = np.empty(n, dtype=np.int64)
        size[order] = sizes[group]
        occ = rank + 1
        involved = np.flatnonzero(earlier | (size > 1))
        prior: dict[int, int] = {}
        for idx in involved.tolist():
            k = int(keys[idx])
            if k not in prior:
                prior[k] = seen.counts.get(k, 1) if earlier[idx] else 0
                seen.counts[k] = prior[k] + int(size[idx])
            occ[idx] += prior[k]
    seen.add(sorted_keys[new_group])
    return occ


# ------------------------------------------------------------------------------------- the raw (per-file) layer


RAW_COMPRESSION = "lz4"
RAW_STATISTICS = ["event_time", "source_line"]  # nothing reads a raw file by any other column's range


def raw_compression(columns: list[str]) -> dict[str, object]:
    """Parquet writer options for the codecs of a raw events file.

    LZ4 for most columns; none for the hex ``event_id``, which does not compress (LZ4 saves ~4 % of its
    bytes for a quarter of the file's compression time); zstd at its fast level -1 for ``extra``, where the
    long JSON text (the whole record, for KumoMTA) compresses as fast as with LZ4 and a quarter smaller.
    """
    codecs = {c: "none" if c == "event_id" else "zstd" if c == "extra" else RAW_COMPRESSION for c in columns}
    return {
        "compression": codecs,
        "compression_level": {c: -1 for c, codec in codecs.items() if codec == "zstd"},
    }


def raw_categorical() -> pl.Categorical:
    """A Categorical over fresh categories: one per column and batch keeps the codes dense and lets the
    categories go with the batch (a shared mapping would grow with every value a long file ever held)."""
    return pl.Categorical(pl.Categories.random())


def constant_categorical(value: str | None, n: int, name: str = "") -> pl.Series:
    """``n`` copies of one value as a Categorical (nothing hashed per row)."""
    return pl.Series(name, [value], dtype=pl.String).cast(raw_categorical()).new_from_index(0, n)


LOWCARD_SAMPLE = 4096  # rows sampled to decide whether a column repeats enough to be coded


@dataclass
class Coded:
    """A column as distinct values ``u`` plus a per-row code into them (null where the row is null)."""

    u: pl.Series
    codes: pl.Series  # UInt32
    nulls: int

    @property
    def constant(self) -> bool:
        return len(self.u) == 1 and self.nulls == 0

    def gather(self, values: pl.Series) -> pl.Series:
        """Per-row ``values`` from one value per distinct input."""
        return values.gather(self.codes)

    def categorical(self, values: pl.Series) -> pl.Series:
        """Per-row ``values`` (one per distinct value) as a Categorical: codes, not strings, reach Parquet."""
        return values.cast(raw_categorical()).gather(self.codes)


def coded(s: pl.Series) -> Coded | None:
    """Code ``s`` by its distinct values when it repeats enough for per-value work to pay off, else None."""
    n = len(s)
    if n and s.null_count() == 0 and (s.head(64) == s[0]).all() and (s == s[0]).all():  # constant: no hashing
        return Coded(s.head(1), pl.Series(values=[0], dtype=pl.UInt32).extend_constant(0, n - 1), 0)
    if n > LOWCARD_SAMPLE and s.head(LOWCARD_SAMPLE).n_unique() > LOWCARD_SAMPLE * 3 // 4:
        return None
    # fresh categories number the distinct values 0..k-1 in order of appearance: one hashing pass
    dtype = raw_categorical()
    cat = s.cast(dtype)
    u = dtype.categories.to_series()  # read while `cat` lives: the categories go with their last column
    codes = cat.to_physical()
    if len(u) * 2 > n and n > 64:
        return None
    return Coded(u, codes, s.null_count())


def per_distinct(s: pl.Series, **exprs: pl.Expr) -> dict[str, pl.Series]:
    """``exprs`` (over ``pl.col("v")``, element-wise, null -> null) per row of ``s``, evaluated once per distinct
    value when ``s`` repeats enough (see :func:`coded`), else per row."""
    c = coded(s)
    frame = (s if c is None else c.u).rename("v").to_frame().select(**exprs)
    return {k: frame[k] if c is None else c.gather(frame[k]) for k in exprs}


def to_raw(frame: pl.DataFrame) -> pl.DataFrame:
    """Canonical columns in canonical order, with ``RAW_DICTIONARY_COLUMNS`` as Categorical."""
    have = frame.schema
    exprs = []
    for name, dtype in EVENT_SCHEMA.items():
        col = pl.col(name) if name in have else pl.lit(None, dtype)
        if name in RAW_DICTIONARY_COLUMNS:
            if not isinstance(have.get(name), pl.Categorical):
                col = col.cast(pl.String).cast(raw_categorical())
        else:
            col = col.cast(dtype)
        exprs.append(col.alias(name))
    return frame.select(exprs)


def raw_arrow_schema() -> pa.Schema:
    """Arrow schema of a raw events file: the canonical types, dictionary columns as dictionary<uint32, str>."""
    base = pl.DataFrame(schema=EVENT_SCHEMA).to_arrow().schema
    return pa.schema(
        [
            pa.field(f.name, pa.dictionary(pa.uint32(), pa.large_string()))
            if f.name in RAW_DICTIONARY_COLUMNS
            else pa.field(f.name, f.type)
            for f in base
        ]
    )


_T = TypeVar("_T")


def prefetched(items: Iterator[_T], *, depth: int = 1, name: str = "prefetch") -> Iterator[_T]:
    """``items``, produced on a background thread at most ``depth`` items ahead of the consumer (file reads,
    zlib and zstd release the GIL, so reading overlaps with parsing).

    The producer's exceptions are re-raised here. When the consumer stops early, the producer stops, closes
    ``items`` in its own thread and is joined before this generator returns, so nothing it uses (an open
    file) is touched afterwards.
    """
    box: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: object) -> bool:
        while not stop.is_set():
            try:
                box.put((kind, value), timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
        except BaseException as exc:  # handed to the consumer
            put("error", exc)
        else:
            put("end", None)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = box.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


class WriterThread:
    """Runs write calls in order on a thread of its own, at most ``pending`` of them waiting: Parquet encoding
    releases the GIL, so it overlaps with the parsing of the next batch.

    The first failure is re-raised in the caller's thread by :meth:`check` (and so by :meth:`put`); the calls
    after it are skipped, so the caller never blocks on a queue nobody empties.
    """

    def __init__(self, *, pending: int, name: str) -> None:
        self.error: BaseException | None = None
        self._queue: queue.Queue[Callable[[], object] | None] = queue.Queue(maxsize=pending)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (call := self._queue.get()) is not None:
            if self.error is None:
                try:
                    call()
                except BaseException as exc:  # re-raised in the caller's thread
                    self.error = exc

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, call: Callable[[], object]) -> None:
        self.check()
        self._queue.put(call)

    def join(self) -> BaseException | None:
        """Wait until every call has run; the first failure, if any (returned, not raised)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        return self.error


class RawEventsWriter:
    """Streams event batches into one raw Parquet file (a row group per batch), encoding on its own thread.

    Dictionary columns go in as Arrow dictionaries, so the writer stores the codes it is given instead of
    hashing every string again; the high-cardinality columns are written plain. Statistics are kept only
    for ``event_time`` and ``source_line``: nothing reads a raw file by any other column's range.
    """

    def __init__(self, path: Path, *, pending: int = 2) -> None:
        self.schema = raw_arrow_schema()
        self.rows = 0
        self._writer = pq.ParquetWriter(
            path,
            self.schema,
            # codecs for CPU rather than bytes: a raw file is written once, then read by the day rebuilds and
            # the recipient-domain scan, and zstd throughout cost a sixth of the ingest's CPU on a layer the
            # day partitions (zstd) supersede
            **raw_compression(self.schema.names),
            use_dictionary=[*RAW_DICTIONARY_COLUMNS, "smtp_code"],
            dictionary_pagesize_limit=64
            * 2**20,  # a batch's dictionary stays one page, never a dense fallback
            write_statistics=RAW_STATISTICS,
        )
        self._thread = WriterThread(pending=pending, name="raw-events-writer")

    def write(self, frame: pl.DataFrame) -> None:
        self._thread.check()
        if not len(frame):
            return
        table = to_raw(frame).to_arrow()
        if not table.schema.equals(self.schema):
            table = table.cast(self.schema)
        self._thread.put(partial(self._writer.write_table, table))
        self.rows += len(frame)

    def close(self) -> None:
        """Finish the file (an empty file still has the schema); raises what the writer thread met."""
        if not self.rows:
            self._thread.put(partial(self._writer.write_table, self.schema.empty_table()))
        error = self._thread.join()
        if error is not None:
            with contextlib.suppress(Exception):  # the first failure is the one worth reporting
                self._writer.close()
            raise error
        self._writer.close()
