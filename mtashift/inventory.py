"""PowerMTA estate inventory: flat tables from parsed configs, and config joined with what the logs show.

Tables (one Parquet each, ``LAKE/<name>/data.parquet``; schemas below are the contract):

* ``pmta_vmtas``         one row per (node, VMTA, source IP); a VMTA without ``smtp-source-host`` inherits
                         the global source hosts (``inherited = true``) or gets one row with a null IP.
* ``pmta_pools``         one row per (node, pool, member VMTA).
* ``pmta_source_ips``    one row per (node, source IP) with the VMTAs and EHLO names using it.
* ``pmta_domain_rules``  one row per (node, VMTA, configured domain pattern, directive[, qualifier]) with
                         the EFFECTIVE value after inheritance (rule: :func:`effective_domain_rules`)
                         and where that value was written; ``vmta`` null = traffic without a VMTA.
* ``pmta_dkim_keys``     one row per ``domain-key`` (domain, selector, key path — never key material).
* ``pmta_directives``    every directive and block tag of every file, in file order (for the report).
* ``pmta_config_issues`` parse issues: unknown directives/tags, syntax errors, missing includes.
* ``estate_inventory``   configured VMTAs / source IPs / signing domains joined with the ones seen in
                         the events: configured_and_used, configured_unused, used_unconfigured.
"""

from __future__ import annotations

import polars as pl

from mtashift.pmta_config import (
    PmtaConfig,
    SourceHost,
    effective_domain_rules,
    iter_all_directives,
    known_directives,
)

UTC_TS = pl.Datetime("us", "UTC")

PMTA_VMTAS_SCHEMA = pl.Schema(
    {
        "node": pl.String(),
        "vmta": pl.String(),
        "source_ip": pl.String(),
        "ehlo_host": pl.String(),
        "source_spec": pl.String(),  # the smtp-source-host argument as written (IP or CIDR)
        "inherited": pl.Boolean(),  # source host taken from the global smtp-source-host
        "pools": pl.List(pl.String()),
        "file": pl.String(),  # where the <virtual-mta> block starts
        "line": pl.Int64(),
        "source_file": pl.String(),  # where the smtp-source-host line is
        "source_line": pl.Int64(),
    }
)

PMTA_POOLS_SCHEMA = pl.Schema(
    {
        "node": pl.String(),
        "pool": pl.String(),
        "vmta": pl.String(),
        "vmta_defined": pl.Boolean(),
        "pool_has_domain_rules": pl.Boolean(),
        "file": pl.String(),
        "line": pl.Int64(),
    }
)

PMTA_SOURCE_IPS_SCHEMA = pl.Schema(
    {
        "node": pl.String(),
        "source_ip": pl.String(),
        "vmtas": pl.List(pl.String()),
        "ehlo_hosts": pl.List(pl.String()),
        "global_default": pl.Boolean(),  # listed by a global smtp-source-host
        "file": pl.String(),
        "line": pl.Int64(),
    }
)

PMTA_DOMAIN_RULES_SCHEMA = pl.Schema(
    {
        "node": pl.String(),
        "vmta": pl.String(),
        "domain_pattern": pl.String(),
        "pattern_kind": pl.String(),
        "directive": pl.String(),
        "qualifier": pl.String(),
        "value": pl.String(),
        "scope": pl.String(),  # global | pool | vmta: where the winning value was written
        "scope_name": pl.String(),
        "source_pattern": pl.String(),
        "from_macro": pl.Boolean(),
        "file": pl.String(),
        "line": pl.Int64(),
    }
)

PMTA_DKIM_KEYS_SCHEMA = pl.Schema(
    {
        "node": pl.String(),
        "domain": pl.String(),
        "selector": pl.String(),
        "key_path": pl.String(),
        "scope": pl.String(),
        "scope_name": pl.String(),
        "file": pl.String(),
        "line": pl.Int64(),
    }
)

PMTA_DIRECTIVES_SCHEMA = pl.Schema(
    {
        "node": pl.String(),
        "scope": pl.String(),
        "block": pl.String(),
        "directive": pl.String(),
        "value": pl.String(),
        "known": pl.Boolean(),
        "file": pl.String(),
        "line": pl.Int64(),
    }
)

PMTA_CONFIG_ISSUES_SCHEMA = pl.Schema(
    {
        "node": pl.String(),
        "severity": pl.String(),
        "code": pl.String(),
        "message": pl.String(),
        "file": pl.String(),
        "line": pl.Int64(),
    }
)

ESTATE_INVENTORY_SCHEMA = pl.Schema(
    {
        "node": pl.String(),
        "kind": pl.String(),  # vmta | source_ip | sender_domain
        "name": pl.String(),
        "configured": pl.Boolean(),
        "seen": pl.Boolean(),
        "status": pl.String(),  # configured_and_used | configured_unused | used_unconfigured
        "events": pl.Int64(),
        "delivered": pl.Int64(),
        "first_seen": UTC_TS,
        "last_seen": UTC_TS,
        "config_file": pl.String(),
        "config_line": pl.Int64(),
        "detail": pl.String(),
    }
)

INVENTORY_STATUSES = ("configured_and_used", "configured_unused", "used_unconfigured")


def _frame(rows: list[dict], schema: pl.Schema) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)


def vmta_hosts(cfg: PmtaConfig, vmta: str) -> tuple[list[SourceHost], bool]:
    """The source hosts a VMTA sends from, and whether they are inherited from global scope."""
    own = cfg.vmtas[vmta].source_hosts
    if own:
        return own, False
    return cfg.global_source_hosts, True


def pmta_vmtas(configs: list[PmtaConfig]) -> pl.DataFrame:
    rows = []
    for cfg in configs:
        for name, v in cfg.vmtas.items():
            hosts, inherited = vmta_hosts(cfg, name)
            pools = cfg.pools_of(name)
            base = {"node": cfg.node, "vmta": name, "pools": pools, "file": v.loc.file, "line": v.loc.line}
            if not hosts:
                rows.append(
                    {
                        **base,
                        "source_ip": None,
                        "ehlo_host": cfg.host_name,
                        "source_spec": None,
                        "inherited": False,
                        "source_file": None,
                        "source_line": None,
                    }
                )
            for h in hosts:
                rows.append(
                    {
                        **base,
                        "source_ip": h.ip,
                        "ehlo_host": h.hostname or cfg.host_name,
                        "source_spec": h.spec,
                        "inherited": inherited,
                        "source_file": h.loc.file,
                        "source_line": h.loc.line,
                    }
                )
    return _frame(rows, PMTA_VMTAS_SCHEMA).select(PMTA_VMTAS_SCHEMA.names())


def pmta_pools(configs: list[PmtaConfig]) -> pl.DataFrame:
    rows = []
    for cfg in configs:
        for p in cfg.pools.values():
            for member, loc in p.members:
                rows.append(
                    {
                        "node": cfg.node,
                        "pool": p.name,
                        "vmta": member,
                        "vmta_defined": member in cfg.vmtas,
                        "pool_has_domain_rules": bool(p.domains),
                        "file": loc.file,
                        "line": loc.line,
                    }
                )
    return _frame(rows, PMTA_POOLS_SCHEMA)


def pmta_source_ips(configs: list[PmtaConfig]) -> pl.DataFrame:
    rows = []
    for cfg in configs:
        by_ip: dict[str, dict] = {}

        def add(h: SourceHost, vmta: str | None, is_global: bool, by_ip=by_ip, cfg=cfg) -> None:
            if h.ip is None:
                return
            r = by_ip.setdefault(
                h.ip,
                {
                    "node": cfg.node,
                    "source_ip": h.ip,
                    "vmtas": [],
                    "ehlo_hosts": [],
                    "global_default": False,
                    "file": h.loc.file,
                    "line": h.loc.line,
                },
            )
            if vmta and vmta not in r["vmtas"]:
                r["vmtas"].append(vmta)
            host = h.hostname or cfg.host_name
            if host and host not in r["ehlo_hosts"]:
                r["ehlo_hosts"].append(host)
            r["global_default"] = r["global_default"] or is_global

        for h in cfg.global_source_hosts:
            add(h, None, True)
        for name in cfg.vmtas:
            hosts, inherited = vmta_hosts(cfg, name)
            for h in hosts:
                add(h, name, inherited)
        rows.extend(by_ip[ip] for ip in sorted(by_ip))
    return _frame(rows, PMTA_SOURCE_IPS_SCHEMA)


def pmta_domain_rules(configs: list[PmtaConfig]) -> pl.DataFrame:
    rows = []
    for cfg in configs:
        for r in effective_domain_rules(cfg):
            rows.append(
                {
                    "node": cfg.node,
                    "vmta": r.vmta,
                    "domain_pattern": r.pattern.text,
                    "pattern_kind": r.pattern.kind,
                    "directive": r.directive,
                    "qualifier": r.qualifier,
                    "value": r.value,
                    "scope": r.scope,
                    "scope_name": r.scope_name,
                    "source_pattern": r.source_pattern.text,
                    "from_macro": r.source_pattern.from_macro,
                    "file": r.loc.file,
                    "line": r.loc.line,
                }
            )
    return _frame(rows, PMTA_DOMAIN_RULES_SCHEMA)


def pmta_dkim_keys(configs: list[PmtaConfig]) -> pl.DataFrame:
    rows = [
        {
            "node": cfg.node,
            "domain": k.domain,
            "selector": k.selector,
            "key_path": k.path,
            "scope": k.scope,
            "scope_name": k.scope_name,
            "file": k.loc.file,
            "line": k.loc.line,
        }
        for cfg in configs
        for k in cfg.domain_keys
    ]
    return _frame(rows, PMTA_DKIM_KEYS_SCHEMA)


def pmta_directives(configs: list[PmtaConfig]) -> pl.DataFrame:
    kd = known_directives()
    rows = []
    for cfg in configs:
        for scope, block, d, _parent in iter_all_directives(cfg):
            known = d.name.startswith("<") or d.name == "(pattern)" or d.name in kd
            rows.append(
                {
                    "node": cfg.node,
                    "scope": scope,
                    "block": block,
                    "directive": d.name,
                    "value": d.value,
                    "known": known,
                    "file": d.loc.file,
                    "line": d.loc.line,
                }
            )
    return _frame(rows, PMTA_DIRECTIVES_SCHEMA)


def pmta_config_issues(configs: list[PmtaConfig]) -> pl.DataFrame:
    rows = [
        {
            "node": cfg.node,
            "severity": i.severity,
            "code": i.code,
            "message": i.message,
            "file": i.loc.file if i.loc else None,
            "line": i.loc.line if i.loc else None,
        }
        for cfg in configs
        for i in cfg.issues
    ]
    return _frame(rows, PMTA_CONFIG_ISSUES_SCHEMA)


def config_tables(configs: list[PmtaConfig]) -> dict[str, pl.DataFrame]:
    """All flat tables of the parsed estate, by table name."""
    return {
        "pmta_vmtas": pmta_vmtas(configs),
        "pmta_pools": pmta_pools(configs),
        "pmta_source_ips": pmta_source_ips(configs),
        "pmta_domain_rules": pmta_domain_rules(configs),
        "pmta_dkim_keys": pmta_dkim_keys(configs),
        "pmta_directives": pmta_directives(configs),
        "pmta_config_issues": pmta_config_issues(configs),
    }


# --------------------------------------------------------------------------------------------------
# estate inventory: configuration joined with the logs


def _seen(events: pl.LazyFrame, column: str) -> pl.LazyFrame:
    return (
        events.filter(pl.col(column).is_not_null() & (pl.col(column) != ""))
        .group_by("node", pl.col(column).alias("name"))
        .agg(
            pl.len().cast(pl.Int64).alias("events"),
            (pl.col("event_type") == "delivered").sum().cast(pl.Int64).alias("delivered"),
            pl.col("event_time").min().alias("first_seen"),
            pl.col("event_time").max().alias("last_seen"),
        )
    )


def _join(configured: pl.LazyFrame, seen: pl.LazyFrame, kind: str) -> pl.LazyFrame:
    return (
        configured.with_columns(pl.lit(True).alias("configured"))
        .join(seen.with_columns(pl.lit(True).alias("seen")), on=["node", "name"], how="full", coalesce=True)
        .with_columns(
            pl.lit(kind).alias("kind"),
            pl.col("configured").fill_null(False),
            pl.col("seen").fill_null(False),
            pl.col("events").fill_null(0),
            pl.col("delivered").fill_null(0),
        )
    )


def build_estate_inventory(
    *,
    events: pl.LazyFrame,
    vmtas: pl.LazyFrame | pl.DataFrame,
    source_ips: pl.LazyFrame | pl.DataFrame,
    dkim_keys: pl.LazyFrame | pl.DataFrame,
    mta: str | None = "pmta",
) -> pl.LazyFrame:
    """Configured VMTAs, source IPs and signing domains against those seen in the events (one row each).

    Joined on (node, name): the PowerMTA node of an accounting row is its landing sub-folder, the node
    of a config its ``pmta-config`` sub-folder. Only ``mta`` events count (the KumoMTA side has its own
    configuration). A sending domain is ``configured`` when a ``domain-key`` names it, or the node has a
    ``*`` key (``detail`` says so). Counts are all events with the column set; ``delivered`` the
    delivered ones.
    """
    ev = events.select("mta", "node", "event_type", "event_time", "source", "source_ip", "sender_domain")
    if mta is not None:
        ev = ev.filter(pl.col("mta") == mta)
    vm = vmtas.lazy()
    ips = source_ips.lazy()
    keys = dkim_keys.lazy()

    cfg_vmtas = vm.group_by("node", pl.col("vmta").alias("name")).agg(
        pl.col("file").first().alias("config_file"), pl.col("line").first().alias("config_line")
    )
    cfg_ips = ips.select(
        "node",
        pl.col("source_ip").alias("name"),
        pl.col("file").alias("config_file"),
        pl.col("line").alias("config_line"),
    )
    exact_keys = (
        keys.filter(pl.col("domain") != "*")
        .group_by("node", pl.col("domain").alias("name"))
        .agg(pl.col("file").first().alias("config_file"), pl.col("line").first().alias("config_line"))
    )
    wildcard = (
        keys.filter(pl.col("domain") == "*")
        .group_by("node")
        .agg(pl.col("file").first().alias("wc_file"), pl.col("line").first().alias("wc_line"))
    )

    parts = [
        _join(cfg_vmtas, _seen(ev, "source"), "vmta").with_columns(pl.lit(None, pl.String()).alias("detail")),
        _join(cfg_ips, _seen(ev, "source_ip"), "source_ip").with_columns(
            pl.lit(None, pl.String()).alias("detail")
        ),
    ]
    domains = (
        _join(exact_keys, _seen(ev, "sender_domain"), "sender_domain")
        .join(wildcard, on="node", how="left")
        .with_columns(
            pl.when(~pl.col("configured") & pl.col("wc_file").is_not_null())
            .then(pl.lit("signed by the node's '*' domain-key"))
            .otherwise(pl.lit(None, pl.String()))
            .alias("detail"),
        )
        .with_columns(
            (pl.col("configured") | pl.col("wc_file").is_not_null()).alias("configured"),
            pl.coalesce("config_file", "wc_file").alias("config_file"),
            pl.coalesce("config_line", "wc_line").alias("config_line"),
        )
        .drop("wc_file", "wc_line")
    )
    parts.append(domains)
    out = pl.concat([p.select(_INV_COLS_NO_STATUS) for p in parts], how="vertical_relaxed")
    return (
        out.with_columns(
            pl.when(pl.col("configured") & pl.col("seen"))
            .then(pl.lit("configured_and_used"))
            .when(pl.col("configured"))
            .then(pl.lit("configured_unused"))
            .otherwise(pl.lit("used_unconfigured"))
            .alias("status")
        )
        .select([pl.col(n).cast(t) for n, t in ESTATE_INVENTORY_SCHEMA.items()])
        .sort("node", "kind", "name", nulls_last=True)
    )


_INV_COLS_NO_STATUS = [n for n in ESTATE_INVENTORY_SCHEMA.names() if n != "status"]
