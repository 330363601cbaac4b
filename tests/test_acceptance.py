"""End to end: simulate an estate, run the whole pipeline through Dagster, compare with the truth.

One estate and one lake for the module (the run is the expensive part). Tests that change the landing
folder run last, in file order.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from mtashift import catalog
from mtashift.events import build_events_day
from mtashift.lake import Lake
from mtashift.sim import generate
from pipelines.runner import RunSummary, run_pipeline

DAYS = 8
PER_DAY = 6000
SEED = 11


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("estate")
    generate(out, days=DAYS, messages_per_day=PER_DAY, seed=SEED)
    return out


@pytest.fixture(scope="module")
def run(estate: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, RunSummary]:
    lake_dir = tmp_path_factory.mktemp("lake")
    summary = run_pipeline(landing_dir=estate / "landing", lake_dir=lake_dir)
    assert summary.failed == [], summary.failed
    return Lake.at(lake_dir), summary


def test_every_check_passes_on_the_clean_estate_but_the_cutover_alert(run: tuple[Lake, RunSummary]) -> None:
    _, summary = run
    # The regressing pool is on hold, which is exactly what the alert check is for.
    assert [c.split(" ")[0] for c in summary.checks_failed] == ["cutover_verdicts:cutover_verdicts_alert"]


class Catalog:
    """Read-only queries over the lake's catalog, one short-lived connection each (as analysts do)."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def df(self, sql: str) -> pl.DataFrame:
        return catalog.query(self.lake, sql)

    def rows(self, sql: str) -> list[tuple]:
        return self.df(sql).rows()

    def one(self, sql: str) -> tuple:
        return self.df(sql).row(0)


@pytest.fixture(scope="module")
def con(run: tuple[Lake, RunSummary]) -> Catalog:
    return Catalog(run[0])


def truth(estate: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(estate / "truth" / name)


def truth_json(estate: Path, name: str) -> dict:
    return json.loads((estate / "truth" / name).read_text())


def _counts(con: Catalog, *, mta: str) -> pl.DataFrame:
    return con.df(
        f"SELECT CAST(event_time AS DATE) AS date, event_type, count(*) AS n FROM events "
        f"WHERE mta = '{mta}' GROUP BY ALL"
    )


@pytest.mark.parametrize("mta", ["pmta", "kumo"])
def test_event_counts_per_day_and_type_equal_truth(estate: Path, con: Catalog, mta: str) -> None:
    want = (
        truth(estate, "event_counts.parquet")
        .filter(pl.col("mta") == mta)
        .group_by("date", "event_type")
        .agg(pl.col("count").sum().alias("want"))
    )
    got = _counts(con, mta=mta)
    both = want.join(got, on=["date", "event_type"], how="full", coalesce=True).fill_null(0)
    assert both.height >= DAYS * 4
    assert both.filter(pl.col("want") != pl.col("n")).is_empty(), both.filter(pl.col("want") != pl.col("n"))
    assert int(both["n"].sum()) == int(want["want"].sum()) > 0


def test_quarantine_holds_exactly_the_injected_faults(estate: Path, con: Catalog) -> None:
    want = truth(estate, "quarantine.parquet").select("source_kind", "source_file", "source_line", "reason")
    got = con.df("SELECT source_kind, source_file, source_line, reason FROM quarantine")
    key = ["source_kind", "source_file", "source_line", "reason"]
    assert sorted(got.select(key).rows()) == sorted(want.select(key).rows())
    # Every row carries a reason from the closed vocabulary and the raw text.
    assert con.one("SELECT count(*) FROM quarantine WHERE raw_text IS NULL OR detail IS NULL") == (0,)


def test_files_reconcile_and_duplicate_file_is_not_loaded(estate: Path, con: Catalog) -> None:
    rows = con.df(
        "SELECT path, status, duplicate_of, lines_read, rows, quarantined, duplicates, other_lines, fanout "
        "FROM ingest_files"
    )
    loaded = rows.filter(pl.col("status") == "loaded")
    lhs = loaded["lines_read"] + loaded["fanout"]
    rhs = loaded["rows"] + loaded["quarantined"] + loaded["duplicates"] + loaded["other_lines"]
    assert (lhs == rhs).all()
    dup = truth_json(estate, "estate.json")["pmta"]["duplicate"]
    dup_path = dup["copy"] if isinstance(dup, dict) else dup
    rec = rows.filter(pl.col("path").str.ends_with(Path(dup_path).name))
    assert rec["status"].to_list() == ["duplicate"]
    assert rec["duplicate_of"].item() is not None


def test_kumo_duplicates_removed_equal_injected(estate: Path, run: tuple[Lake, RunSummary]) -> None:
    lake, _ = run
    injected = truth_json(estate, "kumo_duplicates.json")["total"]
    in_file = int(pl.read_parquet(lake.manifest / "kumo.parquet")["duplicates"].sum())
    across = int(
        pl.scan_parquet(lake.root / "event_duplicates" / "date=*" / "*.parquet")
        .select(pl.col("duplicates").sum())
        .collect()
        .item()
        or 0
    )
    assert injected > 0
    assert in_file + across == injected


def test_truncated_segment_contributes_exactly_its_intact_records(
    estate: Path, run: tuple[Lake, RunSummary]
) -> None:
    lake, _ = run
    seg = truth_json(estate, "segments.json")["truncated"]
    m = pl.read_parquet(lake.manifest / "kumo.parquet").filter(pl.col("path") == seg["path"])
    assert m["status"].to_list() == ["loaded"]
    assert json.loads(m["detail"].item())["records_ok"] == seg["intact_records"]


def test_both_mtas_side_by_side_per_pool_across_cutover(estate: Path, con: Catalog) -> None:
    per = con.df(
        "SELECT migration_pool AS pool, mta, count(*) AS delivered FROM events_by_pool "
        "WHERE event_type = 'delivered' GROUP BY ALL ORDER BY ALL"
    )
    pools = truth_json(estate, "estate.json")["pools"]
    names = [p["name"] if isinstance(p, dict) else p for p in pools]
    assert len(names) >= 3
    for pool in names:
        assert set(per.filter(pl.col("pool") == pool)["mta"]) == {"pmta", "kumo"}, pool


def test_provider_day_counts_equal_truth_and_workspace_domains_are_google(estate: Path, con: Catalog) -> None:
    types = ["delivered", "deferred", "bounced"]
    want = (
        truth(estate, "event_counts.parquet")
        .filter(pl.col("event_type").is_in(types))
        .pivot(on="event_type", index=["date", "provider"], values="count", aggregate_function="sum")
        .fill_null(0)
        .rename({"date": "day"})
    )
    got = con.df(
        "SELECT day, provider, sum(delivered)::BIGINT AS delivered, sum(deferred)::BIGINT AS deferred, "
        "sum(bounced)::BIGINT AS bounced FROM provider_rates_daily GROUP BY ALL"
    )
    both = want.join(got, on=["day", "provider"], how="full", coalesce=True, suffix="_got").fill_null(0)
    for t in types:
        diff = both.filter(pl.col(t) != pl.col(f"{t}_got"))
        assert diff.is_empty(), diff
    domains = truth_json(estate, "estate.json")["domains"]
    workspace = [d["ascii"] for d in domains if "aspmx.l.google.com" in d.get("mx", [])]
    assert workspace
    got_map = dict(con.rows("SELECT recipient_domain, provider FROM recipient_domains"))
    assert {got_map.get(d) for d in workspace} == {"google"}


def test_complaints_per_provider_and_day_equal_truth_once_each(estate: Path, con: Catalog) -> None:
    want = truth(estate, "complaints.parquet").rename({"date": "day", "count": "want"})
    got = con.df(
        "SELECT CAST(complaint_time AS DATE) AS day, provider, count(*) AS n FROM complaints GROUP BY ALL"
    )
    both = want.join(got, on=["day", "provider"], how="full", coalesce=True).fill_null(0)
    assert both.filter(pl.col("want") != pl.col("n")).is_empty(), both.filter(pl.col("want") != pl.col("n"))
    assert con.one("SELECT count(*) - count(DISTINCT complaint_id) FROM complaints") == (0,)
    # Some complaints arrived by two routes and still count once.
    assert con.one("SELECT count(*) FROM complaints WHERE len(routes) > 1")[0] > 0


def test_unclassified_rate_is_queryable(con: Catalog) -> None:
    r = con.df("SELECT provider, failures, unclassified, unclassified_rate FROM unclassified_rate")
    assert r.height > 0 and r["unclassified_rate"].drop_nulls().is_between(0, 1).all()


def test_suppression_equals_truth_per_scope(estate: Path, con: Catalog) -> None:
    want = truth(estate, "suppression.parquet").select(
        pl.col("address").str.to_lowercase(), "scope", "source"
    )
    got = con.df("SELECT lower(address) AS address, scope, unnest(sources) AS source FROM suppression")
    assert set(got.rows()) == set(want.rows())
    assert (
        con.one("SELECT count(*) FROM suppression WHERE 'legacy' IN sources")[0]
        == want.filter(pl.col("source") == "legacy").height
    )


def test_regressing_pool_is_held_and_healthy_pools_proceed(estate: Path, con: Catalog) -> None:
    reg = truth_json(estate, "estate.json")["regression"]
    verdicts = dict(con.rows("SELECT pool, verdict FROM cutover_verdicts"))
    assert verdicts[reg["pool"]] in {"hold", "rollback"}
    assert {v for p, v in verdicts.items() if p != reg["pool"]} == {"proceed"}
    cited = con.rows(
        f"SELECT e.provider, e.metric FROM (SELECT unnest(evidence) AS e FROM cutover_verdicts "
        f"WHERE pool = '{reg['pool']}') WHERE e.verdict IN ('hold', 'rollback')"
    )
    assert (reg["provider"], reg["metric"]) in cited


def test_in_flight_counts_equal_truth(estate: Path, con: Catalog) -> None:
    want = truth(estate, "in_flight.parquet")
    got = con.df("SELECT pool, drained_messages, unfinished_messages FROM inflight_drain")
    for pool in got["pool"].to_list():
        w = want.filter(pl.col("pool") == pool)
        g = got.filter(pl.col("pool") == pool).row(0, named=True)
        assert g["drained_messages"] == w.filter(pl.col("outcome") != "pending").height, pool


def test_events_rebuild_is_identical(run: tuple[Lake, RunSummary]) -> None:
    lake, summary = run
    for day in summary.days:
        stored = pl.read_parquet(lake.partition_dir("events", day) / "part-0.parquet")
        again = build_events_day(lake=lake, day=day).events
        assert stored.equals(again), day


def _checksum(lake: Lake) -> str:
    h = hashlib.sha256()
    for p in sorted((lake.root / "events").rglob("*.parquet")):
        h.update(p.relative_to(lake.root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_rerun_with_nothing_new_changes_nothing(estate: Path, run: tuple[Lake, RunSummary]) -> None:
    lake, _ = run
    before = _checksum(lake)
    again = run_pipeline(landing_dir=estate / "landing", lake_dir=lake.root)
    assert again.nothing_new
    assert _checksum(lake) == before


def test_zz_open_segment_then_new_file_recompute_only_touched_days(
    estate: Path, run: tuple[Lake, RunSummary]
) -> None:
    """Runs last: marks the open segment complete, then adds one PowerMTA file."""
    lake, _ = run
    landing = estate / "landing"
    info = truth_json(estate, "open_segment.json")
    seg = landing / info["path"]
    assert os.access(seg, os.W_OK)
    m = pl.read_parquet(lake.manifest / "kumo.parquet").filter(pl.col("path") == info["path"])
    assert m["status"].to_list() == ["skipped_open"]
    before = dict(catalog.query(lake, "SELECT CAST(date AS VARCHAR), count(*) FROM events GROUP BY 1").rows())

    seg.chmod(0o444)
    s = run_pipeline(landing_dir=landing, lake_dir=lake.root)
    assert s.failed == []
    add = pl.DataFrame(info["counts"]).group_by("date").agg(pl.col("count").sum())
    assert sorted(s.days) == sorted(str(d) for d in add["date"].to_list())
    after = dict(catalog.query(lake, "SELECT CAST(date AS VARCHAR), count(*) FROM events GROUP BY 1").rows())
    for d, n in add.iter_rows():
        assert after[str(d)] == before[str(d)] + n

    # A new PowerMTA file (a copy of one day's file under a new node) touches only its own days.
    src = sorted((landing / "pmta").rglob("acct-*.csv"))[0]
    new = landing / "pmta" / "pmta9" / src.name
    new.parent.mkdir()
    text = src.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
    new.write_text(text + "\n")  # different bytes: not a duplicate file
    s2 = run_pipeline(landing_dir=landing, lake_dir=lake.root)
    assert s2.failed == []
    touched = pl.read_parquet(lake.manifest / "pmta.parquet").filter(pl.col("path").str.contains("pmta9"))
    assert sorted(s2.days) == sorted(touched["days"].item().to_list())
    assert len(s2.days) < DAYS
    shutil.rmtree(new.parent)


@pytest.mark.browser
def test_reports_in_headless_chromium_show_catalog_figures(
    run: tuple[Lake, RunSummary], con: Catalog, tmp_path: Path
) -> None:
    from mtashift.reports.format import fmt_value
    from tests.browser import visit

    lake, _ = run
    pages = {
        n: visit(lake.reports / f"{n}.html", screenshot=tmp_path / f"{n}.png")
        for n in ("audit", "cutover", "cost")
    }
    for name, page in pages.items():
        assert page.console_errors == [], (name, page.console_errors)
        assert page.requests == [], (name, page.requests)
        assert page.screenshot is not None and page.screenshot.stat().st_size > 10_000
    # Verdicts per pool, as the catalog has them.
    cut = pages["cutover"].text
    for pool, verdict in con.rows("SELECT pool, verdict FROM cutover_verdicts"):
        assert f"{pool}\t" in cut and verdict in cut
    # Headline figures equal the catalog's values, formatted the one way reports format numbers.
    delivered = con.one("SELECT count(*) FROM events WHERE event_type = 'delivered'")[0]
    bounce_rate = con.one("SELECT sum(bounced) / nullif(sum(attempts), 0) FROM provider_rates_daily")[0]
    audit = pages["audit"].text
    assert fmt_value(delivered) in audit
    assert fmt_value(bounce_rate, column="bounce_rate") in audit
    savings = con.one("SELECT max(savings_3y) FROM tco")[0]
    assert fmt_value(savings) in pages["cost"].text
    # The receivers' reply text with markup in it is shown escaped, never as markup.
    source = (lake.reports / "audit.html").read_text()
    assert "&lt;script&gt;" in source
    assert "<script" not in source.lower()
    assert "<script>alert(1)</script>" in audit  # rendered as visible text
