"""Dagster wiring of pmta_config, estate_inventory and kumo_config (lake files, checks)."""

import shutil
import tomllib
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import polars as pl

from assets.inventory import CONFIG_TABLES, estate_inventory, estate_inventory_statuses, pmta_config
from assets.kumo_config import kumo_config, kumo_config_documented_options, kumo_config_rules_reported
from mtashift.lake import Lake, write_partition, write_table
from pipelines.resources import resources_for
from schemas.events import conform

FIX = Path(__file__).parent / "fixtures" / "pmta-config" / "estate"


def test_assets_write_tables_files_and_pass_checks(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    shutil.copytree(FIX, landing / "pmta-config")
    lk = Lake.at(tmp_path / "lake")
    events = pl.DataFrame(
        {
            "mta": ["pmta", "pmta"],
            "node": ["mta1", "mta1"],
            "event_type": ["delivered", "delivered"],
            "event_time": [datetime(2024, 6, 1, 9, tzinfo=UTC)] * 2,
            "source": ["mkt-1", "ghost"],
            "source_ip": ["192.0.2.10", "192.0.2.99"],
            "sender_domain": ["example.com", "example.com"],
            "tenant": ["acme", "acme"],
            "pool": ["pool-marketing", "pool-marketing"],
        }
    )
    write_partition(conform(events.lazy()).collect(), lake=lk, table="events", day="2024-06-01")
    write_table(
        pl.DataFrame(
            {
                "source_ip": ["203.0.113.5"],
                "provider": ["google"],
                "first_day": [date(2024, 5, 30)],
                "as_of": [date(2024, 6, 1)],
                "sustained_level": [200],
                "trend_ratio": [None],
                "trend_slope": [10.0],
            }
        ),
        lake=lk,
        table="warmup_state",
    )
    result = dg.materialize(
        [
            pmta_config,
            estate_inventory,
            kumo_config,
            estate_inventory_statuses,
            kumo_config_documented_options,
            kumo_config_rules_reported,
        ],
        resources=resources_for(lake=lk.root, landing=landing),
    )
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "estate_inventory_statuses": True,
        "kumo_config_documented_options": True,
        "kumo_config_rules_reported": True,
    }
    for table in CONFIG_TABLES:
        assert (lk.table_dir(table) / "data.parquet").exists(), table
    vm = pl.read_parquet(lk.table_dir("pmta_vmtas") / "data.parquet")
    assert vm.height == 6  # mta1: 5 address rows, mta2: 1
    inv = pl.read_parquet(lk.table_dir("estate_inventory") / "data.parquet")
    assert inv.filter(pl.col("kind") == "vmta").select("node", "name", "status").rows() == [
        ("mta1", "ghost", "used_unconfigured"),
        ("mta1", "mkt-1", "configured_and_used"),
        ("mta1", "mkt-2", "configured_unused"),
        ("mta1", "txn-1", "configured_unused"),
        ("mta1", "warm-1", "configured_unused"),
        ("mta2", "mkt-1", "configured_unused"),
    ]
    for name in ("sources.toml", "shaping.toml", "queue.toml", "dkim_data.toml", "translation_report.md"):
        assert (lk.kumo / name).exists(), name
    shaping = tomllib.loads((lk.kumo / "shaping.toml").read_text())
    assert shaping["provider"]["google"]["sources"]["warm-1"] == {
        "provider_source_selection_rate": "300/d,max_burst=1"
    }
    queue = tomllib.loads((lk.kumo / "queue.toml").read_text())
    assert queue["tenant"] == {"acme": {"egress_pool": "pool-marketing"}}
    report = pl.read_parquet(lk.table_dir("translation_report") / "data.parquet")
    # mta1: 97; mta2: host-name, <virtual-mta>, smtp-source-host, <domain>, max-smtp-out, domain-key
    assert report.height == 97 + 6
