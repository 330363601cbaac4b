"""Sample-estate simulator: determinism, file modes and the landing layout (small estates).

The estates are generated once per session (``estate(seed)`` is cached) and shared with
test_sim_recount.py and test_sim_shapes.py.
"""

from __future__ import annotations

import atexit
import collections
import functools
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import polars as pl
import pytest
import yaml
import zstandard

from mtashift.sim import generate

DAYS = 3
PER_DAY = 2000


def _rmtree(path: Path) -> None:
    def onerror(func, p, _exc):
        os.chmod(os.path.dirname(p), 0o755)
        os.chmod(p, 0o644)
        func(p)

    shutil.rmtree(path, onerror=onerror)


@functools.cache
def estate(seed: int = 7, copy: int = 0) -> Path:
    """A generated estate (landing + truth) in a temporary folder, removed at exit."""
    root = Path(tempfile.mkdtemp(prefix=f"sim-{seed}-{copy}-"))
    atexit.register(_rmtree, root)
    generate(root, days=DAYS, messages_per_day=PER_DAY, seed=seed)
    return root


def tree_digest(root: Path) -> dict[str, tuple[str, int, int]]:
    """path -> (sha256, mode bits, mtime) of every file under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (
                hashlib.sha256(p.read_bytes()).hexdigest(),
                stat.S_IMODE(st.st_mode),
                int(st.st_mtime),
            )
    return out


def read_zstd(path: Path) -> tuple[bytes, bool]:
    """(decompressed bytes, complete) with a streaming decoder; a cut stream yields its readable prefix."""
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(path.read_bytes()))
    out = bytearray()
    complete = True
    try:
        while chunk := reader.read(1 << 16):
            out += chunk
    except zstandard.ZstdError:
        complete = False
    # stream_reader stops quietly at the end of a cut frame: confirm with a one-shot decoder
    try:
        zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes())
        dobj = zstandard.ZstdDecompressor().decompressobj()
        dobj.decompress(path.read_bytes())
        complete = complete and dobj.eof
    except zstandard.ZstdError:
        complete = False
    return bytes(out), complete


@pytest.fixture(scope="session")
def sim() -> Path:
    return estate(7)


def test_same_seed_gives_byte_identical_trees(sim: Path) -> None:
    again = estate(7, copy=1)
    first, second = tree_digest(sim), tree_digest(again)
    assert first.keys() == second.keys()
    assert first == second
    assert len(first) > 60


def test_different_seed_gives_different_files(sim: Path) -> None:
    other = tree_digest(estate(8))
    mine = tree_digest(sim)
    shared = set(other) & set(mine)
    differing = {p for p in shared if other[p][0] != mine[p][0]}
    # every file with traffic in it differs; configs do not depend on the seed
    assert any(p.startswith("landing/pmta/") for p in differing)
    assert any(p.startswith("landing/kumo/webhooks/") for p in differing) or set(other) != set(mine)
    assert "truth/event_counts.parquet" in differing
    assert other["landing/pmta-config/pmta1/config"] == mine["landing/pmta-config/pmta1/config"]


def test_truth_is_beside_landing_not_inside(sim: Path) -> None:
    assert (sim / "landing").is_dir() and (sim / "truth").is_dir()
    assert not (sim / "landing" / "truth").exists()
    for name in (
        "event_counts.parquet", "quarantine.parquet", "complaints.parquet", "complaint_routes.parquet",
        "suppression.parquet", "in_flight.parquet", "seedlist.parquet", "estate.json", "segments.json",
        "kumo_duplicates.json", "open_segment.json", "README.md",
    ):  # fmt: skip
        assert (sim / "truth" / name).is_file(), name


def test_segment_modes_and_readability(sim: Path) -> None:
    seg = json.loads((sim / "truth/segments.json").read_text())
    landing = sim / "landing"
    segments = sorted(p for p in (landing / "kumo").glob("kumo*/*") if p.is_file())
    assert len(segments) == len(seg["segments"]) >= 10
    writable = [p for p in segments if stat.S_IMODE(p.stat().st_mode) & 0o200]
    assert [p.relative_to(landing).as_posix() for p in writable] == [seg["open"]["path"]]
    assert stat.S_IMODE(writable[0].stat().st_mode) == 0o644
    # the open segment is the newest one of its node
    node_dir = writable[0].parent
    main = sorted(p.name for p in node_dir.iterdir() if "_" not in p.name)
    assert writable[0].name == main[-1]
    for p in segments:
        rel = p.relative_to(landing).as_posix()
        if p not in writable:
            assert stat.S_IMODE(p.stat().st_mode) == 0o444, rel
        data, complete = read_zstd(p)
        if rel == seg["truncated"]["path"]:
            assert not complete
            assert data.count(b"\n") == seg["truncated"]["intact_records"]
            assert seg["truncated"]["first_lost_line"] == seg["truncated"]["intact_records"] + 1
            assert 0 < seg["truncated"]["intact_records"] < seg["truncated"]["total_records"]
        else:
            assert complete, rel
            assert data.endswith(b"\n")
    # names: UTC open time with nanoseconds, optional suffix, no extension
    for p in segments:
        stem, _sep, suffix = p.name.partition("_")
        assert (
            len(stem) == 25
            and stem[8] == "-"
            and stem[15] == "."
            and stem.replace("-", "").replace(".", "").isdigit()
        )
        assert suffix in ("", "recv")


def test_pmta_files_gzip_rotation_and_duplicate(sim: Path) -> None:
    est = json.loads((sim / "truth/estate.json").read_text())
    files = sorted((sim / "landing/pmta").glob("*/acct-*"))
    names = [p.name for p in files]
    assert any(n.endswith(".csv.gz") for n in names) and any(n.endswith(".csv") for n in names)
    for p in files:
        if p.name.endswith(".gz"):
            raw = p.read_bytes()
            assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\x00\x00\x00\x00"  # mtime 0
            assert raw[3] & 0x08 == 0  # no file name stored
            gzip.decompress(raw)
    # several files on one day (size rotation or the forced rotation after the reload)
    days = [n[5:15] for n in names if n.startswith("acct-") and "pmta1" in str(files[names.index(n)])]
    assert max(days.count(d) for d in days) >= 2
    dup = est["pmta"]["duplicate"]
    assert dup["original"] != dup["copy"]
    assert (sim / "landing" / dup["original"]).read_bytes() == (sim / "landing" / dup["copy"]).read_bytes()


def test_plan_yaml_shape(sim: Path) -> None:
    plan = yaml.safe_load((sim / "landing/plan.yaml").read_text())
    est = json.loads((sim / "truth/estate.json").read_text())
    assert set(plan) == {"pools", "vmta_map", "tco"}
    assert plan["tco"] == {}
    assert {p["name"]: p["cutover"] for p in est["pools"]} == {
        k: v["cutover"] for k, v in plan["pools"].items()
    }
    assert plan["vmta_map"]["vmta-t1"] == {"egress_source": "trans-1", "egress_pool": "trans"}
    assert set(plan["vmta_map"]) == {v["name"] for v in est["vmtas"]}


def test_pmta_config_files_and_inventory(sim: Path) -> None:
    cfg = sim / "landing/pmta-config/pmta1"
    main = (cfg / "config").read_text()
    assert "include /etc/pmta/vmtas.conf" in main and "include /etc/pmta/conf.d/shaping.conf" in main
    assert "<acct-file /var/log/pmta/acct.csv>" in main and "records d,b,t,tq,r,f,rb,rs" in main
    assert "process-x-job yes" in main and "<source 0/0>" in main
    vm = (cfg / "vmtas.conf").read_text()
    assert "smtp-source-host 192.0.2.10 t1.mta.acme.example" in vm
    assert "domain-key s2026a,acme.example,/etc/pmta/dkim/acme.example.s2026a.pem" in vm
    assert "<virtual-mta-pool pool-trans>" in vm
    shp = (cfg / "conf.d/shaping.conf").read_text()
    for text in ("<domain yahoo.$tld>", "<domain [*.]gmail.com>", "<domain *.icloud.com>", "<domain *>",
                 "max-msg-rate 83/10m", "max-msg-rate unlimited", "domain-macro tld", "<mx-rollup-list>",
                 "<smtp-pattern-list common-errors>"):  # fmt: skip
        assert text in shp, text
    # pmta2 lists its fields explicitly (non-default column order)
    main2 = (sim / "landing/pmta-config/pmta2/config").read_text()
    assert "record-fields d type,timeLogged,vmta,vmtaPool,jobId" in main2
    est = json.loads((sim / "truth/estate.json").read_text())
    inv = {n["node"]: n for n in est["pmta"]["nodes"]}
    assert {v["name"] for v in inv["pmta1"]["vmtas"]} == {
        "vmta-t1",
        "vmta-t2",
        "vmta-t3",
        "vmta-n1",
        "vmta-n2",
        "vmta-n3",
    }
    assert {v["name"] for v in inv["pmta2"]["vmtas"]} == {"vmta-m1", "vmta-m2", "vmta-m3", "vmta-m4"}
    scopes = {(r["scope"], r["scope_name"], r["pattern"]) for r in inv["pmta2"]["domain_rules"]}
    assert ("pool", "pool-mkt", "yahoo.$tld") in scopes and ("vmta", "vmta-m4", "*") in scopes
    assert ("global", "", "*") in scopes
    observed = est["regression"].pop("observed")
    assert est["regression"] == {
        "pool": "pool-mkt",
        "provider": "yahoo",
        "metric": "deferral_rate",
        "factor": 3.0,
    }
    # the regression shows in the rendered data: far more deferred attempts after the cutover
    assert observed["kumo"]["message_deferral_rate"] > 1.8 * observed["pmta"]["message_deferral_rate"] > 0


def test_seedlists_degrade_for_the_regressing_pool(sim: Path) -> None:
    frames = [pl.read_csv(p) for p in sorted((sim / "landing/seedlist").glob("*.csv"))]
    df = pl.concat(frames)
    assert df.columns == ["test_id", "sent_at", "pool", "provider", "seed_address", "placement"]
    assert set(df["placement"].unique()) <= {"inbox", "spam", "missing"}
    truth = pl.read_parquet(sim / "truth/seedlist.parquet")
    assert truth["count"].sum() == len(df)
    # recount the truth from the files: phase from the plan's cutover
    plan = yaml.safe_load((sim / "landing/plan.yaml").read_text())
    cut = pl.DataFrame({"pool": list(plan["pools"]), "cut": [v["cutover"] for v in plan["pools"].values()]})
    recount = (
        df.join(cut, on="pool")
        .with_columns(
            phase=pl.when(pl.col("sent_at") >= pl.col("cut"))
            .then(pl.lit("after"))
            .otherwise(pl.lit("before"))
        )
        .group_by(["pool", "provider", "phase", "placement"])
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .sort(["pool", "provider", "phase", "placement"])
    )
    assert recount.equals(truth)


def test_legacy_suppression_files(sim: Path) -> None:
    raw = (sim / "landing/suppression/legacy-global.txt").read_bytes()
    assert raw.startswith("\ufeff".encode())
    text = raw.decode("utf-8")
    assert "@gmial.example" in text and "\nno-such-domain.example\n" in text
    assert any(line != line.strip() for line in text.splitlines() if line.strip())
    assert any(
        line.strip().split("@")[-1] != line.strip().split("@")[-1].lower()
        for line in text.splitlines()
        if "@" in line
    )
    esp = (sim / "landing/suppression/legacy-esp.csv").read_text()
    assert esp.splitlines()[0] == "email,reason,date"
    truth = pl.read_parquet(sim / "truth/suppression.parquet")
    legacy = truth.filter(pl.col("source") == "legacy")["address"].to_list()
    assert "@gmial.example" in legacy and "@no-such-domain.example" in legacy
    assert "@competitor-corp.example" in legacy and "Jürgen.Weber@xn--bcher-kva.example" in legacy
    assert not any(a in legacy for a in ("not-an-address", "john.smith@", "a@b@c.example"))
    q = pl.read_parquet(sim / "truth/quarantine.parquet").filter(pl.col("source_kind") == "suppression")
    lines = text.split("\n")
    for row in q.iter_rows(named=True):
        if row["source_file"].endswith(".txt"):
            assert lines[row["source_line"] - 1].strip() in ("not-an-address", "john.smith@", "a@b@c.example")
    assert q.height == 5


def test_webhook_capture_layouts(sim: Path) -> None:
    layouts = collections.Counter()
    for path in sorted((sim / "landing/kumo/webhooks").glob("hook-*.json")):
        text = path.read_text()
        if text.startswith("[\n"):
            layouts["whole-file array"] += 1
            assert isinstance(json.loads(text), list)
        elif text.startswith("["):
            layouts["array per line"] += 1
            assert all(isinstance(json.loads(line), list) for line in text.splitlines())
        else:
            layouts["object per line"] += 1
            assert all(isinstance(json.loads(line), dict) for line in text.splitlines())
    assert layouts["whole-file array"] == 1
    assert layouts["array per line"] >= 1 and layouts["object per line"] >= 1
