"""The estate's traffic model: messages, recipients and every event, drawn with numpy (no per-message loop).

One model is rendered into every server's files. Units:

* a *message* here is one recipient of one injected message (what both MTAs log per recipient);
  a few KumoMTA messages are multi-recipient batches (``batch`` >= 0): their members share spool
  id, times and routing and are logged as one record with a recipient array;
* an *event* is one row of the event table (:class:`Model.ev`): one record per recipient, with the
  node that logged it, its time (ns since the epoch, UTC) and the reply it carries.

All randomness comes from one ``numpy.random.Generator`` seeded with ``seed``; the draws happen in
a fixed order, so a seed fixes every byte downstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import polars as pl

from mtashift.sim import estate as E

NS = 1_000_000_000
MINUTE = 60 * NS
HOUR = 3600 * NS
DAY = 86400 * NS

# Event kinds (internal codes). Canonical event_type per kind: EVENT_TYPE (expired is its own kind).
(
    RECEIVED,
    DELIVERED,
    DEFERRED,
    BOUNCED,
    EXPIRED,
    QDEFER,
    RBOUNCE,
    RSTATUS,
    COMPLAINT,
    REJECTED,
    ADMIN_BOUNCE,
    REBIND,
    XFER_OUT,
    XFER_IN,
    UNKNOWN,
    DINJ_REBIND,
) = range(16)
N_KINDS = 16
FUTURE = np.iinfo(np.int64).max  # event time of events after the end of the period (never rendered)
EVENT_TYPE: tuple[str, ...] = (
    "received",
    "delivered",
    "deferred",
    "bounced",
    "expired",
    "queue_deferred",
    "remote_bounce",
    "remote_status",
    "complaint",
    "rejected",
    "admin_bounce",
    "other",
    "other",
    "other",
    "other",
    "other",
)
PMTA, KUMO = 0, 1
MTAS = ("pmta", "kumo")

# Recipient classes (fixed per address).
NORMAL, BAD_MAILBOX, INACTIVE, QUOTA_HEAVY, QUOTA_LIGHT, ASYNC_BAD, NXDOMAIN = range(7)
CLASS_NAMES = ("normal", "bad_mailbox", "inactive", "quota_heavy", "quota_light", "async_bad", "nxdomain")

FIRST = (
    "anna",
    "ben",
    "chloe",
    "david",
    "emma",
    "felix",
    "grace",
    "henry",
    "isla",
    "jack",
    "karen",
    "liam",
    "mia",
    "noah",
    "olivia",
    "paul",
    "quinn",
    "ruby",
    "sam",
    "tara",
    "umar",
    "vera",
    "will",
    "xena",
    "yusuf",
    "zoe",
    "jurgen",
    "lea",
    "marco",
    "sofia",
)
LAST = (
    "smith",
    "jones",
    "brown",
    "taylor",
    "wilson",
    "davies",
    "evans",
    "thomas",
    "johnson",
    "roberts",
    "walker",
    "wright",
    "robinson",
    "thompson",
    "white",
    "hughes",
    "edwards",
    "green",
    "hall",
    "wood",
    "mueller",
    "schmidt",
    "martin",
    "bernard",
    "dubois",
    "rossi",
    "garcia",
    "lopez",
    "kim",
    "nguyen",
)

# Diurnal injection profile (UTC hour weights).
DIURNAL = np.array([1, 1, 1, 1, 1.5, 2, 3, 5, 8, 10, 10, 9, 8, 8, 9, 10, 9, 8, 6, 5, 4, 3, 2, 1.5])
DIURNAL = DIURNAL / DIURNAL.sum()


def mix64(x: np.ndarray | int, salt: int = 0) -> np.ndarray:
    """SplitMix64 finaliser: a fixed, version-independent hash of uint64 values."""
    z = np.asarray(x, dtype=np.uint64) ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def mix64_int(x: int, salt: int = 0) -> int:
    """:func:`mix64` for one Python int (same result, no numpy scalar overhead)."""
    mask = 0xFFFFFFFFFFFFFFFF
    z = ((x ^ salt) + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def epoch_ns(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) * NS


def cutover_hours(days: int, fraction: float) -> int:
    """Hours after the start at which a pool cuts over: a working-hours time for multi-week runs."""
    hours = int(days * 24 * fraction)
    if days >= 7:
        hours = (hours // 24) * 24 + 10
    return max(1, hours)


@dataclass
class Model:
    days: int
    messages_per_day: int
    seed: int
    start: date
    t_start: int
    t_end: int
    cutover: np.ndarray  # per pool, ns
    # recipients
    r_local: pl.Series
    r_dom: np.ndarray
    r_cls: np.ndarray
    # messages (arrays of length N)
    m: dict[str, np.ndarray]
    # events (arrays of length E, sorted by time)
    ev: dict[str, np.ndarray]
    # complaint table (one row per distinct complaint)
    comp: dict[str, np.ndarray]
    xfer_time: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    nodeids: tuple[str, ...] = ()
    jobs: list[tuple[str, str]] = field(default_factory=list)  # (job id, tenant)

    @property
    def n_messages(self) -> int:
        return len(self.m["t0"])

    @property
    def n_events(self) -> int:
        return len(self.ev["t"])

    def node_rows(self, node: int) -> np.ndarray:
        """Event ids of one node that happened within the period, in time order (ties: event id)."""
        rows = np.flatnonzero((self.ev["node"] == node) & (self.ev["t"] != FUTURE))
        return rows[np.argsort(self.ev["t"][rows], kind="stable")]

    def address(self, rid: int) -> str:
        return f"{self.r_local[rid]}@{E.DOMAINS[int(self.r_dom[rid])].name}"


def _pick(rng: np.random.Generator, eligible: np.ndarray, n: int) -> np.ndarray:
    """``n`` distinct elements of ``eligible`` (sorted); O(n), unlike a full permutation."""
    n = min(int(n), len(eligible))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if n * 4 >= len(eligible):
        return np.sort(rng.choice(eligible, size=n, replace=False))
    picked = np.zeros(0, dtype=np.int64)
    while len(picked) < n:
        draws = rng.integers(0, len(eligible), size=2 * n + 8)
        allp = np.concatenate([picked, draws])
        _u, first = np.unique(allp, return_index=True)
        picked = allp[np.sort(first)]
    return np.sort(np.asarray(eligible)[picked[:n]])


def _rotation(groups: np.ndarray, period: int = 4) -> np.ndarray:
    """0, 1, 2, 3, 0, ... counted separately within each group value, in array order."""
    out = np.zeros(len(groups), dtype=np.int8)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        out[idx] = np.arange(len(idx)) % period
    return out


def _choice_table(rows: list[tuple[tuple[str, float], ...]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (reply ids, cumulative weights) padded to a rectangle, for vectorised choice."""
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int16)
    cum = np.ones((len(rows), width), dtype=np.float64)
    for i, row in enumerate(rows):
        w = np.array([x[1] for x in row], dtype=np.float64)
        w = np.cumsum(w / w.sum())
        for j, (key, _w) in enumerate(row):
            ids[i, j] = E.R[key]
            cum[i, j] = w[j]
        ids[i, len(row) :] = ids[i, len(row) - 1]
    return ids, cum


def _choose(ids: np.ndarray, cum: np.ndarray, row: np.ndarray, u: np.ndarray) -> np.ndarray:
    k = (
        (u[:, None] >= cum[row][:, :-1]).sum(axis=1)
        if cum.shape[1] > 1
        else np.zeros(len(row), dtype=np.int64)
    )
    return ids[row, k]


def build(*, days: int, messages_per_day: int, seed: int, start: date) -> Model:
    """Draw the whole estate's traffic. Deterministic for (days, messages_per_day, seed, start)."""
    if days < 1 or messages_per_day < 1:
        raise ValueError("days and messages_per_day must be >= 1")
    rng = np.random.default_rng(seed)
    t_start = epoch_ns(start)
    t_end = t_start + days * DAY
    n_pools = len(E.POOLS)
    cutover = np.array(
        [t_start + cutover_hours(days, p.cutover_fraction) * HOUR for p in E.POOLS], dtype=np.int64
    )

    prov_of_dom = np.array([E.P[d.provider] for d in E.DOMAINS], dtype=np.int8)
    kind_of_dom = [d.kind for d in E.DOMAINS]

    # ------------------------------------------------------------------ recipients
    n_msg = days * messages_per_day
    n_rcpt = max(400, n_msg // 6)
    w = np.array([d.weight for d in E.DOMAINS])
    r_dom = rng.choice(len(E.DOMAINS), size=n_rcpt, p=w / w.sum()).astype(np.int16)
    # every domain has at least two addresses so each behaviour shows up even in tiny estates
    r_dom[: 2 * len(E.DOMAINS)] = np.tile(np.arange(len(E.DOMAINS), dtype=np.int16), 2)
    pattern = rng.integers(0, 5, n_rcpt)
    first = rng.integers(0, len(FIRST), n_rcpt)
    last = rng.integers(0, len(LAST), n_rcpt)
    titled = rng.random(n_rcpt) < 0.06
    # a few addresses are stored Title-Cased: the local part is kept as spelled everywhere
    fs = pl.Series([*FIRST, *(f.title() for f in FIRST)]).gather(first + titled * len(FIRST))
    ls = pl.Series([*LAST, *(x.title() for x in LAST)]).gather(last + titled * len(LAST))
    frame = pl.DataFrame({"f": fs, "l": ls, "p": pattern, "i": np.arange(n_rcpt)})
    r_local = frame.select(
        pl.concat_str(
            [
                pl.when(pl.col("p") == 0)
                .then(pl.col("f") + "." + pl.col("l"))
                .when(pl.col("p") == 1)
                .then(pl.col("f") + pl.col("l"))
                .when(pl.col("p") == 2)
                .then(pl.col("f").str.slice(0, 1) + "." + pl.col("l"))
                .when(pl.col("p") == 3)
                .then(pl.col("f") + "_" + pl.col("l"))
                .otherwise(pl.col("f") + "+news"),
                pl.col("i").cast(pl.String),
            ]
        ).alias("local")
    )["local"]

    r_cls = np.zeros(n_rcpt, dtype=np.int8)
    nx = np.array([k == "nxdomain" for k in kind_of_dom])[r_dom]
    r_cls[nx] = NXDOMAIN
    plain = np.flatnonzero(np.array([k in ("normal", "workspace") for k in kind_of_dom])[r_dom])
    plain = rng.permutation(plain)
    counts = [
        (BAD_MAILBOX, max(3, round(0.008 * n_rcpt))),
        (INACTIVE, max(2, round(0.003 * n_rcpt))),
        (QUOTA_HEAVY, max(3, round(0.002 * n_rcpt))),
        (QUOTA_LIGHT, max(3, round(0.01 * n_rcpt))),
    ]
    pos = 0
    for cls, k in counts:
        r_cls[plain[pos : pos + k]] = cls
        pos += k
    async_ok = plain[pos:]
    async_ok = async_ok[
        np.isin(prov_of_dom[r_dom[async_ok]], [E.P["office365"], E.P["mimecast"], E.P["other"]])
    ]
    r_cls[async_ok[: max(2, round(0.004 * n_rcpt))]] = ASYNC_BAD

    # ------------------------------------------------------------------ messages
    # injection times come out sorted: per (day, hour) block a multinomial count, and inside a block
    # normalised cumulative exponential spacings (sorted uniforms without a sort)
    per_block = np.concatenate([rng.multinomial(messages_per_day, DIURNAL) for _d in range(days)])
    block = np.repeat(np.arange(days * 24, dtype=np.int64), per_block)
    gaps = rng.exponential(1.0, n_msg + days * 24)
    # each block gets count+1 gaps; the last one only closes the block
    owner = np.repeat(np.arange(days * 24), per_block + 1)
    cs = np.cumsum(gaps)
    ends = np.cumsum(per_block + 1) - 1
    block_start = np.concatenate([[0.0], cs[ends[:-1]]])
    block_len = cs[ends] - block_start
    frac = (cs - block_start[owner]) / block_len[owner]
    frac = np.delete(frac, ends)
    t0 = t_start + block * HOUR + (frac * (HOUR - 1)).astype(np.int64)
    day = (block // 24).astype(np.int32)
    pool = rng.choice(n_pools, size=n_msg, p=[p.share for p in E.POOLS]).astype(np.int8)
    rcpt = rng.integers(0, n_rcpt, n_msg).astype(np.int32)

    # VMTA within the pool; the warm-up IP's weight ramps with the day
    vmta = np.zeros(n_msg, dtype=np.int8)
    u = rng.random(n_msg)
    for pi in range(n_pools):
        members = [i for i, v in enumerate(E.VMTAS) if v.pool == pi]
        wts = np.array(
            [
                [E.VMTAS[i].weight * (E.warmup_factor(d) if E.VMTAS[i].warmup else 1.0) for i in members]
                for d in range(days)
            ]
        )
        cum = np.cumsum(wts / wts.sum(axis=1, keepdims=True), axis=1)
        sel = np.flatnonzero(pool == pi)
        k = (u[sel, None] >= cum[day[sel]][:, :-1]).sum(axis=1)
        vmta[sel] = np.array(members, dtype=np.int8)[k]

    # jobs: fixed transactional jobs, three marketing campaigns a day, one newsletter a day
    jobs: list[tuple[str, str]] = [(j, E.TENANT_TRANS) for j, _w in E.TRANS_JOBS]
    mkt_base = len(jobs)
    for d in range(days):
        stamp = start.toordinal() + d
        ds = date.fromordinal(stamp).strftime("%Y%m%d")
        jobs.extend((f"mkt-{ds}-{letter}", tenant) for letter, tenant, _w in E.MKT_JOBS)
    news_base = len(jobs)
    for d in range(days):
        ds = date.fromordinal(start.toordinal() + d).strftime("%Y%m%d")
        jobs.append((f"news-{ds}", E.TENANT_NEWS))
    job = np.zeros(n_msg, dtype=np.int32)
    u = rng.random(n_msg)
    tw = np.cumsum([w for _j, w in E.TRANS_JOBS])
    mw = np.cumsum([w for _l, _t, w in E.MKT_JOBS])
    sel = pool == E.TRANS
    job[sel] = np.searchsorted(tw / tw[-1], u[sel], side="right").clip(0, len(tw) - 1)
    sel = pool == E.MKT
    job[sel] = (
        mkt_base
        + day[sel] * len(E.MKT_JOBS)
        + np.searchsorted(mw / mw[-1], u[sel], side="right").clip(0, len(mw) - 1)
    )
    sel = pool == E.NEWS
    job[sel] = news_base + day[sel]

    mean_size = np.array([11_000, 48_000, 62_000])
    size = (mean_size[pool] * (0.55 + 0.9 * rng.random(n_msg))).astype(np.int64)
    mta = (t0 >= cutover[pool]).astype(np.int8)
    node = np.where(
        mta == PMTA,
        np.array([p.pmta_node for p in E.POOLS])[pool],
        np.array([p.kumo_node for p in E.POOLS])[pool],
    ).astype(np.int8)
    injector = rng.integers(0, len(E.INJECTORS), n_msg).astype(np.int8)

    dom = r_dom[rcpt]
    prov = prov_of_dom[dom]
    cls = r_cls[rcpt]
    dkind = np.array(
        [{"normal": 0, "workspace": 0, "nxdomain": 1, "xss": 2, "strict": 3}[k] for k in kind_of_dom],
        dtype=np.int8,
    )[dom]

    # batches: KumoMTA kumo1 (BatchByDomain) sends some contoso.example mail as one message per domain
    batch = np.full(n_msg, -1, dtype=np.int32)
    cand = np.flatnonzero((node == E.KUMO1) & (dom == E.DOMAIN["contoso.example"]) & (cls == NORMAL))
    n_groups = 0
    if len(cand) >= 6:
        n_groups = max(2, len(cand) // 150)
        starts = _pick(rng, np.arange(0, len(cand) - 3, 4), n_groups)
        lead = np.arange(n_msg, dtype=np.int64)  # a batch member's message is its leader's
        for g, s in enumerate(starts):  # a handful of groups
            members = cand[s : s + 2 + (g % 2)]
            batch[members] = g
            lead[members] = members[0]
            for col in (t0, vmta, job, size, injector):
                col[members] = col[members[0]]
        n_groups = len(starts)
    else:
        lead = np.arange(n_msg, dtype=np.int64)

    # ------------------------------------------------------------------ outcomes
    ids_def, cum_def = _choice_table([E.DEFER[p] for p in E.PROVIDERS])
    ids_blk, cum_blk = _choice_table([E.BLOCK[p] for p in E.PROVIDERS])
    deliver = np.array([E.R[E.DELIVER[p]] for p in E.PROVIDERS], dtype=np.int16)
    badmb = np.array([E.R[E.BAD_MAILBOX[p]] for p in E.PROVIDERS], dtype=np.int16)
    inact = np.array([E.R[E.INACTIVE[p]] for p in E.PROVIDERS], dtype=np.int16)
    quota = np.array([E.R[E.QUOTA[p]] for p in E.PROVIDERS], dtype=np.int16)
    quota_t = np.array([E.R[E.QUOTA_TEMP[p]] for p in E.PROVIDERS], dtype=np.int16)

    p_def = np.array([E.P_DEFER[p] for p in E.PROVIDERS])[prov]
    reg_pool = next(i for i, p in enumerate(E.POOLS) if p.name == E.REGRESSION["pool"])
    regress = (pool == reg_pool) & (prov == E.P[E.REGRESSION["provider"]]) & (mta == KUMO)
    p_def = np.where(regress, p_def * E.REGRESSION["factor"], p_def)
    p_def = np.where(dkind == 2, 1.0, p_def)
    p_stuck = np.array([E.P_STUCK[p] for p in E.PROVIDERS])[prov]
    p_blk = np.where(dkind == 3, 0.3, np.array([E.P_BLOCK[p] for p in E.PROVIDERS])[prov])

    u_def, u_blk = (rng.random(n_msg) for _ in range(2))
    deferred = u_def < p_def
    blocked = u_blk < p_blk
    k_def = np.zeros(n_msg, dtype=np.int16)
    stuck = np.zeros(n_msg, dtype=bool)
    dx = np.flatnonzero(deferred)
    k_def[dx] = np.minimum(rng.geometric(0.55, len(dx)), 8)
    stuck[dx] = rng.random(len(dx)) < p_stuck[dx]
    # replies are drawn only where they are used (deferred or blocked messages)
    dreply = np.zeros(n_msg, dtype=np.int16)
    di = np.flatnonzero(deferred)
    dreply[di] = _choose(ids_def, cum_def, prov[di].astype(np.int64), rng.random(len(di)))
    dreply = np.where(dkind == 2, E.R["defer.xss"], dreply).astype(np.int16)
    breply = np.zeros(n_msg, dtype=np.int16)
    bi = np.flatnonzero(blocked)
    breply[bi] = _choose(ids_blk, cum_blk, prov[bi].astype(np.int64), rng.random(len(bi)))
    breply = np.where(dkind == 3, E.R["block.strict"], breply).astype(np.int16)
    # even tiny estates expire a few transactional messages (6 h lifetime) on each MTA
    for side in (PMTA, KUMO):
        window = (pool == E.TRANS) & (mta == side) & (t0 + 7 * HOUR < t_end)
        missing = 2 - int(np.count_nonzero(stuck & window))
        extra = _pick(
            rng, np.flatnonzero(window & (cls == NORMAL) & (batch < 0) & (dkind == 0) & ~stuck), missing
        )
        deferred[extra] = True
        stuck[extra] = True
        dreply[extra] = _choose(ids_def, cum_def, prov[extra].astype(np.int64), rng.random(len(extra)))

    final = np.full(n_msg, DELIVERED, dtype=np.int8)
    freply = deliver[prov].copy()
    n_def = np.where(deferred, k_def, 0).astype(np.int16)
    final[blocked] = BOUNCED
    freply[blocked] = breply[blocked]
    final[stuck] = EXPIRED
    # fixed-class recipients override the draw
    hard = np.isin(cls, [BAD_MAILBOX, INACTIVE, QUOTA_HEAVY, NXDOMAIN])
    final[hard] = BOUNCED
    n_def[hard] = 0
    freply[cls == BAD_MAILBOX] = badmb[prov[cls == BAD_MAILBOX]]
    freply[cls == INACTIVE] = inact[prov[cls == INACTIVE]]
    freply[cls == QUOTA_HEAVY] = quota[prov[cls == QUOTA_HEAVY]]
    nxm = cls == NXDOMAIN
    freply[nxm] = np.where(rng.random(n_msg)[nxm] < 0.5, E.R["nxdomain.512"], E.R["nxdomain.544"])
    freply[nxm & (mta == KUMO)] = E.R["kumo.nxdomain"]
    # a temporarily full mailbox: only the first message to the address is deferred once (452 4.2.2)
    ql = np.flatnonzero(cls == QUOTA_LIGHT)
    _u, first_idx = np.unique(rcpt[ql], return_index=True)
    ql_first = ql[first_idx]
    final[ql_first] = DELIVERED
    freply[ql_first] = deliver[prov[ql_first]]
    n_def[ql_first] = 1
    dreply[ql_first] = quota_t[prov[ql_first]]
    stuck[ql_first] = False
    # batch members: all delivered first time
    bm = batch >= 0
    final[bm] = DELIVERED
    n_def[bm] = 0
    freply[bm] = deliver[prov[bm]]
    stuck = final == EXPIRED
    freply[stuck] = dreply[stuck]

    # retry schedules and lifetimes: PowerMTA default / yahoo / transactional pool, KumoMTA default /
    # transactional (time-sensitive mail expires after hours, not days)
    schedules = (
        (E.PMTA_RETRY, E.PMTA_BOUNCE_AFTER),
        (E.PMTA_RETRY_YAHOO, E.PMTA_BOUNCE_AFTER_YAHOO),
        (E.PMTA_RETRY_TRANS, E.TRANS_LIFETIME),
        (E.KUMO_RETRY, E.KUMO_MAX_AGE),
        (E.KUMO_RETRY_TRANS, E.TRANS_LIFETIME),
    )
    trans = pool == E.TRANS
    sched = np.where(
        mta == KUMO,
        np.where(trans, 4, 3),
        np.where(trans, 2, np.where(prov == E.P["yahoo"], 1, 0)),
    ).astype(np.int8)
    width = 40
    intervals = np.zeros((len(schedules), width), dtype=np.int64)
    for si, (sc, _life) in enumerate(schedules):
        vals = list(sc) + [sc[-1]] * (width - len(sc))
        intervals[si] = np.array(vals[:width], dtype=np.int64) * MINUTE
    lifetime = np.array([life for _sc, life in schedules], dtype=np.int64) * NS
    nominal = np.concatenate(
        [np.zeros((len(schedules), 1), dtype=np.int64), np.cumsum(intervals, axis=1)], axis=1
    )
    stuck_attempts = np.array(
        [(nominal[si] < lifetime[si]).sum() for si in range(len(schedules))], dtype=np.int16
    )
    n_def[stuck] = stuck_attempts[sched[stuck]]

    # KumoMTA extras on the message path
    kumo_idx = np.flatnonzero((mta == KUMO) & (batch < 0))
    delayed = _pick(rng, kumo_idx, max(3, round(0.004 * len(kumo_idx))))
    lat0 = (rng.exponential(20.0, n_msg) * NS).astype(np.int64) + NS
    throttle = np.zeros(n_msg, dtype=np.int64)
    throttle[delayed] = rng.integers(2 * MINUTE, 15 * MINUTE, len(delayed))
    bm_idx = np.flatnonzero(batch >= 0)
    lat0[bm_idx] = lat0[lead[bm_idx]]  # a batch is one message: one latency
    eligible_admin = np.flatnonzero((mta == KUMO) & (n_def >= 2) & (final != EXPIRED) & (batch < 0))
    admin = _pick(rng, eligible_admin, max(2, round(0.01 * len(eligible_admin))))
    final[admin] = ADMIN_BOUNCE
    freply[admin] = E.R["kumo.adminbounce"]
    n_def[admin] = n_def[admin] - 1  # the cancelled attempt is replaced by the admin bounce

    # ------------------------------------------------------------------ attempt rows
    # most messages get one attempt; only deferred ones are expanded into attempt rows
    single = np.flatnonzero(n_def == 0)
    multi = np.flatnonzero(n_def > 0)
    s_t = t0[single] + lat0[single] + throttle[single]
    n_rows = n_def[multi].astype(np.int64) + 1
    total = int(n_rows.sum())
    rep = np.repeat(multi, n_rows)
    starts_r = (np.cumsum(n_rows) - n_rows).astype(np.int64)
    j = np.arange(total) - np.repeat(starts_r, n_rows)
    is_final = j == n_def[rep]
    jit = 1.0 + rng.random(total) * 0.15
    sch = sched[rep]
    inc = np.where(j > 0, (intervals[sch, np.minimum(j - 1, width - 1)] * jit).astype(np.int64), 0)
    cs = np.cumsum(inc)
    off = cs - np.repeat(cs[starts_r], n_rows)
    t_att = t0[rep] + lat0[rep] + throttle[rep] + off + (j > 0) * rng.integers(0, 30 * NS, total)
    lt = lifetime[sch]
    fk = final[rep]
    exp_row = is_final & (fk == EXPIRED)
    t_att = np.where(exp_row, t0[rep] + lt + rng.integers(0, 10 * MINUTE, total), t_att)
    stuck_def = (~is_final) & (fk == EXPIRED)
    t_att = np.where(stuck_def, np.minimum(t_att, t0[rep] + lt - NS), t_att)
    a_kind = np.where(is_final, fk, DEFERRED).astype(np.int8)
    a_reply = np.where(is_final, freply[rep], dreply[rep]).astype(np.int16)
    # KumoMTA expiry carries its own internal reply; PowerMTA keeps the last error (renderer)
    a_reply = np.where(exp_row & (mta[rep] == KUMO), E.R["kumo.expired"], a_reply).astype(np.int16)
    a_aux = np.where(exp_row, dreply[rep], -1).astype(np.int32)  # last error of an expiry
    a_node = node[rep].copy()
    final_t = np.full(n_msg, np.iinfo(np.int64).max, dtype=np.int64)
    final_t[single] = s_t
    final_t[rep[is_final]] = t_att[is_final]
    first_t = np.zeros(n_msg, dtype=np.int64)
    first_t[single] = s_t
    first_t[multi] = t_att[starts_r]
    second_t = np.full(n_msg, -1, dtype=np.int64)
    second_t[multi] = t_att[starts_r + 1]

    # transfers: some deferred kumo3 messages are drained to kumo1 while scheduled
    x_el = np.flatnonzero((node == E.KUMO3) & (n_def >= 1) & (batch < 0) & (final != EXPIRED))
    xfer = _pick(rng, x_el, max(2, round(0.02 * len(x_el))))
    xfer_time = np.zeros(n_msg, dtype=np.int64)
    xfer_time[xfer] = first_t[xfer] + (second_t[xfer] - first_t[xfer]) // 2
    moved = (xfer_time[rep] > 0) & (j >= 1)
    a_node[moved] = E.KUMO1

    # ------------------------------------------------------------------ event table
    cols: dict[str, list[np.ndarray]] = {
        k: [] for k in ("msg", "rcpt", "kind", "node", "t", "attempt", "reply", "aux", "vmta", "dom")
    }

    types = {
        "msg": np.int32,
        "rcpt": np.int32,
        "kind": np.int8,
        "node": np.int8,
        "t": np.int64,
        "attempt": np.int16,
        "reply": np.int16,
        "aux": np.int32,
        "vmta": np.int8,
        "dom": np.int16,
    }

    def add(msg, rc, kind, nd, t, attempt, reply, aux, vm, dm):
        n = len(t)
        for name, value in zip(types, (msg, rc, kind, nd, t, attempt, reply, aux, vm, dm), strict=True):
            arr = np.asarray(value).astype(types[name], copy=False)
            cols[name].append(np.broadcast_to(arr, (n,)) if arr.ndim == 0 else arr)

    allm = np.arange(n_msg)
    add(allm, rcpt, RECEIVED, node, t0, 0, -1, -1, vmta, dom)
    add(
        single,
        rcpt[single],
        final[single],
        node[single],
        s_t,
        0,
        freply[single],
        -1,
        vmta[single],
        dom[single],
    )
    add(rep, rcpt[rep], a_kind, a_node, t_att, j, a_reply, a_aux, vmta[rep], dom[rep])
    add(
        delayed,
        rcpt[delayed],
        QDEFER,
        node[delayed],
        t0[delayed] + lat0[delayed],
        0,
        E.R["kumo.delayed"],
        -1,
        vmta[delayed],
        dom[delayed],
    )

    eligible_rebind = np.flatnonzero(
        (mta == KUMO) & (n_def >= 1) & (batch < 0) & (xfer_time == 0) & (second_t > 0)
    )
    rebind = _pick(rng, eligible_rebind, max(2, round(0.001 * len(eligible_rebind))))
    add(
        rebind,
        rcpt[rebind],
        REBIND,
        node[rebind],
        first_t[rebind] + (second_t[rebind] - first_t[rebind]) // 3,
        1,
        E.R["kumo.rebind"],
        -1,
        vmta[rebind],
        dom[rebind],
    )
    xms = rng.integers(5_000_000, 50_000_000, len(xfer))
    add(
        xfer,
        rcpt[xfer],
        XFER_OUT,
        E.KUMO3,
        xfer_time[xfer],
        1,
        E.R["kumo.xferout"],
        -1,
        vmta[xfer],
        dom[xfer],
    )
    add(
        xfer,
        rcpt[xfer],
        XFER_IN,
        E.KUMO1,
        xfer_time[xfer] + xms,
        1,
        E.R["kumo.xferin"],
        -1,
        vmta[xfer],
        dom[xfer],
    )
    quiet = np.flatnonzero((node == E.KUMO1) & (batch < 0) & (final == DELIVERED))
    unk = _pick(rng, quiet, 2)
    # HTTP injections spooled to the deferred-injection queue first, then rebound to their queue
    dinj = _pick(rng, np.setdiff1d(quiet[pool[quiet] == E.TRANS], unk), 2)
    add(
        dinj,
        rcpt[dinj],
        DINJ_REBIND,
        E.KUMO1,
        t0[dinj] + lat0[dinj] // 3,
        0,
        E.R["kumo.dinjrebind"],
        -1,
        vmta[dinj],
        dom[dinj],
    )
    add(
        unk,
        rcpt[unk],
        UNKNOWN,
        E.KUMO1,
        t0[unk] + lat0[unk] // 2,
        0,
        E.R["kumo.unknown"],
        -1,
        vmta[unk],
        dom[unk],
    )

    delivered = np.flatnonzero((final == DELIVERED) & (final_t < t_end))
    # remote bounces: async bad mailboxes bounce after acceptance; a few content-filter NDRs
    ab = delivered[cls[delivered] == ASYNC_BAD]
    filt = delivered[
        np.isin(prov[delivered], [E.P["office365"], E.P["mimecast"]]) & (cls[delivered] == NORMAL)
    ]
    cf = _pick(rng, filt, max(2, round(0.001 * len(filt))))
    for sel, key in ((ab, "async.badmb"), (cf, "async.content")):
        nd = np.where(mta[sel] == KUMO, E.KUMO1, node[sel])
        add(
            sel,
            rcpt[sel],
            RBOUNCE,
            nd,
            final_t[sel] + rng.integers(MINUTE, HOUR, len(sel)),
            0,
            E.R[key],
            -1,
            vmta[sel],
            dom[sel],
        )
    # unsubscribes (KumoMTA OOB classified Unsubscribe)
    kdel = delivered[(mta[delivered] == KUMO) & (cls[delivered] == NORMAL) & (batch[delivered] < 0)]
    uns = _pick(rng, kdel, max(3, round(0.0003 * len(kdel))))
    add(
        uns,
        rcpt[uns],
        RBOUNCE,
        E.KUMO1,
        final_t[uns] + rng.integers(10 * MINUTE, 20 * HOUR, len(uns)),
        0,
        E.R["async.unsubscribe"],
        -1,
        vmta[uns],
        dom[uns],
    )
    # remote status DSNs from relaying receivers (PowerMTA rs)
    pdel = delivered[(mta[delivered] == PMTA) & np.isin(prov[delivered], [E.P["office365"], E.P["mimecast"]])]
    rsm = _pick(rng, pdel, max(2, round(0.003 * len(pdel))))
    rs_reply = np.where(rng.random(len(rsm)) < 0.6, E.R["rs.relayed"], E.R["rs.delayed"])
    add(
        rsm,
        rcpt[rsm],
        RSTATUS,
        node[rsm],
        final_t[rsm] + rng.integers(MINUTE, 3 * HOUR, len(rsm)),
        0,
        rs_reply,
        -1,
        vmta[rsm],
        dom[rsm],
    )

    # queue-level failures (PowerMTA tq): no recipient; domain + VMTA queue
    tq_doms = np.array(
        [
            E.DOMAIN[d]
            for d in ("bücher.example", "yahoo.com", "comcast.net", "brightwave.example", "oakridge.example")
        ]
    )
    for nd in (E.PMTA1, E.PMTA2):
        vm_here = [i for i, v in enumerate(E.VMTAS) if E.POOLS[v.pool].pmta_node == nd]
        k = max(4, round(np.count_nonzero(node == nd) / 4000))
        vm = rng.choice(vm_here, size=k)
        until = cutover[np.array([E.VMTAS[v].pool for v in vm])]
        t = t_start + (rng.random(k) * (until - t_start)).astype(np.int64)
        dm = rng.choice(tq_doms, size=k)
        dm[:2] = tq_doms[:2]  # the IDN queue and a rollup queue always show up
        rp = np.where(rng.random(k) < 0.6, E.R["tq.noanswer"], E.R["tq.dropped"])
        add(-1, -1, QDEFER, nd, t, 0, rp, -1, vm, dm)
    # injection rejections (KumoMTA Rejection): a recipient was named, the command refused
    for pi, pl_ in enumerate(E.POOLS):
        if pl_.kumo_node == E.KUMO3:
            continue  # the webhook node's listener logs no rejections in this estate
        k = max(3, round(np.count_nonzero(node == pl_.kumo_node) / 20000))
        t = cutover[pi] + (rng.random(k) * max(t_end - cutover[pi], HOUR)).astype(np.int64)
        rc = rng.integers(0, n_rcpt, k)
        rp = np.where(rng.random(k) < 0.5, E.R["reject.connections"], E.R["reject.size"])
        vmp = np.array([i for i, v in enumerate(E.VMTAS) if v.pool == pi])
        add(-1, rc, REJECTED, pl_.kumo_node, t, 0, rp, pi, rng.choice(vmp, size=k), r_dom[rc])

    # complaints: one distinct complaint per chosen delivered message
    p_c = np.array([E.P_COMPLAINT[p] for p in E.PROVIDERS])[prov[delivered]]
    cmask = rng.random(len(delivered)) < p_c
    fbl_prov = np.isin(prov[delivered], [E.P[p] for p in E.FBL_TO_MTA])
    forced = np.zeros(len(delivered), dtype=bool)
    for side in (PMTA, KUMO):
        # tiny estates still get a few feedback-loop complaints on each MTA (delivered a day before the end)
        cand = np.flatnonzero(
            fbl_prov & (mta[delivered] == side) & (batch[delivered] < 0) & (final_t[delivered] < t_end - DAY)
        )
        have = int(np.count_nonzero(cmask[cand]))
        if have < 5:
            pick = _pick(rng, cand[~cmask[cand]], 5 - have)
            cmask[pick] = True
            forced[pick] = True
    cm = delivered[cmask & (batch[delivered] < 0)]
    forced = forced[cmask & (batch[delivered] < 0)]
    t_c = final_t[cm] + (np.exp(rng.normal(np.log(3 * 3600), 1.0, len(cm))).clip(60, 3 * 86400) * NS).astype(
        np.int64
    )
    t_c = np.where(forced, np.minimum(t_c, final_t[cm] + 12 * HOUR), t_c)
    keep = t_c < t_end
    cm, t_c, forced = cm[keep], t_c[keep], forced[keep]
    t_c = (t_c // NS) * NS  # the report's Date has second precision; every route carries that second
    cprov = prov[cm]
    to_mta = np.isin(cprov, [E.P[p] for p in E.FBL_TO_MTA]) & ((rng.random(len(cm)) < 0.85) | forced)
    eml = np.where(to_mta, rng.random(len(cm)) < 0.4, True)
    # guarantee both "two routes" and "MTA only" exist whenever there are MTA-route complaints
    mta_idx = np.flatnonzero(to_mta)
    if len(mta_idx) >= 2:
        eml[mta_idx[0]] = True
        eml[mta_idx[1]] = False
    cid = np.arange(len(cm), dtype=np.int32)
    comp_node = np.where(mta[cm] == KUMO, E.KUMO1, node[cm]).astype(np.int8)
    s = to_mta
    add(cm[s], rcpt[cm[s]], COMPLAINT, comp_node[s], t_c[s], 0, -1, cid[s], vmta[cm[s]], dom[cm[s]])
    comp = {
        "cid": cid,
        "msg": cm.astype(np.int32),
        "t": t_c,
        "mta_route": to_mta,
        "eml": eml,
        "node": comp_node,
        # report variant (attachment style, ARF version spelling, redaction): rotates within each MTA's
        # complaints so every variant appears as soon as an MTA has four
        "style": _rotation(mta[cm]),
    }

    # Events stay in insertion order (the event id is the position); each renderer sorts its own
    # node's rows by time (node_rows), on its worker thread. Events at or after the end of the
    # period have not happened yet: they are kept out of every file and every count.
    ev = {k: np.concatenate(v) for k, v in cols.items()}
    ev["t"] = np.where(ev["t"] < t_end, ev["t"], FUTURE)
    ev["mta"] = np.where(ev["node"] <= E.PMTA2, PMTA, KUMO).astype(np.int8)

    m = {
        "t0": t0,
        "pool": pool,
        "vmta": vmta,
        "rcpt": rcpt,
        "dom": dom,
        "prov": prov,
        "cls": cls,
        "job": job,
        "size": size,
        "mta": mta,
        "node": node,
        "injector": injector,
        "batch": batch,
        "lead": lead,
        "final": final,
        "final_t": final_t,
        "n_def": n_def,
    }
    nodeids = []
    for i in range(len(E.NODES)):
        hi, lo = (int(x) for x in mix64(np.array([i * 2 + 1, i * 2 + 2], dtype=np.uint64), seed))
        hi = (hi & ~0xF000) | 0x4000
        lo = (lo & 0x3FFFFFFFFFFFFFFF) | 0x8000000000000000
        h = f"{hi:016x}{lo:016x}"
        nodeids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return Model(
        days=days,
        messages_per_day=messages_per_day,
        seed=seed,
        start=start,
        t_start=t_start,
        t_end=t_end,
        cutover=cutover,
        r_local=r_local,
        r_dom=r_dom,
        r_cls=r_cls,
        m=m,
        ev=ev,
        comp=comp,
        xfer_time=xfer_time,
        nodeids=tuple(nodeids),
        jobs=jobs,
    )
