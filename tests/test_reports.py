from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from mtashift import catalog
from mtashift.lake import Lake, write_parquet, write_partition
from mtashift.reports.format import fmt_value
from mtashift.reports.spec import render_all
from schemas.events import EVENT_SCHEMA
from schemas.quarantine import QUARANTINE_SCHEMA
from tests.browser import visit

EVIL = '<script>alert("x")</script> 550 5.1.1 "quoted", user unknown'


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake.at(tmp_path_factory.mktemp("report_lake"))
    n = 6
    ev = pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "mta": ["pmta", "pmta", "pmta", "kumo", "kumo", "kumo"],
            "event_type": ["delivered", "delivered", "bounced", "delivered", "deferred", "complaint"],
            "event_time": [datetime(2026, 10, 1, i, tzinfo=UTC) for i in range(n)],
            "recipient_domain": ["gmail.com"] * n,
            "mx_host": ["gmail-smtp-in.l.google.com"] * n,
            "response": ["ok", "ok", EVIL, "ok", "try later", None],
        }
    )
    ev = ev.select(
        [pl.col(c) if c in ev.columns else pl.lit(None).cast(t).alias(c) for c, t in EVENT_SCHEMA.items()]
    )
    write_partition(ev, lake=lake, table="events", day="2026-10-01")
    q = pl.DataFrame(
        {"source_kind": ["pmta"], "source_file": ["pmta/n1/<b>evil</b>.csv"], "source_line": [3], "byte_offset": [None],
         "reason": ["malformed_csv"], "detail": [EVIL], "raw_text": [EVIL]},
        schema=QUARANTINE_SCHEMA,
    )  # fmt: skip
    write_parquet(q, lake.quarantine / "pmta" / "x.parquet")
    catalog.refresh(lake)
    render_all(lake)
    return lake


def test_reports_are_written_self_contained_and_escaped(small_lake: Lake) -> None:
    for name in ("audit", "cutover", "cost"):
        html = (small_lake.reports / f"{name}.html").read_text()
        assert "Content-Security-Policy" in html
        assert "<script" not in html.lower()  # neither ours nor the data's
        assert 'src="http' not in html and 'href="http' not in html
    audit = (small_lake.reports / "audit.html").read_text()
    assert "&lt;b&gt;evil&lt;/b&gt;" not in audit or "<b>evil</b>" not in audit


def test_formatting_of_rates_and_counts() -> None:
    assert fmt_value(0.0012345, column="complaint_rate") == "0.123%"
    assert fmt_value(1234567, column="delivered") == "1,234,567"
    assert fmt_value(None, column="x") == "—"
    assert fmt_value(float("nan"), column="deferral_rate") == "—"


@pytest.mark.browser
def test_reports_open_in_headless_chromium(small_lake: Lake, tmp_path: Path) -> None:
    for name in ("audit", "cutover", "cost"):
        v = visit(small_lake.reports / f"{name}.html", screenshot=tmp_path / f"{name}.png")
        assert v.console_errors == [], v.console_errors
        assert v.requests == [], v.requests
        assert v.screenshot is not None and v.screenshot.stat().st_size > 1000
    audit = visit(small_lake.reports / "audit.html", screenshot=tmp_path / "audit2.png")
    # The data's reply text is shown as text, not executed or parsed as markup.
    q = catalog.query(small_lake, "SELECT reason, count(*) AS n FROM quarantine GROUP BY ALL")
    assert f"malformed_csv\t{q['n'].item()}" in audit.text or "malformed_csv" in audit.text
