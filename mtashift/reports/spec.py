"""What each report shows: sections as (catalog view, SQL, optional chart), and the headline figures."""

from dataclasses import dataclass

import altair as alt
import duckdb
import polars as pl

from mtashift.lake import Lake
from mtashift.reports.format import fmt_value
from mtashift.reports.render import Section, data_as_of, render_report


def _bar(df: pl.DataFrame, *, x: str, y: str, color: str | None = None, title: str = "") -> alt.Chart | None:
    if x not in df.columns or y not in df.columns:
        return None
    enc = {"x": alt.X(x, sort="-y"), "y": alt.Y(y)}
    if color and color in df.columns:
        enc["color"] = alt.Color(color)
    return alt.Chart(df, title=title).mark_bar().encode(**enc).properties(width=640, height=220)


def _before_after(df: pl.DataFrame) -> alt.Chart | None:
    need = {"pool", "provider", "before_value", "after_value"}
    if not need <= set(df.columns):
        return None
    long = (
        df.select("pool", "provider", "before_value", "after_value")
        .unpivot(index=["pool", "provider"], variable_name="window", value_name="rate")
        .with_columns(
            pl.col("window").str.replace("_value", ""),
            (pl.col("pool") + " · " + pl.col("provider")).alias("pool_provider"),
        )
    )
    return (
        alt.Chart(long, title="Deferral rate before (PowerMTA) and after (KumoMTA) cutover")
        .mark_bar()
        .encode(
            x=alt.X("pool_provider:N", title=None),
            xOffset="window:N",
            y=alt.Y("rate:Q", axis=alt.Axis(format="%")),
            color="window:N",
        )
        .properties(width=760, height=240)
    )


def _tornado(df: pl.DataFrame) -> alt.Chart | None:
    if not {"input", "delta_low", "delta_high"} <= set(df.columns):
        return None
    long = df.select("input", "delta_low", "delta_high", "swing").unpivot(
        index=["input", "swing"], variable_name="side", value_name="change_in_3y_savings"
    )
    return (
        alt.Chart(long, title="Sensitivity of 3-year savings (tornado)")
        .mark_bar()
        .encode(
            y=alt.Y("input:N", sort=alt.EncodingSortField("swing", order="descending")),
            x="change_in_3y_savings:Q",
            color="side:N",
        )
        .properties(width=640, height=22 * max(df.height, 4))
    )


def _cumulative(df: pl.DataFrame) -> alt.Chart | None:
    if not {"month", "option", "cumulative"} <= set(df.columns):
        return None
    return (
        alt.Chart(df, title="Cumulative cost per option")
        .mark_line(point=True)
        .encode(x="month:Q", y=alt.Y("cumulative:Q", title="cumulative cost"), color="option:N")
        .properties(width=640, height=240)
    )


AUDIT: list[Section] = [
    Section("inventory", "Estate inventory: configured vs seen sending", "estate_inventory",
            "SELECT kind, name, node, configured, seen, status, events, delivered, first_seen, last_seen "
            "FROM estate_inventory ORDER BY kind, name, node"),
    Section("providers", "Volumes and rates by provider and MTA", "provider_rates_daily",
            """SELECT provider, mta, sum(attempts) AS attempts, sum(delivered) AS delivered,
                      sum(deferred) AS deferred, sum(bounced) AS bounced, sum(complaints) AS complaints,
                      sum(deferred) / nullif(sum(attempts), 0) AS deferral_rate,
                      sum(bounced) / nullif(sum(attempts), 0) AS bounce_rate,
                      sum(complaints) / nullif(sum(delivered), 0) AS complaint_rate
               FROM provider_rates_daily GROUP BY ALL ORDER BY delivered DESC, provider, mta""",
            intro="Rates: deferral and bounce over attempts (delivered + deferred + bounced + expired); complaints over delivered.",
            chart=lambda df: _bar(df, x="provider", y="delivered", color="mta", title="Delivered by provider")),
    Section("pools", "Volumes by pool and source IP", "provider_rates_daily",
            """SELECT pool, source, source_ip, mta, sum(attempts) AS attempts, sum(delivered) AS delivered,
                      sum(deferred) / nullif(sum(attempts), 0) AS deferral_rate,
                      sum(bounced) / nullif(sum(attempts), 0) AS bounce_rate
               FROM provider_rates_daily GROUP BY ALL ORDER BY pool, source, source_ip, mta"""),
    Section("complaints", "Complaint rates against provider thresholds", "complaint_rates",
            """SELECT provider, sender_domain, sum(complaints) AS complaints, sum(delivered) AS delivered,
                      sum(complaints) / nullif(sum(delivered), 0) AS complaint_rate,
                      max(warn_threshold) AS warn_threshold_rate, max(critical_threshold) AS critical_threshold_rate,
                      count(*) FILTER (WHERE status IN ('warn', 'critical')) AS days_over_threshold
               FROM complaint_rates GROUP BY ALL ORDER BY complaint_rate DESC NULLS LAST, provider, sender_domain"""),
    Section("bounce_categories", "Bounces by unified category and consequence", "bounces",
            """SELECT category, consequence, mta, count(*) AS failures
               FROM bounces WHERE event_type <> 'deferred' GROUP BY ALL ORDER BY failures DESC, category, mta"""),
    Section("top_replies", "Top failure replies (as the receivers wrote them)", "bounces",
            """SELECT provider, smtp_code, enhanced_status, response, category, count(*) AS failures
               FROM bounces WHERE response IS NOT NULL GROUP BY ALL ORDER BY failures DESC, provider, response LIMIT 30"""),
    Section("deferrals", "Top deferral signatures", "deferral_signatures_all",
            """SELECT provider, smtp_code, enhanced_status, template, "count", share, days, example
               FROM deferral_signatures_all ORDER BY "count" DESC, provider, template LIMIT 25"""),
    Section("unclassified", "Unclassified failures by provider", "unclassified_rate",
            """SELECT provider, sum(failures) AS failures, sum(unclassified) AS unclassified,
                      sum(unclassified) / nullif(sum(failures), 0) AS unclassified_rate
               FROM unclassified_rate GROUP BY ALL ORDER BY failures DESC, provider"""),
    Section("suppression", "Suppression list summary", "suppression",
            "SELECT source, scope, count(*) AS addresses, count(*) FILTER (WHERE expires_at IS NOT NULL) AS expiring "
            "FROM suppression GROUP BY ALL ORDER BY addresses DESC, source, scope"),
    Section("warmup", "Warm-up state per source IP and provider", "warmup_state",
            """SELECT source_ip, provider, first_day, last_day, days_active, sustained_level, trend_slope, trend_ratio,
                      delivered_total, mta_last_seen
               FROM warmup_state ORDER BY source_ip, provider"""),
    Section("translation", "KumoMTA shaping translation summary", "translation_report",
            "SELECT status, target_file, count(*) AS directives FROM translation_report GROUP BY ALL ORDER BY status, target_file"),
    Section("not_translated", "Directives not translated, and why", "translation_report",
            "SELECT node, scope, block, directive, value, note FROM translation_report WHERE status = 'not_translated' "
            "ORDER BY node, scope, block, directive"),
    Section("quarantine", "Data quality: quarantined lines by reason", "quarantine",
            "SELECT source_kind, reason, count(*) AS lines FROM quarantine GROUP BY ALL ORDER BY lines DESC, source_kind, reason"),
    Section("quarantine_examples", "Data quality: examples of quarantined lines", "quarantine",
            "SELECT source_file, source_line, reason, detail, raw_text FROM quarantine ORDER BY source_file, source_line LIMIT 25"),
    Section("files", "Ingested files", "ingest_files",
            "SELECT kind, status, count(*) AS files, sum(rows) AS rows, sum(quarantined) AS quarantined, "
            "sum(duplicates) AS duplicates FROM ingest_files GROUP BY ALL ORDER BY kind, status"),
]  # fmt: skip

CUTOVER: list[Section] = [
    Section("verdicts", "Verdict per pool", "cutover_verdicts",
            "SELECT pool, cutover_time, cutover_source, verdict, rules_fired, evidence_count FROM cutover_verdicts ORDER BY pool"),
    Section("evidence", "Evidence behind each verdict", "cutover_verdicts",
            """SELECT pool, verdict AS pool_verdict, e.provider, e.metric, e.before, e.after, e.p_value, e.rule,
                      e.verdict AS rule_verdict, e.detail
               FROM (SELECT pool, verdict, unnest(evidence) AS e FROM cutover_verdicts) ORDER BY pool, e.provider, e.metric"""),
    Section("comparison", "Before (PowerMTA) and after (KumoMTA) per provider, deferral rate", "cutover_comparison",
            """SELECT pool, provider, before_num, before_n, before_value, before_ci_low, before_ci_high,
                      after_num, after_n, after_value, after_ci_low, after_ci_high, test, p_value, significant, small_sample
               FROM cutover_comparison WHERE metric = 'deferral_rate' ORDER BY pool, provider""",
            intro="Values are proportions with 95% Wilson intervals; p-values from a two-proportion test (Fisher's exact for small counts).",
            chart=_before_after),
    Section("comparison_all", "All compared metrics", "cutover_comparison",
            """SELECT pool, provider, metric, unit, before_value, after_value, rel_change, p_value, significant, small_sample
               FROM cutover_comparison ORDER BY pool, provider, metric"""),
    Section("seedlist", "Seed-list inbox placement", "seedlist_placement",
            """SELECT pool, provider, before_num, before_n, before_value, before_ci_low, before_ci_high,
                      after_num, after_n, after_value, after_ci_low, after_ci_high, p_value, significant, small_sample
               FROM seedlist_placement ORDER BY pool, provider"""),
    Section("drain", "In-flight drain and volume parity", "inflight_drain",
            """SELECT pool, cutover_time, drained_messages, drained_delivered, drained_bounced, drained_expired,
                      tail_last_s, tail_p95_s, unfinished_messages, volume_ratio, parity_flag, double_sent
               FROM inflight_drain ORDER BY pool"""),
    Section("plan", "Cutover plan", "cutover_plan",
            "SELECT pool, cutover_time, cutover_source, planned_cutover_time, first_kumo_event, pmta_vmtas, kumo_egress_sources "
            "FROM cutover_plan ORDER BY pool"),
]  # fmt: skip

COST: list[Section] = [
    Section("tco", "Three-year cost per option", "tco",
            "SELECT option, total_3y, one_off, monthly_mean, savings_3y, payback_month, migration_weeks, "
            "mean_daily_messages, peak_hourly_messages, range_flag, recommendation, note FROM tco ORDER BY option"),
    Section("cashflow", "Monthly cash flow", "tco_cashflow",
            "SELECT month, option, nodes, licence, servers, operations, migration, total, cumulative FROM tco_cashflow ORDER BY option, month",
            chart=_cumulative, limit=80),
    Section("sensitivity", "Sensitivity of savings to each input", "tco_sensitivity",
            "SELECT input, delta, base_savings_3y, delta_low, delta_high, swing, payback_low, payback_high "
            "FROM tco_sensitivity ORDER BY swing DESC, input",
            chart=_tornado),
    Section("assumptions", "Assumptions and their sources", "tco_assumptions",
            "SELECT name, value, unit, source, overridden FROM tco_assumptions ORDER BY name"),
]  # fmt: skip


@dataclass(frozen=True)
class Kpi:
    key: str
    label: str
    sql: str
    column: str = ""


HEADLINES: dict[str, list[Kpi]] = {
    "audit": [
        Kpi("events", "events (both MTAs) — view events", "SELECT count(*) FROM events"),
        Kpi("delivered", "delivered — view events", "SELECT count(*) FROM events WHERE event_type = 'delivered'"),
        Kpi("bounce_rate", "bounce rate — view provider_rates_daily",
            "SELECT sum(bounced) / nullif(sum(attempts), 0) FROM provider_rates_daily", "bounce_rate"),
        Kpi("complaint_rate", "complaint rate — view complaint_rates",
            "SELECT sum(complaints) / nullif(sum(delivered), 0) FROM complaint_rates", "complaint_rate"),
        Kpi("suppressed", "suppressed addresses — view suppression", "SELECT count(*) FROM suppression"),
        Kpi("quarantined", "quarantined lines — view quarantine", "SELECT count(*) FROM quarantine"),
    ],
    "cutover": [
        Kpi("pools_proceed", "pools: proceed — view cutover_verdicts", "SELECT count(*) FROM cutover_verdicts WHERE verdict = 'proceed'"),
        Kpi("pools_hold", "pools: hold or rollback — view cutover_verdicts",
            "SELECT count(*) FROM cutover_verdicts WHERE verdict IN ('hold', 'rollback')"),
    ],
    "cost": [
        Kpi("savings", "3-year savings with KumoMTA — view tco", "SELECT max(savings_3y) FROM tco"),
        Kpi("payback", "payback month — view tco", "SELECT min(payback_month) FROM tco"),
        Kpi("range", "daily volume against 500k–5M — view tco", "SELECT any_value(range_flag) FROM tco"),
    ],
}  # fmt: skip


def headline(lake: Lake, name: str) -> list[dict[str, str]]:
    out = []
    con = duckdb.connect(str(lake.catalog), read_only=True)
    try:
        for k in HEADLINES.get(name, []):
            try:
                v = con.execute(k.sql).fetchall()[0][0]
            except duckdb.Error:
                continue  # the view is not built yet
            out.append({"key": k.key, "label": k.label, "value": fmt_value(v, column=k.column)})
    finally:
        con.close()
    return out


REPORTS: list[tuple[str, str, list[Section]]] = [
    ("audit", "Estate audit", AUDIT),
    ("cutover", "Cutover evidence", CUTOVER),
    ("cost", "Total cost of ownership", COST),
]


def render_all(lake: Lake) -> dict[str, str]:
    links = [{"href": f"{n}.html", "text": t} for n, t, _ in REPORTS]
    if (lake.quality / "index.html").exists():
        links.append({"href": "../quality/index.html", "text": "Data quality (Great Expectations Data Docs)"})
    as_of = data_as_of(lake)
    out = {}
    for name, title, sections in REPORTS:
        ctx = {"data_as_of": as_of, "links": links, "headline": headline(lake, name)}
        out[name] = str(render_report(lake=lake, name=name, title=title, sections=sections, context=ctx))
    return out
