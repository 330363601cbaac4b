"""Sample-estate simulator: a PowerMTA -> KumoMTA sending estate rendered into real file shapes, with truth.

``generate(out)`` writes ``out/landing/...`` (what the servers and the sender hand over) and
``out/truth/...`` (what a correct pipeline must find; documented in ``truth/README.md``).
Same arguments, same bytes: every random draw comes from one seeded generator, compressed files
carry no timestamps, file modes and mtimes are fixed.

Modules: :mod:`~mtashift.sim.estate` (static estate data), :mod:`~mtashift.sim.model` (traffic),
:mod:`~mtashift.sim.pmta` and :mod:`~mtashift.sim.kumo` (server files),
:mod:`~mtashift.sim.extras` (configs, ARF reports, suppression lists, seed lists, plan),
:mod:`~mtashift.sim.truth` (ground truth).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from mtashift.sim import _io, extras, kumo, pmta, truth
from mtashift.sim import estate as E
from mtashift.sim import model as M

__all__ = ["SimSummary", "generate"]

Progress = Callable[[str, int, int], None]
KUMO_FILE_BASE = 1 << 20  # ledger file ids of KumoMTA files start here


@dataclass(frozen=True)
class SimSummary:
    out: Path
    landing: Path
    truth: Path
    days: int
    messages_per_day: int
    seed: int
    messages: int
    events_rendered: int
    events_counted: int
    files: int
    bytes: int
    seconds: float


def generate(
    out: Path,
    *,
    days: int = 14,
    messages_per_day: int = 20000,
    seed: int = 7,
    start: date = date(2026, 10, 1),
    progress: Progress | None = None,
) -> SimSummary:
    """Generate the estate under ``out`` (``out/landing`` and ``out/truth`` are replaced)."""
    began = time.perf_counter()
    out = Path(out)
    landing = out / "landing"
    truth_dir = out / "truth"
    for d in (landing, truth_dir):
        if d.exists():
            shutil.rmtree(d)
    landing.mkdir(parents=True)

    def step(name: str, done: int, total: int) -> None:
        if progress is not None:
            progress(name, done, total)

    step("model", 0, 1)
    model = M.build(days=days, messages_per_day=messages_per_day, seed=seed, start=start)
    step("model", 1, 1)
    ev = model.ev
    n_ev = model.n_events
    ledger = {"file": np.full(n_ev, -1, dtype=np.int32), "line": np.zeros(n_ev, dtype=np.int64)}

    pmta.lookups(model, seed)  # shared tables, built before the renderer threads start
    complaints = _complaints(model, seed)
    lock = threading.Lock()

    def safe_progress(name: str, done: int, total: int) -> None:
        with lock:
            step(name, done, total)

    files_done: dict[str, int] = {}

    def add_progress(name: str, files: int, total: int) -> None:
        with lock:
            files_done[name] = files_done.get(name, 0) + files
            step(name, files_done[name], total)

    rnd = kumo.Renderer(model, seed)
    rnd.complaints = {c["cid"]: c for c in complaints}
    # Every node's (and KumoMTA stream's) files are independent: two worker threads render them (the
    # heavy work runs in polars, numpy and zstd, which release the GIL). First each KumoMTA stream is
    # planned (rows sorted, segments and faults placed) and the PowerMTA nodes start; then the planned
    # streams are rendered in jobs of whole segments. Each job writes its own files and ledger rows,
    # and results are collected by key, so the output does not depend on thread timing.
    with ThreadPoolExecutor(max_workers=2) as pool:
        plans = [
            pool.submit(kumo.plan_stream, model, rnd, stream, seed=seed, file_base=KUMO_FILE_BASE + (i << 16))
            for i, stream in enumerate(kumo.STREAMS)
        ]
        futures = {
            ("pmta", i, 0): pool.submit(pmta.render_node, model, landing, node, seed=seed, ledger=ledger,
                                        file_base=(i + 1) << 16, progress=safe_progress)
            for i, node in enumerate((E.PMTA1, E.PMTA2))
        }  # fmt: skip
        for i, planned in enumerate(plans):
            plan = planned.result()
            if plan is None:
                continue
            for j, files in enumerate(kumo.jobs(plan)):
                futures[("kumo", i, j)] = pool.submit(
                    kumo.run_job, model, landing, plan, files, seed=seed, ledger=ledger, progress=add_progress
                )
        results = {key: f.result() for key, f in futures.items()}
    pres = pmta.finalize(landing, model, [results[("pmta", i, 0)] for i in range(2)])
    kres = kumo.merge([results[k] for k in sorted(k for k in results if k[0] == "kumo")])

    visible = ledger["file"] >= 0
    visible[np.array(pres.fault_eids, dtype=np.int64)] = False
    for lost in kres.lost_eids:
        visible[lost] = False
    open_mask = np.zeros(n_ev, dtype=bool)
    open_mask[kres.open_eids] = True
    counted = visible & ~open_mask
    if not truth.soft_readings_agree(model, counted):
        raise RuntimeError("soft-bounce suppression truth would depend on whether deferrals count")

    for c in complaints:
        e = c["eid"]
        seen = e >= 0 and bool(counted[e])
        c["via_pmta_f"] = bool(c["mta_route"] and seen and ev["mta"][e] == M.PMTA)
        c["via_kumo_feedback"] = bool(c["mta_route"] and seen and ev["mta"][e] == M.KUMO)
        c["mta_visible"] = c["via_pmta_f"] or c["via_kumo_feedback"]
        c["via_fbl_eml"] = bool(c["eml"])

    step("extras", 0, 1)
    end_s = int(model.t_end // M.NS)
    for info in extras.write_fbl(landing, model, complaints, seed=seed):
        c = complaints[info["cid"]]
        c["fbl_file"] = info["file"]
        c["redacted"] = info["redacted"]
        c["jmrp"] = info["jmrp"]
    legacy, supq = extras.write_suppression(
        landing, model, seed=seed, mtime=int(model.t_start // M.NS) - 86400
    )
    seed_rows = extras.write_seedlists(landing, model, seed=seed)
    plan = extras.write_plan(landing, model, mtime=int(model.t_start // M.NS) - 3600)
    inventories = extras.write_pmta_configs(
        landing, max_size=pres.max_size, mtime=int(model.t_start // M.NS) - 7200
    )
    step("extras", 1, 1)

    step("truth", 0, 1)
    stats = truth.write_all(
        truth_dir,
        model=model,
        landing=landing,
        visible=visible,
        open_mask=open_mask,
        quarantine=[*pres.quarantine, *kres.quarantine, *supq],
        kres=kres,
        pres=pres,
        complaints=complaints,
        legacy=legacy,
        seed_rows=seed_rows,
        plan=plan,
        inventories=inventories,
        mtime=end_s,
    )
    _io.fix_tree_mtimes(landing, end_s)
    _io.fix_tree_mtimes(truth_dir, end_s)
    step("truth", 1, 1)
    return SimSummary(
        out=out,
        landing=landing,
        truth=truth_dir,
        days=days,
        messages_per_day=messages_per_day,
        seed=seed,
        messages=model.n_messages,
        events_rendered=int((ledger["file"] >= 0).sum()),
        events_counted=stats["counted"],
        files=stats["files"],
        bytes=stats["bytes"],
        seconds=time.perf_counter() - began,
    )


def _complaints(model: M.Model, seed: int) -> list[dict]:
    """One dict per distinct complaint with everything every route renders."""
    comp = model.comp
    m = model.m
    if len(comp["cid"]) == 0:
        return []
    lk = pmta.lookups(model, seed)
    msgs = comp["msg"].astype(np.int64)
    mids = pmta.msg_id_series(m["lead"][msgs], seed, m["pool"][msgs].astype(np.int64)).to_list()
    rcpts = lk.addr.gather(m["rcpt"][msgs]).to_list()
    ev = model.ev
    eid_of = np.full(len(comp["cid"]), -1, dtype=np.int64)
    rows = np.flatnonzero(ev["kind"] == M.COMPLAINT)
    eid_of[ev["aux"][rows]] = rows
    out = []
    for i in range(len(comp["cid"])):
        out.append(
            {
                "cid": int(comp["cid"][i]),
                "msg": int(msgs[i]),
                "t": int(comp["t"][i]),
                "delivered_ns": int(m["final_t"][msgs[i]]),
                "mta_route": bool(comp["mta_route"][i]),
                "eml": bool(comp["eml"][i]),
                "style": int(comp["style"][i]),
                "recipient": rcpts[i],
                "message_id": mids[i],
                "eid": int(eid_of[i]),
                "provider": E.DOMAINS[int(m["dom"][msgs[i]])].provider,
            }
        )
    return out
