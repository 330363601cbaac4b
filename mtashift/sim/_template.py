"""Line templates for the renderers: build millions of log lines with few string operations.

Most of a log line is a function of a handful of small integer keys (record type, pool, VMTA,
MX, reply...). A template is a sequence of items: literal text, :class:`Low` (text computed in
Python from key values) and :class:`Var` (a per-row string column: times, addresses, ids).
Consecutive literal/Low items are fused into one *run*; a run's text is rendered once per distinct
key combination present in the chunk and gathered per row (a gather of string views is cheap).
A line is then one ``concat_str`` over a few runs and variables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

K = dict[str, int]


@dataclass(frozen=True)
class Low:
    fn: Callable[[K], str]
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Var:
    name: str


Item = str | Low | Var


def hex_words(values: np.ndarray, salt: int, words: int = 1) -> np.ndarray:
    """(n, 16*words) uint8 matrix of lower-case hex digits derived from ``values``."""
    from mtashift.sim.model import mix64

    v = np.asarray(values, dtype=np.uint64)
    mat = np.stack([mix64(v, salt + 0x51ED * w) for w in range(words)], axis=1).astype(">u8")
    text = mat.tobytes().hex().encode("ascii")
    return np.frombuffer(text, dtype=np.uint8).reshape(len(v), 16 * words)


def chars_to_series(mat: np.ndarray) -> pl.Series:
    """A fixed-width ASCII character matrix as a polars String column."""
    if len(mat) == 0:
        return pl.Series([], dtype=pl.String)
    arr = np.ascontiguousarray(mat).view(f"S{mat.shape[1]}").reshape(-1)
    return pl.Series(arr).cast(pl.String)


def uuid_series(values: np.ndarray, salt: int) -> pl.Series:
    """Version-4-shaped UUID strings derived from ``values``."""
    h = hex_words(values, salt, words=2)
    n = len(h)
    dash = np.full((n, 1), ord("-"), dtype=np.uint8)
    four = np.full((n, 1), ord("4"), dtype=np.uint8)
    var = np.full((n, 1), ord("a"), dtype=np.uint8)
    out = np.concatenate(
        [h[:, 0:8], dash, h[:, 8:12], dash, four, h[:, 13:16], dash, var, h[:, 17:20], dash, h[:, 20:32]],
        axis=1,
    )
    return chars_to_series(out)


class Template:
    """A compiled template: runs of key-dependent text between per-row variables."""

    def __init__(self, items: Sequence[Item], sizes: dict[str, int]) -> None:
        self.sizes = sizes
        self.pieces: list[tuple[str, object]] = []  # ("run", (fns, keys)) | ("var", name)
        run: list[Low] = []
        for item in items:
            if isinstance(item, Var):
                if run:
                    self.pieces.append(("run", self._fuse(run)))
                    run = []
                self.pieces.append(("var", item.name))
            else:
                run.append(item if isinstance(item, Low) else Low(lambda _k, s=item: s, ()))
        if run:
            self.pieces.append(("run", self._fuse(run)))
        self.cache: list[dict[int, str]] = [{} for _ in self.pieces]

    def _fuse(self, run: list[Low]) -> tuple[list[Callable[[K], str]], tuple[str, ...]]:
        keys = tuple(sorted({k for low in run for k in low.keys}))
        return [low.fn for low in run], keys

    def render(self, n: int, keys: dict[str, np.ndarray], variables: dict[str, pl.Series]) -> pl.Series:
        # one de-duplication over every key the runs use ("profiles"), then each run is rendered per
        # distinct value of its own keys among the profiles and gathered back to rows
        names = sorted({k for kind, spec in self.pieces if kind == "run" for k in spec[1]})  # type: ignore[index]
        combo = np.zeros(n, dtype=np.int64)
        product = 1
        for name in names:
            combo = combo * self.sizes[name] + keys[name].astype(np.int64)
            product *= self.sizes[name]
        if product >= 1 << 62:
            raise ValueError("template keys too large to combine")
        profiles, inverse = np.unique(combo, return_inverse=True)
        decoded: dict[str, np.ndarray] = {}
        rest = profiles.copy()
        for name in reversed(names):
            rest, decoded[name] = np.divmod(rest, self.sizes[name])
        cols: dict[str, pl.Series] = {}
        exprs: list[pl.Expr] = []
        for i, (kind, spec) in enumerate(self.pieces):
            if kind == "var":
                cols[f"p{i}"] = variables[spec]  # type: ignore[index]
                exprs.append(pl.col(f"p{i}"))
                continue
            fns, run_names = spec  # type: ignore[misc]
            if not run_names:
                exprs.append(pl.lit("".join(fn({}) for fn in fns)))
                continue
            cols[f"p{i}"] = self._run_column(i, fns, run_names, decoded).gather(inverse)
            exprs.append(pl.col(f"p{i}"))
        frame = pl.DataFrame(cols) if cols else pl.DataFrame({"_": np.zeros(n, dtype=np.int8)})
        return frame.select(pl.concat_str(exprs).alias("line"))["line"]

    def _run_column(self, i: int, fns, names: tuple[str, ...], decoded: dict[str, np.ndarray]) -> pl.Series:
        """The run's text for each profile."""
        sub = np.zeros(len(next(iter(decoded.values()))), dtype=np.int64)
        for name in names:
            sub = sub * self.sizes[name] + decoded[name]
        values, inv = np.unique(sub, return_inverse=True)
        cache = self.cache[i]
        texts = []
        for value in values.tolist():
            text = cache.get(value)
            if text is None:
                key: K = {}
                rest = value
                for name in reversed(names):
                    rest, key[name] = divmod(rest, self.sizes[name])
                text = "".join(fn(key) for fn in fns)
                cache[value] = text
            texts.append(text)
        return pl.Series(texts, dtype=pl.String).gather(inv)


class TimeTable:
    """Formatted time text for every second of a period: formatting becomes a gather per row."""

    def __init__(self, t0_s: int, t1_s: int, fmt: str, tz: str | None = None) -> None:
        self.t0 = t0_s
        secs = pl.DataFrame({"s": np.arange(t0_s, t1_s + 1, dtype=np.int64)})
        dt = pl.from_epoch("s", time_unit="s")
        if tz is not None:
            dt = dt.dt.replace_time_zone("UTC").dt.convert_time_zone(tz)
        self.table = secs.select(dt.dt.strftime(fmt))["s"]
        self.padded = pl.concat([self.table, pl.Series([""], dtype=pl.String)])  # last index = ""

    def __call__(self, t_s: np.ndarray) -> pl.Series:
        return self.table.gather(np.asarray(t_s, dtype=np.int64) - self.t0)
