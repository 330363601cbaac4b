"""PowerMTA inventory tables and the estate inventory (configuration joined with the logs)."""

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from mtashift.inventory import (
    ESTATE_INVENTORY_SCHEMA,
    PMTA_DOMAIN_RULES_SCHEMA,
    PMTA_VMTAS_SCHEMA,
    build_estate_inventory,
    config_tables,
)
from mtashift.pmta_config import parse_estate, parse_node, parse_text
from schemas.events import EVENT_SCHEMA, conform

FIX = Path(__file__).parent / "fixtures" / "pmta-config"


@pytest.fixture(scope="module")
def tables():
    return config_tables([parse_node(FIX / "estate" / "mta1")])


def test_pmta_vmtas(tables) -> None:
    vm = tables["pmta_vmtas"]
    assert vm.schema == PMTA_VMTAS_SCHEMA
    assert vm.select("vmta", "source_ip", "ehlo_host", "pools", "line", "source_line").rows() == [
        ("mkt-1", "192.0.2.10", "mkt-1.mta1.example.net", ["pool-marketing"], 2, 3),
        ("mkt-2", "192.0.2.11", "mkt-2.mta1.example.net", ["pool-marketing"], 9, 10),
        ("txn-1", "198.51.100.1", "txn.mta1.example.net", ["pool-transactional"], 13, 14),
        ("txn-1", "198.51.100.2", "txn.mta1.example.net", ["pool-transactional"], 13, 14),
        ("warm-1", "203.0.113.5", "warm-1.mta1.example.net", ["pool-transactional"], 21, 22),
    ]
    assert set(vm["file"]) == {"vmtas.conf"}
    assert vm["inherited"].to_list() == [False] * 5


def test_vmta_inherits_global_source_host() -> None:
    cfg = parse_text(
        "host-name mta.example\nsmtp-source-host 192.0.2.1 g.example\nsmtp-source-host 192.0.2.2\n"
        "<virtual-mta bare>\n</virtual-mta>\n"
    )
    t = config_tables([cfg])
    assert t["pmta_vmtas"].select("vmta", "source_ip", "ehlo_host", "inherited").rows() == [
        ("bare", "192.0.2.1", "g.example", True),
        ("bare", "192.0.2.2", "mta.example", True),
    ]
    assert t["pmta_source_ips"].select("source_ip", "vmtas", "global_default").rows() == [
        ("192.0.2.1", ["bare"], True),
        ("192.0.2.2", ["bare"], True),
    ]


def test_pmta_pools_source_ips_and_keys(tables) -> None:
    assert tables["pmta_pools"].select(
        "pool", "vmta", "vmta_defined", "pool_has_domain_rules", "line"
    ).rows() == [
        ("pool-marketing", "mkt-1", True, True, 26),
        ("pool-marketing", "mkt-2", True, True, 27),
        ("pool-transactional", "txn-1", True, False, 34),
        ("pool-transactional", "warm-1", True, False, 35),
    ]
    assert tables["pmta_source_ips"].select("source_ip", "vmtas", "ehlo_hosts").rows() == [
        ("192.0.2.10", ["mkt-1"], ["mkt-1.mta1.example.net"]),
        ("192.0.2.11", ["mkt-2"], ["mkt-2.mta1.example.net"]),
        ("198.51.100.1", ["txn-1"], ["txn.mta1.example.net"]),
        ("198.51.100.2", ["txn-1"], ["txn.mta1.example.net"]),
        ("203.0.113.5", ["warm-1"], ["warm-1.mta1.example.net"]),
    ]
    assert tables["pmta_dkim_keys"].select("domain", "selector", "key_path", "scope").rows() == [
        ("txn.example.com", "txn", "/etc/pmta/keys/txn.example.com.pem", "vmta"),
        ("example.com", "s2024", "/etc/pmta/keys/example.com.pem", "global"),
        ("example.com", "s2023", "/etc/pmta/keys/example.com.old.pem", "global"),
        ("news.example.com", "k1", "/etc/pmta/keys/news.pem", "global"),
    ]


def test_pmta_domain_rules(tables) -> None:
    dr = tables["pmta_domain_rules"]
    assert dr.schema == PMTA_DOMAIN_RULES_SCHEMA

    def one(vmta, pattern, directive):
        f = (pl.col("domain_pattern") == pattern) & (pl.col("directive") == directive)
        f = f & (pl.col("vmta").is_null() if vmta is None else pl.col("vmta") == vmta)
        return (
            dr.filter(f)
            .select("value", "scope", "scope_name", "source_pattern", "from_macro", "file", "line")
            .row(0)
        )

    assert one(None, "yahoo.fr", "max-msg-rate") == ("83/10m", "global", None, "yahoo.fr", True, "config", 65)
    assert one("mkt-1", "yahoo.com", "max-smtp-out") == (
        "4",
        "pool",
        "pool-marketing",
        "yahoo.com",
        False,
        "vmtas.conf",
        29,
    )
    assert one("txn-1", "comcast.net", "max-smtp-out") == (
        "40",
        "vmta",
        "txn-1",
        "*",
        False,
        "vmtas.conf",
        17,
    )
    assert one("warm-1", "*", "retry-after") == (
        "10m,10m,1h,4h,12h",
        "global",
        None,
        "*",
        False,
        "config",
        48,
    )
    # 12 global patterns: *, gmail.com, yahoo.{com,co.uk,de,fr} (the explicit yahoo.com is the same
    # pattern), comcast.net, hotmail.com, [*.]example.org, *.example.org, sub.example.org,
    # discard.example.com; VMTA/pool blocks add none, so every view sees the same 12
    assert dr.filter(pl.col("vmta").is_null())["domain_pattern"].n_unique() == 12
    assert dr.group_by("vmta").agg(pl.col("domain_pattern").n_unique()).sort(
        "vmta", nulls_last=True
    ).rows() == [
        ("mkt-1", 12),
        ("mkt-2", 12),
        ("txn-1", 12),
        ("warm-1", 12),
        (None, 12),
    ]


def test_directives_and_issues_tables(tables) -> None:
    d = tables["pmta_directives"]
    assert d.height == 97
    assert d.filter(~pl.col("known")).select("directive", "file", "line").rows() == [
        ("frobnicate-level", "config", 80),
        ("anything", "config", 106),
    ]
    assert d.filter(pl.col("line") == 17).select("scope", "block", "directive", "value").row(0) == (
        "vmta:txn-1",
        "<virtual-mta txn-1> <domain *>",
        "max-smtp-out",
        "40",
    )
    assert tables["pmta_config_issues"].select("severity", "code", "line").rows() == [
        ("warning", "unknown-directive", 80),
        ("warning", "unknown-tag", 105),
    ]


def test_empty_estate_gives_empty_typed_tables() -> None:
    for name, frame in config_tables([]).items():
        assert frame.height == 0, name
    assert config_tables([])["pmta_vmtas"].schema == PMTA_VMTAS_SCHEMA


# ---------------------------------------------------------------------------------------------- estate


def _events(rows: list[dict]) -> pl.LazyFrame:
    base = {"mta": "pmta", "node": "mta1", "event_type": "delivered"}
    return conform(pl.DataFrame([{**base, **r} for r in rows], infer_schema_length=None).lazy())


def test_estate_inventory_joins_config_and_logs(tables) -> None:
    t0 = datetime(2024, 6, 1, 10, tzinfo=UTC)
    t1 = datetime(2024, 6, 2, 11, tzinfo=UTC)
    events = _events(
        [
            {"source": "mkt-1", "source_ip": "192.0.2.10", "sender_domain": "example.com", "event_time": t0},
            {
                "source": "mkt-1",
                "source_ip": "192.0.2.10",
                "sender_domain": "example.com",
                "event_time": t1,
                "event_type": "deferred",
            },
            {
                "source": "rogue",
                "source_ip": "192.0.2.99",
                "sender_domain": "unsigned.example",
                "event_time": t0,
            },
            {
                "source": "mkt-2",
                "source_ip": "192.0.2.11",
                "sender_domain": "example.com",
                "event_time": t0,
                "mta": "kumo",
            },  # KumoMTA rows are not PowerMTA usage
        ]
    )
    inv = build_estate_inventory(
        events=events,
        vmtas=tables["pmta_vmtas"],
        source_ips=tables["pmta_source_ips"],
        dkim_keys=tables["pmta_dkim_keys"],
    ).collect()
    assert inv.schema == ESTATE_INVENTORY_SCHEMA
    got = inv.select("kind", "name", "status", "events", "delivered").rows()
    assert got == [
        ("sender_domain", "example.com", "configured_and_used", 2, 1),
        ("sender_domain", "news.example.com", "configured_unused", 0, 0),
        ("sender_domain", "txn.example.com", "configured_unused", 0, 0),
        ("sender_domain", "unsigned.example", "used_unconfigured", 1, 1),
        ("source_ip", "192.0.2.10", "configured_and_used", 2, 1),
        ("source_ip", "192.0.2.11", "configured_unused", 0, 0),
        ("source_ip", "192.0.2.99", "used_unconfigured", 1, 1),
        ("source_ip", "198.51.100.1", "configured_unused", 0, 0),
        ("source_ip", "198.51.100.2", "configured_unused", 0, 0),
        ("source_ip", "203.0.113.5", "configured_unused", 0, 0),
        ("vmta", "mkt-1", "configured_and_used", 2, 1),
        ("vmta", "mkt-2", "configured_unused", 0, 0),
        ("vmta", "rogue", "used_unconfigured", 1, 1),
        ("vmta", "txn-1", "configured_unused", 0, 0),
        ("vmta", "warm-1", "configured_unused", 0, 0),
    ]
    mkt1 = inv.filter((pl.col("kind") == "vmta") & (pl.col("name") == "mkt-1")).row(0, named=True)
    assert (mkt1["first_seen"], mkt1["last_seen"], mkt1["config_file"], mkt1["config_line"]) == (
        t0,
        t1,
        "vmtas.conf",
        2,
    )


def test_estate_inventory_wildcard_key_and_empty_events() -> None:
    t = config_tables([parse_text("domain-key s,*,/k.pem\n<virtual-mta v>\n</virtual-mta>\n", node="n")])
    events = _events(
        [{"node": "n", "sender_domain": "any.example", "event_time": datetime(2024, 1, 1, tzinfo=UTC)}]
    )
    inv = build_estate_inventory(
        events=events, vmtas=t["pmta_vmtas"], source_ips=t["pmta_source_ips"], dkim_keys=t["pmta_dkim_keys"]
    ).collect()
    assert inv.select("kind", "name", "status", "detail", "config_line").rows() == [
        ("sender_domain", "any.example", "configured_and_used", "signed by the node's '*' domain-key", 1),
        ("vmta", "v", "configured_unused", None, 2),
    ]
    empty = build_estate_inventory(
        events=pl.LazyFrame(schema=EVENT_SCHEMA),
        vmtas=t["pmta_vmtas"],
        source_ips=t["pmta_source_ips"],
        dkim_keys=t["pmta_dkim_keys"],
    ).collect()
    assert empty.select("kind", "status").rows() == [("vmta", "configured_unused")]


def test_two_nodes_keep_their_own_rows() -> None:
    t = config_tables(parse_estate(FIX / "estate"))
    assert t["pmta_vmtas"].filter(pl.col("vmta") == "mkt-1").select("node", "source_ip").rows() == [
        ("mta1", "192.0.2.10"),
        ("mta2", "192.0.2.20"),
    ]
