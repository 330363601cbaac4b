"""Benchmark: daily provider rates vs a DuckDB GROUP BY over the same events.

Builds (vectorised, self-contained) an estate of ``--days`` days × ``--per-day`` canonical events as
``events/date=YYYY-MM-DD/part-0.parquet`` partitions: both MTAs (pools cut over to KumoMTA in the
second half), the big providers plus custom domains on Google Workspace / Microsoft 365 / Mimecast /
self-hosted MX, deferrals, bounces, expiries, complaints and receptions. Then, in one run, each in
its own subprocess:

  (a) baseline: one DuckDB query over all partitions computing the same counts (attempts,
      delivered, deferred, bounced, expired, complaints) by day × provider × pool × source × source_ip
      × mta, with the same provider attribution written in SQL (row MX suffix, else the day's most
      frequent observed MX provider of the domain, else the domain list, else `other`);
  (b) ours: ``mtashift.rates.rates(grain="day")`` once per day partition, as the daily asset runs
      (plus latency percentiles, peak per minute and the other columns the baseline does not compute).

Prints both times, the ratio (b)/(a), each child's peak RSS, and whether the counts agree exactly;
for context also the time of a DuckDB GROUP BY without any provider attribution (the floor).
Target: ratio <= 2.

    .venv/bin/python bench/bench_rates.py --days 30 --per-day 1000000
    .venv/bin/python bench/bench_rates.py --days 3 --per-day 100000 --keep
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DAY0 = date(2026, 10, 1)
COUNT_COLUMNS = ["attempts", "delivered", "deferred", "bounced", "expired", "complaints"]
KEYS = ["day", "provider", "pool", "source", "source_ip", "mta"]

# (recipient domain, MX host or None for "no MX observed", weight). Custom domains are expanded below.
MAILBOX_DOMAINS = [
    ("gmail.com", "gmail-smtp-in.l.google.com", 0.32),
    ("yahoo.com", "mta7.am0.yahoodns.net", 0.10),
    ("aol.com", "mx-aol.mail.gm0.yahoodns.net", 0.03),
    ("outlook.com", "outlook-com.olc.protection.outlook.com", 0.07),
    ("hotmail.com", "hotmail-com.olc.protection.outlook.com", 0.07),
    ("icloud.com", "mx01.mail.icloud.com", 0.06),
    ("comcast.net", "mx1a1.comcast.net", 0.03),
    ("gmx.de", "mx00.emig.gmx.net", 0.02),
    ("web.de", "mx-ha03.web.de", 0.02),
    ("orange.fr", "smtp-in.orange.fr", 0.02),
    ("yahoo.co.uk", "mta5.am0.yahoodns.net", 0.01),
]
CUSTOM_HOSTING = [  # MX pattern per hosting kind; {d} = domain with dots as dashes
    ("aspmx.l.google.com", 0.40),
    ("{d}.mail.protection.outlook.com", 0.30),
    ("eu-smtp-inbound-1.mimecast.com", 0.10),
    ("mx.{d}.example", 0.20),  # self-hosted: provider `other`
]
N_CUSTOM = 3_000
CUSTOM_WEIGHT = 0.25
EVENT_TYPES = [
    "delivered",
    "deferred",
    "bounced",
    "expired",
    "received",
    "complaint",
    "queue_deferred",
    "remote_bounce",
]
EVENT_P = [0.66, 0.14, 0.04, 0.01, 0.13, 0.001, 0.01, 0.009]
DEFER_TEXT = [
    "[TSS04] Messages from 203.0.113.{k} temporarily deferred due to unexpected volume or user complaints",
    "4.7.28 [203.0.113.{k}] Our system has detected an unusual rate of unsolicited mail. {k}si{i}pls - gsmtp",
    "Server busy. Please try again later from [203.0.113.{k}]. (S77719)",
    "Greylisted, please try again in 300 seconds",
]
N_SOURCES = 40


def _domains() -> tuple[list[str], list[str | None], np.ndarray]:
    rng = np.random.default_rng(1)
    names = [d for d, _, _ in MAILBOX_DOMAINS]
    mx: list[str | None] = [m for _, m, _ in MAILBOX_DOMAINS]
    weights = [w for _, _, w in MAILBOX_DOMAINS]
    kinds = rng.choice(len(CUSTOM_HOSTING), size=N_CUSTOM, p=[p for _, p in CUSTOM_HOSTING])
    zipf = 1.0 / np.arange(1, N_CUSTOM + 1)
    zipf = zipf / zipf.sum() * CUSTOM_WEIGHT
    for j in range(N_CUSTOM):
        d = f"corp{j}.example.com"
        names.append(d)
        mx.append(CUSTOM_HOSTING[kinds[j]][0].format(d=d.replace(".", "-")))
        weights.append(zipf[j])
    w = np.array(weights)
    return names, mx, w / w.sum()


def generate_day(day: date, n: int, *, seed: int) -> pl.DataFrame:
    """`n` canonical events of one UTC day (vectorised; deterministic for a seed)."""
    from schemas.events import conform

    rng = np.random.default_rng(seed)
    names, mx, p = _domains()
    dom = rng.choice(len(names), size=n, p=p)
    et = rng.choice(len(EVENT_TYPES), size=n, p=EVENT_P)
    src = rng.integers(0, N_SOURCES, size=n)
    start_us = int(np.datetime64(day.isoformat(), "us").astype(np.int64))
    t = np.sort(rng.integers(0, 86_400_000_000, size=n)) + start_us
    lat = rng.gamma(2.0, 60.0, size=n) * 1_000_000
    k = rng.integers(1, 250, size=n)
    # Pools cut over to KumoMTA one after another in the second half of the estate.
    cut = (day - DAY0).days
    pool = src % 4
    mta_kumo = pool < max(0, cut - 13) // 4
    ev_types = pl.Series(EVENT_TYPES, dtype=pl.String)
    frame = pl.DataFrame(
        {
            "i": np.arange(n, dtype=np.int64),
            "et": et,
            "dom": dom,
            "src": src,
            "pool": pool,
            "kumo": mta_kumo,
            "t": t,
            "lat": lat.astype(np.int64),
            "k": k,
        }
    )
    dom_s = pl.Series(names, dtype=pl.String)
    mx_s = pl.Series(mx, dtype=pl.String)
    etype = pl.col("et").map_batches(lambda s: ev_types.gather(s), return_dtype=pl.String)
    observed = etype.is_in(["delivered", "deferred", "bounced"])
    defer_variant = pl.col("k") % len(DEFER_TEXT)
    defer_text = pl.lit(None, dtype=pl.String)
    for j in reversed(range(len(DEFER_TEXT))):
        tpl = DEFER_TEXT[j]
        parts: list[pl.Expr] = []
        for chunk in tpl.replace("{k}", "\x00k\x00").replace("{i}", "\x00i\x00").split("\x00"):
            parts.append(
                pl.col("k").cast(pl.String) if chunk == "k" else pl.col("i").cast(pl.String) if chunk == "i"
                else pl.lit(chunk)
            )  # fmt: skip
        defer_text = pl.when(defer_variant == j).then(pl.concat_str(parts)).otherwise(defer_text)
    out = frame.select(
        event_id=pl.concat_str(pl.lit(day.strftime("%Y%m%d")), pl.lit("-"), pl.col("i").cast(pl.String)),
        mta=pl.when(pl.col("kumo")).then(pl.lit("kumo")).otherwise(pl.lit("pmta")),
        event_type=etype,
        event_time=pl.col("t").cast(pl.Datetime("us", "UTC")),
        queued_time=(pl.col("t") - pl.col("lat")).cast(pl.Datetime("us", "UTC")),
        sender=pl.lit("bounce@mail.sender.example"),
        sender_domain=pl.lit("mail.sender.example"),
        recipient=pl.concat_str(pl.lit("u"), pl.col("i").cast(pl.String), pl.lit("@"),
                                pl.col("dom").map_batches(lambda s: dom_s.gather(s), return_dtype=pl.String)),
        recipient_domain=pl.col("dom").map_batches(lambda s: dom_s.gather(s), return_dtype=pl.String),
        pool=pl.concat_str(pl.lit("pool-"), pl.col("pool").cast(pl.String)),
        source=pl.concat_str(pl.lit("vmta-"), pl.col("src").cast(pl.String)),
        source_ip=pl.concat_str(pl.lit("203.0.113."), (pl.col("src") + 1).cast(pl.String)),
        mx_host=pl.when(observed).then(pl.col("dom").map_batches(lambda s: mx_s.gather(s), return_dtype=pl.String)),
        smtp_code=pl.when(etype == "delivered").then(250).when(etype == "deferred").then(421)
        .when(etype == "bounced").then(550).cast(pl.Int16),
        response=pl.when(etype == "delivered").then(pl.lit("2.0.0 OK")).when(etype == "deferred").then(defer_text)
        .when(etype == "bounced").then(pl.lit("5.1.1 user unknown")),
        size_bytes=pl.lit(42_000, dtype=pl.Int64),
        node=pl.when(pl.col("kumo")).then(pl.lit("kumo1")).otherwise(pl.lit("pmta1")),
    )  # fmt: skip
    return conform(out.lazy()).collect()


def build_estate(lake: Path, days: int, per_day: int) -> None:
    from mtashift.lake import Lake, write_partition

    lk = Lake.at(lake)
    for d in range(days):
        day = DAY0 + timedelta(days=d)
        if (lk.partition_dir("events", day.isoformat()) / "part-0.parquet").exists():
            continue
        write_partition(generate_day(day, per_day, seed=d), lake=lk, table="events", day=day.isoformat())


# --- the two contenders ------------------------------------------------------------------------------------


def _sql_list(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def baseline_sql(glob: str) -> str:
    """The same attribution and counts as mtashift.rates, in one DuckDB statement."""
    from mtashift.providers import load_provider_map

    pmap = load_provider_map()
    host = "rtrim(lower(trim(mx_host)), '.')"
    mx_case = "CASE " + " ".join(
        f"WHEN ends_with({host}, '{s}') THEN '{p}'" for s, p in pmap.mx_suffixes
    ) + " END"  # fmt: skip
    dom = "rtrim(lower(trim(ev.recipient_domain)), '.')"
    dom_case = "CASE " + " ".join(
        f"WHEN {dom} = '{d}' OR ends_with({dom}, '.{d}') THEN '{p}'" for d, p in pmap.domains
    )  # fmt: skip
    fam = "|".join(f for f, _ in pmap.families)
    dom_case += " " + " ".join(
        f"WHEN regexp_extract({dom}, '^({fam})(\\.[a-z]{{2,3}})?\\.[a-z]{{2,}}$', 1) = '{f}' THEN '{p}'"
        for f, p in pmap.families
    ) + " END"  # fmt: skip
    counted = _sql_list(
        ["delivered", "deferred", "bounced", "expired", "queue_deferred", "remote_bounce", "complaint"]
    )
    return f"""
    WITH ev AS (
        SELECT CAST(event_time AS DATE) AS day, event_type, recipient_domain, pool, source, source_ip, mta,
               {mx_case} AS mxp
        FROM read_parquet('{glob}', hive_partitioning = false)
        WHERE event_type IN ({counted})
    ),
    seen AS (
        SELECT day, recipient_domain, mxp, count(*) AS n FROM ev
        WHERE event_type IN ('delivered', 'deferred', 'bounced') AND mxp IS NOT NULL AND recipient_domain IS NOT NULL
        GROUP BY ALL
    ),
    dm AS (SELECT day, recipient_domain, first(mxp ORDER BY n DESC, mxp) AS dmp FROM seen GROUP BY ALL)
    SELECT ev.day, coalesce(mxp, dmp, {dom_case}, 'other') AS provider, pool, source, source_ip, mta,
           count(*) FILTER (WHERE event_type IN ('delivered', 'deferred', 'bounced', 'expired')) AS attempts,
           count(*) FILTER (WHERE event_type = 'delivered') AS delivered,
           count(*) FILTER (WHERE event_type = 'deferred') AS deferred,
           count(*) FILTER (WHERE event_type = 'bounced') AS bounced,
           count(*) FILTER (WHERE event_type = 'expired') AS expired,
           count(*) FILTER (WHERE event_type = 'complaint') AS complaints
    FROM ev LEFT JOIN dm ON ev.day = dm.day AND ev.recipient_domain = dm.recipient_domain
    GROUP BY ALL
    """


def run_baseline(lake: Path, out: Path, threads: int) -> dict:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    glob = str(lake / "events" / "date=*" / "*.parquet")
    con.execute(f"COPY ({baseline_sql(glob)}) TO '{out}' (FORMAT parquet)")
    return {"rows": con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0]}


def run_floor(lake: Path, out: Path, threads: int) -> dict:
    """Context only: the same counts by pool × source × source_ip × mta × day, no provider at all."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    glob = str(lake / "events" / "date=*" / "*.parquet")
    sql = f"""
    SELECT CAST(event_time AS DATE) AS day, pool, source, source_ip, mta,
           count(*) FILTER (WHERE event_type IN ('delivered', 'deferred', 'bounced', 'expired')) AS attempts,
           count(*) FILTER (WHERE event_type = 'delivered') AS delivered,
           count(*) FILTER (WHERE event_type = 'deferred') AS deferred,
           count(*) FILTER (WHERE event_type = 'bounced') AS bounced,
           count(*) FILTER (WHERE event_type = 'expired') AS expired,
           count(*) FILTER (WHERE event_type = 'complaint') AS complaints
    FROM read_parquet('{glob}', hive_partitioning = false) GROUP BY ALL
    """
    con.execute(f"COPY ({sql}) TO '{out}' (FORMAT parquet)")
    return {"rows": con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0]}


def run_ours(lake: Path, out: Path) -> dict:
    from mtashift.lake import Lake
    from mtashift.providers import daily_domain_map
    from mtashift.rates import day_events, rates

    lk = Lake.at(lake)
    frames = []
    for part in sorted((lake / "events").glob("date=*")):
        day = part.name.removeprefix("date=")
        events = day_events(lake=lk, day=day)
        # What the daily asset does, minus the write (no history table, no bounces: same counts).
        frames.append(
            rates(
                events=events, consequences=None, grain="day", domain_map=daily_domain_map(events=events)
            ).collect()
        )
    result = pl.concat(frames)
    result.write_parquet(out)
    return {"rows": result.height}


def _child(mode: str, lake: str, out: str, threads: str) -> None:
    t = time.perf_counter()
    info = (
        run_baseline(Path(lake), Path(out), int(threads))
        if mode == "baseline"
        else run_ours(Path(lake), Path(out))
    )
    elapsed = time.perf_counter() - t
    print(
        json.dumps(
            {"seconds": elapsed, "info": info, "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
        )
    )


def _measure(mode: str, lake: Path, out: Path, threads: int) -> dict:
    env = dict(os.environ, POLARS_MAX_THREADS=str(threads))
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(lake), str(out), str(threads)],
                          capture_output=True, text=True, check=False, env=env)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["peak_rss_mb"] = res["rss_kib"] / 1024
    return res


def compare(base: Path, ours: Path) -> tuple[bool, int]:
    """Counts per key agree exactly? Returns (equal, number of differing keys)."""
    a = pl.read_parquet(base).select(KEYS + COUNT_COLUMNS).with_columns(pl.col(COUNT_COLUMNS).cast(pl.Int64))
    b = pl.read_parquet(ours).select(KEYS + COUNT_COLUMNS)
    j = a.join(b, on=KEYS, how="full", nulls_equal=True, suffix="_ours", coalesce=True)
    diff = j.filter(pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_ours")) for c in COUNT_COLUMNS]))
    return diff.height == 0 and a.height == b.height, diff.height


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--per-day", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "rates")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--keep", action="store_true", help="keep the generated estate for the next run")
    ap.add_argument("--child", nargs=4, metavar=("MODE", "LAKE", "OUT", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return

    lake = args.out / f"lake-{args.days}x{args.per_day}"
    t = time.perf_counter()
    build_estate(lake, args.days, args.per_day)
    size = sum(p.stat().st_size for p in (lake / "events").glob("date=*/*.parquet")) / 2**20
    print(f"estate: {args.days} days × {args.per_day} events = {args.days * args.per_day} events, "
          f"{size:.0f} MiB Parquet (ready in {time.perf_counter() - t:.1f}s)")  # fmt: skip
    base = _measure("baseline", lake, args.out / "baseline.parquet", args.threads)
    ours = _measure("ours", lake, args.out / "ours.parquet", args.threads)
    floor = _measure("floor", lake, args.out / "floor.parquet", args.threads)
    equal, ndiff = compare(args.out / "baseline.parquet", args.out / "ours.parquet")
    ratio = ours["seconds"] / base["seconds"]
    print(
        f"(a) DuckDB GROUP BY, all days, {args.threads} threads: {base['seconds']:.2f}s  "
        f"peak RSS {base['peak_rss_mb']:.0f} MiB  groups {base['info']['rows']}"
    )
    print(
        f"(b) mtashift rates(grain='day') per day:      {ours['seconds']:.2f}s  "
        f"peak RSS {ours['peak_rss_mb']:.0f} MiB  groups {ours['info']['rows']}"
    )
    print(f"(context) DuckDB GROUP BY without provider attribution: {floor['seconds']:.2f}s  "
          f"peak RSS {floor['peak_rss_mb']:.0f} MiB  groups {floor['info']['rows']}")  # fmt: skip
    print(f"counts identical: {equal} (differing groups: {ndiff})")
    print(f"ratio (b)/(a): {ratio:.2f}  (target <= 2)")
    for p in ("baseline.parquet", "ours.parquet", "floor.parquet"):
        (args.out / p).unlink(missing_ok=True)
    if not args.keep:
        shutil.rmtree(lake, ignore_errors=True)


if __name__ == "__main__":
    main()
