"""Ground truth of a simulated estate: what the pipeline must find in ``landing/`` (see truth/README.md)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import orjson
import polars as pl

from mtashift.sim import _io
from mtashift.sim import estate as E
from mtashift.sim import model as M

# Raw categories -> consequence, as the project's taxonomy (schemas/bounce_taxonomy.yaml) maps them.
# Only the labels the simulator writes on failure events are listed; Uncategorized/other records
# (KumoMTA Delayed and AdminBounce) carry texts that classify as statistical (policy-related).
SUPPRESS = frozenset(
    {"bad-mailbox", "bad-domain", "inactive-mailbox", "InvalidRecipient", "BadDomain", "InactiveMailbox"}
)
RETRY_THEN_SUPPRESS = frozenset(
    {
        "quota-issues",
        "QuotaIssues",
        "message-expired",
        "MessageExpired",
        "no-answer-from-host",
        "NoAnswerFromHost",
        "routing-errors",
        "RoutingErrors",
        "relaying-issues",
        "RelayingIssues",
        "RelayDenied",
        "dns-failure",
        "DNSFailure",
    }
)
UNSUBSCRIBE = frozenset({"Unsubscribe"})
# Failures that count toward retry-then-suppress (schemas/suppression_policy.yaml
# `failure_event_types`; one per message here, so counting messages or events agrees).
FAILURE_KINDS = (M.BOUNCED, M.EXPIRED, M.RBOUNCE)
# Every failure-like event type; the model keeps the soft truth the same under this wider reading.
ALL_FAILURE_KINDS = (M.BOUNCED, M.EXPIRED, M.DEFERRED, M.QDEFER, M.RBOUNCE, M.REJECTED, M.ADMIN_BOUNCE)
HARD_KINDS = (M.BOUNCED, M.RBOUNCE)
SOFT_THRESHOLD = 5
SOFT_WINDOW_DAYS = 30


# consequence codes per event (computed from integer reply ids, not per-row strings)
C_NONE, C_SUPPRESS, C_RETRY, C_UNSUB = range(4)


def _code(label: str) -> int:
    if label in SUPPRESS:
        return C_SUPPRESS
    if label in RETRY_THEN_SUPPRESS:
        return C_RETRY
    if label in UNSUBSCRIBE:
        return C_UNSUB
    return C_NONE


def consequence(model: M.Model) -> np.ndarray:
    """Consequence code of each event's raw category (bounceCat / bounce_classification as written)."""
    ev = model.ev
    pm = np.array([_code(r.pmta_cat) for r in E.REPLIES] + [C_NONE], dtype=np.int8)
    km = np.array([_code(r.kumo_cat) for r in E.REPLIES] + [C_NONE], dtype=np.int8)
    reply = np.where(ev["reply"] >= 0, ev["reply"], len(E.REPLIES))
    code = np.where(ev["mta"] == M.PMTA, pm[reply], km[reply])
    # a PowerMTA expiry is a `b` row with bounceCat message-expired whatever its last error was
    return np.where((ev["mta"] == M.PMTA) & (ev["kind"] == M.EXPIRED), C_RETRY, code).astype(np.int8)


def event_frame(model: M.Model, mask: np.ndarray) -> pl.DataFrame:
    ev = model.ev
    prov_of_dom = np.array([E.P[d.provider] for d in E.DOMAINS], dtype=np.int64)
    idx = np.flatnonzero(mask)
    return pl.DataFrame(
        {
            "date": pl.Series(ev["t"][idx] // M.DAY, dtype=pl.Int32).cast(pl.Date),
            "mta": pl.Series(list(M.MTAS)).gather(ev["mta"][idx].astype(np.int64)),
            "event_type": pl.Series(list(M.EVENT_TYPE)).gather(ev["kind"][idx].astype(np.int64)),
            "provider": pl.Series(list(E.PROVIDERS)).gather(prov_of_dom[ev["dom"][idx]]),
        }
    )


def count_events(frame: pl.DataFrame) -> pl.DataFrame:
    return (
        frame.group_by(["date", "mta", "event_type", "provider"])
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .sort(["date", "mta", "event_type", "provider"])
    )


def normalised_address(model: M.Model, rid: np.ndarray) -> pl.Series:
    ascii_dom = pl.Series([d.ascii.lower() for d in E.DOMAINS]).gather(model.r_dom[rid].astype(np.int64))
    return pl.DataFrame({"l": model.r_local.gather(rid), "d": ascii_dom}).select(
        pl.format("{}@{}", "l", "d")
    )["l"]


def _soft_hits(model: M.Model, mask: np.ndarray) -> np.ndarray:
    ev = model.ev
    sf = pl.DataFrame({"rid": ev["rcpt"][mask].astype(np.int64), "t": ev["t"][mask]}).sort(["rid", "t"])
    hit = sf.with_columns(ahead=pl.col("t").shift(-(SOFT_THRESHOLD - 1)).over("rid")).filter(
        (pl.col("ahead") - pl.col("t")) <= SOFT_WINDOW_DAYS * M.DAY
    )["rid"]
    return np.unique(hit.to_numpy()).astype(np.int64)


def suppression_truth(
    model: M.Model, counted: np.ndarray, complaint_rids: np.ndarray, legacy: list[dict]
) -> pl.DataFrame:
    ev = model.ev
    cons = consequence(model)
    has_rcpt = counted & (ev["rcpt"] >= 0)
    hard = has_rcpt & np.isin(ev["kind"], HARD_KINDS) & (cons == C_SUPPRESS)
    soft = has_rcpt & np.isin(ev["kind"], FAILURE_KINDS) & (cons == C_RETRY)
    uns = has_rcpt & (ev["kind"] == M.RBOUNCE) & (cons == C_UNSUB)
    parts = [
        (np.unique(ev["rcpt"][hard]).astype(np.int64), "bounce"),
        (_soft_hits(model, soft), "bounce"),
        (np.unique(complaint_rids).astype(np.int64), "complaint"),
        (np.unique(ev["rcpt"][uns]).astype(np.int64), "unsubscribe"),
    ]
    rid = np.concatenate([p for p, _s in parts])
    src = np.concatenate([np.full(len(p), s_, dtype=object) for p, s_ in parts])
    ev_part = pl.DataFrame(
        {"address": normalised_address(model, rid), "source": pl.Series(src, dtype=pl.String)}
    )
    leg = pl.DataFrame(
        {"address": [x["address"] for x in legacy], "source": ["legacy"] * len(legacy)},
        schema={"address": pl.String, "source": pl.String},
    )
    return (
        pl.concat([ev_part, leg])
        .unique()
        .with_columns(scope=pl.lit("global"))
        .select("address", "scope", "source")
        .sort(["address", "source"])
    )


def soft_readings_agree(model: M.Model, counted: np.ndarray) -> bool:
    """True when counting every failure-like event (deferrals too) gives the same soft suppressions."""
    ev = model.ev
    base = counted & (ev["rcpt"] >= 0) & (consequence(model) == C_RETRY)
    with_def = _soft_hits(model, base & np.isin(ev["kind"], ALL_FAILURE_KINDS))
    without = _soft_hits(model, base & np.isin(ev["kind"], FAILURE_KINDS))
    return np.array_equal(with_def, without)


def regression_observed(model: M.Model, counted: np.ndarray) -> dict:
    """Deferral share of delivery attempts of the regressing pool at its provider, per MTA (counted events)."""
    ev = model.ev
    pool_of = np.array([v.pool for v in E.VMTAS])[ev["vmta"]]
    prov_of = np.array([E.P[d.provider] for d in E.DOMAINS])[ev["dom"]]
    pool = next(i for i, p in enumerate(E.POOLS) if p.name == E.REGRESSION["pool"])
    sel = counted & (pool_of == pool) & (prov_of == E.P[E.REGRESSION["provider"]])
    out = {}
    for mta in (M.PMTA, M.KUMO):
        here = sel & (ev["mta"] == mta)
        kinds = ev["kind"][here]
        attempts = int(np.isin(kinds, (M.DELIVERED, M.DEFERRED, M.BOUNCED)).sum())
        deferred = int((kinds == M.DEFERRED).sum())
        msgs = np.unique(ev["msg"][here & np.isin(ev["kind"], (M.DELIVERED, M.DEFERRED, M.BOUNCED))])
        deferred_msgs = np.unique(ev["msg"][here & (ev["kind"] == M.DEFERRED)])
        out[M.MTAS[mta]] = {
            "attempts": attempts,
            "deferred": deferred,
            "deferred_share": round(deferred / attempts, 6) if attempts else None,
            "messages": len(msgs),
            "messages_deferred": len(deferred_msgs),
            "message_deferral_rate": round(len(deferred_msgs) / len(msgs), 6) if len(msgs) else None,
        }
    return out


def write_json(path: Path, obj: object, *, mtime: int) -> None:
    _io.write_file(
        path,
        orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n",
        mtime=mtime,
        mode=_io.WRITABLE,
    )


def write_parquet(path: Path, frame: pl.DataFrame, *, mtime: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path, compression="zstd", statistics=False)
    _io.finish(path, mtime=mtime, mode=_io.WRITABLE)


def iso(t_ns: int) -> str:
    return dt.datetime.fromtimestamp(int(t_ns) // M.NS, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


README = """# Ground truth of a simulated estate

Written by `mtashift.sim.generate` next to `landing/`. Everything here is what a correct pipeline
must reproduce from `landing/` alone. Times are UTC; a "date" is the UTC date of an event's time.

## Counting rules shared by the files
* One event per recipient: a KumoMTA record whose `recipient` is an array counts once per element.
* A PowerMTA file that is a byte-identical copy of another (`estate.json` `pmta.duplicate`) counts once.
* KumoMTA webhook records repeated by at-least-once delivery count once; two records are the same
  record when (id, type, timestamp, recipient, num_attempts, nodeid) are equal.
* Quarantined lines (`quarantine.parquet`) produce no events. In the truncated segment only the
  records before the cut count (`segments.json` `truncated.intact_records`).
* The open (still writable) KumoMTA segment is excluded everywhere and reported in
  `open_segment.json` instead, so a test can add it once the segment is marked complete.
* `provider` is the provider of the recipient's domain (its MX, see `estate.json` `domains`). For
  PowerMTA `tq` rows (no recipient) it is the provider of the queue's MX (`dsnMta`). For KumoMTA
  `Feedback` records it is the provider of the complaining recipient
  (`feedback_report.original_rcpto_to`, else `feedback_report.supplemental_trace.recipient`),
  not of the FBL mailbox in `recipient`.
* `event_type` follows schemas/events.py (`PMTA_RECORD_TYPES`, `KUMO_RECORD_TYPES`; a PowerMTA `b`
  with bounceCat `message-expired` is `expired`; the unknown KumoMTA type `SuspendNotice` is `other`).
* The period is `[start, start + days)`; what would happen after its end (later retries,
  deliveries, complaints) is in no file and no count: those messages are simply still queued.
* The date of an event: PowerMTA `timeLogged` (any offset, or epoch seconds) in UTC; KumoMTA
  `event_time` when present, else `timestamp`.

## Deliberate faults (positions also in `quarantine.parquet` and `segments.json`)
* PowerMTA: one line with bytes `ff fe` (invalid_utf8); one `d` row whose timeLogged is
  `2026-13-45 25:61:00+0000` (bad_timestamp); the very last line of `pmta1`'s last file opens a
  quoted field that is never closed (malformed_csv) — it is the last line of its file, so the fault
  cannot swallow the lines after it; one clean `pmta2` file copied byte for byte under the next
  free sequence number of its day (`estate.json` `pmta.duplicate`).
* KumoMTA: one completed `kumo2` segment cut short (a streaming decoder reads the blocks before the
  cut: `intact_records` complete lines; the first lost or partial line is quarantined as
  truncated_stream); in the first completed `kumo1` segment holding a Delivery, a line of log-writer
  noise is inserted as line 2 and one Delivery record is cut in half (both invalid_json; that
  delivery is lost); two records of the unknown type `SuspendNotice` (not faults: event_type
  `other`); the newest `kumo1` main segment is still open (writable, complete zstd frame).
* Legacy suppression lists: five invalid entries (invalid_address).

## Files
* `event_counts.parquet` — date (Date), mta (`pmta`|`kumo`), event_type, provider, count (Int64):
  canonical events after the rules above.
* `open_segment.json` — `path` (relative to landing) and `counts` [{date, mta, event_type, provider,
  count}] of the open segment's events (also `records`).
* `quarantine.parquet` — source_kind, source_file (relative to landing, posix), source_line
  (1-based line of the decompressed file; for the truncated stream the first lost or partial line),
  reason (schemas/quarantine.py REASONS), detail. Also lists the invalid legacy-suppression entries
  (`invalid_address`).
* `segments.json` — every KumoMTA segment (path, node, records, complete); `truncated` {path,
  total_records, intact_records, first_lost_line}; `open` {path, records}; `broken_json` {path, lines}.
* `kumo_duplicates.json` — `total` duplicate copies injected into webhook captures and `per_file`
  (copies found in that file when files are read in name order; every copy repeats a record seen
  earlier in the same or the previous file), plus the dedup `key`.
* `complaints.parquet` — date, provider, count of distinct complaints visible through at least one
  route. `complaint_routes.parquet` — one row per complaint: complaint_id, date, provider,
  recipient, message_id, via_pmta_f, via_kumo_feedback, via_fbl_eml, fbl_file, redacted, jmrp,
  counted. A complaint is the pair (Message-ID, recipient); the same complaint reached by two routes
  counts once. Every FBL report whose recipient is redacted also reached an MTA route that names the
  recipient, and every report carries the original Message-ID.
* `suppression.parquet` — address, scope (`global`), source (`legacy`|`bounce`|`complaint`|
  `unsubscribe`), one row per (address, source). Address form: local part as spelled, `@`, domain
  lower-case IDNA; whole-domain legacy entries are `@domain`. Derivation (default policy):
  * legacy: every valid entry of `suppression/legacy-global.txt` (comments, blank lines skipped,
    BOM and surrounding whitespace stripped; `@d` and bare `d` = whole domain) and
    `suppression/legacy-esp.csv` (`email` column); invalid entries are in quarantine;
  * bounce (hard): a counted `bounced` or `remote_bounce` event whose raw category is bad-mailbox,
    bad-domain, inactive-mailbox (PowerMTA) or InvalidRecipient, BadDomain, InactiveMailbox (KumoMTA);
  * bounce (soft): at least 5 distinct messages with a counted `bounced`, `expired` or
    `remote_bounce` event whose raw category has consequence retry-then-suppress
    (quota-issues/QuotaIssues, message-expired/MessageExpired, ...) within any 30-day window
    (both ends included; schemas/suppression_policy.yaml). Each message has at most one such
    event, so counting messages or events agrees. The model keeps this unambiguous under a wider
    reading too: the only quota deferral an address ever gets is one `452 4.2.2` on its first
    message, so also counting deferred/queue_deferred/rejected/admin_bounce events gives the same
    set (checked at generation);
  * complaint: the recipient of every counted complaint;
  * unsubscribe: the recipient of a counted KumoMTA `OOB` record classified `Unsubscribe`.
  Every failure record the simulator writes carries an explicit category, except KumoMTA Delayed and
  AdminBounce (`Uncategorized`), whose texts classify as policy-related (statistical).
* `in_flight.parquet` — one row per message queued in PowerMTA before its pool's cutover whose
  final outcome came at or after the cutover: pool, node, message_id, recipient, queued_time,
  outcome (delivered|bounced|expired|pending), outcome_time (null when pending). `pending` = no
  outcome by the end of the estate, or its final record is a quarantined line (the logs show none).
* `seedlist.parquet` — pool, provider, phase (before|after cutover), placement, count.
* `estate.json` — pools, VMTAs (name, ip, ehlo, pool, egress source), sending domains with DKIM
  selectors, PowerMTA inventory per node (domain rules per scope, rollups, macros, accounting file),
  cutover plan, the regression (pool, provider, metric, factor: the chance that a message of that
  pool is deferred at that provider triples once the pool runs on KumoMTA; `observed` gives the
  deferred share of delivery attempts per MTA), nodes (KumoMTA node ids), recipient domains with
  provider and MX (`mx_provider`: MX host -> provider), warm-up ramp of the new IP, the deliberate
  faults, event totals, and the landing file list (path, bytes).
"""


def write_all(
    truth: Path,
    *,
    model: M.Model,
    landing: Path,
    visible: np.ndarray,
    open_mask: np.ndarray,
    quarantine: list[dict],
    kres,
    pres,
    complaints: list[dict],
    legacy: list[dict],
    seed_rows: list[dict],
    plan: dict,
    inventories: list[dict],
    mtime: int,
) -> dict:
    truth.mkdir(parents=True, exist_ok=True)
    ev = model.ev
    counted = visible & ~open_mask
    counts = count_events(event_frame(model, counted))
    write_parquet(truth / "event_counts.parquet", counts, mtime=mtime)
    open_counts = count_events(event_frame(model, open_mask))
    write_json(
        truth / "open_segment.json",
        {
            "path": kres.open_segment,
            "records": int(next((s.records for s in kres.segments if s.rel == kres.open_segment), 0)),
            "counts": [{**r, "date": r["date"].isoformat()} for r in open_counts.to_dicts()],
        },
        mtime=mtime,
    )

    q = pl.DataFrame(
        quarantine,
        schema={
            "source_kind": pl.String,
            "source_file": pl.String,
            "source_line": pl.Int64,
            "reason": pl.String,
            "detail": pl.String,
        },
    ).sort(["source_file", "source_line"])
    write_parquet(truth / "quarantine.parquet", q, mtime=mtime)

    write_json(
        truth / "segments.json",
        {
            "segments": [
                {"path": s.rel, "node": s.node, "records": s.records, "complete": s.complete}
                for s in kres.segments
            ],
            "truncated": kres.truncated,
            "open": {"path": kres.open_segment, "records": int(open_mask.sum())},
            "broken_json": kres.broken,
        },
        mtime=mtime,
    )
    write_json(
        truth / "kumo_duplicates.json",
        {
            "total": int(sum(kres.duplicates.values())),
            "per_file": kres.duplicates,
            "key": ["id", "type", "timestamp", "recipient", "num_attempts", "nodeid"],
        },
        mtime=mtime,
    )

    # complaints
    prov_of_dom = [d.provider for d in E.DOMAINS]
    rows = []
    for c in complaints:
        counted_c = c["via_pmta_f"] or c["via_kumo_feedback"] or c["via_fbl_eml"]
        rows.append(
            {
                "complaint_id": c["cid"],
                "date": dt.date(1970, 1, 1) + dt.timedelta(days=int(c["t"] // M.DAY)),
                "provider": prov_of_dom[int(model.m["dom"][c["msg"]])],
                "recipient": c["recipient"],
                "message_id": c["message_id"],
                "via_pmta_f": c["via_pmta_f"],
                "via_kumo_feedback": c["via_kumo_feedback"],
                "via_fbl_eml": c["via_fbl_eml"],
                "fbl_file": c.get("fbl_file"),
                "redacted": c.get("redacted", False),
                "jmrp": c.get("jmrp", False),
                "counted": counted_c,
            }
        )
    routes = pl.DataFrame(
        rows,
        schema={
            "complaint_id": pl.Int64,
            "date": pl.Date,
            "provider": pl.String,
            "recipient": pl.String,
            "message_id": pl.String,
            "via_pmta_f": pl.Boolean,
            "via_kumo_feedback": pl.Boolean,
            "via_fbl_eml": pl.Boolean,
            "fbl_file": pl.String,
            "redacted": pl.Boolean,
            "jmrp": pl.Boolean,
            "counted": pl.Boolean,
        },
    )
    write_parquet(truth / "complaint_routes.parquet", routes, mtime=mtime)
    ccount = (
        routes.filter("counted")
        .group_by(["date", "provider"])
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .sort(["date", "provider"])
    )
    write_parquet(truth / "complaints.parquet", ccount, mtime=mtime)

    rids = np.array(
        [
            int(model.m["rcpt"][c["msg"]])
            for c in complaints
            if c["via_pmta_f"] or c["via_kumo_feedback"] or c["via_fbl_eml"]
        ],
        dtype=np.int64,
    )
    supp = suppression_truth(model, counted, rids, legacy)
    write_parquet(truth / "suppression.parquet", supp, mtime=mtime)

    # in flight at cutover
    m = model.m
    inflight = np.flatnonzero((m["mta"] == M.PMTA) & (m["final_t"] >= model.cutover[m["pool"]]))
    from mtashift.sim.pmta import lookups, msg_id_series

    lk = lookups(model, model.seed)
    outcome_names = np.array(["other"] * M.N_KINDS, dtype=object)
    outcome_names[[M.DELIVERED, M.BOUNCED, M.EXPIRED, M.ADMIN_BOUNCE]] = [
        "delivered",
        "bounced",
        "expired",
        "admin_bounce",
    ]
    ft = m["final_t"][inflight]
    # The pipeline sees an outcome only through a counted record: a final record lost to a
    # deliberate fault (quarantined line) leaves the message unfinished as far as the logs show.
    ev = model.ev
    final_kinds = (M.DELIVERED, M.BOUNCED, M.EXPIRED, M.ADMIN_BOUNCE)
    seen_final = np.zeros(len(m["final_t"]), dtype=bool)
    fin = counted & np.isin(ev["kind"], final_kinds) & (ev["mta"] == M.PMTA)
    seen_final[ev["msg"][fin].astype(np.int64)] = True
    pending = (ft >= model.t_end) | ~seen_final[inflight]
    inf = pl.DataFrame(
        {
            "pool": pl.Series([p.name for p in E.POOLS]).gather(m["pool"][inflight].astype(np.int64)),
            "node": pl.Series([n.name for n in E.NODES]).gather(m["node"][inflight].astype(np.int64)),
            "message_id": msg_id_series(
                m["lead"][inflight], model.seed, m["pool"][inflight].astype(np.int64)
            ),
            "recipient": lk.addr.gather(m["rcpt"][inflight]),
            "queued_time": pl.Series(m["t0"][inflight] // 1000, dtype=pl.Int64).cast(
                pl.Datetime("us", "UTC")
            ),
            "outcome": pl.Series(
                np.where(pending, "pending", outcome_names[m["final"][inflight].astype(np.int64)]),
                dtype=pl.String,
            ),
            "outcome_time": pl.Series(np.where(pending, 0, ft // 1000), dtype=pl.Int64).cast(
                pl.Datetime("us", "UTC")
            ),
        }
    ).with_columns(
        outcome_time=pl.when(pl.col("outcome") == "pending").then(None).otherwise(pl.col("outcome_time"))
    )
    write_parquet(
        truth / "in_flight.parquet", inf.sort(["pool", "queued_time", "message_id", "recipient"]), mtime=mtime
    )

    seed_df = pl.DataFrame(
        seed_rows,
        schema={
            "test_id": pl.String,
            "sent_at_ns": pl.Int64,
            "pool": pl.String,
            "provider": pl.String,
            "phase": pl.String,
            "placement": pl.String,
        },
    )
    sl = (
        seed_df.group_by(["pool", "provider", "phase", "placement"])
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .sort(["pool", "provider", "phase", "placement"])
    )
    write_parquet(truth / "seedlist.parquet", sl, mtime=mtime)

    files = sorted(p for p in landing.rglob("*") if p.is_file())
    estate = {
        "period": {
            "start": iso(model.t_start),
            "end": iso(model.t_end),
            "days": model.days,
            "messages_per_day": model.messages_per_day,
            "seed": model.seed,
        },
        "pools": [
            {
                "name": p.name,
                "egress_pool": p.egress_pool,
                "sending_domain": p.sending_domain,
                "sender": p.sender,
                "pmta_node": E.NODES[p.pmta_node].name,
                "kumo_node": E.NODES[p.kumo_node].name,
                "cutover": iso(int(model.cutover[i])),
                "share": p.share,
            }
            for i, p in enumerate(E.POOLS)
        ],
        "vmtas": [
            {
                "name": v.name,
                "ip": v.ip,
                "ehlo": v.host,
                "pool": E.POOLS[v.pool].name,
                "egress_source": v.egress_source,
                "egress_pool": E.POOLS[v.pool].egress_pool,
                "warmup": v.warmup,
            }
            for v in E.VMTAS
        ],
        "warmup": {
            "vmta": next(v.name for v in E.VMTAS if v.warmup),
            "daily_share_of_full_weight": [round(E.warmup_factor(d), 6) for d in range(model.days)],
        },
        "sending_domains": [{"domain": d, "dkim_selectors": list(s)} for d, s in E.DKIM.items()],
        "pmta": {
            "nodes": inventories,
            "include_convention": "absolute include paths /etc/pmta/X are found at pmta-config/<node>/X",
            "duplicate": {"original": pres.duplicate[0], "copy": pres.duplicate[1]},
            "epoch_file": pres.epoch_file,
            "max_size_bytes": pres.max_size,
        },
        "cutover_plan": plan,
        "regression": {**E.REGRESSION, "observed": regression_observed(model, counted)},
        "nodes": [
            {
                "name": n.name,
                "mta": n.mta,
                "tz": n.tz if n.mta == "pmta" else None,
                "version": n.version or None,
                "nodeid": model.nodeids[i] if n.mta == "kumo" else None,
                "rfc3339_times": n.rfc3339_times if n.mta == "kumo" else None,
                "ships_by_webhook": n.webhook,
                "recv_suffix": n.recv_suffix,
            }
            for i, n in enumerate(E.NODES)
        ],
        "providers": list(E.PROVIDERS),
        "recipients": {
            "total": len(model.r_dom),
            "by_class": {name: int((model.r_cls == i).sum()) for i, name in enumerate(M.CLASS_NAMES)},
        },
        "domains": [
            {
                "name": d.name,
                "ascii": d.ascii,
                "provider": d.provider,
                "mx": [h for h, _ip in d.mx],
                "kind": d.kind,
            }
            for d in E.DOMAINS
        ],
        "mx_provider": {h: d.provider for d in E.DOMAINS for h, _ip in d.mx},
        "faults": {
            "pmta_quarantine": [x for x in quarantine if x["source_kind"] == "pmta"],
            "kumo_quarantine": [x for x in quarantine if x["source_kind"] == "kumo"],
            "unknown_kumo_type": "SuspendNotice",
            "malformed_csv_form": "the last line of a file opens a quoted field that is never closed",
        },
        "counts": {
            "messages": model.n_messages,
            "events_rendered": int((ev["t"] >= 0).sum()),
            "events_counted": int(counted.sum()),
            "events_open_segment": int(open_mask.sum()),
        },
        "files": [{"path": p.relative_to(landing).as_posix(), "bytes": p.stat().st_size} for p in files],
    }
    write_json(truth / "estate.json", estate, mtime=mtime)
    _io.write_file(truth / "README.md", README, mtime=mtime, mode=_io.WRITABLE)
    return {
        "counted": int(counted.sum()),
        "files": len(files),
        "bytes": int(sum(p.stat().st_size for p in files)),
    }
