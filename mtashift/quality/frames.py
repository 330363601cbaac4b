"""polars -> pandas for Great Expectations: only the columns a suite reads, in dtypes GX is fast on.

GX's pandas engine runs some metrics element by element unless the column dtype is one it
vectorises; the choices below are the ones it does (measured in bench/bench_quality.py):

- strings -> ``string[pyarrow]`` (zero-copy from Arrow; ``isin``/``duplicated`` run in Arrow);
- timestamps with a zone -> numpy-backed ``datetime64[us, UTC]`` (``between`` on an Arrow-backed
  timestamp, or a naive ``datetime64[us]``, falls back to a Python loop per value);
- integers -> ``int64``, or ``float64`` when the column has nulls; floats -> ``float64``;
- dates -> midnight UTC of the date, so the same day parameters bound them;
- booleans -> numpy ``bool``, or ``boolean`` (nullable) when the column has nulls.

Two narrower forms, chosen by the validator from how a suite uses a column:

- ``categorical``: low-cardinality strings that are only tested for membership, nullness or used
  in row conditions (mta, event_type, raw_type, node) -> pandas ``category``: GX filters the
  batch frame several times per conditional expectation, and a categorical column is filtered
  as small integer codes instead of copying strings;
- ``null_only``: columns only tested for nulls -> ``float64`` that is NaN where the value is null
  and 0 elsewhere. The values themselves are never looked at by those expectations; examples are
  taken from the polars frame by row number, so reports still show the real rows;
- ``hashed``: columns only tested for nullness and uniqueness (event_id) -> nullable ``UInt64``
  of the value's 64-bit hash: equal values have equal hashes, so a pass is exact; a failure may
  be a hash collision, and the validator then re-runs those expectations on the real values.

Column types are checked separately, on a zero-row frame carrying the table's real schema
(:func:`schema_frame`), so nothing above weakens the type contract.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import polars as pl

UTC_TS = pl.Datetime("us", "UTC")


def schema_frame(schema: pl.Schema) -> pd.DataFrame:
    """A zero-row pandas frame with the table's columns and Arrow-backed dtypes (type checks only)."""
    return pl.DataFrame(schema=schema).to_pandas(use_pyarrow_extension_array=True)


def pandas_dtype_names(schema: pl.Schema) -> dict[str, str]:
    """column -> pandas dtype name of :func:`schema_frame` (what ExpectColumnTypeToBe compares)."""
    return {name: str(dtype) for name, dtype in schema_frame(schema).dtypes.items()}


def _series(s: pl.Series) -> pd.Series:
    dtype = s.dtype
    if dtype == pl.String:
        return s.to_pandas(use_pyarrow_extension_array=True).astype(pd.StringDtype("pyarrow"))
    if isinstance(dtype, pl.Datetime):
        tz = dtype.time_zone or "UTC"
        return s.dt.replace_time_zone(tz).dt.convert_time_zone("UTC").to_pandas()
    if dtype == pl.Date:
        return s.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").to_pandas()
    if dtype.is_integer():
        return (s.cast(pl.Float64) if s.null_count() else s.cast(pl.Int64)).to_pandas()
    if dtype.is_float():
        return s.cast(pl.Float64).to_pandas()
    if dtype == pl.Boolean:
        return s.to_pandas().astype("boolean") if s.null_count() else s.to_pandas()
    # Nested and other types are not read by row-level expectations; keep them Arrow-backed.
    return s.to_pandas(use_pyarrow_extension_array=True)


def _null_mask(s: pl.Series) -> pd.Series:
    return pd.Series(np.where(s.is_null().to_numpy(), np.nan, 0.0))


def _categorical(s: pl.Series) -> pd.Series:
    if s.dtype != pl.String:
        return _series(s)
    return s.cast(pl.Categorical()).to_pandas()


def _hashed(s: pl.Series) -> pd.Series:
    values = s.hash(seed=0).to_numpy()
    return pd.Series(pd.arrays.IntegerArray(values, s.is_null().to_numpy()))


def to_pandas(
    frame: pl.DataFrame,
    columns: Iterable[str],
    *,
    null_only: Iterable[str] = (),
    categorical: Iterable[str] = (),
    hashed: Iterable[str] = (),
) -> pd.DataFrame:
    """The named columns of ``frame`` as a pandas frame (RangeIndex = polars row number)."""
    modes = {**dict.fromkeys(categorical, _categorical), **dict.fromkeys(null_only, _null_mask)}
    modes.update(dict.fromkeys(hashed, _hashed))
    cols = [c for c in dict.fromkeys(columns) if c in frame.columns]
    data = {c: modes.get(c, _series)(frame[c]) for c in cols}
    return pd.DataFrame(data, index=pd.RangeIndex(frame.height))
