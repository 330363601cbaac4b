"""Deterministic byte output for the simulator: string columns to bytes, gzip/zstd, fixed file metadata."""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import zstandard

READ_ONLY = 0o444
WRITABLE = 0o644
FLUSH_BYTES = 128 * 1024  # zstd's own block size: flushing there costs nothing
ZSTD_LEVEL = 1  # the estate's kumod runs configure_local_logs{compression_level = 1}


def string_bytes(lines: pl.Series) -> list[memoryview]:
    """The UTF-8 bytes of a string column, concatenated, as zero-copy views where possible.

    Lines built by ``concat_str`` sit back to back in the Arrow string-view data buffers; reading those
    buffers avoids materialising one huge Python string. Anything else (short strings inlined in the
    views, gaps, nulls) falls back to a copying path that gives the same bytes.
    """
    if len(lines) == 0:
        return []
    arr = lines.to_arrow(compat_level=pl.CompatLevel.newest())
    if isinstance(arr, pa.ChunkedArray) or arr.type != pa.string_view() or arr.null_count:
        return [_fallback(lines)]
    bufs = arr.buffers()
    views = np.frombuffer(bufs[1], dtype=np.int32).reshape(-1, 4)[arr.offset : arr.offset + len(arr)]
    lens = views[:, 0]
    if (lens <= 12).any():
        return [_fallback(lines)]
    bidx = views[:, 2]
    offs = views[:, 3]
    same = bidx[1:] == bidx[:-1]
    if not np.all(np.where(same, offs[1:] == offs[:-1] + lens[:-1], True)):
        return [_fallback(lines)]
    breaks = np.flatnonzero(~same) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(lens)]])
    out = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        buf = bufs[2 + int(bidx[a])]
        out.append(memoryview(buf)[int(offs[a]) : int(offs[b - 1]) + int(lens[b - 1])])
    return out


def _fallback(lines: pl.Series) -> memoryview:
    bio = io.BytesIO()
    pl.DataFrame({"l": lines.fill_null("")}).write_csv(
        bio, include_header=False, quote_style="never", line_terminator=""
    )
    return memoryview(bio.getvalue())


class Output:
    """One landing/truth file written in pieces, then given fixed permissions and mtime."""

    def __init__(self, path: Path, *, compress: str = "none", mtime: int, mode: int = READ_ONLY) -> None:
        self.path = path
        self.mtime = mtime
        self.mode = mode
        self.compress = compress
        path.parent.mkdir(parents=True, exist_ok=True)
        self._raw = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._fh: io.RawIOBase | gzip.GzipFile | zstandard.ZstdCompressionWriter
        if compress == "gzip":
            self._fh = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6)
        elif compress == "zstd":
            cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=False, write_checksum=False)
            self._fh = cctx.stream_writer(self._raw, closefd=False)
        else:
            self._fh = self._raw
        self.raw_bytes = 0

    def write(self, data: bytes | memoryview | Iterable[bytes | memoryview]) -> None:
        if isinstance(data, bytes | bytearray | memoryview):
            data = [data]
        for piece in data:
            self._fh.write(piece)
            self.raw_bytes += len(piece)

    def close(self) -> None:
        if self._fh is not self._raw:
            self._fh.close()
        self._raw.close()
        finish(self.path, mtime=self.mtime, mode=self.mode)


def finish(path: Path, *, mtime: int, mode: int = READ_ONLY) -> None:
    os.utime(path, (mtime, mtime))
    os.chmod(path, mode)


def write_file(path: Path, data: bytes | str, *, mtime: int, mode: int = READ_ONLY) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    finish(path, mtime=mtime, mode=mode)


def zstd_bytes(data: bytes | Iterable[bytes | memoryview], flush_bytes: int = FLUSH_BYTES) -> bytes:
    """A complete zstd frame for ``data`` written the way a streaming log writer does."""
    bio = io.BytesIO()
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=False, write_checksum=False)
    with cctx.stream_writer(bio, closefd=False) as w:
        if isinstance(data, bytes | bytearray | memoryview):
            data = [data]
        # a log writer flushes as it goes: a block per `flush_bytes` of input, so a cut stream
        # still decodes up to the last complete block
        for piece in data:
            view = memoryview(piece)
            for start in range(0, len(view), flush_bytes):
                w.write(view[start : start + flush_bytes])
                w.flush(zstandard.FLUSH_BLOCK)
    return bio.getvalue()


def fix_tree_mtimes(root: Path, mtime: int) -> None:
    """Give every directory under ``root`` (inclusive) the same mtime, deepest first."""
    dirs = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for d in [*dirs, root]:
        os.utime(d, (mtime, mtime))
