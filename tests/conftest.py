"""Shared test set-up: an isolated Dagster home, and the lake/landing variables the definitions read."""

import os
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
SAMPLES = REFERENCE / "samples"


@pytest.fixture(scope="session", autouse=True)
def _isolated_dagster_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").touch()
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault("MTASHIFT_LAKE", str(tmp_path_factory.mktemp("default_lake")))
    os.environ.setdefault("MTASHIFT_LANDING", str(tmp_path_factory.mktemp("default_landing")))


def samples_dir(name: str) -> Path:
    """A folder of real samples from the shared reference; the test is skipped when it is absent."""
    p = SAMPLES / name
    if not p.exists():
        pytest.skip(f"reference samples not available: {p}")
    return p


def raw_file_layout(path: Path) -> tuple[dict[str, str], set[str]]:
    """Codec per column (first row group) and the columns with min/max statistics of a raw events file."""
    import pyarrow.parquet as pq

    rg = pq.ParquetFile(path).metadata.row_group(0)
    cols = [rg.column(i) for i in range(rg.num_columns)]
    return {c.path_in_schema: c.compression for c in cols}, {
        c.path_in_schema for c in cols if c.statistics is not None and c.statistics.has_min_max
    }
