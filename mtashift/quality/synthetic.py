"""A clean, canonical events partition of any size, for the quality benchmark and tests.

The traffic has the shape the drift checks look at: both MTAs, two nodes each, every record type
the MTAs log (PowerMTA ``r d t tq b f``, KumoMTA ``Reception Delivery TransientFailure Delayed Bounce
Expiration Feedback``), and campaign bursts injected to every node at the same instants (what the
clock-offset estimate aligns on). Deterministic for (rows, day, seed).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl

from schemas.events import EVENT_SCHEMA

# node -> (mta, pool, source, source_ip)
NODES: dict[str, tuple[str, str, str, str]] = {
    "pmta-a": ("pmta", "marketing", "mkt-01", "192.0.2.11"),
    "pmta-b": ("pmta", "transactional", "trx-01", "192.0.2.12"),
    "kumo-a": ("kumo", "marketing", "mkt-02", "198.51.100.21"),
    "kumo-b": ("kumo", "transactional", "trx-02", "198.51.100.22"),
}
NODE_WEIGHTS = (0.3, 0.2, 0.3, 0.2)

DOMAINS: tuple[str, ...] = (
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "contoso.example",
    "fabrikam.example",
    "icloud.com",
    "comcast.net",
    "gmx.de",
    "orange.fr",
)

# canonical event_type -> raw type per MTA
RAW: dict[str, tuple[str, str]] = {
    "received": ("r", "Reception"),
    "delivered": ("d", "Delivery"),
    "deferred": ("t", "TransientFailure"),
    "queue_deferred": ("tq", "Delayed"),
    "bounced": ("b", "Bounce"),
    "expired": ("b", "Expiration"),
    "complaint": ("f", "Feedback"),
}
_KINDS = tuple(RAW)  # code of an event kind = its index here

SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US


def day_start(day: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=UTC)


def _injection_times(rng: np.random.Generator, n: int) -> np.ndarray:
    """Microseconds into the day: a diurnal base plus shared campaign bursts (~40% of the mail)."""
    minutes = np.arange(1440)
    base = 1.0 + 0.6 * np.sin((minutes - 360) / 1440 * 2 * np.pi)
    weights = base.copy()
    for start in rng.choice(np.arange(30, 1380), size=24, replace=False):
        length = int(rng.integers(3, 15))
        weights[start : start + length] += base.sum() * 0.4 / 24 / length
    minute = rng.choice(1440, size=n, p=weights / weights.sum())
    return minute.astype(np.int64) * 60 * SECOND_US + rng.integers(0, 60 * SECOND_US, n)


def synthetic_events(*, rows: int, day: str, seed: int = 0) -> pl.DataFrame:
    """Exactly ``rows`` canonical events of ``day`` (EVENT_SCHEMA), clean by the events contract."""
    if rows <= 0:
        return pl.DataFrame(schema=EVENT_SCHEMA)
    rng = np.random.default_rng(seed)
    n_msg = max(8, int(rows / 2.1) + 8)
    node = rng.choice(len(NODES), size=n_msg, p=NODE_WEIGHTS)
    t0 = _injection_times(rng, n_msg)
    rcpt = rng.integers(0, max(50, n_msg // 3), n_msg)
    dom = rng.integers(0, len(DOMAINS), n_msg)

    # Each message: a reception, 0-2 transient failures, then one final outcome.
    n_def = np.where(rng.random(n_msg) < 0.15, rng.integers(1, 3, n_msg), 0)
    u = rng.random(n_msg)
    final = np.select(
        [u < 0.05, u < 0.055],
        [_KINDS.index("bounced"), _KINDS.index("expired")],
        _KINDS.index("delivered"),
    )
    latency = (rng.exponential(4.0, n_msg) * SECOND_US).astype(np.int64) + 200_000

    msg_parts = [np.arange(n_msg)]
    kind_parts = [np.full(n_msg, _KINDS.index("received"))]
    time_parts = [t0]
    for k in (1, 2):
        sel = np.flatnonzero(n_def >= k)
        msg_parts.append(sel)
        kind_parts.append(np.full(len(sel), _KINDS.index("deferred")))
        time_parts.append(t0[sel] + k * 300 * SECOND_US + latency[sel])
    msg_parts.append(np.arange(n_msg))
    kind_parts.append(final)
    time_parts.append(t0 + n_def * 300 * SECOND_US + 2 * latency)
    # A few complaints about delivered mail, hours later.
    comp = np.flatnonzero((final == _KINDS.index("delivered")) & (rng.random(n_msg) < 0.002))
    msg_parts.append(comp)
    kind_parts.append(np.full(len(comp), _KINDS.index("complaint")))
    time_parts.append(t0[comp] + 3600 * SECOND_US)

    msg = np.concatenate(msg_parts)
    kind = np.concatenate(kind_parts)
    t = np.concatenate(time_parts)
    seq = np.concatenate([np.full(len(p), i) for i, p in enumerate(msg_parts)])

    # Queue-level delays: per-queue records without a recipient (PowerMTA `tq`, KumoMTA Delayed).
    n_q = max(1, n_msg // 200)
    q_node = rng.choice(len(NODES), size=n_q, p=NODE_WEIGHTS)
    q_dom = rng.integers(0, len(DOMAINS), n_q)
    q_t = rng.integers(0, DAY_US, n_q)

    keep = t < DAY_US
    frame = pl.DataFrame(
        {
            "msg": np.concatenate([msg[keep], np.full(n_q, -1)]),
            "seq": np.concatenate([seq[keep], np.arange(n_q)]),
            "kind": np.concatenate([kind[keep], np.full(n_q, _KINDS.index("queue_deferred"))]),
            "node_i": np.concatenate([node[msg[keep]], q_node]),
            "dom_i": np.concatenate([dom[msg[keep]], q_dom]),
            "rcpt_i": np.concatenate([rcpt[msg[keep]], np.full(n_q, -1)]),
            "t": np.concatenate([t[keep], q_t]),
            "t0": np.concatenate([t0[msg[keep]], np.full(n_q, -1)]),
        }
    )
    if frame.height > rows:
        frame = frame.sample(n=rows, seed=seed, shuffle=False)
    frame = frame.sort("t", "msg", "seq")
    return _canonical(frame, day=day)


def _canonical(frame: pl.DataFrame, *, day: str) -> pl.DataFrame:
    start = pl.lit(day_start(day)).cast(pl.Datetime("us", "UTC"))
    names = list(NODES)
    kind_name = pl.col("kind").replace_strict(dict(enumerate(_KINDS)), return_dtype=pl.String)
    node = pl.col("node_i").replace_strict(dict(enumerate(names)), return_dtype=pl.String)
    mta = pl.col("node_i").replace_strict(
        {i: NODES[n][0] for i, n in enumerate(names)}, return_dtype=pl.String
    )
    domain = pl.col("dom_i").replace_strict(dict(enumerate(DOMAINS)), return_dtype=pl.String)
    has_rcpt = pl.col("rcpt_i") >= 0
    is_pmta = pl.col("node_i").is_in([i for i, n in enumerate(names) if NODES[n][0] == "pmta"])
    raw_type = (
        pl.when(is_pmta)
        .then(
            pl.col("kind").replace_strict(
                {i: RAW[k][0] for i, k in enumerate(_KINDS)}, return_dtype=pl.String
            )
        )
        .otherwise(
            pl.col("kind").replace_strict(
                {i: RAW[k][1] for i, k in enumerate(_KINDS)}, return_dtype=pl.String
            )
        )
    )
    code = pl.col("kind").replace_strict(
        {
            i: {
                "received": 250,
                "delivered": 250,
                "deferred": 421,
                "queue_deferred": 451,
                "bounced": 550,
                "expired": 451,
                "complaint": None,
            }[k]
            for i, k in enumerate(_KINDS)
        },
        return_dtype=pl.Int16,
    )
    out = frame.with_row_index("row").select(
        pl.format("syn{}-{}-{}", pl.col("msg"), pl.col("seq"), pl.col("kind")).alias("event_id"),
        mta.alias("mta"),
        kind_name.alias("event_type"),
        raw_type.alias("raw_type"),
        (start + pl.duration(microseconds=pl.col("t"))).alias("event_time"),
        pl.when(pl.col("t0") >= 0).then(start + pl.duration(microseconds=pl.col("t0"))).alias("queued_time"),
        pl.lit("news@mail.sender.example").alias("sender"),
        pl.lit("mail.sender.example").alias("sender_domain"),
        pl.when(has_rcpt).then(pl.format("user{}@{}", pl.col("rcpt_i"), domain)).alias("recipient"),
        pl.when(has_rcpt).then(domain).alias("recipient_domain"),
        pl.col("node_i")
        .replace_strict({i: NODES[n][1] for i, n in enumerate(names)}, return_dtype=pl.String)
        .alias("pool"),
        pl.col("node_i")
        .replace_strict({i: NODES[n][2] for i, n in enumerate(names)}, return_dtype=pl.String)
        .alias("source"),
        pl.col("node_i")
        .replace_strict({i: NODES[n][3] for i, n in enumerate(names)}, return_dtype=pl.String)
        .alias("source_ip"),
        pl.format("mx.{}", domain).alias("mx_host"),
        pl.lit("203.0.113.5").alias("mx_ip"),
        code.alias("smtp_code"),
        pl.when(pl.col("kind") == _KINDS.index("bounced"))
        .then(pl.lit("5.1.1"))
        .when(pl.col("kind") == _KINDS.index("deferred"))
        .then(pl.lit("4.7.0"))
        .alias("enhanced_status"),
        pl.when(pl.col("kind") == _KINDS.index("bounced"))
        .then(pl.lit("user unknown"))
        .when(pl.col("kind") == _KINDS.index("deferred"))
        .then(pl.lit("try again later"))
        .alias("response"),
        pl.when(pl.col("kind") == _KINDS.index("bounced"))
        .then(pl.when(is_pmta).then(pl.lit("bad-mailbox")).otherwise(pl.lit("InvalidRecipient")))
        .when(pl.col("kind") == _KINDS.index("expired"))
        .then(pl.when(is_pmta).then(pl.lit("message-expired")).otherwise(pl.lit("MessageExpired")))
        .alias("raw_bounce_category"),
        pl.lit(f"job-{day}").alias("job_id"),
        pl.lit("spring").alias("campaign"),
        pl.lit("acme").alias("tenant"),
        pl.when(pl.col("msg") >= 0).then(pl.format("m{}@sender.example", pl.col("msg"))).alias("message_id"),
        pl.lit(24_000, dtype=pl.Int64).alias("size_bytes"),
        pl.col("seq").clip(0, 3).cast(pl.Int32).alias("attempts"),
        pl.lit("TLSv1.3").alias("tls_protocol"),
        pl.lit("TLS_AES_256_GCM_SHA384").alias("tls_cipher"),
        node.alias("node"),
        pl.lit("{}").alias("extra"),
        pl.format("synthetic/{}/{}", node, pl.lit(day)).alias("source_file"),
        (pl.col("row") + 1).cast(pl.Int64).alias("source_line"),
    )
    return out.select([pl.col(n).cast(t) for n, t in EVENT_SCHEMA.items()])


def shift_node_clock(events: pl.DataFrame, *, node: str, seconds: float, day: str) -> pl.DataFrame:
    """The partition as it would look if ``node``'s clock ran ``seconds`` ahead (its day by its clock)."""
    delta = timedelta(seconds=seconds)
    start = day_start(day)
    on = pl.col("node") == node
    shifted = events.with_columns(
        pl.when(on).then(pl.col("event_time") + delta).otherwise(pl.col("event_time")).alias("event_time"),
        pl.when(on).then(pl.col("queued_time") + delta).otherwise(pl.col("queued_time")).alias("queued_time"),
    )
    return shifted.filter(pl.col("event_time").is_between(start, start + timedelta(days=1), closed="left"))
