"""The analyst notebooks run top to bottom against a small lake (and against a lake with events only).

Each ``notebooks/*.py`` (jupytext percent format) is converted with jupytext and executed with
nbclient in a kernel of this interpreter (a kernelspec installed into a temporary JUPYTER_PATH);
any cell error fails the test. The lake is written with the project's writers and catalog.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from mtashift.bounces import build_bounces
from mtashift.catalog import refresh
from mtashift.cutover import COMPARISON_SCHEMA, CUTOVER_PLAN_SCHEMA, VERDICT_SCHEMA
from mtashift.lake import Lake, write_partition, write_table
from mtashift.providers import add_provider
from mtashift.quality.synthetic import synthetic_events
from mtashift.rates import rates
from schemas.suppression import SUPPRESSION_SCHEMA

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.py"))
DAYS = ("2024-03-01", "2024-03-02", "2024-03-03")
KERNEL = "mtashift-test"

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
ipykernel_spec = pytest.importorskip("ipykernel.kernelspec")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A kernelspec for this interpreter in a private JUPYTER_PATH (the notebooks import our packages)."""
    prefix = tmp_path_factory.mktemp("jupyter")
    ipykernel_spec.install(kernel_name=KERNEL, prefix=str(prefix))
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    mp.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    yield KERNEL
    mp.undo()


def _write_events(lake: Lake) -> pl.DataFrame:
    frames = []
    for i, day in enumerate(DAYS):
        ev = synthetic_events(rows=3_000, day=day, seed=i)
        write_partition(ev, lake=lake, table="events", day=day)
        frames.append(ev)
    return pl.concat(frames)


def _t(day: str, hour: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(hours=hour)


@pytest.fixture(scope="module")
def full_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake.at(tmp_path_factory.mktemp("full") / "lake")
    events = _write_events(lake)
    for day in DAYS:
        part = events.filter(pl.col("event_time").dt.date() == datetime.fromisoformat(day).date()).lazy()
        write_partition(
            rates(events=part, consequences=None, grain="day"),
            lake=lake,
            table="provider_rates_daily",
            day=day,
        )
        write_partition(build_bounces(events=add_provider(part)), lake=lake, table="bounces", day=day)
    plan = pl.DataFrame(
        [{"pool": "marketing", "cutover_time": _t(DAYS[1], 12), "cutover_source": "plan", "pmta_events": 10,
          "kumo_events": 12, "pmta_vmtas": ["mkt-01"], "kumo_egress_sources": ["mkt-02"], "in_plan": True}],
        schema=CUTOVER_PLAN_SCHEMA,
    )  # fmt: skip
    write_table(plan, lake=lake, table="cutover_plan")
    comparison = pl.DataFrame(
        [
            {"pool": "marketing", "provider": p, "metric": m, "unit": "share", "before_num": 90, "before_n": 100,
             "before_value": 0.9, "before_ci_low": 0.83, "before_ci_high": 0.94, "after_num": 95, "after_n": 100,
             "after_value": 0.95, "after_ci_low": 0.89, "after_ci_high": 0.98, "abs_change": 0.05, "p_value": 0.18,
             "significant": False, "small_sample": False, "cutover_time": _t(DAYS[1], 12)}
            for p in ("google", "yahoo")
            for m in ("delivery_rate", "deferral_rate")
        ],
        schema=COMPARISON_SCHEMA,
    )  # fmt: skip
    write_table(comparison, lake=lake, table="cutover_comparison")
    verdicts = pl.DataFrame(
        [{"pool": "marketing", "cutover_time": _t(DAYS[1], 12), "cutover_source": "plan", "verdict": "watch",
          "rules_fired": ["deferral_up"], "evidence_count": 1,
          "evidence": [{"provider": "yahoo", "metric": "deferral_rate", "before": 0.1, "after": 0.2, "p_value": 0.01,
                        "rule": "deferral_up", "verdict": "watch", "detail": "<b>up</b>"}]}],
        schema=VERDICT_SCHEMA,
    )  # fmt: skip
    write_table(verdicts, lake=lake, table="cutover_verdicts")
    entry = {"address": "a@gmail.com", "match_key": "a@gmail.com", "scope": "global", "reason": "bad mailbox",
             "category": "bad-mailbox", "first_seen": _t(DAYS[0], 3), "last_seen": _t(DAYS[2], 3),
             "evidence_count": 2, "evidence": ["e1", "e2"], "source": "bounce", "expires_at": _t(DAYS[2], 30),
             "rule": "bounces.retry_then_suppress", "sources": ["bounce"]}  # fmt: skip
    suppression = pl.DataFrame(
        [entry, {**entry, "match_key": "@old.example", "address": "@old.example", "source": "legacy",
                 "first_seen": None, "expires_at": None}],
        schema=SUPPRESSION_SCHEMA,
    )  # fmt: skip
    write_table(suppression, lake=lake, table="suppression")
    refresh(lake)
    return lake


@pytest.fixture(scope="module")
def events_only_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake.at(tmp_path_factory.mktemp("events_only") / "lake")
    _write_events(lake)
    refresh(lake)
    return lake


def _execute(path: Path, *, lake: Path, kernel: str, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    monkeypatch.setenv("MTASHIFT_LAKE", str(lake))
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=kernel,
        timeout=300,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


def _text(outputs: list[dict]) -> str:
    parts = []
    for o in outputs:
        data = o.get("data", {})
        parts.append(data.get("text/markdown", "") + data.get("text/plain", "") + o.get("text", ""))
    return "\n".join(parts)


def test_notebooks_are_percent_scripts() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "cutover_review.py",
        "provider_deep_dive.py",
        "suppression_audit.py",
    ]
    for path in NOTEBOOKS:
        nb = jupytext.read(path)
        assert sum(c.cell_type == "code" for c in nb.cells) >= 5
        assert "open_catalog()" in path.read_text(encoding="utf-8")


def test_notebooks_open_the_catalog_read_only(full_lake: Lake, monkeypatch) -> None:
    import duckdb

    from mtashift.notebook import open_catalog

    monkeypatch.setenv("MTASHIFT_LAKE", str(full_lake.root))
    cat = open_catalog()
    assert "events" in cat.views and cat.have("events")
    with pytest.raises(duckdb.Error):
        cat.con.execute("CREATE TABLE scratch (a INTEGER)")
    cat.con.close()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_a_full_lake(path: Path, full_lake: Lake, kernel: str, monkeypatch) -> None:
    outputs = _execute(path, lake=full_lake.root, kernel=kernel, monkeypatch=monkeypatch)
    charts = [o for o in outputs if o.get("data", {}).get("text/plain", "").startswith("alt.")]
    assert len(charts) >= 2, path.name  # altair charts were produced, not skipped
    text = _text(outputs)
    if path.stem == "provider_deep_dive":
        assert "Provider: `" in text
    if path.stem == "cutover_review":
        assert "deferral_up" in text and "Pool: `marketing`" in text
    if path.stem == "suppression_audit":
        assert "Not in the catalog yet: `suppression_diff`" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_notes_missing_views(path: Path, events_only_lake: Lake, kernel: str, monkeypatch) -> None:
    outputs = _execute(path, lake=events_only_lake.root, kernel=kernel, monkeypatch=monkeypatch)
    assert "Not in the catalog yet" in _text(outputs)


def test_kernel_is_this_interpreter(kernel: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(kernel)
    assert Path(spec.argv[0]).resolve() == Path(sys.executable).resolve()
