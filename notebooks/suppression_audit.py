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
# # Suppression audit
#
# What the rebuilt suppression list holds and why: entries by source and scope, how the list
# grew, what expires soon, what changed since the previous build, legacy entries that did not
# survive, and the bounce evidence behind the `suppress` decisions.
#
# Reads the lake's DuckDB catalog **read-only** (`$MTASHIFT_LAKE/catalog.duckdb`, default
# `demo/lake`). Rules: `schemas/docs/suppression.md`. Addresses are personal data: keep
# exported copies of this notebook inside the team that owns the list.

# %%

import altair as alt
from IPython.display import Markdown, display

from mtashift.notebook import open_catalog

catalog = open_catalog()
con, have, q = catalog.con, catalog.have, catalog.q


# %% [markdown]
# ## What is suppressed, by source and scope

# %%
if have("suppression"):
    by_source = q(
        """
        SELECT source, CASE WHEN scope = 'global' THEN 'global' ELSE split_part(scope, ':', 1) END AS scope_kind,
               count(*) AS entries, count(*) FILTER (WHERE match_key LIKE '@%') AS whole_domains,
               count(*) FILTER (WHERE expires_at IS NOT NULL) AS expiring
        FROM suppression GROUP BY ALL ORDER BY entries DESC
        """
    )
    display(by_source)
    if by_source.height:
        display(
            alt.Chart(by_source)
            .mark_bar()
            .encode(
                x="entries:Q",
                y=alt.Y("source:N", sort="-x"),
                color="scope_kind:N",
                tooltip=["source:N", "scope_kind:N", "entries:Q"],
            )
            .properties(width=500, height=140)
        )
    display(
        q(
            "SELECT source, category, count(*) AS entries FROM suppression GROUP BY ALL ORDER BY entries DESC LIMIT 20"
        )
    )

# %% [markdown]
# ## Growth: entries by the week they were first seen

# %%
if have("suppression"):
    growth = q(
        """
        SELECT date_trunc('week', first_seen) AS week, source, count(*) AS entries
        FROM suppression WHERE first_seen IS NOT NULL GROUP BY ALL ORDER BY week, source
        """
    )
    undated = q("SELECT count(*) AS n FROM suppression WHERE first_seen IS NULL")["n"][0]
    display(Markdown(f"Entries without a date (undated legacy only): **{undated}**"))
    if growth.height:
        display(
            alt.Chart(growth)
            .mark_bar()
            .encode(
                x=alt.X("week:T", title="week of first evidence"),
                y="entries:Q",
                color="source:N",
                tooltip=["week:T", "source:N", "entries:Q"],
            )
            .properties(width=600, height=200)
        )

# %% [markdown]
# ## Expiring within 30 days of the newest evidence

# %%
if have("suppression"):
    display(
        q(
            """
            WITH newest AS (SELECT max(last_seen) AS t FROM suppression)
            SELECT match_key, scope, source, category, rule, last_seen, expires_at
            FROM suppression, newest
            WHERE expires_at IS NOT NULL AND expires_at <= newest.t + INTERVAL 30 DAY
            ORDER BY expires_at, match_key LIMIT 50
            """
        )
    )

# %% [markdown]
# ## Changes against the previous build

# %%
if have("suppression_diff"):
    changes = q(
        "SELECT change, count(*) AS entries FROM suppression_diff GROUP BY change ORDER BY entries DESC"
    )
    display(changes if changes.height else Markdown("_No change since the previous build._"))
    display(
        q(
            """
            SELECT change, match_key, scope, source_before, source_after, detail, rule
            FROM suppression_diff ORDER BY change, match_key LIMIT 30
            """
        )
    )

# %% [markdown]
# ## Legacy entries not in the rebuilt list

# %%
if have("legacy_suppression", "suppression"):
    dropped = q(
        """
        SELECT l.match_key, l.kind, l.scope, l.reason, l.added, l.provenance
        FROM legacy_suppression l ANTI JOIN suppression s USING (match_key)
        ORDER BY l.match_key
        """
    )
    total = q("SELECT count(*) AS n FROM legacy_suppression")["n"][0]
    display(
        Markdown(f"**{dropped.height}** of {total} legacy entries are not suppressed any more (any scope).")
    )
    display(dropped.head(30))

# %% [markdown]
# ## Bounce evidence behind `suppress`

# %%
if have("bounces"):
    evidence = q(
        """
        SELECT CAST(event_time AS DATE) AS day, category, count(*) AS failures
        FROM bounces WHERE consequence = 'suppress' GROUP BY ALL ORDER BY day, category
        """
    )
    if evidence.height:
        display(
            alt.Chart(evidence)
            .mark_bar()
            .encode(
                x="day:T", y="failures:Q", color="category:N", tooltip=["day:T", "category:N", "failures:Q"]
            )
            .properties(width=600, height=200)
        )
    else:
        display(Markdown("_No failures with consequence `suppress`._"))

# %% [markdown]
# ## Data quality of the list

# %%
if have("quality_results"):
    display(
        q(
            """
            SELECT batch, expectation, columns, severity, success, unexpected_count
            FROM quality_results WHERE suite = 'suppression' ORDER BY success, severity, expectation
            """
        )
    )

# %%
con.close()
