"""The simulator's truth matches what it rendered: an independent recount of the landing files.

PowerMTA files are read with the csv module, KumoMTA segments with zstandard + json, webhook
captures de-duplicated by (id, type, timestamp, recipient, num_attempts, nodeid). Nothing here
imports the simulator's internals: only the landing files, truth/ and the project's schemas.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import gzip
import hashlib
import json
import stat
from pathlib import Path

import idna
import polars as pl
import pytest

from schemas.events import KUMO_RECORD_TYPES, PMTA_RECORD_TYPES
from tests.test_sim_estate import estate, read_zstd

Key = tuple[dt.date, str, str, str]


@pytest.fixture(scope="session")
def sim() -> Path:
    return estate(7)


@pytest.fixture(scope="session")
def recount(sim: Path) -> dict:
    return Recount(sim).run()


class Recount:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.landing = root / "landing"
        est = json.loads((root / "truth/estate.json").read_text())
        self.dom_provider: dict[str, str] = {}
        for d in est["domains"]:
            self.dom_provider[d["name"]] = d["provider"]
            self.dom_provider[d["ascii"]] = d["provider"]
        self.mx_provider: dict[str, str] = est["mx_provider"]
        self.counts: collections.Counter[Key] = collections.Counter()
        self.open_counts: collections.Counter[Key] = collections.Counter()
        self.quarantine: set[tuple[str, str, int, str]] = set()
        self.duplicates = 0
        self.pmta_types: collections.Counter[str] = collections.Counter()

    def provider_of(self, address: str) -> str:
        domain = address.rsplit("@", 1)[-1].strip(" <>").lower()
        if domain in self.dom_provider:
            return self.dom_provider[domain]
        return self.dom_provider.get(idna.encode(domain, uts46=True).decode(), "other")

    # ------------------------------------------------------------------ PowerMTA
    def pmta(self) -> None:
        seen: set[str] = set()
        for path in sorted(self.landing.glob("pmta/*/acct-*")):
            raw = path.read_bytes()
            digest = hashlib.sha256(raw).hexdigest()
            if digest in seen:
                continue  # the same file under another name counts once
            seen.add(digest)
            data = gzip.decompress(raw) if path.name.endswith(".gz") else raw
            rel = path.relative_to(self.landing).as_posix()
            lines = data.split(b"\n")
            if lines and lines[-1] == b"":
                lines.pop()
            header = next(csv.reader([lines[0].decode().rstrip("\r")]))
            for no, bline in enumerate(lines[1:], start=2):
                try:
                    text = bline.decode("utf-8").rstrip("\r")
                except UnicodeDecodeError:
                    self.quarantine.add(("pmta", rel, no, "invalid_utf8"))
                    continue
                try:
                    row = next(csv.reader([text], strict=True))
                except csv.Error:
                    self.quarantine.add(("pmta", rel, no, "malformed_csv"))
                    continue
                rec = dict(zip(header, row + [""] * (len(header) - len(row)), strict=True))
                when = _pmta_time(rec["timeLogged"])
                if when is None:
                    self.quarantine.add(("pmta", rel, no, "bad_timestamp"))
                    continue
                kind = rec["type"]
                self.pmta_types[kind] += 1
                event = PMTA_RECORD_TYPES.get(kind, "other")
                if kind == "b" and rec["bounceCat"] == "message-expired":
                    event = "expired"
                if kind == "tq":
                    provider = self.mx_provider.get(rec["dsnMta"].split(" ")[0], "other")
                else:
                    provider = self.provider_of(rec["rcpt"])
                self.counts[(when.date(), "pmta", event, provider)] += 1

    # ------------------------------------------------------------------ KumoMTA
    def kumo_record(self, rec: dict, target: collections.Counter[Key]) -> None:
        if "event_time" in rec:
            when = dt.datetime.fromisoformat(rec["event_time"][:26] + "+00:00")
        else:
            when = dt.datetime.fromtimestamp(rec["timestamp"], tz=dt.UTC)
        event = KUMO_RECORD_TYPES.get(rec["type"], "other")
        if rec["type"] == "Feedback":
            fb = rec["feedback_report"]
            rcpts = fb["original_rcpto_to"][:1] or [fb["supplemental_trace"]["recipient"]]
        else:
            rcpts = rec["recipient"] if isinstance(rec["recipient"], list) else [rec["recipient"]]
        for r in rcpts:
            target[(when.date(), "kumo", event, self.provider_of(r))] += 1

    def segments(self) -> None:
        for path in sorted(p for p in self.landing.glob("kumo/kumo*/*") if p.is_file()):
            rel = path.relative_to(self.landing).as_posix()
            is_open = bool(stat.S_IMODE(path.stat().st_mode) & 0o200)
            data, complete = read_zstd(path)
            lines = data.split(b"\n")
            partial = lines.pop()  # after the last newline: empty, or a cut line
            for no, line in enumerate(lines, start=1):
                try:
                    rec = json.loads(line)
                except ValueError:
                    self.quarantine.add(("kumo", rel, no, "invalid_json"))
                    continue
                self.kumo_record(rec, self.open_counts if is_open else self.counts)
            if not complete:
                self.quarantine.add(("kumo", rel, len(lines) + 1, "truncated_stream"))
            else:
                assert partial == b"", rel

    def webhooks(self) -> None:
        seen: set[tuple] = set()
        for path in sorted(self.landing.glob("kumo/webhooks/*.json")):
            text = path.read_text()
            if text.startswith("[\n"):
                records = json.loads(text)
            else:
                records = []
                for line in text.splitlines():
                    obj = json.loads(line)
                    records.extend(obj if isinstance(obj, list) else [obj])
            for rec in records:
                key = (
                    rec["id"],
                    rec["type"],
                    rec["timestamp"],
                    json.dumps(rec["recipient"]),
                    rec["num_attempts"],
                    rec["nodeid"],
                )
                if key in seen:
                    self.duplicates += 1
                    continue
                seen.add(key)
                self.kumo_record(rec, self.counts)

    def run(self) -> dict:
        self.pmta()
        self.segments()
        self.webhooks()
        return {
            "counts": self.counts,
            "open": self.open_counts,
            "quarantine": self.quarantine,
            "duplicates": self.duplicates,
            "pmta_types": self.pmta_types,
        }


def _pmta_time(text: str) -> dt.datetime | None:
    if text.isdigit():
        return dt.datetime.fromtimestamp(int(text), tz=dt.UTC)
    try:
        return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S%z").astimezone(dt.UTC)
    except ValueError:
        return None


def _truth_counts(frame: pl.DataFrame) -> collections.Counter[Key]:
    return collections.Counter(
        {
            (r["date"], r["mta"], r["event_type"], r["provider"]): r["count"]
            for r in frame.iter_rows(named=True)
        }
    )


def test_event_counts_match_an_independent_recount(sim: Path, recount: dict) -> None:
    truth = _truth_counts(pl.read_parquet(sim / "truth/event_counts.parquet"))
    assert sum(truth.values()) > 10_000
    assert recount["counts"] == truth


def test_event_counts_schema(sim: Path) -> None:
    frame = pl.read_parquet(sim / "truth/event_counts.parquet")
    assert frame.schema == pl.Schema(
        {"date": pl.Date, "mta": pl.String, "event_type": pl.String, "provider": pl.String, "count": pl.Int64}
    )
    assert set(frame["mta"]) == {"pmta", "kumo"}
    providers = set(frame["provider"])
    assert providers == {
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
    }
    # both MTAs log every canonical event type that exists for them
    kinds = frame.group_by("mta").agg(pl.col("event_type").unique().sort()).sort("mta")
    by_mta = dict(zip(kinds["mta"], kinds["event_type"].to_list(), strict=True))
    assert set(by_mta["pmta"]) == {"received", "delivered", "deferred", "bounced", "expired", "queue_deferred",
                                   "remote_bounce", "remote_status", "complaint"}  # fmt: skip
    assert set(by_mta["kumo"]) == {"received", "delivered", "deferred", "bounced", "expired", "queue_deferred",
                                   "remote_bounce", "complaint", "rejected", "admin_bounce", "other"}  # fmt: skip


def test_open_segment_counts_match(sim: Path, recount: dict) -> None:
    info = json.loads((sim / "truth/open_segment.json").read_text())
    truth = collections.Counter(
        {
            (dt.date.fromisoformat(r["date"]), r["mta"], r["event_type"], r["provider"]): r["count"]
            for r in info["counts"]
        }
    )
    assert sum(truth.values()) > 0
    assert recount["open"] == truth


def test_quarantine_matches_recount(sim: Path, recount: dict) -> None:
    q = pl.read_parquet(sim / "truth/quarantine.parquet")
    truth = {(r["source_kind"], r["source_file"], r["source_line"], r["reason"]) for r in q.iter_rows(named=True)
             if r["source_kind"] in ("pmta", "kumo")}  # fmt: skip
    assert recount["quarantine"] == truth
    assert {r[3] for r in truth} == {
        "invalid_utf8",
        "malformed_csv",
        "bad_timestamp",
        "invalid_json",
        "truncated_stream",
    }


def test_webhook_duplicates_match(sim: Path, recount: dict) -> None:
    dups = json.loads((sim / "truth/kumo_duplicates.json").read_text())
    assert dups["total"] == recount["duplicates"] >= 3
    assert dups["total"] == sum(dups["per_file"].values())
    # some copies sit in a later file than their original
    assert sum(1 for v in dups["per_file"].values() if v) >= 2


def test_complaints_truth_routes(sim: Path) -> None:
    routes = pl.read_parquet(sim / "truth/complaint_routes.parquet")
    counts = pl.read_parquet(sim / "truth/complaints.parquet")
    assert routes["counted"].all()
    assert counts["count"].sum() == routes.height
    via = routes.select(
        pl.sum_horizontal(pl.col("via_pmta_f", "via_kumo_feedback", "via_fbl_eml").cast(pl.Int8))
    )
    assert via.to_series().max() == 2  # some complaints arrive by two routes and count once
    assert (via.to_series() == 1).any()
    # every FBL report exists and names the complaint's Message-ID
    for row in routes.filter(pl.col("via_fbl_eml")).iter_rows(named=True):
        body = (sim / "landing" / row["fbl_file"]).read_text()
        assert row["message_id"] in body
        assert ("Original-Rcpt-To: <" + row["recipient"] + ">" in body) != (row["redacted"] or row["jmrp"])
        if row["redacted"]:
            assert row["via_pmta_f"] or row["via_kumo_feedback"]
    assert len(list((sim / "landing/fbl").glob("*.eml"))) == routes["via_fbl_eml"].sum()


def test_suppression_truth_contains_each_source(sim: Path) -> None:
    supp = pl.read_parquet(sim / "truth/suppression.parquet")
    assert supp.columns == ["address", "scope", "source"]
    assert set(supp["scope"]) == {"global"}
    assert set(supp["source"]) == {"legacy", "bounce", "complaint", "unsubscribe"}
    routes = pl.read_parquet(sim / "truth/complaint_routes.parquet")
    complainers = {
        a.rsplit("@", 1)[0] + "@" + idna.encode(a.rsplit("@", 1)[1], uts46=True).decode()
        for a in routes["recipient"]
    }
    assert complainers == set(supp.filter(pl.col("source") == "complaint")["address"])
    assert supp.filter(pl.col("address").str.starts_with("@")).height >= 2  # whole-domain legacy entries
    assert supp.unique(["address", "source"]).height == supp.height
