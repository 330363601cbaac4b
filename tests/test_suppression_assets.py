"""The suppression assets end to end on a small lake: writes, checks, rebuild byte-identity."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets import suppression as A
from mtashift.lake import Lake, write_partition, write_table
from mtashift.suppression.run import check_legacy_kept, rebuild_suppression
from pipelines.resources import resources_for

LANDING = Path(__file__).parent / "fixtures" / "suppression" / "legacy_lists"
T0 = datetime(2024, 3, 1, tzinfo=UTC)
ASSETS = [A.legacy_suppression, A.suppression, A.legacy_suppression_reconciles, A.suppression_keeps_legacy]


def _seed(lake: Lake) -> None:
    rows = [
        ("e1", "bounced", 0, "carol@example.com", "bad-mailbox", "suppress"),
        ("e2", "bounced", 1, "New.One@Example.com", "bad-mailbox", "suppress"),
        *[
            (f"q{i}", "bounced", i, "full@example.com", "quota-issues", "retry-then-suppress")
            for i in range(5)
        ],
        ("e3", "deferred", 2, "deferred@example.com", "bad-mailbox", "suppress"),
    ]
    frame = pl.DataFrame(
        {
            "event_id": [r[0] for r in rows],
            "event_type": [r[1] for r in rows],
            "event_time": [T0 + timedelta(days=r[2]) for r in rows],
            "recipient": [r[3] for r in rows],
            "category": [r[4] for r in rows],
            "consequence": [r[5] for r in rows],
            "message_id": [f"m-{r[0]}" for r in rows],
        }
    )
    for (d,), part in frame.group_by(pl.col("event_time").dt.date()):
        # Older partitions may lack columns: drop message_id from day 0.
        write_partition(
            part.drop("message_id") if d == T0.date() else part, lake=lake, table="bounces", day=str(d)
        )
    write_partition(
        pl.DataFrame(
            {
                "complaint_id": ["c1"],
                "complaint_time": [T0 + timedelta(days=6)],
                "feedback_type": ["abuse"],
                "recipient": ["Carol@Example.com"],
            }
        ),
        lake=lake,
        table="complaints",
        day=str((T0 + timedelta(days=6)).date()),
    )


def _materialize(lake_root: Path, landing: Path = LANDING) -> dg.ExecuteInProcessResult:
    res = dg.materialize(ASSETS, resources=resources_for(lake=lake_root, landing=landing))
    assert res.success
    return res


def test_end_to_end_build_checks_and_rebuild_identity(tmp_path: Path) -> None:
    lake = Lake.at(tmp_path / "lake")
    _seed(lake)
    res = _materialize(lake.root)
    checks = {e.check_name: e.passed for e in res.get_asset_check_evaluations()}
    assert checks == {"legacy_suppression_reconciles": True, "suppression_keeps_legacy": True}

    table = pl.read_parquet(lake.root / "suppression" / "data.parquet")
    legacy_keys = set(pl.read_parquet(lake.root / "legacy_suppression" / "data.parquet")["match_key"])
    assert legacy_keys <= set(table["match_key"])
    # 19 legacy lines, 18 distinct keys (Alice twice), plus two from bounces.
    assert table.height == len(legacy_keys | {"new.one@example.com", "full@example.com"}) == 20
    carol = table.filter(pl.col("match_key") == "carol@example.com").row(0, named=True)
    assert carol["source"] == "complaint"
    assert carol["sources"] == ["complaint", "bounce", "legacy"]
    assert carol["evidence"] == ["suppression/export.csv:2", "e1", "c1"]
    assert carol["first_seen"] == datetime(2023, 1, 15, tzinfo=UTC)
    assert "deferred@example.com" not in set(table["match_key"])
    q = sorted(p.name for p in (lake.quarantine / "suppression").iterdir())
    assert q == ["export.csv.parquet", "old.csv.parquet", "plain.txt.parquet", "utf16.txt.parquet"]

    export = lake.exports / "suppression"
    first = {p.name: p.read_bytes() for p in sorted(export.iterdir())}
    diff1 = pl.read_parquet(lake.root / "suppression_diff" / "data.parquet")
    assert diff1["change"].to_list() == ["added"] * 20

    _materialize(lake.root)
    second = {p.name: p.read_bytes() for p in sorted(export.iterdir())}
    for name in ("suppression.csv", "suppression.sqlite", "kumo_suppression.lua"):
        assert first[name] == second[name], name
    assert pl.read_parquet(lake.root / "suppression_diff" / "data.parquet").height == 0
    assert second["suppression_diff.csv"].decode().splitlines() == [
        "change,match_key,scope,address,source_before,source_after,reason_before,reason_after,"
        "expires_at_before,expires_at_after,detail,rule"
    ]


def test_proof_fails_when_a_legacy_entry_is_lost(tmp_path: Path) -> None:
    lake = Lake.at(tmp_path / "lake")
    _materialize(lake.root)
    total, missing = check_legacy_kept(lake=lake, landing_root=LANDING)
    assert (total, missing.height) == (19, 0)
    table = pl.read_parquet(lake.root / "suppression" / "data.parquet")
    write_table(table.filter(pl.col("match_key") != "judy@example.com"), lake=lake, table="suppression")
    total, missing = check_legacy_kept(lake=lake, landing_root=LANDING)
    assert missing.select("match_key", "scope", "provenance").rows() == [
        ("judy@example.com", "global", "suppression/utf16.txt:2")
    ]


def test_policy_lapse_is_accounted_in_the_diff(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    (landing / "suppression").mkdir(parents=True)
    (landing / "suppression" / "l.csv").write_text(
        "email,added\nold@x.com,2020-01-01\nnew@x.com,2024-03-01\n"
    )
    (landing / "plan.yaml").write_text("suppression:\n  legacy:\n    expire_after_days: 365\n")
    lake = Lake.at(tmp_path / "lake")
    write_partition(
        pl.DataFrame({"event_id": ["e"], "event_type": ["bounced"], "event_time": [T0],
                      "recipient": ["z@x.com"], "category": ["bad-mailbox"], "consequence": ["suppress"]}),
        lake=lake, table="bounces", day=str(T0.date()),
    )  # fmt: skip
    res = _materialize(lake.root, landing)
    assert all(e.passed for e in res.get_asset_check_evaluations())
    table = pl.read_parquet(lake.root / "suppression" / "data.parquet")
    assert table["match_key"].to_list() == ["new@x.com", "z@x.com"]
    diff = pl.read_parquet(lake.root / "suppression_diff" / "data.parquet")
    lapsed = diff.filter(pl.col("change") == "expired").row(0, named=True)
    assert lapsed["match_key"] == "old@x.com"
    assert (
        lapsed["rule"]
        == "legacy.expire_after_days=365: dated 2020-01-01T00:00:00Z, lapsed 2020-12-31T00:00:00Z"
    )


def test_empty_lake_and_landing(tmp_path: Path) -> None:
    lake = Lake.at(tmp_path / "lake")
    run = rebuild_suppression(lake=lake, landing_root=tmp_path / "nothing")
    assert run.table.height == 0 and run.diff.height == 0
    assert run.as_of == datetime(1970, 1, 1, tzinfo=UTC)
    assert sorted(run.exports) == [
        "kumo_suppression.lua",
        "suppression.csv",
        "suppression.sqlite",
        "suppression_diff.csv",
    ]


@pytest.mark.parametrize("name", ["legacy_suppression", "suppression"])
def test_assets_are_registered_with_cadence(name: str) -> None:
    from pipelines.definitions import defs

    node = defs.resolve_asset_graph().get(dg.AssetKey(name))
    assert node.tags["cadence"] == {"legacy_suppression": "landing", "suppression": "history"}[name]
