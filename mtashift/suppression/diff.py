"""What changed between the previous suppression build and this one, and the legacy proof."""

from __future__ import annotations

import polars as pl

from mtashift.suppression.build import EXPIRED_SCHEMA, legacy_scoped
from mtashift.suppression.policy import SuppressionPolicy
from schemas.suppression import DIFF_CHANGES, DIFF_SCHEMA, SUPPRESSION_SCHEMA

KEYS = ["match_key", "scope"]
# Fields whose change makes a row `changed` (evidence growing alone is not a change of the entry).
COMPARED: tuple[str, ...] = ("address", "source", "reason", "category", "expires_at")


def _as_text(col: str) -> pl.Expr:
    c = pl.col(col)
    if col == "expires_at" or col.startswith("expires_at"):
        return c.dt.strftime("%Y-%m-%dT%H:%M:%SZ").fill_null("never")
    return c.cast(pl.String).fill_null("null")


def diff_suppression(
    *,
    previous: pl.DataFrame | None,
    current: pl.DataFrame,
    expired: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Rows added, removed or changed against ``previous``; plus lapsed legacy entries.

    - ``removed`` rows say why: the lapse rule when every candidate of the key expired, else that
      no source supports the entry any more (a legacy file or event partition went away, or the
      policy changed).
    - ``expired`` rows: keys backed by a legacy list whose every candidate lapsed and that were not
      in the previous build either; listed on every build so each legacy entry is accounted for.
    """
    prev = (
        pl.DataFrame(schema=SUPPRESSION_SCHEMA)
        if previous is None
        else previous.select(
            [
                (pl.col(n) if n in previous.columns else pl.lit(None)).cast(t).alias(n)
                for n, t in SUPPRESSION_SCHEMA.items()
            ]
        )
    )
    exp = pl.DataFrame(schema=EXPIRED_SCHEMA) if expired is None else expired
    cur = current

    added = cur.join(prev.select(KEYS), on=KEYS, how="anti").select(
        pl.lit("added").alias("change"),
        *KEYS,
        "address",
        pl.lit(None, dtype=pl.String).alias("source_before"),
        pl.col("source").alias("source_after"),
        pl.lit(None, dtype=pl.String).alias("reason_before"),
        pl.col("reason").alias("reason_after"),
        pl.lit(None).alias("expires_at_before"),
        pl.col("expires_at").alias("expires_at_after"),
        (pl.col("source") + pl.lit(": ") + pl.col("reason").fill_null("")).alias("detail"),
        pl.lit(None, dtype=pl.String).alias("rule"),
    )

    gone = prev.join(cur.select(KEYS), on=KEYS, how="anti").join(
        exp.select(*KEYS, pl.col("rule").alias("lapse_rule")), on=KEYS, how="left"
    )
    removed = gone.select(
        pl.lit("removed").alias("change"),
        *KEYS,
        "address",
        pl.col("source").alias("source_before"),
        pl.lit(None, dtype=pl.String).alias("source_after"),
        pl.col("reason").alias("reason_before"),
        pl.lit(None, dtype=pl.String).alias("reason_after"),
        pl.col("expires_at").alias("expires_at_before"),
        pl.lit(None).alias("expires_at_after"),
        pl.when(pl.col("lapse_rule").is_not_null())
        .then(pl.lit("lapsed: ") + pl.col("lapse_rule"))
        .otherwise(pl.lit("no source supports it any more (input removed or policy changed)"))
        .alias("detail"),
        pl.col("lapse_rule").alias("rule"),
    )

    both = prev.join(cur, on=KEYS, how="inner", suffix="_after")
    differs = [pl.col(f).ne_missing(pl.col(f"{f}_after")) for f in COMPARED]
    pieces = [
        pl.when(d).then(pl.lit(f"{f}: ") + _as_text(f) + pl.lit(" -> ") + _as_text(f"{f}_after"))
        for f, d in zip(COMPARED, differs, strict=True)
    ]
    changed = both.filter(pl.any_horizontal(differs)).select(
        pl.lit("changed").alias("change"),
        *KEYS,
        pl.col("address_after").alias("address"),
        pl.col("source").alias("source_before"),
        pl.col("source_after"),
        pl.col("reason").alias("reason_before"),
        pl.col("reason_after"),
        pl.col("expires_at").alias("expires_at_before"),
        pl.col("expires_at_after"),
        pl.concat_str(pieces, separator="; ", ignore_nulls=True).alias("detail"),
        pl.lit(None, dtype=pl.String).alias("rule"),
    )

    lapsed_legacy = (
        exp.filter(pl.col("sources").list.contains("legacy"))
        .join(prev.select(KEYS), on=KEYS, how="anti")
        .select(
            pl.lit("expired").alias("change"),
            *KEYS,
            "address",
            pl.col("source").alias("source_before"),
            pl.lit(None, dtype=pl.String).alias("source_after"),
            pl.lit(None, dtype=pl.String).alias("reason_before"),
            pl.lit(None, dtype=pl.String).alias("reason_after"),
            pl.col("expires_at").alias("expires_at_before"),
            pl.lit(None).alias("expires_at_after"),
            (pl.lit("lapsed: ") + pl.col("rule")).alias("detail"),
            "rule",
        )
    )
    order = {c: i for i, c in enumerate(DIFF_CHANGES)}
    out = pl.concat(
        [f.cast(dict(DIFF_SCHEMA)) for f in (added, removed, changed, lapsed_legacy)], how="vertical"
    )
    return (
        out.with_columns(_o=pl.col("change").replace_strict(order, return_dtype=pl.Int32))
        .sort("_o", *KEYS)
        .drop("_o")
    )


def legacy_unaccounted(
    *,
    legacy: pl.DataFrame | pl.LazyFrame | None,
    table: pl.DataFrame,
    diff: pl.DataFrame,
    policy: SuppressionPolicy,
) -> pl.DataFrame:
    """Valid legacy entries neither in the list nor in the diff with the rule that lapsed them.

    The proof that the rebuild drops nothing the sender had suppressed: this must be empty.
    """
    leg = legacy_scoped(legacy, policy).select(
        "match_key", pl.col("eff_scope").alias("scope"), "address", "provenance"
    )
    lapsed = diff.filter(
        pl.col("change").is_in(["removed", "expired"]) & pl.col("rule").is_not_null()
    ).select(KEYS)
    return (
        leg.join(table.select(KEYS), on=KEYS, how="anti")
        .join(lapsed, on=KEYS, how="anti")
        .sort("match_key", "scope", "provenance")
    )
