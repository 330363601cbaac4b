"""What each report shows: sections as (catalog view, SQL, optional chart)."""

import altair as alt
import polars as pl

from mtashift.lake import Lake
from mtashift.reports.render import Section, data_as_of, render_report


def _bar(df: pl.DataFrame, *, x: str, y: str, color: str | None = None, title: str = "") -> alt.Chart | None:
    if x not in df.columns or y not in df.columns:
        return None
    enc = {"x": alt.X(x, sort="-y"), "y": alt.Y(y)}
    if color and color in df.columns:
        enc["color"] = alt.Color(color)
    return alt.Chart(df, title=title).mark_bar().encode(**enc).properties(width=640, height=220)


AUDIT: list[Section] = [
    Section(
        "volumes",
        "Volumes by provider and MTA",
        "events",
        """SELECT coalesce(provider, 'unmapped') AS provider, mta,
                  count(*) FILTER (WHERE event_type = 'delivered') AS delivered,
                  count(*) FILTER (WHERE event_type IN ('deferred')) AS deferred,
                  count(*) FILTER (WHERE event_type IN ('bounced', 'remote_bounce')) AS bounced,
                  count(*) FILTER (WHERE event_type = 'complaint') AS complaints
           FROM events_with_provider GROUP BY ALL ORDER BY delivered DESC, provider, mta""",
        chart=lambda df: _bar(df, x="provider", y="delivered", color="mta", title="Delivered by provider"),
    ),
    Section(
        "quarantine",
        "Data quality: quarantined lines by reason",
        "quarantine",
        "SELECT source_kind, reason, count(*) AS lines FROM quarantine GROUP BY ALL ORDER BY lines DESC, source_kind, reason",
    ),
    Section(
        "files",
        "Ingested files",
        "ingest_files",
        "SELECT kind, status, count(*) AS files, sum(rows) AS rows, sum(quarantined) AS quarantined, "
        "sum(duplicates) AS duplicates FROM ingest_files GROUP BY ALL ORDER BY kind, status",
    ),
]

CUTOVER: list[Section] = []
COST: list[Section] = []


def render_all(lake: Lake) -> dict[str, str]:
    ctx = {"data_as_of": data_as_of(lake), "links": [{"href": "audit.html", "text": "Audit"},
           {"href": "cutover.html", "text": "Cutover"}, {"href": "cost.html", "text": "Cost"}]}  # fmt: skip
    out = {}
    for name, title, sections in (
        ("audit", "Estate audit", AUDIT),
        ("cutover", "Cutover evidence", CUTOVER),
        ("cost", "Total cost of ownership", COST),
    ):
        out[name] = str(render_report(lake=lake, name=name, title=title, sections=sections, context=ctx))
    return out
