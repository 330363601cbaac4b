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
# # Provider deep dive
#
# One mailbox provider across both MTAs: daily delivery, deferral and bounce rates, latency,
# the deferral replies it sends, how its bounces are classified, complaints and the warm-up
# state of our IPs towards it.
#
# Reads the lake's DuckDB catalog **read-only** (`$MTASHIFT_LAKE/catalog.duckdb`, default
# `demo/lake`). Pick the provider with `$MTASHIFT_PROVIDER` (default: the busiest one).
# Tables that are not built yet are skipped with a note.

# %%
import os

import altair as alt
import polars as pl
from IPython.display import Markdown, display

from mtashift.notebook import open_catalog

catalog = open_catalog()
con, have, q = catalog.con, catalog.have, catalog.q


# %% [markdown]
# ## Providers by volume

# %%
providers = pl.DataFrame()
if have("provider_rates_daily"):
    providers = q(
        """
        SELECT provider, CAST(sum(attempts) AS BIGINT) AS attempts, CAST(sum(delivered) AS BIGINT) AS delivered,
               sum(delivered) / nullif(sum(attempts), 0) AS delivery_rate
        FROM provider_rates_daily GROUP BY provider ORDER BY attempts DESC, provider
        """
    )
    display(providers)

PROVIDER = os.environ.get("MTASHIFT_PROVIDER") or (providers["provider"][0] if providers.height else None)
display(Markdown(f"**Provider: `{PROVIDER}`**" if PROVIDER else "_No provider to look at yet._"))

# %% [markdown]
# ## Daily rates per MTA
#
# Denominator: attempts (delivered + deferred + bounced + expired), as in `schemas/docs/rates.md`.

# %%
if PROVIDER and have("provider_rates_daily"):
    daily = q(
        """
        SELECT day, mta, CAST(sum(attempts) AS BIGINT) AS attempts,
               sum(delivered) / nullif(sum(attempts), 0) AS delivery_rate,
               sum(deferred) / nullif(sum(attempts), 0) AS deferral_rate,
               sum(bounced) / nullif(sum(attempts), 0) AS bounce_rate
        FROM provider_rates_daily WHERE provider = ? GROUP BY day, mta ORDER BY day, mta
        """,
        PROVIDER,
    )
    long = daily.unpivot(index=["day", "mta", "attempts"], variable_name="rate", value_name="value")
    display(
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("day:T", title="day (UTC)"),
            y=alt.Y("value:Q", axis=alt.Axis(format="%"), title=None),
            color="mta:N",
            tooltip=["day:T", "mta:N", "attempts:Q", alt.Tooltip("value:Q", format=".2%")],
        )
        .properties(width=260, height=160)
        .facet(column="rate:N")
        .resolve_scale(y="independent")
    )

# %% [markdown]
# ## Queue-to-delivery latency (p95 per pool and source)

# %%
if PROVIDER and have("provider_rates_daily"):
    latency = q(
        """
        SELECT day, mta, pool, source, latency_samples, latency_p50_s, latency_p95_s
        FROM provider_rates_daily WHERE provider = ? AND latency_samples > 0 ORDER BY day, mta, pool, source
        """,
        PROVIDER,
    )
    display(
        alt.Chart(latency)
        .mark_point()
        .encode(
            x="day:T",
            y=alt.Y("latency_p95_s:Q", title="p95 latency (s)"),
            color="mta:N",
            size="latency_samples:Q",
            tooltip=[
                "day:T",
                "mta:N",
                "pool:N",
                "source:N",
                "latency_samples:Q",
                "latency_p50_s:Q",
                "latency_p95_s:Q",
            ],
        )
        .properties(width=600, height=220)
    )

# %% [markdown]
# ## Deferral replies (whole history)

# %%
if PROVIDER and have("deferral_signatures_all"):
    display(
        q(
            """
            SELECT smtp_code, enhanced_status, template, "count", days, share, mtas
            FROM deferral_signatures_all WHERE provider = ? ORDER BY "count" DESC LIMIT 15
            """,
            PROVIDER,
        )
    )

# %% [markdown]
# ## How its failures are classified

# %%
if PROVIDER and have("bounces"):
    categories = q(
        """
        SELECT mta, category, consequence, count(*) AS failures
        FROM bounces WHERE provider = ? GROUP BY ALL ORDER BY failures DESC
        """,
        PROVIDER,
    )
    display(
        alt.Chart(categories)
        .mark_bar()
        .encode(
            y=alt.Y("category:N", sort="-x"),
            x="failures:Q",
            color="consequence:N",
            column="mta:N",
            tooltip=["mta:N", "category:N", "consequence:N", "failures:Q"],
        )
        .properties(width=260)
    )

# %% [markdown]
# ## Complaints

# %%
if PROVIDER and have("complaint_rates"):
    display(
        q(
            """
            SELECT day, sender_domain, complaints, delivered, complaint_rate, status, low_volume
            FROM complaint_rates WHERE provider = ? ORDER BY day, sender_domain
            """,
            PROVIDER,
        )
    )

# %% [markdown]
# ## Warm-up of our IPs towards it

# %%
if PROVIDER and have("warmup_state"):
    display(
        q(
            """
            SELECT source_ip, first_day, last_day, days_active, sustained_level, trend_slope, trend_ratio,
                   delivered_total, mta_last_seen
            FROM warmup_state WHERE provider = ? ORDER BY delivered_total DESC
            """,
            PROVIDER,
        )
    )

# %% [markdown]
# ## Raw event mix by recipient domain
#
# Straight from `events` (always in the catalog), for when the provider tables are not built.

# %%
mix = pl.DataFrame()
if have("events"):
    mix = q(
        """
        SELECT recipient_domain, mta, event_type, count(*) AS events
        FROM events WHERE recipient_domain IS NOT NULL
        GROUP BY ALL ORDER BY events DESC LIMIT 200
        """
    )
if mix.height:
    top = (
        mix.group_by("recipient_domain").agg(pl.col("events").sum()).sort("events", descending=True).head(10)
    )
    display(
        alt.Chart(mix.join(top.select("recipient_domain"), on="recipient_domain"))
        .mark_bar()
        .encode(
            y=alt.Y("recipient_domain:N", sort="-x"),
            x="events:Q",
            color="event_type:N",
            column="mta:N",
            tooltip=["recipient_domain:N", "mta:N", "event_type:N", "events:Q"],
        )
        .properties(width=260)
    )
else:
    display(Markdown("_No events in the lake._"))

# %%
con.close()
