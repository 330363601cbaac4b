"""Benchmark the sample-estate simulator: wall time and messages/s for one large day.

Usage: .venv/bin/python bench/bench_sim.py [--days 1] [--messages-per-day 5000000] [--out DIR] [--keep]

Prints the wall-clock and CPU time of ``mtashift.sim.generate`` and the rate in messages per
second, plus the bytes written. The output folder is deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from mtashift.sim import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--messages-per-day", type=int, default=5_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="print each stage as it progresses")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-sim-"))
    began = time.perf_counter()
    stages: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        stages.setdefault(stage, time.perf_counter() - began)
        if args.verbose and done == total:
            print(f"  {stage:<8} done at {time.perf_counter() - began:7.2f} s")

    cpu0 = time.process_time()
    summary = generate(
        out, days=args.days, messages_per_day=args.messages_per_day, seed=args.seed, progress=progress
    )
    cpu = time.process_time() - cpu0
    wall = summary.seconds
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"messages        {summary.messages:>14,}")
    print(f"events rendered {summary.events_rendered:>14,}")
    print(f"files           {summary.files:>14,}   bytes {summary.bytes / 2**20:,.1f} MiB")
    print(f"wall            {wall:>14.2f} s   cpu {cpu:.2f} s   peak rss {rss:.2f} GiB")
    print(f"rate            {summary.messages / wall:>14,.0f} messages/s")
    print("stage starts    " + "  ".join(f"{k}@{v:.1f}s" for k, v in stages.items()))
    if not args.keep and args.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
