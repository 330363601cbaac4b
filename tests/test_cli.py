from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()


def test_cli_sample_estate_run_sql_report(tmp_path: Path) -> None:
    estate = tmp_path / "estate"
    lake = tmp_path / "lake"
    r = runner.invoke(
        app, ["sample-estate", str(estate), "--days", "2", "--messages-per-day", "300", "--seed", "3"]
    )
    assert r.exit_code == 0, r.output
    assert (estate / "landing" / "plan.yaml").exists() and (
        estate / "truth" / "event_counts.parquet"
    ).exists()
    assert not (estate / "landing" / "truth").exists()  # truth lives beside the landing folder

    r = runner.invoke(app, ["run", "--landing", str(estate / "landing"), "--lake", str(lake)])
    assert r.exit_code == 0, r.output
    assert "catalog:" in r.output and "report:" in r.output

    truth = pl.read_parquet(estate / "truth" / "event_counts.parquet")
    r = runner.invoke(app, ["sql", "--lake", str(lake), "SELECT count(*) AS n FROM events"])
    assert r.exit_code == 0, r.output
    assert f"{int(truth['count'].sum())}" in r.output

    r = runner.invoke(app, ["run", "--landing", str(estate / "landing"), "--lake", str(lake)])
    assert r.exit_code == 0 and "nothing new" in r.output

    (lake / "reports" / "audit.html").unlink()
    r = runner.invoke(app, ["report", "--lake", str(lake)])
    assert r.exit_code == 0, r.output
    assert (lake / "reports" / "audit.html").stat().st_size > 5_000


def test_cli_help_lists_the_commands() -> None:
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("sample-estate", "run", "sql", "demo", "report"):
        assert cmd in r.output
