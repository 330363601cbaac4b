# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Cutover review
#
# Per pool: when traffic moved from PowerMTA to KumoMTA, the verdict and the evidence behind
# it, the before/after comparison with confidence intervals, the in-flight drain, seed-list
# placement, and the hourly volume of both MTAs around the switch.
#
# Reads the lake's DuckDB catalog **read-only** (`$MTASHIFT_LAKE/catalog.duckdb`, default
# `demo/lake`). `$MTASHIFT_POOL` picks the pool for the comparison chart (default: the first
# pool with a comparison). Rules and statistics: `schemas/docs/cutover.md`.

# %%
import os

import altair as alt
import polars as pl
from IPython.display import Markdown, display

from mtashift.notebook import open_catalog

catalog = open_catalog()
con, have, q = catalog.con, catalog.have, catalog.q


# %% [markdown]
# ## Plan: when each pool switched

# %%
if have("cutover_plan"):
    display(
        q(
            """
            SELECT pool, cutover_time, cutover_source, planned_cutover_time, last_pmta_event, first_kumo_event,
                   pmta_events, kumo_events, in_plan
            FROM cutover_plan ORDER BY cutover_time NULLS LAST, pool
            """
        )
    )

# %% [markdown]
# ## Verdicts and the rules that fired

# %%
if have("cutover_verdicts"):
    display(
        q(
            "SELECT pool, cutover_time, verdict, rules_fired, evidence_count FROM cutover_verdicts ORDER BY pool"
        )
    )
    evidence = q(
        """
        SELECT pool, e.provider, e.metric, e."before", e."after", e.p_value, e."rule", e.verdict, e.detail
        FROM (SELECT pool, unnest(evidence) AS e FROM cutover_verdicts)
        ORDER BY pool, e.verdict, e.metric
        """
    )
    display(evidence if evidence.height else Markdown("_No rule fired: every pool passed._"))

# %% [markdown]
# ## Before / after, with confidence intervals

# %%
if have("cutover_comparison"):
    comparison = q("SELECT * FROM cutover_comparison ORDER BY pool, metric, provider")
    pools = comparison["pool"].unique(maintain_order=True).to_list()
    POOL = os.environ.get("MTASHIFT_POOL") or (pools[0] if pools else None)
    if POOL is None:
        display(Markdown("_The comparison is empty (no pool has both sides yet)._"))
    else:
        display(Markdown(f"**Pool: `{POOL}`** (of {', '.join(pools)})"))
        one = comparison.filter(pl.col("pool") == POOL)
        sides = pl.concat(
            [
                one.select(
                    "metric",
                    "provider",
                    "significant",
                    pl.lit(side).alias("side"),
                    pl.col(f"{side}_value").alias("value"),
                    pl.col(f"{side}_ci_low").alias("low"),
                    pl.col(f"{side}_ci_high").alias("high"),
                    pl.col(f"{side}_n").alias("n"),
                )
                for side in ("before", "after")
            ]
        )
        base = alt.Chart(sides).encode(
            y=alt.Y("provider:N", title=None),
            color=alt.Color("side:N", sort=["before", "after"]),
            yOffset=alt.YOffset("side:N", sort=["before", "after"]),
        )
        display(
            alt.layer(
                base.mark_rule().encode(x=alt.X("low:Q", title=None), x2="high:Q"),
                base.mark_point(filled=True).encode(
                    x="value:Q",
                    tooltip=["metric:N", "provider:N", "side:N", "value:Q", "low:Q", "high:Q", "n:Q"],
                ),
                data=sides,
            )
            .properties(width=260, height=140)
            .facet(facet="metric:N", columns=3)
            .resolve_scale(x="independent")
        )
        display(
            one.select(
                "metric",
                "provider",
                "before_value",
                "after_value",
                "abs_change",
                "p_value",
                "significant",
                "small_sample",
            )
        )

# %% [markdown]
# ## In-flight drain: what PowerMTA still delivered after the switch

# %%
if have("inflight_drain"):
    display(
        q(
            """
            SELECT pool, cutover_time, drained_messages, drained_delivered, drained_bounced, drained_expired,
                   tail_p95_s, tail_last_s, unfinished_messages, unfinished_share, volume_ratio, parity_flag,
                   double_sent
            FROM inflight_drain ORDER BY pool
            """
        )
    )

# %% [markdown]
# ## Seed-list placement

# %%
if have("seedlist_placement"):
    display(
        q(
            """
            SELECT pool, provider, metric, before_value, after_value, abs_change, p_value, significant, small_sample
            FROM seedlist_placement ORDER BY pool, provider, metric
            """
        )
    )

# %% [markdown]
# ## Hourly delivery outcomes of both MTAs

# %%
hourly = pl.DataFrame()
if have("events"):
    hourly = q(
        """
        SELECT date_trunc('hour', event_time) AS hour, mta, count(*) AS events
        FROM events WHERE event_type IN ('delivered', 'deferred', 'bounced', 'expired')
        GROUP BY ALL ORDER BY hour, mta
        """
    )
if hourly.height:
    chart = (
        alt.Chart(hourly)
        .mark_area(opacity=0.8)
        .encode(
            x=alt.X("hour:T", title="hour (UTC)"),
            y="events:Q",
            color="mta:N",
            tooltip=["hour:T", "mta:N", "events:Q"],
        )
        .properties(width=700, height=220)
    )
    if "cutover_plan" in catalog.views:
        switches = q("SELECT pool, cutover_time FROM cutover_plan WHERE cutover_time IS NOT NULL")
        if switches.height:
            chart = chart + alt.Chart(switches).mark_rule(color="black", strokeDash=[4, 3]).encode(
                x="cutover_time:T", tooltip=["pool:N", "cutover_time:T"]
            )
    display(chart)
else:
    display(Markdown("_No delivery outcomes in the lake._"))

# %%
con.close()
