"""Mailbox-provider attribution: recipient domain / observed MX host -> provider.

The rules are data (``schemas/providers.yaml``, documented there); this module turns them into
polars expressions so attribution stays vectorised (no Python per row):

1. the row's own ``mx_host`` ends with a provider MX suffix (longest suffix wins);
2. else the provider observed for the row's ``recipient_domain`` through its MX hosts
   (``domain_map``: :func:`domain_mx_map` of the day, optionally completed by the whole-history
   ``recipient_domains`` table, see :func:`combine_domain_maps`);
3. else the domain list (exact domain or sub-domain), then the domain families (``yahoo.*``);
4. else ``other``.

Why MX first: custom domains hosted by a big provider (Google Workspace on
``aspmx.l.google.com``, Microsoft 365 tenants on ``*.mail.protection.outlook.com``) behave like
that provider, and the same provider names key the KumoMTA shaping ``provider`` blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import polars as pl
import yaml

from mtashift.lake import Lake

# Closed set shared with the simulator truth, reports and the KumoMTA translation.
PROVIDERS: tuple[str, ...] = (
    "google",
    "yahoo",
    "microsoft",
    "office365",
    "apple",
    "comcast",
    "gmx",
    "orange",
    "mimecast",
    "other",
)
OTHER = "other"

# Event types whose mx_host is the MX actually contacted for the recipient domain.
MX_OBSERVING_TYPES: tuple[str, ...] = ("delivered", "deferred", "bounced")

# How a `recipient_domains` row got its provider.
BASIS_MX = "mx"
BASIS_DOMAIN_LIST = "domain_list"
BASIS_NONE = "none"

RECIPIENT_DOMAINS_SCHEMA: pl.Schema = pl.Schema(
    {
        "recipient_domain": pl.String(),
        "provider": pl.String(),
        "provider_basis": pl.String(),
        "mx_provider": pl.String(),
        "mx_host_sample": pl.String(),
        "mx_events": pl.UInt32(),
        "events": pl.UInt32(),
        "first_seen": pl.Datetime("us", "UTC"),
        "last_seen": pl.Datetime("us", "UTC"),
    }
)

DOMAIN_MAP_SCHEMA: pl.Schema = pl.Schema(
    {
        "recipient_domain": pl.String(),
        "provider": pl.String(),
        "mx_host_sample": pl.String(),
        "mx_events": pl.UInt32(),
    }
)

_LABEL = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)*$")


@dataclass(frozen=True)
class ProviderMap:
    """The parsed provider map. Suffixes are ordered longest first."""

    mx_suffixes: tuple[tuple[str, str], ...]  # (suffix, provider)
    domains: tuple[tuple[str, str], ...]  # (domain, provider)
    families: tuple[tuple[str, str], ...]  # (family label, provider)


def default_map_path() -> Path:
    return Path(str(resources.files("schemas") / "providers.yaml"))


def parse_provider_map(document: dict) -> ProviderMap:
    """Validate a provider-map document (the YAML, loaded) and order its rules."""
    providers = document.get("providers")
    if not isinstance(providers, dict):
        raise ValueError("provider map: top-level `providers` mapping is required")
    suffixes: dict[str, str] = {}
    domains: dict[str, str] = {}
    families: dict[str, str] = {}
    for name, spec in providers.items():
        if name not in PROVIDERS or name == OTHER:
            raise ValueError(f"provider map: unknown provider {name!r} (closed set: {PROVIDERS})")
        spec = spec or {}
        unknown_keys = set(spec) - {"description", "mx_suffixes", "domains", "domain_families"}
        if unknown_keys:
            raise ValueError(f"provider map: {name}: unknown keys {sorted(unknown_keys)}")
        for kind, target in (("mx_suffixes", suffixes), ("domains", domains), ("domain_families", families)):
            for raw in spec.get(kind) or []:
                value = str(raw).strip().lower().rstrip(".")
                if kind == "mx_suffixes":
                    if not value.startswith("."):
                        raise ValueError(f"provider map: {name}: MX suffix {raw!r} must start with '.'")
                    value_label = value[1:]
                else:
                    value_label = value
                if not _LABEL.match(value_label):
                    raise ValueError(f"provider map: {name}: bad {kind} entry {raw!r}")
                if value in target and target[value] != name:
                    raise ValueError(f"provider map: {value!r} claimed by {target[value]} and {name}")
                target[value] = name
    return ProviderMap(
        mx_suffixes=tuple(sorted(suffixes.items(), key=lambda kv: (-len(kv[0]), kv[0]))),
        domains=tuple(sorted(domains.items(), key=lambda kv: (-len(kv[0]), kv[0]))),
        families=tuple(sorted(families.items())),
    )


def load_provider_map(path: str | Path | None = None) -> ProviderMap:
    """Load and validate ``schemas/providers.yaml`` (or another map file)."""
    if path is None:
        return _default_map()
    with open(path, encoding="utf-8") as fh:
        return parse_provider_map(yaml.safe_load(fh))


@cache
def _default_map() -> ProviderMap:
    with open(default_map_path(), encoding="utf-8") as fh:
        return parse_provider_map(yaml.safe_load(fh))


# --------------------------------------------------------------------------- expressions


def _normalise_host(expr: pl.Expr) -> pl.Expr:
    # Defensive: the schema promises lower-case without trailing dot, but KumoMTA shaping
    # suffixes sometimes carry one and hand-made inputs may be upper-case.
    return expr.cast(pl.String).str.strip_chars().str.to_lowercase().str.strip_chars_end(".")


def mx_provider_expr(mx_host: pl.Expr | str = "mx_host", *, pmap: ProviderMap | None = None) -> pl.Expr:
    """Provider whose MX suffix ``mx_host`` ends with (longest suffix first), else null."""
    pmap = pmap or load_provider_map()
    host = _normalise_host(pl.col(mx_host) if isinstance(mx_host, str) else mx_host)
    out: pl.Expr | None = None
    for suffix, provider in pmap.mx_suffixes:
        cond = host.str.ends_with(suffix)
        out = pl.when(cond).then(pl.lit(provider)) if out is None else out.when(cond).then(pl.lit(provider))
    if out is None:
        return pl.lit(None, dtype=pl.String)
    return out.otherwise(pl.lit(None, dtype=pl.String))


def domain_list_provider_expr(
    domain: pl.Expr | str = "recipient_domain", *, pmap: ProviderMap | None = None
) -> pl.Expr:
    """Provider from the domain list (exact or sub-domain), then domain families, else null."""
    pmap = pmap or load_provider_map()
    dom = _normalise_host(pl.col(domain) if isinstance(domain, str) else domain)
    listed: pl.Expr = pl.lit(None, dtype=pl.String)
    if pmap.domains:
        # One regex pass finds the listed domain the value equals or is a sub-domain of; the
        # alternation is ordered longest first, and a leftmost match is the longest suffix anyway.
        alternation = "|".join(re.escape(d) for d, _ in pmap.domains)
        listed = dom.str.extract(rf"(?:^|\.)({alternation})$", 1).replace_strict(
            dict(pmap.domains), default=None, return_dtype=pl.String
        )
    family: pl.Expr = pl.lit(None, dtype=pl.String)
    if pmap.families:
        alternation = "|".join(re.escape(f) for f, _ in pmap.families)
        family = dom.str.extract(rf"^({alternation})(?:\.[a-z]{{2,3}})?\.[a-z]{{2,}}$", 1).replace_strict(
            dict(pmap.families), default=None, return_dtype=pl.String
        )
    return pl.coalesce(listed, family)


def provider_for_mx(
    mx_host: str | pl.Expr | None, *, pmap: ProviderMap | None = None
) -> str | pl.Expr | None:
    """Provider of one MX host name (or, given an expression, the vectorised expression).

    The scalar form evaluates the very same expression, so both forms agree by construction.
    """
    if isinstance(mx_host, pl.Expr):
        return mx_provider_expr(mx_host, pmap=pmap)
    if mx_host is None:
        return None
    frame = pl.DataFrame({"mx_host": [mx_host]}, schema={"mx_host": pl.String})
    return frame.select(mx_provider_expr("mx_host", pmap=pmap)).item()


def provider_for_domain(domain: str | None, *, pmap: ProviderMap | None = None) -> str:
    """Provider of a bare domain by the domain list only (no MX knowledge), ``other`` if none."""
    if domain is None:
        return OTHER
    frame = pl.DataFrame({"d": [domain]}, schema={"d": pl.String})
    return frame.select(pl.coalesce(domain_list_provider_expr("d", pmap=pmap), pl.lit(OTHER))).item()


# --------------------------------------------------------------------------- frames


def domain_mx_map(*, events: pl.LazyFrame, pmap: ProviderMap | None = None) -> pl.LazyFrame:
    """recipient_domain -> provider from MX hosts observed on delivered/deferred/bounced events.

    Only MX hosts that match a provider suffix count. Per domain the provider matched by the most
    events wins (ties: provider name ascending); ``mx_host_sample`` is that provider's most
    frequent MX host for the domain (ties: name ascending). Columns: DOMAIN_MAP_SCHEMA.
    """
    pmap = pmap or load_provider_map()
    per_host = (
        events.filter(
            pl.col("event_type").is_in(MX_OBSERVING_TYPES)
            & pl.col("mx_host").is_not_null()
            & pl.col("recipient_domain").is_not_null()
        )
        .group_by("recipient_domain", "mx_host")
        .agg(pl.len().alias("n"))
        .with_columns(mx_provider_expr("mx_host", pmap=pmap).alias("provider"))
        .filter(pl.col("provider").is_not_null())
    )
    return _pick_domain_provider(per_host)


def _pick_domain_provider(per_host: pl.LazyFrame) -> pl.LazyFrame:
    """From (recipient_domain, mx_host, provider, n) rows pick one provider and sample per domain."""
    per_provider = (
        per_host.sort(
            ["recipient_domain", "provider", "n", "mx_host"], descending=[False, False, True, False]
        )
        .group_by("recipient_domain", "provider", maintain_order=True)
        .agg(pl.col("mx_host").first().alias("mx_host_sample"), pl.col("n").sum().alias("mx_events"))
    )
    return (
        per_provider.sort(["recipient_domain", "mx_events", "provider"], descending=[False, True, False])
        .group_by("recipient_domain", maintain_order=True)
        .first()
        .select(
            pl.col("recipient_domain").cast(pl.String),
            pl.col("provider").cast(pl.String),
            pl.col("mx_host_sample").cast(pl.String),
            pl.col("mx_events").cast(pl.UInt32),
        )
    )


def combine_domain_maps(*, day: pl.LazyFrame | None, history: pl.LazyFrame | None) -> pl.LazyFrame | None:
    """The day's observed MX provider per domain, completed by the history map for other domains.

    The day's own observation wins (a domain may have moved provider); history only fills domains
    the day did not see an MX for (complaints, expiries, receptions of quiet domains).
    """
    if history is not None:
        history = history.select(
            pl.col("recipient_domain").cast(pl.String), pl.col("provider").cast(pl.String)
        ).unique("recipient_domain", keep="first", maintain_order=True)
    if day is None:
        return history
    day = day.select(pl.col("recipient_domain").cast(pl.String), pl.col("provider").cast(pl.String))
    if history is None:
        return day
    return pl.concat([day, history.join(day, on="recipient_domain", how="anti")], how="vertical")


def add_provider(
    frame: pl.LazyFrame, *, domain_map: pl.LazyFrame | None = None, pmap: ProviderMap | None = None
) -> pl.LazyFrame:
    """Add (or replace) a ``provider`` column, never null, always one of PROVIDERS.

    Order: the row's own ``mx_host`` suffix, else ``domain_map`` (columns recipient_domain,
    provider) for the row's ``recipient_domain``, else the domain list, else ``other``.
    Works on frames without ``mx_host`` (complaints, suppression lists): rule 1 is then skipped.
    Row order and row count are preserved.
    """
    pmap = pmap or load_provider_map()
    names = frame.collect_schema().names()
    keys = [c for c in ("recipient_domain", "mx_host") if c in names]
    if not keys:
        raise ValueError("add_provider needs a recipient_domain or mx_host column")
    if "provider" in names:
        frame = frame.drop("provider")
    # Attribute each distinct (domain, MX host) once and join back: a day has millions of rows but
    # only thousands of pairs, and the suffix/regex matching is the expensive part.
    lookup = frame.select(keys).unique()
    parts: list[pl.Expr] = []
    if "mx_host" in keys:
        parts.append(mx_provider_expr("mx_host", pmap=pmap))
    if domain_map is not None and "recipient_domain" in keys:
        mapped = domain_map.select(
            pl.col("recipient_domain").cast(pl.String),
            pl.col("provider").cast(pl.String).alias("__dm_provider"),
        ).unique("recipient_domain", keep="first", maintain_order=True)
        lookup = lookup.join(mapped, on="recipient_domain", how="left")
        parts.append(pl.col("__dm_provider"))
    if "recipient_domain" in keys:
        parts.append(domain_list_provider_expr("recipient_domain", pmap=pmap))
    parts.append(pl.lit(OTHER))
    lookup = lookup.select(*keys, pl.coalesce(parts).alias("provider"))
    return frame.join(lookup, on=keys, how="left", nulls_equal=True, maintain_order="left")


def recipient_domains(*, events: pl.LazyFrame, pmap: ProviderMap | None = None) -> pl.LazyFrame:
    """Whole-history table: one row per recipient domain ever seen (RECIPIENT_DOMAINS_SCHEMA).

    ``provider`` follows add_provider's rules minus the row-level MX step: observed-MX provider
    (``provider_basis = 'mx'``), else the domain list (``'domain_list'``), else ``other``
    (``'none'``). ``mx_host_sample`` is the most frequent MX host observed for the domain on
    delivered/deferred/bounced events, provider-matching or not (ties: name ascending).

    Intended use: daily stages call ``combine_domain_maps(day=domain_mx_map(events=day_events),
    history=history_domain_map(lake=lake))`` and pass the result to :func:`add_provider`, so a
    domain whose MX was observed on another day keeps its provider on days it was not observed.
    """
    pmap = pmap or load_provider_map()
    seen = (
        events.filter(pl.col("recipient_domain").is_not_null())
        .group_by("recipient_domain")
        .agg(
            pl.len().cast(pl.UInt32).alias("events"),
            pl.col("event_time").min().alias("first_seen"),
            pl.col("event_time").max().alias("last_seen"),
        )
    )
    hosts = (
        events.filter(
            pl.col("event_type").is_in(MX_OBSERVING_TYPES)
            & pl.col("mx_host").is_not_null()
            & pl.col("recipient_domain").is_not_null()
        )
        .group_by("recipient_domain", "mx_host")
        .agg(pl.len().alias("n"))
    )
    any_sample = (
        hosts.sort(["recipient_domain", "n", "mx_host"], descending=[False, True, False])
        .group_by("recipient_domain", maintain_order=True)
        .agg(pl.col("mx_host").first().alias("mx_host_sample"))
    )
    matched = _pick_domain_provider(
        hosts.with_columns(mx_provider_expr("mx_host", pmap=pmap).alias("provider")).filter(
            pl.col("provider").is_not_null()
        )
    ).select("recipient_domain", pl.col("provider").alias("mx_provider"), "mx_events")
    listed = domain_list_provider_expr("recipient_domain", pmap=pmap)
    return (
        seen.join(matched, on="recipient_domain", how="left")
        .join(any_sample, on="recipient_domain", how="left")
        .with_columns(
            pl.coalesce(pl.col("mx_provider"), listed, pl.lit(OTHER)).alias("provider"),
            pl.when(pl.col("mx_provider").is_not_null())
            .then(pl.lit(BASIS_MX))
            .when(listed.is_not_null())
            .then(pl.lit(BASIS_DOMAIN_LIST))
            .otherwise(pl.lit(BASIS_NONE))
            .alias("provider_basis"),
            pl.col("mx_events").fill_null(0).cast(pl.UInt32),
        )
        .select([pl.col(n).cast(t) for n, t in RECIPIENT_DOMAINS_SCHEMA.items()])
        .sort("recipient_domain")
    )


def history_domain_map(*, lake: Lake) -> pl.LazyFrame | None:
    """The MX-observed part of ``LAKE/recipient_domains/data.parquet`` as a domain map, if built."""
    path = lake.table_dir("recipient_domains") / "data.parquet"
    if not path.exists():
        return None
    return (
        pl.scan_parquet(path)
        .filter(pl.col("provider_basis") == BASIS_MX)
        .select("recipient_domain", "provider")
    )


def daily_domain_map(*, events: pl.LazyFrame, lake: Lake | None = None) -> pl.LazyFrame | None:
    """What daily stages pass to add_provider: the day's MX map completed by the history map."""
    history = history_domain_map(lake=lake) if lake is not None else None
    return combine_domain_maps(day=domain_mx_map(events=events), history=history)
