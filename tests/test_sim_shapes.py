"""The simulator's files have the real shapes: PowerMTA record types and fields, KumoMTA records."""

from __future__ import annotations

import collections
import contextlib
import csv
import datetime as dt
import gzip
import json
import re
from pathlib import Path

import polars as pl
import pytest

from tests.test_sim_estate import estate, read_zstd


@pytest.fixture(scope="session")
def sim() -> Path:
    return estate(7)


@pytest.fixture(scope="session")
def pmta_rows(sim: Path) -> dict[str, list[tuple[str, list[str], list[str], str]]]:
    """node -> [(file, header, row, raw line)] of every parseable data line."""
    out: dict[str, list] = collections.defaultdict(list)
    for path in sorted(sim.glob("landing/pmta/*/acct-*")):
        raw = path.read_bytes()
        data = gzip.decompress(raw) if path.name.endswith(".gz") else raw
        lines = data.split(b"\n")[:-1]
        header = lines[0].decode().rstrip("\r").split(",")
        for line in lines[1:]:
            try:
                text = line.decode().rstrip("\r")
                row = next(csv.reader([text], strict=True))
            except (UnicodeDecodeError, csv.Error):
                continue
            out[path.parent.name].append((path.name, header, row, text))
    return out


@pytest.fixture(scope="session")
def kumo_records(sim: Path) -> dict[str, list[dict]]:
    """source (node folder or `webhooks`) -> records."""
    out: dict[str, list[dict]] = collections.defaultdict(list)
    for path in sorted(p for p in sim.glob("landing/kumo/kumo*/*") if p.is_file()):
        data, _complete = read_zstd(path)
        for line in data.split(b"\n")[:-1]:
            with contextlib.suppress(ValueError):  # the deliberately broken lines
                out[path.parent.name].append(json.loads(line))
    for path in sorted(sim.glob("landing/kumo/webhooks/*.json")):
        text = path.read_text()
        if text.startswith("[\n"):
            out["webhooks"].extend(json.loads(text))
            continue
        for line in text.splitlines():
            obj = json.loads(line)
            out["webhooks"].extend(obj if isinstance(obj, list) else [obj])
    return out


def _records(rows, kind):
    for name, header, row, text in rows:
        rec = dict(zip(header, row + [""] * (len(header) - len(row)), strict=False))
        if rec["type"] == kind:
            yield name, rec, row, header, text


FIELDS = {
    "d": ("timeLogged", "timeQueued", "orig", "rcpt", "dsnAction", "dsnStatus", "dsnDiag", "dsnMta", "srcType", "srcMta",
          "dlvType", "dlvSourceIp", "dlvDestinationIp", "dlvEsmtpAvailable", "dlvSize", "vmta", "jobId", "queue",
          "vmtaPool", "header_x-job", "header_Message-Id"),
    "b": ("timeLogged", "timeQueued", "orig", "rcpt", "dsnAction", "dsnStatus", "dsnDiag", "bounceCat", "vmta", "queue",
          "header_Message-Id"),
    "t": ("timeLogged", "timeQueued", "orig", "rcpt", "dsnAction", "dsnStatus", "dsnDiag", "dsnMta", "bounceCat",
          "dlvSourceIp", "vmta", "queue"),
    "tq": ("timeLogged", "queue", "vmta", "dsnStatus", "dsnMta", "dlvType", "dlvSourceIp", "dlvDestinationIp"),
    "r": ("timeLogged", "orig", "rcpt", "srcType", "srcMta", "rcvSourceIp", "rcvDestinationIp", "vmta", "vmtaPool",
          "jobId", "header_x-job", "header_Message-Id"),
    "rb": ("timeLogged", "orig", "rcpt", "dsnStatus", "dsnDiag", "dsnMta", "dsnReportingMta", "bounceCat", "srcType",
           "srcMta", "format"),
    "rs": ("timeLogged", "orig", "rcpt", "dsnAction", "dsnStatus", "dsnDiag", "dsnMta", "bounceCat", "format"),
    "f": ("timeLogged", "repSourceIp", "feedbackType", "format", "userAgent", "orig", "rcpt", "reportingMta",
          "dlvSourceIp", "reportedDomain", "header_Message-Id", "header_x-job"),
}  # fmt: skip
EMPTY = {
    "tq": ("orig", "rcpt", "jobId", "timeQueued", "bounceCat"),
    "r": ("dsnStatus", "dsnDiag", "dlvSourceIp", "queue", "timeQueued"),
    "rb": ("queue", "dsnAction", "vmta"),
    "rs": ("queue", "dsnReportingMta"),
    "f": ("queue", "dsnStatus", "vmta"),
}


def test_every_pmta_record_type_with_its_fields(pmta_rows) -> None:
    rows = pmta_rows["pmta1"] + pmta_rows["pmta2"]
    types = collections.Counter(r[2][0] for r in rows)
    assert set(types) == set(FIELDS)
    for kind, fields in FIELDS.items():
        for _name, rec, *_rest in _records(rows, kind):
            for f in fields:
                if kind == "b" and rec["bounceCat"] == "message-expired" and f in ("dsnMta",):
                    continue
                assert rec[f] != "", (kind, f, rec)
            for f in EMPTY.get(kind, ()):
                assert rec[f] == "", (kind, f, rec)
    # r rows: the vmta column holds the pool name
    assert all(
        rec["vmta"] == rec["vmtaPool"] and rec["vmta"].startswith("pool-")
        for _n, rec, *_ in _records(rows, "r")
    )
    # f rows carry both formats; expiry rows say message-expired; d rows with `success`
    assert {rec["format"] for _n, rec, *_ in _records(rows, "f")} <= {"arf", "jmrp"}
    assert any(
        rec["bounceCat"] == "message-expired" and rec["dsnStatus"].startswith("4.4.7")
        for _n, rec, *_ in _records(rows, "b")
    )
    assert any(rec["bounceCat"] == "success" for _n, rec, *_ in _records(pmta_rows["pmta1"], "d"))
    assert all(rec["bounceCat"] == "" for _n, rec, *_ in _records(pmta_rows["pmta2"], "d"))


def test_pmta_layout_details(pmta_rows, sim: Path) -> None:
    p1, p2 = pmta_rows["pmta1"], pmta_rows["pmta2"]
    assert p1[0][1][:3] == ["type", "timeLogged", "timeQueued"]
    assert p2[0][1][:4] == ["type", "timeLogged", "vmta", "vmtaPool"]  # non-default record-fields order
    for hdr in (p1[0][1], p2[0][1]):
        assert "header_x-job" in hdr and "header_Message-Id" in hdr
    assert any(len(row) < len(header) for _n, header, row, _t in p1)  # trailing empties dropped
    assert all(len(row) == len(header) for _n, header, row, _t in p2)
    times2 = [row[1] for _n, _h, row, _t in p2]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d-0500", t) for t in times2)
    epoch = [row[1] for _n, _h, row, _t in p1 if row[1].isdigit()]
    est = json.loads((sim / "truth/estate.json").read_text())
    epoch_file = est["pmta"]["epoch_file"].rsplit("/", 1)[1]
    assert epoch and all(n == epoch_file for n, _h, row, _t in p1 if row[1].isdigit())
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+0000", row[1])
        for n, _h, row, _t in p1
        if n != epoch_file
    )
    texts = [t for _n, _h, _r, t in p1 + p2]
    assert any('"PIPELINING,SIZE' in t or '"SIZE,' in t for t in texts)  # quoted comma lists
    assert any('""spam score""' in t for t in texts)  # doubled quotes inside a quoted diag
    assert any("<script>alert(1)</script>" in t for t in texts)
    # files are named by local date: on the -0500 node a file holds two UTC dates
    utc_dates = collections.defaultdict(set)
    for name, _h, row, _t in p2:
        utc_dates[name].add(dt.datetime.strptime(row[1], "%Y-%m-%d %H:%M:%S%z").astimezone(dt.UTC).date())
    assert any(len(v) == 2 for v in utc_dates.values())
    tq = [rec for _n, rec, *_ in _records(p1 + p2, "tq")]
    assert any(r["queue"].startswith("bücher.example/") and "xn--bcher-kva" in r["dsnMta"] for r in tq)
    assert any(r["queue"].startswith("yahoo.rollup/") for r in tq)


KUMO_TYPES = {"Reception", "Delivery", "TransientFailure", "Bounce", "Expiration", "AdminBounce", "OOB", "Feedback",
              "Rejection", "AdminRebind", "DeferredInjectionRebind", "Delayed", "XferOut", "XferIn", "SuspendNotice"}  # fmt: skip
KEYS = ["type", "id", "sender", "recipient", "queue", "site", "size", "response", "peer_address", "timestamp",
        "event_time", "created", "created_time", "num_attempts", "bounce_classification", "egress_pool", "egress_source",
        "source_address", "feedback_report", "meta", "headers", "delivery_protocol", "reception_protocol", "nodeid",
        "tls_cipher", "tls_protocol_version", "provider_name", "session_id"]  # fmt: skip


def test_every_kumo_record_type_in_struct_order(kumo_records) -> None:
    allrecs = [r for recs in kumo_records.values() for r in recs]
    assert {r["type"] for r in allrecs} == KUMO_TYPES
    for rec in allrecs:
        keys = list(rec)
        assert keys == [k for k in KEYS if k in rec], keys  # struct order, optional keys omitted
        assert set(KEYS[:10]) <= set(rec) and {"created", "num_attempts", "nodeid", "meta", "headers"} <= set(
            rec
        )
        resp = rec["response"]
        assert list(resp) == ["code", "enhanced_code", "content", "command"]
        assert resp["enhanced_code"] is None or list(resp["enhanced_code"]) == ["class", "subject", "detail"]
    old = kumo_records["kumo2"]
    assert old and all("event_time" not in r and "created_time" not in r for r in old)
    assert all("event_time" in r and "created_time" in r for r in kumo_records["kumo1"])
    assert all("event_time" in r for r in kumo_records["webhooks"])


def test_kumo_field_values(kumo_records) -> None:
    allrecs = [r for recs in kumo_records.values() for r in recs]
    by_type = collections.defaultdict(list)
    for r in allrecs:
        by_type[r["type"]].append(r)
    for r in by_type["Rejection"]:
        assert (
            r["id"] == ""
            and r["queue"] == ""
            and r["site"] == ""
            and r["size"] == 0
            and r["created"] == r["timestamp"]
        )
    for r in by_type["Delivery"]:
        assert re.fullmatch(r"[0-9a-f]{32}", r["id"])
        assert r["site"].endswith("@smtp") and "->" in r["site"]
        assert r["egress_pool"] in ("trans", "mkt", "news") and r["egress_source"]
        assert re.fullmatch(r"[\d.]+:\d+", r["source_address"]["address"])
        assert ":" in r["queue"] and "@" in r["queue"]
        assert r["meta"]["job_id"] and r["headers"]["Message-ID"].startswith("<")
    for r in by_type["Reception"]:
        assert r["site"] == "" and r["egress_pool"] is None and r["response"]["enhanced_code"] is None
    assert any(isinstance(r["recipient"], list) and len(r["recipient"]) > 1 for r in allrecs)
    classes = {r["bounce_classification"] for r in allrecs}
    assert {
        "InvalidRecipient",
        "QuotaIssues",
        "MessageExpired",
        "PolicyRelated",
        "Uncategorized",
        "Unsubscribe",
    } <= classes
    assert any(r.get("provider_name") for r in by_type["Delivery"]) and any(
        "tls_cipher" in r for r in allrecs
    )
    assert any("provider_name" not in r for r in by_type["Delivery"])  # the long tail has no provider block
    fb = [r["feedback_report"] for r in by_type["Feedback"]]
    assert fb
    for f in fb:
        assert f["feedback_type"] == "abuse" and "original_rcpto_to" in f and f["reported_domain"]
    assert len(fb) >= 2
    assert {type(f["version"]) for f in fb} == {str, int}
    assert any(isinstance(f["original_message"], list) for f in fb)
    assert any(isinstance(f["original_message"], str) for f in fb)
    nodeids = {r["nodeid"] for r in allrecs}
    assert len(nodeids) == 3 and all(re.fullmatch(r"[0-9a-f-]{36}", n) for n in nodeids)
    assert any("<script>alert(1)</script>" in r["response"]["content"] for r in allrecs)
    assert any('"spam score"' in r["response"]["content"] for r in allrecs)


def test_deliberate_faults_are_where_truth_says(sim: Path) -> None:
    q = pl.read_parquet(sim / "truth/quarantine.parquet")
    landing = sim / "landing"
    for row in q.filter(pl.col("source_kind") == "pmta").iter_rows(named=True):
        path = landing / row["source_file"]
        raw = path.read_bytes()
        data = gzip.decompress(raw) if path.name.endswith(".gz") else raw
        lines = data.split(b"\n")
        line = lines[row["source_line"] - 1]
        if row["reason"] == "invalid_utf8":
            with pytest.raises(UnicodeDecodeError):
                line.decode("utf-8")
        elif row["reason"] == "malformed_csv":
            assert lines[row["source_line"] :] == [b""]  # confined: the last line of its file
            assert line.decode().count('"') % 2 == 1
        elif row["reason"] == "bad_timestamp":
            assert line.decode().split(",")[1] == "2026-13-45 25:61:00+0000"
    est = json.loads((sim / "truth/estate.json").read_text())
    assert est["faults"]["unknown_kumo_type"] == "SuspendNotice"


def test_in_flight_truth(sim: Path) -> None:
    inf = pl.read_parquet(sim / "truth/in_flight.parquet")
    plan = json.loads((sim / "truth/estate.json").read_text())["pools"]
    cut = {p["name"]: p["cutover"] for p in plan}
    assert set(inf["outcome"]) <= {"delivered", "bounced", "expired", "pending"}
    for row in inf.iter_rows(named=True):
        c = cut[row["pool"]].replace("Z", "+00:00")
        assert row["queued_time"].isoformat() < c or row["queued_time"].isoformat()[:19] < c[:19]
        if row["outcome"] != "pending":
            assert row["outcome_time"].isoformat()[:19] >= c[:19]


def test_truth_consequences_agree_with_the_project_taxonomy(pmta_rows, kumo_records) -> None:
    """The suppression truth's category rule gives what the pipeline's taxonomy + classifier give."""
    taxonomy = pytest.importorskip("mtashift.classify")
    from mtashift.sim.truth import RETRY_THEN_SUPPRESS, SUPPRESS, UNSUBSCRIBE

    rows = []
    for _n, header, row, _t in pmta_rows["pmta1"] + pmta_rows["pmta2"]:
        rec = dict(zip(header, row + [""] * (len(header) - len(row)), strict=False))
        if rec["type"] not in ("b", "t", "rb"):
            continue
        m = re.match(r"^smtp;(\d{3})(?: ([245]\.\d{1,3}\.\d{1,3}))? ?(.*)$", rec["dsnDiag"])
        code, enh, text = (m.group(1), m.group(2), m.group(3)) if m else (None, None, rec["dsnDiag"])
        rows.append((code, enh, text, rec["bounceCat"]))
    failure = {"TransientFailure", "Bounce", "Expiration", "AdminBounce", "OOB", "Rejection", "Delayed"}
    for rec in (r for recs in kumo_records.values() for r in recs):
        if rec["type"] in failure:
            r = rec["response"]
            enh = (
                None
                if r["enhanced_code"] is None
                else "{class}.{subject}.{detail}".format(**r["enhanced_code"])
            )
            rows.append((str(r["code"]), enh, r["content"], rec["bounce_classification"]))
    frame = pl.DataFrame(
        rows, schema=["smtp_code", "enhanced_status", "response", "raw_bounce_category"], orient="row"
    )
    frame = frame.unique().sort(pl.all())
    got = taxonomy.classify(frame.lazy()).collect()
    for row in got.iter_rows(named=True):
        raw = row["raw_bounce_category"]
        expected = (
            "suppress" if raw in SUPPRESS or raw in UNSUBSCRIBE
            else "retry-then-suppress" if raw in RETRY_THEN_SUPPRESS
            else "statistical"
        )  # fmt: skip
        assert row["consequence"] == expected, row
