"""Render the audit, cutover and cost reports from the catalog.

Every table and chart is the result of one SQL query over one catalog view, and the report prints the
view and the query beside it. Text from the data (SMTP replies, headers, file names) is escaped by the
template engine's autoescaping; the page carries a Content-Security-Policy that forbids any network
request or script, so a report opened anywhere is inert and self-contained.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import altair as alt
import duckdb
import jinja2
import polars as pl
import vl_convert

from mtashift.lake import Lake, write_text
from mtashift.reports.format import fmt_value, is_rate_column

ChartFn = Callable[[pl.DataFrame], alt.Chart | alt.LayerChart | None]


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    view: str
    sql: str
    intro: str = ""
    chart: ChartFn | None = None
    limit: int = 100


@dataclass
class RenderedSection:
    key: str
    title: str
    view: str
    sql: str
    intro: str
    available: bool
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    total_rows: int = 0
    svg: str | None = None
    note: str = ""


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mtashift.reports", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt_value
    return env


def _views(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}


def chart_svg(chart: alt.Chart | alt.LayerChart) -> str:
    """A Vega-Lite chart rendered to SVG in process (no browser, no network)."""
    return vl_convert.vegalite_to_svg(chart.to_json())


def render_section(con: duckdb.DuckDBPyConnection, section: Section, views: set[str]) -> RenderedSection:
    out = RenderedSection(
        key=section.key, title=section.title, view=section.view, sql=section.sql.strip(), intro=section.intro,
        available=section.view in views,
    )  # fmt: skip
    if not out.available:
        out.note = f"Not available: the catalog has no view `{section.view}` yet."
        return out
    try:
        df = con.sql(section.sql).pl()
    except duckdb.Error as exc:
        out.available = False
        out.note = f"Query failed: {exc}"
        return out
    # DuckDB sums integers to DECIMAL(38,0): show (and chart) them as plain numbers.
    df = df.with_columns(
        [
            pl.col(c).cast(pl.Int64 if (t.scale or 0) == 0 else pl.Float64)  # type: ignore[attr-defined]
            for c, t in df.schema.items()
            if isinstance(t, pl.Decimal)
        ]
    )
    out.total_rows = df.height
    out.columns = df.columns
    out.rows = [
        [fmt_value(v, column=c) for c, v in zip(df.columns, row, strict=True)]
        for row in df.head(section.limit).iter_rows()
    ]
    if section.chart is not None and df.height:
        chart = section.chart(df)
        if chart is not None:
            out.svg = chart_svg(chart)
    return out


def render_report(
    *, lake: Lake, name: str, title: str, sections: list[Section], context: dict[str, Any] | None = None
) -> Path:
    con = duckdb.connect(str(lake.catalog), read_only=True)
    try:
        views = _views(con)
        rendered = [render_section(con, s, views) for s in sections]
    finally:
        con.close()
    html = (
        _env()
        .get_template("report.html.j2")
        .render(
            title=title,
            name=name,
            sections=rendered,
            generated_from=str(lake.catalog),
            data_as_of=(context or {}).get("data_as_of", ""),
            links=(context or {}).get("links", []),
            headline=(context or {}).get("headline", []),
            is_rate_column=is_rate_column,
        )
    )
    return write_text(html, lake.reports / f"{name}.html")


def data_as_of(lake: Lake) -> str:
    """The newest event time in the lake: reports are stamped with data time, not wall time."""
    try:
        con = duckdb.connect(str(lake.catalog), read_only=True)
        v = con.execute("SELECT max(event_time) FROM events").fetchall()[0][0]
        con.close()
    except duckdb.Error:
        return ""
    if v is None:
        return ""
    return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if isinstance(v, datetime) else str(v)
