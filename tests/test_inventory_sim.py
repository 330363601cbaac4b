"""The inventory of the simulator's rendered PowerMTA config against the simulator's own truth.

Skipped until the simulator (``mtashift.sim.generate``) renders ``landing/pmta-config``.
"""

import json
from pathlib import Path

import polars as pl
import pytest

from mtashift.inventory import config_tables
from mtashift.pmta_config import parse_estate


@pytest.fixture(scope="module")
def sim_estate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        from mtashift.sim import generate
    except ImportError:
        pytest.skip("simulator not available yet (mtashift.sim.generate)")
    out = tmp_path_factory.mktemp("sim")
    generate(out, days=1, messages_per_day=200, seed=7)
    if not (out / "landing" / "pmta-config").is_dir():
        pytest.skip("simulator does not render landing/pmta-config yet")
    return out


def _truth_vmta_records(doc) -> list[dict]:
    """Dicts anywhere in the truth document that describe a VMTA (a name and an IP)."""
    found: list[dict] = []

    def walk(x, key=""):
        if isinstance(x, dict):
            if (
                "ip" in x
                and any(k in x for k in ("name", "vmta"))
                and "vmta" in (key + json.dumps(sorted(x))).lower()
            ):
                found.append(x)
            for k, v in x.items():
                walk(v, k)
        elif isinstance(x, list):
            for v in x:
                walk(v, key)

    walk(doc)
    return found


def test_sim_config_inventory_matches_sim_estate(sim_estate: Path) -> None:
    from mtashift.sim import estate as E

    configs = parse_estate(sim_estate / "landing" / "pmta-config")
    assert [i for c in configs for i in c.issues if i.severity == "error"] == []
    t = config_tables(configs)
    got = {
        (r["node"], r["vmta"], r["source_ip"], r["ehlo_host"], tuple(r["pools"]))
        for r in t["pmta_vmtas"].iter_rows(named=True)
    }
    expected = {
        (E.NODES[E.POOLS[v.pool].pmta_node].name, v.name, v.ip, v.host, (E.POOLS[v.pool].name,))
        for v in E.VMTAS
    }
    assert got == expected
    keys = set(t["pmta_dkim_keys"].select("domain", "selector").iter_rows())
    assert keys == {(d, s) for d, sels in E.DKIM.items() for s in sels}

    truth = json.loads((sim_estate / "truth" / "estate.json").read_text("utf-8"))
    records = _truth_vmta_records(truth)
    if records:
        names = {(r.get("name") or r.get("vmta"), r["ip"]) for r in records}
        assert names == set(t["pmta_vmtas"].select("vmta", "source_ip").iter_rows())
    assert t["pmta_vmtas"].filter(pl.col("source_ip").is_null()).height == 0
