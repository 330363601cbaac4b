"""Seed-list parsing (validation, quarantine, reconciliation) and placement comparison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from mtashift import cutover as co
from mtashift import seedlist as sl
from schemas.quarantine import QUARANTINE_SCHEMA, REASONS

T0 = datetime(2024, 5, 8, tzinfo=UTC)

GOOD_AND_BAD = (
    "Test_ID,sent_at,pool,provider,seed_address,placement,campaign\r\n"  # line 1: header (mixed case, CRLF)
    "t1,2024-05-01T10:00:00Z,p1,google,seed1@gmail.com,inbox,spring\r\n"  # 2 ok
    "t1,2024-05-01 10:00:00,p1,Google,seed2@GMAIL.com,SPAM,\r\n"  # 3 ok (naive = UTC, case folded)
    "\r\n"  # 4 blank
    "t2,1714557600,p1,yahoo,seed3@yahoo.com,missing,x\r\n"  # 5 ok (epoch seconds)
    "t2,yesterday,p1,yahoo,seed4@yahoo.com,inbox,x\r\n"  # 6 bad timestamp
    "t2,2024-05-01T10:00:00Z,p1,hotmail,seed5@outlook.com,inbox,x\r\n"  # 7 unknown provider
    "t2,2024-05-01T10:00:00Z,p1,google,not-an-address,inbox,x\r\n"  # 8 bad address
    "t2,2024-05-01T10:00:00Z,p1,google,seed6@gmail.com,promotions,x\r\n"  # 9 bad placement
    "t2,2024-05-01T10:00:00Z,p1,google,seed7@gmail.com,inbox,x,extra\r\n"  # 10 too many fields
    't2,"2024-05-01T10:00:00Z,p1,google,seed8@gmail.com,inbox,x\r\n'  # 11 unterminated quote
)


def write(tmp_path, name: str, data: bytes) -> None:
    folder = tmp_path / "seedlist"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)


def test_parse_validate_quarantine_and_reconcile(tmp_path) -> None:
    data = (
        GOOD_AND_BAD.encode() + b"t3,2024-05-01T10:00:00Z,p\xff1,google,seed9@gmail.com,inbox,x\n"
    )  # 12 bad utf-8
    write(tmp_path, "a.csv", data)
    rows, quarantine, stats = sl.read_seedlists(tmp_path)
    st = stats["seedlist/a.csv"]
    assert st == {"lines_read": 12, "rows": 3, "quarantined": 7, "duplicates": 0, "other_lines": 2}
    assert st["lines_read"] == st["rows"] + st["quarantined"] + st["duplicates"] + st["other_lines"]
    assert rows.schema == sl.SEEDLIST_SCHEMA
    assert rows.select("test_id", "provider", "seed_address", "placement", "source_line").rows() == [
        ("t1", "google", "seed1@gmail.com", "inbox", 2),
        ("t1", "google", "seed2@gmail.com", "spam", 3),
        ("t2", "yahoo", "seed3@yahoo.com", "missing", 5),
    ]
    assert rows["sent_at"].to_list() == [datetime(2024, 5, 1, 10, tzinfo=UTC)] * 3
    assert rows["extra"].to_list() == ['{"campaign": "spring"}', '{"campaign": ""}', '{"campaign": "x"}']
    q = quarantine["seedlist/a.csv"]
    assert q.schema == QUARANTINE_SCHEMA
    assert set(q["reason"]) <= set(REASONS)
    assert q.select("source_line", "reason").rows() == [
        (6, "invalid_row"),
        (7, "invalid_row"),
        (8, "invalid_row"),
        (9, "invalid_row"),
        (10, "too_many_fields"),
        (11, "malformed_csv"),
        (12, "invalid_utf8"),
    ]
    assert q["detail"][0].startswith("sent_at:") and q["detail"][1].startswith("provider:")
    # Byte offsets point at the start of the line in the file.
    offset = q.filter(pl.col("source_line") == 6)["byte_offset"].item()
    assert data[offset:].startswith(b"t2,yesterday")
    assert q["source_kind"].unique().to_list() == ["seedlist"]


def test_header_without_required_columns_quarantines_every_row(tmp_path) -> None:
    write(tmp_path, "b.csv", b"test_id,sent_at,pool,seed_address\nt1,2024-05-01T00:00:00Z,p1,a@b.example\n")
    rows, quarantine, stats = sl.read_seedlists(tmp_path)
    assert rows.is_empty()
    q = quarantine["seedlist/b.csv"]
    assert q.select("source_line", "reason").rows() == [(2, "invalid_row")]
    assert "provider, placement" in q["detail"][0]
    assert stats["seedlist/b.csv"]["other_lines"] == 1


def test_duplicates_across_files_counted_once(tmp_path) -> None:
    body = b"test_id,sent_at,pool,provider,seed_address,placement\nt1,2024-05-01T00:00:00Z,p1,google,a@gmail.com,inbox\n"
    write(tmp_path, "a.csv", body)
    write(tmp_path, "b.csv", body)
    rows, _q, stats = sl.read_seedlists(tmp_path)
    assert rows.height == 1 and rows["source_file"].item() == "seedlist/a.csv"
    assert stats["seedlist/b.csv"]["duplicates"] == 1 and stats["seedlist/b.csv"]["rows"] == 0


def test_missing_folder_is_empty(tmp_path) -> None:
    rows, q, stats = sl.read_seedlists(tmp_path)
    assert rows.is_empty() and q == {} and stats == {}


def seeds(before: tuple[int, int], after: tuple[int, int], *, pool: str = "p1") -> pl.DataFrame:
    """(inbox, spam) counts sent 2 days before / 1 day after T0 at google."""
    rows = []
    for side, (inbox, spam), when in (
        ("b", before, T0 - timedelta(days=2)),
        ("a", after, T0 + timedelta(days=1)),
    ):
        for i in range(inbox + spam):
            rows.append(
                {"test_id": f"{side}{i // 10}", "sent_at": when, "pool": pool, "provider": "google",
                 "seed_address": f"{side}{i}@gmail.com", "placement": "inbox" if i < inbox else "spam",
                 "extra": None, "source_file": "seedlist/x.csv", "source_line": i + 2}
            )  # fmt: skip
    return pl.DataFrame(rows, schema=sl.SEEDLIST_SCHEMA)


def plan_frame(pool: str = "p1") -> pl.DataFrame:
    return pl.DataFrame(
        {"pool": [pool], "cutover_time": [T0], "cutover_source": ["plan"]},
        schema={"pool": pl.String, "cutover_time": co.UTC_TS, "cutover_source": pl.String},
    )


def test_placement_inbox_drop_hand_computed() -> None:
    pol = co.load_policy()
    out = sl.seedlist_placement(seeds=seeds((36, 4), (20, 20)), plan=plan_frame(), policy=pol)
    r = out.filter((pl.col("provider") == "google") & (pl.col("metric") == "inbox_rate")).to_dicts()[0]
    assert (r["before_num"], r["before_n"], r["after_num"], r["after_n"]) == (36, 40, 20, 40)
    assert r["before_value"] == 0.9 and r["after_value"] == 0.5
    # pooled p = 56/80 = 0.7; expected cells 28/12 >= 5 -> z-test.
    # se = sqrt(0.7 * 0.3 * (1/40 + 1/40)) = sqrt(0.0105) = 0.102470; z = -0.4 / 0.102470 = -3.9036
    # p = 2 * Phi(-3.9036) = 0.0000948
    assert r["test"] == "z"
    assert round(r["statistic"], 4) == -3.9036
    assert r["p_value"] == pytest.approx(9.48e-5, rel=1e-2)
    # Wilson 36/40: centre (0.9 + 3.841459/80) / (1 + 3.841459/40) = 0.948018/1.096036 = 0.864952,
    # half = 1.959964/1.096036 * sqrt(0.00225 + 0.000600228) = 1.788229 * 0.053388 = 0.095469
    # -> [0.7695, 0.9604]
    assert round(r["before_ci_low"], 4) == 0.7695 and round(r["before_ci_high"], 4) == 0.9604
    assert not r["small_sample"]
    verdict, evidence = co.evaluate_pool(
        pool="p1", comparison=[], seedlist=out.to_dicts(), drain=None, policy=pol
    )
    assert verdict == "hold"
    assert {(e["provider"], e["rule"]) for e in evidence} == {("google", "inbox_drop"), ("all", "inbox_drop")}


def test_placement_small_sample_and_windows() -> None:
    pol = co.load_policy()
    # 10 seeds a side: below the 30 minimum, flagged, never judged. Pooled inbox 9/20 -> expected
    # cells 4.5 < 5 -> Fisher.
    small = sl.seedlist_placement(seeds=seeds((8, 2), (1, 9)), plan=plan_frame(), policy=pol)
    r = small.filter((pl.col("provider") == "all") & (pl.col("metric") == "inbox_rate")).to_dicts()[0]
    assert r["small_sample"] and r["test"] == "fisher"
    assert (
        co.evaluate_pool(pool="p1", comparison=[], seedlist=small.to_dicts(), drain=None, policy=pol)[0]
        == "proceed"
    )
    # Seeds older than seed_baseline_days are outside the before window.
    old = seeds((36, 4), (20, 20)).with_columns(
        pl.when(pl.col("seed_address").str.starts_with("b"))
        .then(pl.lit(T0 - timedelta(days=31)))
        .otherwise(pl.col("sent_at"))
        .alias("sent_at")
    )
    out = sl.seedlist_placement(seeds=old, plan=plan_frame(), policy=pol)
    r = out.filter((pl.col("provider") == "google") & (pl.col("metric") == "inbox_rate")).to_dicts()[0]
    assert (r["before_n"], r["after_n"]) == (0, 40)
    # An egress-pool name in the seed list resolves to its PowerMTA pool.
    resolver = co.PoolResolver(egress_pool_to_pool={"kp1": "p1"})
    out = sl.seedlist_placement(
        seeds=seeds((36, 4), (20, 20), pool="kp1"), plan=plan_frame(), policy=pol, resolver=resolver
    )
    assert set(out["pool"]) == {"p1"}
