"""Helpers shared by the PowerMTA and KumoMTA ingests: domain normalisation and event ids.

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

import idna
import numpy as np
import polars as pl
import polars_hash  # noqa: F401  (registers the stable `nchash` expression namespace)

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


class SeenKeys:
    """Set of 64-bit keys seen so far in one file, for counting repeated records across batches.

    A bitmap over the low ``BITMAP_BITS`` bits of the key answers "certainly not seen" for almost every
    key at the cost of one memory access; the few possible hits are checked exactly against sorted
    arrays, merged like a binary counter (8 bytes a key, O(batch log total) to add a batch).
    ``counts`` holds the number of copies of the keys seen more than once.
    """

    BITMAP_BITS = 28  # 32 MiB; about 2 % false candidates at 5 million keys

    def __init__(self) -> None:
        self._bitmap: np.ndarray | None = None
        self._levels: list[np.ndarray] = []
        self.counts: dict[int, int] = {}

    def _slots(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        low = keys & np.uint64((1 << self.BITMAP_BITS) - 1)
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

    def add(self, unique_sorted_keys: np.ndarray) -> None:
        if self._bitmap is None:
            self._bitmap = np.zeros(1 << (self.BITMAP_BITS - 3), dtype=np.uint8)
        low = np.sort(unique_sorted_keys & np.uint64((1 << self.BITMAP_BITS) - 1))
        byte = (low >> np.uint64(3)).astype(np.int64)
        bit = np.uint8(1) << (low & np.uint64(7)).astype(np.uint8)
        starts = np.flatnonzero(np.r_[True, byte[1:] != byte[:-1]])
        self._bitmap[byte[starts]] |= np.bitwise_or.reduceat(bit, starts)
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
