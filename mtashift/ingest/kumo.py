"""KumoMTA log ingest: zstd JSONL segments, plain/zstd JSONL files and webhook captures -> canonical events.

The record-type and field mapping, the event_id key and the counting rules are documented in
``schemas/docs/kumo_mapping.md``; this module implements that document.

How it works (and why):

* A file is decompressed as a stream (``zstandard`` decompressobj, frame by frame) into chunks of whole
  lines, so memory stays bounded whatever the segment size. The stream state is tracked explicitly because
  a truncated zstd stream raises nothing: it just stops producing output.
* Each chunk becomes an Arrow string array over the decompressed buffer (zero-copy; line offsets found
  with numpy) and DuckDB parses every record once, in C++ (one ``json_extract_string`` over the paths of
  all mapped fields, then times and the event-time key). Polars derives the string columns (domains,
  queue parts, addresses) and the event_id (the shared XXH3 helper of ``mtashift.ingest.common``).
  Per-record Python only runs for the rare cases: JSON arrays, recipient arrays, quarantined lines.
* ``extra`` is the record text itself, so nothing of the source is lost and no re-serialisation is paid.
* Output is streamed chunk by chunk into one Parquet file per landing file (a row group per chunk) under a
  temporary name that is renamed on success, so a partial file is never visible.
* The stages overlap: a thread decompresses the next chunk and another encodes the Parquet of the previous
  ones while the current one is parsed (zstd, DuckDB, polars and pyarrow all release the GIL). For the same
  reason :func:`ingest_kumo_files` runs files on threads, not processes: no interpreter start and imports per
  worker, and a file left alone at the end still gets the idle core.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO, Literal

import duckdb
import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from mtashift.ingest.common import (
    RAW_STATISTICS,
    SeenKeys,
    WriterThread,
    event_hash,
    event_id_of,
    hash_key,
    newline_positions,
    normalise_domain,
    occurrences,
    per_distinct,
    prefetched,
    raw_compression,
    stored_size,
)
from mtashift.ingest.worker import raise_if_stopping
from mtashift.lake import PARQUET_COMPRESSION, atomic_path
from schemas.events import EVENT_SCHEMA, KUMO_RECORD_TYPES
from schemas.quarantine import QUARANTINE_SCHEMA

KumoKind = Literal["segment", "jsonl", "webhook"]

SOURCE_KIND = "kumo"
MTA = "kumo"

# kumod names a segment after the UTC time it was opened (`%Y%m%d-%H%M%S%.f`) plus an optional per-record
# suffix such as `_recv`; there is no extension.
SEGMENT_NAME_RE = re.compile(r"^\d{8}-\d{6}(?:\.\d+)?(?:_[A-Za-z0-9_.-]+)?$")
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
UTF8_BOM = b"\xef\xbb\xbf"

# Records whose peer_address is the connecting client (EHLO name, client IP), not a remote MX. For these the
# peer stays in `extra` and mx_host/mx_ip are null, as for PowerMTA `r`/`f` rows.
INBOUND_TYPES: tuple[str, ...] = ("Reception", "Rejection", "Feedback", "XferIn")

# Meta keys, then header names, that carry a job id: the first non-null wins. Matched case-sensitively.
JOB_META_KEYS: tuple[str, ...] = ("job_id", "jobId", "x-job", "X-Job")
JOB_HEADER_KEYS: tuple[str, ...] = ("X-Job", "x-job")

DEFAULT_CHUNK_BYTES = 32 << 20  # decompressed bytes per processing chunk (peak RSS ~0.5 GB per worker)
# Files read at once by ingest_kumo_files. Three on two cores keep both busy through each file's serial steps
# and idle waits: on the 2M-record benchmark (20 segments) ~15 % less CPU and wall time than two, for a peak
# of ~1.3 GB instead of ~1.0 GB; four reach the 1.5 GB memory budget.
FILE_WORKERS = 3
READ_SIZE = 256 << 10  # compressed bytes fed to the decoder per call
PLAIN_READ_SIZE = 4 << 20  # bytes per read of an uncompressed file
DOCUMENT_LIMIT = 512 << 20  # largest pretty-printed JSON document (whole-file array) we parse in memory
SALVAGE_STEP = 4096  # compressed bytes per step when re-decoding a damaged frame
SQL_BATCH_ROWS = 8192  # lines per record batch handed to DuckDB
PENDING_WRITES = 2  # chunks handed to the Parquet writer thread and not yet written


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------


@dataclass
class KumoFileStats:
    """Counts for one landing file; see kumo_mapping.md "Counting" for the exact definitions.

    Invariants (tested):
      records_read == records_ok + quarantined
      lines_read + fanout == events + duplicates + quarantined + other_lines
    """

    source_file: str
    kind: str
    open_segment: bool = False  # the write bit was set when the file was read
    skipped_open: bool = False  # open segment not read (include_open=False); nothing was written
    lines_read: int = 0  # physical lines seen (a whole-file JSON document counts as one)
    other_lines: int = 0  # blank lines, empty JSON arrays, the partial tail of an open segment
    records_read: int = 0  # JSON values taken as records (array elements count one each) + broken lines
    records_ok: int = 0  # records that produced events
    quarantined: int = 0  # quarantine rows written
    events: int = 0  # event rows written (after in-file de-duplication)
    duplicates: int = 0  # event rows dropped because the same event_id occurred earlier in the file
    fanout: int = 0  # extra units created by arrays and multi-recipient records (see docs)
    partial_tail_bytes: int = 0  # bytes after the last newline of an open segment, left for a later read
    truncated: bool = False  # the compressed stream ended early or was corrupt
    decompressed_bytes: int = 0
    document_mode: bool = False  # the file was one pretty-printed JSON document (object or array)
    first_event_time: datetime | None = None
    last_event_time: datetime | None = None
    days: list[str] = field(default_factory=list)  # UTC days of the events written

    @property
    def rows(self) -> int:
        return self.events


@dataclass(frozen=True)
class KumoFileJob:
    """One file for :func:`ingest_kumo_files`."""

    path: Path
    rel_path: str
    events_out: Path
    quarantine_out: Path
    kind: KumoKind | None = None
    include_open: bool | None = None  # this file's own setting; None: the one the call is given


def classify_kumo_path(rel_path: str) -> KumoKind:
    """`segment` (kumod log segment), `webhook` (capture under a `webhooks/` folder) or `jsonl`."""
    parts = rel_path.replace("\\", "/").split("/")
    name = parts[-1]
    if "webhooks" in parts[:-1]:
        return "webhook"
    if SEGMENT_NAME_RE.match(name):
        return "segment"
    return "jsonl"


def is_open_segment(path: Path) -> bool:
    """True when any write bit is set: kumod removes them when it closes a segment."""
    return bool(os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def parse_kumo_file(
    path: Path,
    *,
    rel_path: str,
    kind: KumoKind | None = None,
    include_open: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    threads: int | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, KumoFileStats]:
    """Read one file into (events in EVENT_SCHEMA, quarantine in QUARANTINE_SCHEMA, stats) without writing."""
    sink = _MemorySink()
    stats = _run(
        Path(path),
        rel_path=rel_path,
        kind=kind,
        include_open=include_open,
        sink=sink,
        chunk_bytes=chunk_bytes,
        threads=threads,
    )
    return sink.events(), sink.quarantine(), stats


def ingest_kumo_file(
    path: Path,
    *,
    rel_path: str,
    kind: KumoKind | None = None,
    include_open: bool = False,
    events_out: Path,
    quarantine_out: Path,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    threads: int | None = None,
) -> KumoFileStats:
    """Read one file and write its events and quarantine Parquet files atomically (both always written).

    An open segment (write bit set) is skipped unless ``include_open``: nothing is written and the stats say
    ``skipped_open``.
    """
    kind = kind or classify_kumo_path(rel_path)
    if kind == "segment" and not include_open and is_open_segment(Path(path)):
        return KumoFileStats(source_file=rel_path, kind=kind, open_segment=True, skipped_open=True)
    with _ParquetSink(Path(events_out), Path(quarantine_out)) as sink:
        return _run(
            Path(path),
            rel_path=rel_path,
            kind=kind,
            include_open=include_open,
            sink=sink,
            chunk_bytes=chunk_bytes,
            threads=threads,
        )


def ingest_kumo_files(
    jobs: Sequence[KumoFileJob],
    *,
    include_open: bool = False,
    workers: int = FILE_WORKERS,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> list[KumoFileStats]:
    """Ingest many files, ``workers`` at a time (largest first); stats in the order of ``jobs``. Every file
    is attempted; the first failure (in ``jobs`` order) is then raised."""
    results = ingest_kumo_files_reporting(
        jobs, include_open=include_open, workers=workers, chunk_bytes=chunk_bytes
    )
    for r in results:
        if isinstance(r, Exception):
            raise r
    return results  # type: ignore[return-value]


def ingest_kumo_files_reporting(
    jobs: Sequence[KumoFileJob],
    *,
    include_open: bool = False,
    workers: int = FILE_WORKERS,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    threads: int | None = None,
) -> list[KumoFileStats | Exception]:
    """:func:`ingest_kumo_files`, with a file that fails reported in its place rather than raised.
    ``threads``: DuckDB threads per file (default: the cores shared among the files read at once)."""
    if not jobs:
        return []
    workers = min(workers, len(jobs))
    if threads is None and workers > 1:
        # With files in parallel, more DuckDB threads than cores per file only add switching and page faults
        # (~15 % more CPU measured at two files on two cores).
        threads = max(1, (os.cpu_count() or 1) // workers)

    def one(job: KumoFileJob) -> KumoFileStats | Exception:
        try:
            return _ingest_job(job, include_open, chunk_bytes, threads)
        except Exception as exc:  # the other files still load; the caller decides what a failure means
            return exc

    if workers <= 1:
        return [one(j) for j in jobs]
    order = sorted(range(len(jobs)), key=lambda i: -stored_size(jobs[i].path))
    # Threads, not processes: the heavy work (zstd, DuckDB, polars, Parquet) runs in native code without the
    # GIL, and a process pool pays an interpreter start and the imports in every worker.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kumo-ingest") as ex:
        futures = {i: ex.submit(one, jobs[i]) for i in order}
        return [futures[i].result() for i in range(len(jobs))]


# --------------------------------------------------------------------------------------------------
# decompression
# --------------------------------------------------------------------------------------------------


@dataclass
class _StreamEnd:
    status: Literal["complete", "truncated", "corrupt"] = "complete"
    detail: str = ""


def _zstd_pieces(fh: IO[bytes], end: _StreamEnd) -> Iterator[bytes]:
    """Decompressed output of a (multi-frame) zstd stream; ``end`` says how the stream ended.

    The decoder emits a block only once it is complete, so a stream cut short simply stops; we detect it by
    a frame that received input but never reached its end. On a decoding error the damaged frame is decoded
    again in small steps to recover every block before the damage.
    """
    dctx = zstandard.ZstdDecompressor()
    dobj = dctx.decompressobj()
    fed = False
    frame_start = 0  # file offset of the current frame
    frame_out = 0  # bytes already emitted for the current frame
    pending = b""
    pending_pos = 0  # file offset of pending[0]
    while True:
        if not pending:
            pending_pos = fh.tell()
            pending = fh.read(READ_SIZE)
            if not pending:
                break
        try:
            out = dobj.decompress(pending)
        except zstandard.ZstdError as exc:
            yield from _salvage_frame(fh, frame_start, frame_out)
            end.status, end.detail = "corrupt", f"zstd decoding error: {exc}"
            return
        fed = True
        if out:
            frame_out += len(out)
            yield out
        if dobj.eof:
            unused = dobj.unused_data
            consumed = len(pending) - len(unused)
            frame_start = pending_pos + consumed
            pending, pending_pos = unused, pending_pos + consumed
            dobj, fed, frame_out = dctx.decompressobj(), False, 0
        else:
            pending = b""
    if fed and not dobj.eof:
        end.status, end.detail = "truncated", "zstd stream ends inside a frame"


def _salvage_frame(fh: IO[bytes], frame_start: int, already: int) -> Iterator[bytes]:
    """Output of the damaged frame beyond its first ``already`` bytes, up to the damage.

    The decoder raises for the whole input of the call that reaches the damage, so the frame is decoded
    again with the part known to be good fed in large pieces and the rest in ever smaller steps (4096, 256,
    16, 1 bytes): the output stops exactly at the last block before the damage.
    """
    good = 0  # compressed bytes from the frame start known to decode without error
    emitted = already  # decompressed bytes of this frame already handed out
    step = SALVAGE_STEP
    while True:
        dobj = zstandard.ZstdDecompressor().decompressobj()
        fh.seek(frame_start)
        produced = 0
        fed = 0
        failed = False
        while True:
            size = min(READ_SIZE, good - fed) if fed < good else step
            piece = fh.read(size)
            if not piece:
                return
            try:
                out = dobj.decompress(piece)
            except zstandard.ZstdError:
                failed = True
                break
            fed += len(piece)
            good = max(good, fed)
            if produced + len(out) > emitted:
                new = out[max(0, emitted - produced) :]
                emitted += len(new)
                yield new
            produced += len(out)
            if dobj.eof:
                return
        if not failed or step == 1:
            return
        step = max(1, step // 16)


def _plain_pieces(fh: IO[bytes]) -> Iterator[bytes]:
    while piece := fh.read(PLAIN_READ_SIZE):
        yield piece


def _open_pieces(fh: IO[bytes], end: _StreamEnd) -> Iterator[bytes]:
    head = fh.read(4)
    fh.seek(0)
    if head == ZSTD_MAGIC:
        return _zstd_pieces(fh, end)
    return _plain_pieces(fh)


# --------------------------------------------------------------------------------------------------
# the per-chunk SQL
# --------------------------------------------------------------------------------------------------

# Fields read from each record: (name, JSON path, SQL type). One `json_extract_string` call looks up all
# of them in a single parse; it is markedly cheaper than `json_transform` into a struct.
_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("type", "$.type", "VARCHAR"),
    ("id", "$.id", "VARCHAR"),
    ("sender", "$.sender", "VARCHAR"),
    ("recipient", "$.recipient", "VARCHAR"),
    ("queue", "$.queue", "VARCHAR"),
    ("size", "$.size", "BIGINT"),
    ("code", "$.response.code", "INTEGER"),
    ("ec_class", "$.response.enhanced_code.class", "INTEGER"),
    ("ec_subject", "$.response.enhanced_code.subject", "INTEGER"),
    ("ec_detail", "$.response.enhanced_code.detail", "INTEGER"),
    ("content", "$.response.content", "VARCHAR"),
    ("peer_name", "$.peer_address.name", "VARCHAR"),
    ("peer_addr", "$.peer_address.addr", "VARCHAR"),
    ("timestamp", "$.timestamp", "BIGINT"),
    ("event_time", "$.event_time", "VARCHAR"),
    ("created", "$.created", "BIGINT"),
    ("created_time", "$.created_time", "VARCHAR"),
    ("num_attempts", "$.num_attempts", "INTEGER"),
    ("bounce_classification", "$.bounce_classification", "VARCHAR"),
    ("egress_pool", "$.egress_pool", "VARCHAR"),
    ("egress_source", "$.egress_source", "VARCHAR"),
    ("src_addr", "$.source_address.address", "VARCHAR"),
    ("fb_mail_from", "$.feedback_report.original_mail_from", "VARCHAR"),
    ("fb_rcpt_to", "$.feedback_report.original_rcpto_to[0]", "VARCHAR"),
    ("fb_trace_rcpt", "$.feedback_report.supplemental_trace.recipient", "VARCHAR"),
    ("nodeid", "$.nodeid", "VARCHAR"),
    ("tls_cipher", "$.tls_cipher", "VARCHAR"),
    ("tls_protocol_version", "$.tls_protocol_version", "VARCHAR"),
    ("session_id", "$.session_id", "VARCHAR"),
    *((f"job_meta_{i}", "$.meta." + json.dumps(k), "VARCHAR") for i, k in enumerate(JOB_META_KEYS)),
    *((f"job_header_{i}", "$.headers." + json.dumps(k), "VARCHAR") for i, k in enumerate(JOB_HEADER_KEYS)),
)


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


# Python's datetime range (years 1-9999), which the statistics and partition dates need every time to fit in
EPOCH_RANGE = (-62135596800, 253402300799)
_RFC3339 = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"


def _kumod_shape(column: str) -> str:
    """SQL: ``column`` looks like the time kumod writes (`YYYY-MM-DDTHH:MM:SS.fffffffffZ`, 30 characters)."""
    return f"length({column}) = 30 AND {column}[11] = 'T' AND {column}[20] = '.' AND {column}[30] = 'Z'"


def _rfc3339(column: str) -> str:
    """SQL: ``column`` as TIMESTAMPTZ when it has the RFC 3339 shape, else NULL (range: :func:`_in_range`). The
    shape kumod writes (30 characters, nanoseconds, `Z`) skips the pattern match; DuckDB's cast alone would
    also take `epoch`, `infinity`, bare dates or zone names."""
    return (
        f"CASE WHEN {_kumod_shape(column)} THEN TRY_CAST({column} AS TIMESTAMPTZ) "
        f"WHEN regexp_full_match({column}, '{_RFC3339}') THEN TRY_CAST(upper({column}) AS TIMESTAMPTZ) END"
    )


def _in_range(column: str) -> str:
    """SQL: the TIMESTAMPTZ ``column`` when it lies within ``EPOCH_RANGE`` (infinities do not), else NULL."""
    lo, hi = (f"TIMESTAMPTZ '{t}'" for t in ("0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999+00"))
    return f"CASE WHEN {column} BETWEEN {lo} AND {hi} THEN {column} END"


def _build_sql() -> str:
    paths = "[" + ", ".join(_sql_str(p) for _n, p, _t in _FIELDS) + "]"
    # j.<name>: the field, typed (numbers given as text are converted; anything unconvertible is null)
    fields = ",\n        ".join(
        (f"x[{i + 1}]" if t == "VARCHAR" else f"TRY_CAST(x[{i + 1}] AS {t})") + f" AS {n}"
        for i, (n, _p, t) in enumerate(_FIELDS)
    )
    jobs = [n for n, _p, _t in _FIELDS if n.startswith("job_")]
    ws = "chr(32) || chr(9) || chr(13) || chr(10)"
    min_epoch, max_epoch = EPOCH_RANGE
    return f"""
WITH src AS (
    SELECT pos, line_no, byte_offset, rec_index, txt, TRY(json_extract_string(txt, {paths})) AS x
    FROM lines
),
j AS (
    SELECT pos, line_no, byte_offset, rec_index, txt,
        {fields}
    FROM src
),
c AS (
    SELECT *,
        CASE WHEN type IS NULL OR type = '' THEN
            CASE WHEN NOT json_valid(txt) THEN
                     CASE WHEN trim(txt, {ws}) = '' THEN 'blank' ELSE 'invalid_json' END
                 WHEN json_type(txt) = 'ARRAY' THEN 'array'
                 ELSE 'not_a_record' END
        END AS r0,
        {_rfc3339("event_time")} AS et_raw,
        CASE WHEN timestamp BETWEEN {min_epoch} AND {max_epoch} THEN to_timestamp(timestamp) END AS ts_tz,
        {_rfc3339("created_time")} AS ct_raw,
        CASE WHEN created BETWEEN {min_epoch} AND {max_epoch} THEN to_timestamp(created) END AS cr_tz
    FROM j
),
t AS (
    SELECT *, {_in_range("et_raw")} AS et_tz, {_in_range("ct_raw")} AS ct_tz FROM c
),
d AS (
    SELECT *, coalesce(r0, CASE WHEN et_tz IS NULL AND ts_tz IS NULL THEN 'bad_timestamp' END) AS reason,
        -- A recipient array (BatchByDomain) reaches us as its JSON text; the JSON type check runs only for
        -- the rare values starting with `[`, so a string recipient that merely starts with `[` stays one.
        CASE WHEN starts_with(recipient, '[') THEN json_type(txt, '$.recipient') = 'ARRAY' ELSE false END
            AS rcpt_is_array,
        CASE WHEN type = 'Feedback'
             THEN coalesce(nullif(trim(fb_rcpt_to, ' <>'), ''), nullif(trim(fb_trace_rcpt, ' <>'), '')) END AS fb_rcpt
    FROM t
)
SELECT pos, line_no, byte_offset, rec_index, reason,
    -- the text of good records is not passed back: `extra` is taken from the input buffer directly
    CASE WHEN reason IS NOT NULL THEN txt END AS bad_txt,
    type AS raw_type,
    coalesce(et_tz, ts_tz) AS event_time,
    coalesce(ct_tz, cr_tz) AS queued_time,
    -- integer nanoseconds since the epoch, as text: the sub-microsecond digits come from the
    -- RFC 3339 text kumod writes (YYYY-MM-DDTHH:MM:SS.fffffffffZ).
    CASE WHEN et_tz IS NOT NULL
         THEN CAST(epoch_us(et_tz) AS VARCHAR)
              || CASE WHEN {_kumod_shape("event_time")} THEN substr(event_time, 27, 3)
                      WHEN event_time[20] = '.'  -- any other fraction or offset: digits 7-9 of the fraction
                      THEN substr(rpad(regexp_extract(event_time, '^.{{20}}([0-9]+)', 1), 9, '0'), 7, 3)
                      ELSE '000' END
         ELSE CAST(epoch_us(ts_tz) AS VARCHAR) || '000' END AS key_time,
    -- A Feedback record's own envelope is the FBL mailbox; the complaint is about the original message.
    CASE WHEN type = 'Feedback' THEN coalesce(nullif(trim(fb_mail_from, ' <>'), ''), sender)
         ELSE sender END AS sender,
    -- the report's recipient comes first for a Feedback record, even when its envelope is an array
    CASE WHEN fb_rcpt IS NOT NULL THEN fb_rcpt WHEN rcpt_is_array THEN NULL ELSE recipient END AS recipient,
    CASE WHEN fb_rcpt IS NULL AND rcpt_is_array THEN recipient END AS rcpt_array,
    id AS message_id,
    size AS size_bytes,
    num_attempts AS attempts,
    nodeid AS node,
    egress_pool AS pool,
    egress_source AS source,
    bounce_classification AS raw_bounce_category,
    tls_protocol_version AS tls_protocol,
    tls_cipher,
    code, ec_class, ec_subject, ec_detail,
    content AS response,
    peer_name, peer_addr, src_addr,
    coalesce({", ".join(jobs)}) AS job_id,
    queue,
    session_id
FROM d
"""


_SQL = _build_sql()

_LINES_SCHEMA = pa.schema(
    [
        ("pos", pa.int64()),
        ("line_no", pa.int64()),
        ("byte_offset", pa.int64()),
        ("rec_index", pa.int32()),
        ("txt", pa.large_string()),
    ]
)

_EVENT_COLS = list(EVENT_SCHEMA.names())
_UNIQUE_COLUMNS = frozenset(
    {"event_id", "extra", "message_id", "recipient", "event_time", "queued_time", "source_line", "size_bytes"}
)
# Arrow with string views, polars' own layout: no conversion copy before the Parquet writer.
_EVENT_ARROW_SCHEMA = pl.DataFrame(schema=EVENT_SCHEMA).to_arrow(compat_level=pl.CompatLevel.newest()).schema
_QUARANTINE_ARROW_SCHEMA = pl.DataFrame(schema=QUARANTINE_SCHEMA).to_arrow().schema


# --------------------------------------------------------------------------------------------------
# sinks
# --------------------------------------------------------------------------------------------------


class _MemorySink:
    def __init__(self) -> None:
        self._events: list[pl.DataFrame] = []
        self._quarantine: list[pl.DataFrame] = []

    def write_events(self, frame: pl.DataFrame) -> None:
        self._events.append(frame)

    def write_quarantine(self, frame: pl.DataFrame) -> None:
        self._quarantine.append(frame)

    def events(self) -> pl.DataFrame:
        return pl.concat(self._events, how="vertical") if self._events else pl.DataFrame(schema=EVENT_SCHEMA)

    def quarantine(self) -> pl.DataFrame:
        if not self._quarantine:
            return pl.DataFrame(schema=QUARANTINE_SCHEMA)
        return pl.concat(self._quarantine, how="vertical")


class _ParquetSink:
    """Streams frames into two Parquet files under temporary names; renamed into place on success.

    Encoding and compression run on a thread of their own (pyarrow releases the GIL), overlapping with the
    parsing of the next chunk; the queue is short so at most ``PENDING_WRITES`` chunks wait in memory.
    """

    def __init__(self, events_out: Path, quarantine_out: Path) -> None:
        self._targets = (events_out, quarantine_out)
        self._stack = contextlib.ExitStack()
        self._writers: list[pq.ParquetWriter] = []
        self._thread: WriterThread | None = None

    def __enter__(self) -> _ParquetSink:
        ev_tmp = self._stack.enter_context(atomic_path(self._targets[0]))
        q_tmp = self._stack.enter_context(atomic_path(self._targets[1]))
        # The raw layer's layout (as the PowerMTA ingest writes it): LZ4, statistics for the time and line
        # only; dictionary encoding only where values repeat, since it costs time for nothing elsewhere.
        self._writers = [
            pq.ParquetWriter(
                ev_tmp, _EVENT_ARROW_SCHEMA, **raw_compression(_EVENT_COLS),
                use_dictionary=[c for c in _EVENT_COLS if c not in _UNIQUE_COLUMNS],
                write_statistics=RAW_STATISTICS,
            ),
            pq.ParquetWriter(q_tmp, _QUARANTINE_ARROW_SCHEMA, compression=PARQUET_COMPRESSION),
        ]  # fmt: skip
        self._thread = WriterThread(pending=PENDING_WRITES, name="kumo-parquet-writer")
        return self

    def write_events(self, frame: pl.DataFrame) -> None:
        table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
        self._thread.put(partial(self._writers[0].write_table, table))

    def write_quarantine(self, frame: pl.DataFrame) -> None:
        table = frame.to_arrow().cast(_QUARANTINE_ARROW_SCHEMA)
        self._thread.put(partial(self._writers[1].write_table, table))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        error = self._thread.join() if self._thread is not None else None
        for w in self._writers:
            w.close()
        if exc_type is None and error is not None:  # the writer thread failed: the files are incomplete
            exc_type, exc, tb = type(error), error, error.__traceback__
            self._stack.__exit__(exc_type, exc, tb)
            raise error
        # With an exception the atomic_path contexts delete the temporary files instead of renaming them.
        return bool(self._stack.__exit__(exc_type, exc, tb))


# --------------------------------------------------------------------------------------------------
# the reader
# --------------------------------------------------------------------------------------------------


@dataclass
class _Quarantine:
    line_no: list[int | None] = field(default_factory=list)
    byte_offset: list[int | None] = field(default_factory=list)
    reason: list[str] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)
    raw_text: list[str] = field(default_factory=list)

    def add(self, line_no: int | None, byte_offset: int | None, reason: str, detail: str, raw: str) -> None:
        self.line_no.append(line_no)
        self.byte_offset.append(byte_offset)
        self.reason.append(reason)
        self.detail.append(detail)
        self.raw_text.append(raw)

    def __len__(self) -> int:
        return len(self.reason)

    def frame(self, rel_path: str) -> pl.DataFrame:
        n = len(self.reason)
        return pl.DataFrame(
            {
                "source_kind": [SOURCE_KIND] * n,
                "source_file": [rel_path] * n,
                "source_line": self.line_no,
                "byte_offset": self.byte_offset,
                "reason": self.reason,
                "detail": self.detail,
                "raw_text": self.raw_text,
            },
            schema=QUARANTINE_SCHEMA,
        )


def _text(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    return raw.rstrip("\r\n")


def _json_error(text: str) -> str:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return f"invalid JSON: {exc}"
    return "invalid JSON"


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


# numbers stay text: Python refuses to convert integers of more than 4300 digits
_STDLIB_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_int=str, parse_float=str)


def _loads(text: str | bytes) -> object:
    """Strict JSON (no NaN/Infinity, no trailing commas); numbers orjson does not take (integers wider than
    64 bits, exponents past the float range) are left as their text, so any width passes."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            return _STDLIB_DECODER.decode(text.decode() if isinstance(text, bytes) else text)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


# What DuckDB's lenient reader takes but JSON forbids: NaN/Infinity values (any case, signed) and trailing commas,
# with any JSON whitespace between. A line matching this superset (rare: `:na`/`:in` after no or some
# whitespace, or a comma before a closing bracket) is checked again by the strict parser.
_LENIENT_RE = r"(?:[:\[,][ \t\r\n]*[+-]?[nNiI][aAnN]|,[ \t\r\n]*[}\]])"


_JSON_SPACE = " \t\r\n"


def _array_elements(text: str) -> list[tuple[str, str]]:
    """Each element of the JSON array ``text`` as written, with its `extra` (see :func:`_with_record_index`):
    numbers, escapes and duplicate keys stay as they are, so an element reads exactly as the same record on
    a line of its own. Raises ValueError when ``text`` is not one strict JSON array (JSONDecodeError is a
    ValueError)."""
    n = len(text)

    def skip(i: int) -> int:
        while i < n and text[i] in _JSON_SPACE:
            i += 1
        return i

    i = skip(0)
    if i == n or text[i] != "[":
        raise ValueError("not a JSON array")
    out: list[tuple[str, str]] = []
    i = skip(i + 1)
    if i < n and text[i] == "]":
        end = i + 1
    else:
        while True:
            try:
                value, end = _STDLIB_DECODER.raw_decode(text, i)
            except RecursionError:
                raise ValueError("JSON nested too deeply") from None
            element = text[i:end]
            out.append((element, _with_record_index(element, len(out), value)))
            i = skip(end)
            if i < n and text[i] == ",":
                i = skip(i + 1)
                continue
            if i < n and text[i] == "]":
                end = i + 1
                break
            raise ValueError(f"expected ',' or ']' at character {i}")
    if skip(end) != n:
        raise ValueError(f"extra data at character {skip(end)}")
    return out


def _dumps(value: object) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        text.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate: the caller rejects the record
        return text


_THREAD_STATE = threading.local()


def _connection(threads: int) -> duckdb.DuckDBPyConnection:
    """This thread's DuckDB connection for ``threads`` threads: opening a database per file costs ~40 ms."""
    cons: dict[int, duckdb.DuckDBPyConnection] = _THREAD_STATE.__dict__.setdefault("connections", {})
    if threads not in cons:
        con = duckdb.connect(config={"threads": threads})
        con.execute("SET TimeZone = 'UTC'")
        cons[threads] = con
    return cons[threads]


class _Reader:
    def __init__(self, *, rel_path: str, stats: KumoFileStats, sink: _MemorySink | _ParquetSink,
                 threads: int | None) -> None:  # fmt: skip
        self.rel_path = rel_path
        self.stats = stats
        self.sink = sink
        self.con = _connection(threads or min(2, os.cpu_count() or 1))
        self.seen = SeenKeys()
        self._pending: list[pl.DataFrame] = []
        self.days: set[str] = set()
        self.document_end_line = 1  # the line after a whole-file document (where a broken stream resumes)

    def close(self) -> None:
        pass  # the connection stays with the thread for its next file

    # -- one batch of records (lines, array elements or a document) ------------------------------
    def records(self, table: pa.Table, extra: pl.Series, *, elements: bool = False) -> None:
        """Parse a batch of lines (or, with ``elements``, array elements), quarantine what failed, emit events
        in line order. JSON arrays are expanded one level only: an array inside an array is not a record.
        """
        ok = self._parse(table, extra, second_pass=elements)
        if ok.height:
            self._emit(ok)

    def _parse(self, table: pa.Table, extra: pl.Series, *, second_pass: bool) -> pl.DataFrame:
        """Run the SQL over the `lines` rows; quarantine failures; expand JSON arrays; return derived rows.

        ``extra`` holds the record text of input row ``pos`` (``table.pos`` indexes it).
        """
        # Several record batches let DuckDB parse them on parallel threads (it keeps their order).
        if table.num_rows >= 2 * SQL_BATCH_ROWS:
            table = pa.Table.from_batches(table.to_batches(max_chunksize=SQL_BATCH_ROWS))
        self.con.register("lines", table)
        try:
            out = pl.from_arrow(self.con.sql(_SQL).to_arrow_table())
        finally:
            self.con.unregister("lines")
        q = _Quarantine()
        assert isinstance(out, pl.DataFrame)
        out = _strict_json(out, extra)
        # The usual chunk has no bad record: then no filtering copy, and `pos` is 0..n-1.
        all_ok = out["reason"].null_count() == out.height
        ok = out if all_ok else out.filter(pl.col("reason").is_null())
        ok = ok.with_columns(extra if ok.height == len(extra) else extra.gather(ok["pos"]))
        ok_records = ok.height  # one row per record until recipient arrays fan out
        if ok["rcpt_array"].is_not_null().any():
            ok = _explode_recipients(ok)
        ok = _derive(ok)
        bad = out.clear() if all_ok else out.filter(pl.col("reason").is_not_null())
        arrays: list[tuple[int, int, str]] = []
        for line_no, off, rec_index, reason, raw in bad.select(
            "line_no", "byte_offset", "rec_index", "reason", "bad_txt"
        ).iter_rows():
            where = f"record {rec_index} of the JSON array on this line; " if rec_index is not None else ""
            if reason == "blank":
                self.stats.other_lines += 1
                self.stats.records_read -= 1
            elif reason == "array" and not second_pass:
                arrays.append((line_no, off, raw))
            elif reason in ("not_a_record", "array"):
                q.add(
                    line_no,
                    off,
                    "not_a_record",
                    where + "valid JSON but not an object with a `type`",
                    _text(raw),
                )
            elif reason == "invalid_json":
                q.add(line_no, off, "invalid_json", where + _json_error(raw), _text(raw))
            elif reason == "bad_timestamp":
                q.add(line_no, off, "bad_timestamp",
                      where + "neither event_time nor timestamp is a usable time", _text(raw))  # fmt: skip
        self.stats.records_ok += ok_records
        self.stats.fanout += ok.height - ok_records
        self._quarantine(q)
        if arrays:
            elements = self._expand_arrays(arrays)
            if elements.height:
                ok = pl.concat([ok, elements], how="vertical")
                ok = ok.sort(["line_no", "rec_index"], nulls_last=False, maintain_order=True)
        return ok

    def _expand_arrays(self, arrays: list[tuple[int, int, str]]) -> pl.DataFrame:
        rows: list[tuple[int, int, int | None, str, str]] = []
        for line_no, off, raw in arrays:
            try:
                elements = _array_elements(raw)
            except ValueError:  # DuckDB's parser is more lenient (trailing commas, NaN) than JSON
                self.quarantine_one(line_no, off, "invalid_json", _json_error(raw), _text(raw))
                continue
            if not elements:
                self.stats.other_lines += 1
                self.stats.records_read -= 1
                continue
            self.stats.records_read += len(elements) - 1
            self.stats.fanout += len(elements) - 1
            rows.extend((line_no, off, i, t, x) for i, (t, x) in enumerate(elements))
        return self._parse(*_table(rows), second_pass=True) if rows else pl.DataFrame()

    def _quarantine(self, q: _Quarantine) -> None:
        if len(q):
            self.stats.quarantined += len(q)
            self._pending.append(q.frame(self.rel_path))

    def flush_quarantine(self) -> None:
        """Write the quarantine rows collected for the current chunk, in line order."""
        if self._pending:
            frame = pl.concat(self._pending, how="vertical")
            self._pending = []
            self.sink.write_quarantine(frame.sort(["source_line", "byte_offset"], maintain_order=True))

    def quarantine_one(
        self, line_no: int | None, off: int | None, reason: str, detail: str, raw: str
    ) -> None:
        q = _Quarantine()
        q.add(line_no, off, reason, detail, raw)
        self._quarantine(q)

    def _emit(self, ok: pl.DataFrame) -> None:
        # At-least-once delivery: a record seen before in this file (same event_id) is a duplicate.
        keys = ok.select(hash_key(pl.col("_h"))).to_series().to_numpy()
        first = occurrences(keys, self.seen) == 1
        dups = ok.height - int(first.sum())
        if dups:
            ok = ok.filter(pl.Series(first))
            self.stats.duplicates += dups
        events = ok.with_columns(
            pl.col("_h").bin.encode("hex").alias("event_id"),
            pl.lit(MTA).alias("mta"),
            pl.lit(self.rel_path).alias("source_file"),
            pl.col("line_no").alias("source_line"),
        ).select(_EVENT_COLS)
        events = events.cast(EVENT_SCHEMA)  # type: ignore[arg-type]
        if events.height:
            self.stats.events += events.height
            lo, hi = events.select(
                pl.col("event_time").min().alias("lo"), pl.col("event_time").max().alias("hi")
            ).row(0)
            s = self.stats
            s.first_event_time = lo if s.first_event_time is None else min(s.first_event_time, lo)
            s.last_event_time = hi if s.last_event_time is None else max(s.last_event_time, hi)
            self.days.update(
                events.select(pl.col("event_time").dt.date().unique()).to_series().cast(pl.String)
            )
            self.sink.write_events(events)

    # -- line mode -------------------------------------------------------------------------------
    def lines(self, buf: memoryview, first_line_no: int, base_offset: int, *, unterminated_last: bool) -> int:
        """Process whole lines of ``buf`` (the last one unterminated when ``unterminated_last``).

        Returns the number of newline-terminated lines.
        """
        if not len(buf):
            return 0
        arr = np.frombuffer(buf, dtype=np.uint8)
        nl = newline_positions(arr)
        n = len(nl) + (1 if unterminated_last else 0)
        starts = np.empty(n + 1, dtype=np.int64)
        starts[0] = 0
        starts[1 : len(nl) + 1] = nl + 1
        starts[n] = len(buf)
        line_nos = np.arange(first_line_no, first_line_no + n, dtype=np.int64)
        offsets = starts[:-1] + base_offset
        if base_offset == 0 and bytes(buf[: len(UTF8_BOM)]) == UTF8_BOM:
            starts[0] = len(UTF8_BOM)  # the BOM stays out of the record text, the offset still says 0
        self.stats.lines_read += n
        self.stats.records_read += n
        txt = pa.LargeStringArray.from_buffers(n, pa.py_buffer(starts), pa.py_buffer(buf))
        try:
            txt.validate(full=True)
            keep = None
        except pa.ArrowInvalid:
            keep = self._invalid_utf8(buf, starts, line_nos, offsets)
        # Arrays built from buffers: pa.array()/pa.table() on numpy would import pandas (~0.5 s per process).
        pos = np.arange(n, dtype=np.int64)
        table = pa.Table.from_arrays(
            [_int64_array(pos), _int64_array(line_nos), _int64_array(offsets), pa.nulls(n, pa.int32()), txt],
            schema=_LINES_SCHEMA,
        )
        if keep is not None:
            table = table.take(_int64_array(np.flatnonzero(keep).astype(np.int64)))
        extra = _line_views(buf, arr, starts, txt)
        # the unterminated last line may already be quarantined as invalid UTF-8: then only whole lines remain
        if unterminated_last and table.num_rows and table.column("pos")[-1].as_py() == n - 1:
            self._last_line_check(table, extra)
        else:
            self.records(table, extra)
        self.flush_quarantine()
        return len(nl)

    def _last_line_check(self, table: pa.Table, extra: pl.Series) -> None:
        # An unterminated last line that is valid JSON is an ordinary record (files written by hand often
        # lack the final newline); one that does not parse is an incomplete record, not broken JSON.
        body, last = table.slice(0, table.num_rows - 1), table.slice(table.num_rows - 1)
        if body.num_rows:
            self.records(body, extra)
        if not last.num_rows:
            return
        raw = last.column("txt")[0].as_py()
        if raw.strip() and not _valid_json(raw):
            self.quarantine_one(
                last.column("line_no")[0].as_py(), last.column("byte_offset")[0].as_py(), "incomplete_record",
                "last line has no terminating newline and is not complete JSON", _text(raw),
            )  # fmt: skip
        else:
            self.records(last, extra)

    def _invalid_utf8(
        self, buf: memoryview, starts: np.ndarray, line_nos: np.ndarray, offsets: np.ndarray
    ) -> list[bool]:
        keep: list[bool] = []
        q = _Quarantine()
        for i in range(len(starts) - 1):
            raw = bytes(buf[starts[i] : starts[i + 1]])
            try:
                raw.decode("utf-8")
                keep.append(True)
            except UnicodeDecodeError as exc:
                keep.append(False)
                q.add(int(line_nos[i]), int(offsets[i]), "invalid_utf8", f"not UTF-8: {exc.reason} at byte "
                      f"{exc.start} of the line", _text(raw))  # fmt: skip
        self._quarantine(q)
        return keep


def _strict_json(out: pl.DataFrame, extra: pl.Series) -> pl.DataFrame:
    """``out`` with the records DuckDB accepted but strict JSON refuses marked `invalid_json`."""
    marked = extra.str.contains(_LENIENT_RE).fill_null(False)
    if not marked.any():
        return out
    idx = marked.arg_true()
    bad = {
        p: t for p, t in zip(idx.to_list(), extra.gather(idx).to_list(), strict=True) if not _valid_json(t)
    }
    if not bad:
        return out
    hit = pl.col("pos").is_in(list(bad)) & pl.col("reason").is_null()
    return out.with_columns(
        reason=pl.when(hit).then(pl.lit("invalid_json")).otherwise(pl.col("reason")),
        bad_txt=pl.when(hit)
        .then(
            pl.col("pos").replace_strict(list(bad), list(bad.values()), default=None, return_dtype=pl.String)
        )
        .otherwise(pl.col("bad_txt")),
    )


def _valid_json(text: str) -> bool:
    try:
        _loads(text)
    except ValueError:
        return False
    return True


def _int64_array(values: np.ndarray) -> pa.Array:
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def _table(rows: list[tuple[int, int, int | None, str, str]]) -> tuple[pa.Table, pl.Series]:
    """Input rows (line, offset, index in the array, text, `extra`) for records that are not plain lines
    (array elements, a whole-file document)."""
    line_no, off, idx, txt, extra = zip(*rows, strict=True)
    frame = pl.DataFrame(
        {"pos": range(len(rows)), "line_no": line_no, "byte_offset": off, "rec_index": idx, "txt": txt},
        schema={"pos": pl.Int64, "line_no": pl.Int64, "byte_offset": pl.Int64, "rec_index": pl.Int32,
                "txt": pl.String},
    )  # fmt: skip
    return frame.to_arrow().cast(_LINES_SCHEMA), pl.Series("extra", extra, dtype=pl.String)


def _with_record_index(text: str, index: int, value: object) -> str:
    """An element's `extra`: its text with its position in the array as the first key, ``record_index``, or
    the first free ``record_index#n`` when the element (``value``, decoded) has a key of that name itself
    (it keeps its own value)."""
    if not isinstance(value, dict):
        return text  # not an object: quarantined as not_a_record, with its text as it was
    key, n = "record_index", 1
    while key in value:
        n += 1
        key = f"record_index#{n}"
    body = text[1:]
    sep = "" if body.lstrip(_JSON_SPACE).startswith("}") else ","
    return f'{{"{key}":{index}{sep}' + body


def _line_views(buf: memoryview, arr: np.ndarray, starts: np.ndarray, txt: pa.Array) -> pl.Series:
    """Each line's text without its line end, as string views into ``buf`` (no copy of the text).

    Arrow's view layout (16 bytes a string, little-endian): length, then up to 12 bytes inline for short
    strings, else a 4-byte prefix, buffer index 0 and the 32-bit offset into ``buf``.
    """
    if len(arr) > np.iinfo(np.int32).max:  # a chunk grown past 2 GiB by one enormous line: copy instead
        return pl.Series("extra", txt).str.strip_chars_end("\r\n")
    n = len(starts) - 1
    ends = starts[1:].copy()
    nonempty = ends > starts[:-1]
    ends[nonempty & (arr[np.maximum(ends - 1, 0)] == 10)] -= 1
    nonempty = ends > starts[:-1]
    ends[nonempty & (arr[np.maximum(ends - 1, 0)] == 13)] -= 1
    begins = starts[:-1]
    lengths = (ends - begins).astype("<i4")
    views = np.zeros((n, 16), dtype=np.uint8)
    views[:, 0:4] = lengths.view(np.uint8).reshape(n, 4)
    long_ = lengths > 12
    lb = begins[long_]
    views[long_, 4:8] = arr[lb[:, None] + np.arange(4)]
    views[long_, 12:16] = lb.astype("<i4").view(np.uint8).reshape(-1, 4)
    short = ~long_
    if short.any():
        idx = begins[short][:, None] + np.arange(12)
        inside = np.arange(12) < lengths[short][:, None]
        views[short, 4:16] = np.where(inside, arr[np.minimum(idx, len(arr) - 1)], 0)
    array = pa.Array.from_buffers(pa.string_view(), n, [None, pa.py_buffer(views), pa.py_buffer(buf)])
    return pl.Series("extra", array)


# --------------------------------------------------------------------------------------------------
# recipient arrays and the event id
# --------------------------------------------------------------------------------------------------

# The event_id key, in order (see kumo_mapping.md): the record's identity, not its file or line, so the same
# record hashes the same from a segment and from a webhook capture (whose meta/headers may differ).
EVENT_ID_KEY: tuple[str, ...] = (
    "raw_type", "message_id", "key_time", "recipient", "attempts", "node", "session_id", "sender", "peer_addr",
)  # fmt: skip
KEY_SEPARATOR = "\x1f"


def _key_text() -> pl.Expr:
    parts = [pl.col(k).cast(pl.String).fill_null("") for k in EVENT_ID_KEY]
    return pl.concat_str(parts, separator=KEY_SEPARATOR)


def kumo_event_id(
    *,
    raw_type: str,
    message_id: str | None,
    key_time: str,
    recipient: str | None,
    attempts: int | None,
    node: str | None,
    session_id: str | None,
    sender: str | None,
    peer_addr: str | None,
) -> str:
    """The event_id of one KumoMTA event, for tests and tools.

    ``key_time`` is the event time as integer nanoseconds since the Unix epoch, in decimal.
    """
    parts = [raw_type, message_id or "", key_time, recipient or "", "" if attempts is None else str(attempts),
             node or "", session_id or "", sender or "", peer_addr or ""]  # fmt: skip
    return event_id_of(MTA, KEY_SEPARATOR.join(parts))


def _recipients(text: str) -> list[str | None]:
    try:
        values = _loads(text)
        if not isinstance(values, list) or not values:
            return [None]
        return [v if isinstance(v, str) or v is None else _dumps(v) for v in values]
    except (ValueError, RecursionError):  # nested too deeply to take apart: the record keeps it in `extra`
        return [None]


def _explode_recipients(ok: pl.DataFrame) -> pl.DataFrame:
    """One row per element of a recipient array (rare: BatchByDomain), each with its own event_id; the
    other rows as they are, in order."""
    arrays = ok["rcpt_array"].is_not_null().arg_true()
    lists = [_recipients(text) for text in ok["rcpt_array"].gather(arrays).to_list()]
    sizes = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    at = arrays.to_numpy()
    counts = np.ones(ok.height, dtype=np.int64)
    counts[at] = sizes
    out = ok.gather(pl.Series(np.repeat(np.arange(ok.height, dtype=np.int64), counts)))
    # where each array's elements land: its row's first copy, then the next ones
    first = np.cumsum(counts) - counts
    slots = np.repeat(first[at], sizes) + (
        np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    )
    elements = pl.Series([r for x in lists for r in x], dtype=pl.String)
    return out.with_columns(out["recipient"].scatter(slots, elements))


# --------------------------------------------------------------------------------------------------
# columns derived in polars from the SQL output (vectorised string work is much cheaper here)
# --------------------------------------------------------------------------------------------------


def _nonempty(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr != "").then(expr)


def _domain_of(address: pl.Expr) -> pl.Expr:
    """``common.domain_of``, with the normalisation run once per distinct domain (a few per chunk)."""
    raw = pl.when(address.str.contains("@", literal=True)).then(address.str.split("@").list.last())
    return raw.map_batches(_normalise_distinct, return_dtype=pl.String)


def _normalise_distinct(raw: pl.Series) -> pl.Series:
    distinct = raw.unique().drop_nulls()
    normalised = pl.select(normalise_domain(pl.lit(distinct))).to_series()
    return raw.replace_strict(distinct, normalised, default=None, return_dtype=pl.String)


def _derive(out: pl.DataFrame) -> pl.DataFrame:
    c, v = pl.col, pl.col("v")
    inbound = c("raw_type").is_in(list(INBOUND_TYPES))
    # Addresses, queues and peers repeat a few values per chunk: each is parsed once per distinct value.
    source = per_distinct(
        out["src_addr"],
        source_ip=_nonempty(
            pl.when(v.str.starts_with("["))
            .then(v.str.extract(r"^\[([^\]]*)\]", 1))
            .when(v.str.count_matches(":", literal=True) == 1)
            .then(v.str.split(":").list.first())
            .otherwise(v)
        ),
    )
    # KumoMTA splits a queue name at the first `@`, then the part before it at the first `:`.
    at = v.str.splitn("@", 2)
    prefix = pl.when(at.struct.field("field_1").is_not_null()).then(at.struct.field("field_0"))
    colon = prefix.str.splitn(":", 2)
    has_colon = colon.struct.field("field_1").is_not_null()
    queue = per_distinct(
        out["queue"],
        campaign=pl.when(has_colon).then(_nonempty(colon.struct.field("field_0"))),
        tenant=_nonempty(pl.when(has_colon).then(colon.struct.field("field_1")).otherwise(prefix)),
    )
    peer = per_distinct(out["peer_name"], mx_host=_nonempty(v.str.to_lowercase().str.strip_chars_end(".")))
    return out.with_columns(
        event_type=c("raw_type").replace_strict(KUMO_RECORD_TYPES, default="other", return_dtype=pl.String),
        sender_domain=per_distinct(out["sender"], d=_domain_of(v))["d"],
        recipient_domain=per_distinct(out["recipient"], d=_domain_of(v))["d"],
        _h=event_hash(MTA, _key_text()),
        source_ip=source["source_ip"],
        mx_host=pl.when(~inbound).then(pl.lit(peer["mx_host"])),
        mx_ip=pl.when(~inbound).then(_nonempty(c("peer_addr"))),
        smtp_code=c("code").cast(pl.Int16, strict=False),
        enhanced_status=pl.concat_str(
            [c("ec_class"), pl.lit("."), c("ec_subject"), pl.lit("."), c("ec_detail")]
        ),
        campaign=queue["campaign"],
        tenant=queue["tenant"],
    )


# --------------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------------


def _ingest_job(job: KumoFileJob, include_open: bool, chunk_bytes: int, threads: int | None) -> KumoFileStats:
    return ingest_kumo_file(
        job.path, rel_path=job.rel_path, kind=job.kind, events_out=job.events_out,
        include_open=include_open if job.include_open is None else job.include_open,
        quarantine_out=job.quarantine_out, chunk_bytes=chunk_bytes, threads=threads,
    )  # fmt: skip


def _run(path: Path, *, rel_path: str, kind: KumoKind | None, include_open: bool,
         sink: _MemorySink | _ParquetSink, chunk_bytes: int, threads: int | None) -> KumoFileStats:  # fmt: skip
    kind = kind or classify_kumo_path(rel_path)
    stats = KumoFileStats(source_file=rel_path, kind=kind)
    stats.open_segment = kind == "segment" and is_open_segment(path)
    if stats.open_segment and not include_open:
        stats.skipped_open = True
        return stats
    reader = _Reader(rel_path=rel_path, stats=stats, sink=sink, threads=threads)
    try:
        with open(path, "rb") as fh:
            end = _StreamEnd()
            pieces = _open_pieces(fh, end)
            if kind != "segment":
                pieces = _document_or_lines(pieces, reader)
            if pieces is not None:
                _line_mode(pieces, end, reader, chunk_bytes=chunk_bytes, open_segment=stats.open_segment)
            elif end.status != "complete":  # a whole-file document parsed, but the stream broke off after it
                _stream_damage(
                    reader, end, line_no=reader.document_end_line, offset=stats.decompressed_bytes, tail=b""
                )
            reader.flush_quarantine()
    finally:
        reader.close()
    stats.days = sorted(reader.days)
    return stats


def _line_mode(pieces: Iterable[bytes], end: _StreamEnd, reader: _Reader, *, chunk_bytes: int,
               open_segment: bool) -> None:  # fmt: skip
    stats = reader.stats
    line_no, offset = 1, 0
    data, cut = b"", 0
    # Decompression and chunking run one chunk ahead on their own thread (zstd releases the GIL).
    with contextlib.closing(prefetched(_chunks(pieces, chunk_bytes), name="kumo-decompress")) as chunks:
        for data, cut, final in chunks:
            raise_if_stopping()  # a worker told to stop (SIGTERM) unwinds here
            if cut:
                n = reader.lines(memoryview(data)[:cut], line_no, offset, unterminated_last=False)
                line_no, offset = line_no + n, offset + cut
            if final:
                stats.decompressed_bytes += offset + len(data) - cut
    tail = data[cut:]
    if open_segment and end.status == "truncated":
        # An open segment ends inside its current frame by nature; that is not damage.
        _partial_tail(stats, tail)
        return
    if end.status != "complete":
        _stream_damage(reader, end, line_no=line_no, offset=offset, tail=tail)
        return
    if open_segment:
        _partial_tail(stats, tail)
        return
    if tail:
        reader.lines(memoryview(tail), line_no, offset, unterminated_last=True)


def _stream_damage(reader: _Reader, end: _StreamEnd, *, line_no: int, offset: int, tail: bytes) -> None:
    """The quarantine row (and counts) of a stream that broke off at ``offset``, ``tail`` being what was
    decompressed of its unfinished line."""
    stats = reader.stats
    stats.truncated = True
    stats.lines_read += 1
    stats.records_read += 1
    reader.quarantine_one(
        line_no, offset, "truncated_stream",
        f"{end.detail}; records from this line on are lost ({offset + len(tail)} bytes decompressed)",
        _text(tail),
    )  # fmt: skip


def _chunks(pieces: Iterable[bytes], chunk_bytes: int) -> Iterator[tuple[bytes, int, bool]]:
    """The stream in chunks of about ``chunk_bytes``: ``(data, cut, final)`` where ``data[:cut]`` are whole
    lines; the rest of a chunk starts the next one, the rest of the ``final`` one is the unterminated tail.
    """
    held: list[bytes] = []  # decompressed pieces not yet handed out
    held_bytes = 0
    for piece in pieces:
        held.append(piece)
        held_bytes += len(piece)
        if held_bytes < chunk_bytes or piece.rfind(b"\n") < 0:
            continue
        data = b"".join(held)
        cut = data.rfind(b"\n") + 1
        yield data, cut, False
        rest = data[cut:]
        held, held_bytes = ([rest], len(rest)) if rest else ([], 0)
    data = b"".join(held)
    yield data, data.rfind(b"\n") + 1, True


def _partial_tail(stats: KumoFileStats, tail: bytes) -> None:
    # Left for the read of the closed segment, which replaces this file's rows wholesale; quarantining it
    # now would leave a stale quarantine row behind after that read.
    if tail:
        stats.lines_read += 1
        stats.other_lines += 1
        stats.partial_tail_bytes = len(tail)


def _document_or_lines(pieces: Iterator[bytes], reader: _Reader) -> Iterator[bytes] | None:
    """For JSONL/webhook files: detect a file that is one pretty-printed JSON document.

    The file is line-oriented when its first non-blank line parses by itself. Otherwise the whole file is
    tried as one JSON document (an array of records, or a single record); if that fails too the file is
    read line by line after all, so every broken line is quarantined.
    """
    head = bytearray()
    for piece in pieces:
        head += piece
        first = _first_nonblank_line(head)
        if first is not None:
            break
    else:
        first = _first_nonblank_line(head, final=True)
    if first is None or _valid_json(first.removeprefix(UTF8_BOM)):
        return _chain(bytes(head), pieces)
    for piece in pieces:
        head += piece
        if len(head) > DOCUMENT_LIMIT:
            return _chain(bytes(head), pieces)
    data = bytes(head)
    try:
        text = (data[len(UTF8_BOM) :] if data.startswith(UTF8_BOM) else data).decode("utf-8")
        body = text.strip(_JSON_SPACE)
        if body.startswith("["):
            doc: list[tuple[str, str]] | str = _array_elements(body)
        else:
            _loads(body)  # one record, or not JSON at all
            doc = body
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return _chain(data, iter(()))
    _document(reader, data, doc)
    return None


def _chain(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def _first_nonblank_line(buf: bytearray, *, final: bool = False) -> bytes | None:
    pos = 0
    while True:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            rest = bytes(buf[pos:])
            return rest if final and rest.strip() else None
        line = bytes(buf[pos:nl])
        if line.strip():
            return line
        pos = nl + 1


def _document(reader: _Reader, data: bytes, doc: list[tuple[str, str]] | str) -> None:
    """Records of a whole-file JSON document: ``doc`` is its elements (an array, see :func:`_array_elements`)
    or its own text."""
    stats = reader.stats
    stats.document_mode = True
    stats.decompressed_bytes = len(data)
    reader.document_end_line = data.count(b"\n") + 1
    stats.lines_read = 1
    stripped = data.lstrip(b" \t\r\n\xef\xbb\xbf")
    start = len(data) - len(stripped)
    line_no = data.count(b"\n", 0, start) + 1
    if isinstance(doc, list):
        if not doc:
            stats.other_lines += 1
            return
        stats.records_read += len(doc)
        stats.fanout += len(doc) - 1
        reader.records(*_table([(line_no, start, i, t, x) for i, (t, x) in enumerate(doc)]), elements=True)
    else:
        stats.records_read += 1
        reader.records(*_table([(line_no, start, None, doc, doc)]))


__all__ = [
    "EVENT_ID_KEY",
    "INBOUND_TYPES",
    "KumoFileJob",
    "KumoFileStats",
    "KumoKind",
    "classify_kumo_path",
    "ingest_kumo_file",
    "ingest_kumo_files",
    "ingest_kumo_files_reporting",
    "is_open_segment",
    "kumo_event_id",
    "parse_kumo_file",
]
