"""Complaints from every route, joined back to deliveries, counted once; complaint rates.

Routes: PowerMTA ``f`` accounting rows (``pmta_f``), KumoMTA ``Feedback`` log records
(``kumo_feedback``) and ARF files dropped in ``landing/fbl`` (``arf_mail``). During a migration
the same report often arrives twice (the provider's FBL mailbox is processed by an MTA *and*
archived), and both MTAs may process FBL mail.

Join-back to the delivery (``matched_by``):
1. ``message_id``: the report's original Message-ID equals a delivered event's ``message_id``
   (and, when the complaint names a recipient, the recipients are equal too; when it does not,
   the Message-ID must have exactly one delivered recipient);
2. else ``recipient_time``: the same recipient's nearest delivery at or before the complaint time,
   within ``max_lookback`` (default 30 days).

Complaint identity (``complaint_id`` = sha256 of it, first 32 hex), strongest basis available:
- ``recipient+message_id``: lower-cased recipient + original Message-ID;
- ``recipient+day``: lower-cased recipient + UTC date of the complaint (no Message-ID anywhere);
- ``message_id``: original Message-ID alone (recipient redacted and no delivery supplies it);
- ``report``: route + the row's own id (nothing to match on; never merged).
The recipient is the reported one unless redacted, else the matched delivery's. Before the key
is built, gaps are filled across routes: a row without a recipient takes the single recipient
other rows give for the same Message-ID, and a row without a Message-ID takes the single
Message-ID other rows give for the same recipient and day — so a PowerMTA ``f`` row whose
accounting file does not log the Message-ID still merges with the ARF copy of the same report.
Known limit: two complaints by one recipient on one day about different messages, both without
any Message-ID, count once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import yaml

from mtashift.arf import (
    clean_ip,
    decode_kumoref,
    is_redacted,
    normalise_message_id,
    original_message_headers,
    parse_date,
    resolve_recipient,
    strip_angle,
    unfold,
)
from mtashift.lake import Lake
from schemas.complaints import (
    ARF_SCHEMA,
    COMPLAINT_RATE_SCHEMA,
    COMPLAINT_SCHEMA,
    REPORTING_AGENT_PROVIDERS,
)
from schemas.events import EVENT_SCHEMA

UTC_TS = pl.Datetime("us", "UTC")
ROUTE_PRIORITY = {"arf_mail": 0, "kumo_feedback": 1, "pmta_f": 2}  # richest report first
MATCH_PRIORITY = {"message_id": 0, "recipient_time": 1}
DEFAULT_LOOKBACK = timedelta(days=30)

# Trace-header meta names (KumoMTA include_meta_names) that carry our own identifiers.
_TRACE_KEYS = {
    "tenant": ("tenant",),
    "campaign": ("campaign",),
    "job_id": ("job_id", "jobid", "job", "x-job", "x_job"),
}

CANDIDATE_SCHEMA = pl.Schema(
    {
        "route": pl.String(),
        "route_ref": pl.String(),
        "complaint_time": UTC_TS,
        "feedback_type": pl.String(),
        "user_agent": pl.String(),
        "reporting_domain": pl.String(),
        "reporting_hint": pl.String(),
        "recipient": pl.String(),
        "recipient_redacted": pl.Boolean(),
        "original_message_id": pl.String(),
        "sender": pl.String(),
        "reported_domain": pl.String(),
        "source_ip": pl.String(),
        "job_id": pl.String(),
        "campaign": pl.String(),
        "tenant": pl.String(),
        "mta": pl.String(),
    }
)

_DELIVERY_FIELDS: tuple[str, ...] = (
    "event_id",
    "event_time",
    "recipient",
    "message_id",
    "sender",
    "sender_domain",
    "source_ip",
    "pool",
    "source",
    "mta",
    "mx_host",
    "job_id",
    "campaign",
    "tenant",
    "provider",
)


# ----------------------------------------------------------------------------------------------
# route normalisation


def _json_obj(value: Any) -> dict:
    if isinstance(value, dict):
        return value
    if isinstance(value, str | bytes) and value:
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {}
        return obj if isinstance(obj, dict) else {}
    return {}


def _lower_keys(d: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.setdefault(str(k).lower(), v)
    return out


def _s(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        value = value[0] if value else None
        if value is None:
            return None
    return unfold(str(value))


def _reporting_host(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("name")
    v = _s(value)
    if not v:
        return None
    if ";" in v:
        v = v.split(";", 1)[1]
    return v.strip().lower().rstrip(".") or None


def _trace_meta(trace: dict | None, key: str) -> str | None:
    if not trace:
        return None
    low = _lower_keys(trace)
    for name in _TRACE_KEYS[key]:
        if low.get(name) not in (None, ""):
            return _s(low[name])
    return None


def _candidate(**kw: Any) -> dict[str, Any]:
    row = dict.fromkeys(CANDIDATE_SCHEMA.names())
    row.update(kw)
    return row


def _pmta_row(ev: dict[str, Any]) -> dict[str, Any]:
    ex = _lower_keys(_json_obj(ev.get("extra")))
    trace = decode_kumoref(_s(ex.get("header_x-kumoref")))
    trace_rcpt = strip_angle(_s(trace.get("recipient"))) if trace and trace.get("recipient") else None
    recipient, _src, redacted = resolve_recipient(
        [
            ("trace", trace_rcpt),
            ("rcpt", ev.get("recipient")),
            ("original_rcpt_to", _s(ex.get("arf_original-rcpt-to"))),
            ("hotmail_original_recipient", _s(ex.get("header_x-hmxmroriginalrecipient"))),
        ]
    )
    return _candidate(
        route="pmta_f",
        route_ref=ev.get("event_id"),
        complaint_time=ev.get("event_time"),
        feedback_type=(_s(ex.get("feedbacktype")) or _s(ex.get("arf_feedback-type")) or "").lower() or None,
        user_agent=_s(ex.get("useragent")) or _s(ex.get("arf_user-agent")),
        reporting_domain=_reporting_host(ex.get("reportingmta") or ex.get("arf_reporting-mta")),
        reporting_hint=" ".join(x for x in (_s(ex.get("useragent")), _s(ex.get("format"))) if x) or None,
        recipient=recipient,
        recipient_redacted=redacted,
        original_message_id=normalise_message_id(ev.get("message_id") or _s(ex.get("header_message-id"))),
        sender=strip_angle(ev.get("sender")) or strip_angle(_s(ex.get("arf_original-mail-from"))),
        reported_domain=(_s(ex.get("reporteddomain")) or _s(ex.get("arf_reported-domain")) or "").lower()
        or None,
        source_ip=clean_ip(ev.get("source_ip")) or clean_ip(_s(ex.get("dlvsourceip"))),
        job_id=ev.get("job_id") or _s(ex.get("header_x-job")) or _trace_meta(trace, "job_id"),
        campaign=ev.get("campaign") or _trace_meta(trace, "campaign"),
        tenant=ev.get("tenant") or _trace_meta(trace, "tenant"),
        mta="pmta",
    )


def _kumo_row(ev: dict[str, Any]) -> dict[str, Any]:
    ex = _json_obj(ev.get("extra"))
    fr = _lower_keys(_json_obj(ex.get("feedback_report")))
    if not fr:
        # No report payload survived: the record's own columns are all we have.
        recipient = strip_angle(ev.get("recipient"))
        return _candidate(
            route="kumo_feedback",
            route_ref=ev.get("event_id"),
            complaint_time=ev.get("event_time"),
            recipient=recipient,
            recipient_redacted=is_redacted(recipient) if recipient else False,
            mta="kumo",
        )
    headers = original_message_headers(fr.get("original_message"))
    trace = fr.get("supplemental_trace") if isinstance(fr.get("supplemental_trace"), dict) else None
    if trace is None:
        trace = decode_kumoref(headers.get("x-kumoref"))
    trace_rcpt = strip_angle(_s(trace.get("recipient"))) if trace and trace.get("recipient") else None
    rcpt_to = fr.get("original_rcpto_to") or fr.get("original_rcpt_to") or []
    if isinstance(rcpt_to, str):
        rcpt_to = [rcpt_to]
    ext = _lower_keys(fr.get("extensions") or {}) if isinstance(fr.get("extensions"), dict) else {}
    removal = ext.get("removal-recipient") or []
    removal_values = [bytes(v).decode("utf-8", "replace") if isinstance(v, list) else str(v) for v in removal]
    to_single = headers.get("to")
    recipient, _src, redacted = resolve_recipient(
        [("trace", trace_rcpt)]
        + [("original_rcpt_to", str(a)) for a in rcpt_to]
        + [("hotmail_original_recipient", headers.get("x-hmxmroriginalrecipient"))]
        + [("removal_recipient", a) for a in removal_values]
        + [("original_to", to_single if to_single and "," not in to_single else None)]
    )
    reported = fr.get("reported_domain") or []
    if isinstance(reported, str):
        reported = [reported]
    ua = _s(fr.get("user_agent"))
    return _candidate(
        route="kumo_feedback",
        route_ref=ev.get("event_id"),
        complaint_time=ev.get("event_time"),
        feedback_type=(_s(fr.get("feedback_type")) or "").lower() or None,
        user_agent=ua,
        reporting_domain=_reporting_host(fr.get("reporting_mta")) or _domain(strip_angle(ev.get("sender"))),
        reporting_hint=ua,
        recipient=recipient,
        recipient_redacted=redacted,
        original_message_id=normalise_message_id(headers.get("message-id")),
        sender=strip_angle(_s(fr.get("original_mail_from"))),
        reported_domain=(str(reported[0]).lower().rstrip(".") if reported else None),
        source_ip=clean_ip(_s(fr.get("source_ip"))),
        job_id=_trace_meta(trace, "job_id") or headers.get("x-job"),
        campaign=_trace_meta(trace, "campaign"),
        tenant=_trace_meta(trace, "tenant"),
        mta="kumo",
    )


def _domain(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    return address.rsplit("@", 1)[1].strip().lower().rstrip(".") or None


def complaint_candidates(*, events: pl.LazyFrame, arf: pl.DataFrame | pl.LazyFrame | None) -> pl.DataFrame:
    """One row per complaint as each route recorded it (CANDIDATE_SCHEMA), before join-back and dedup.

    Complaint events are few (a fraction of a per-mille of deliveries), so their JSON payloads are
    decoded in Python; everything after this runs in polars.
    """
    ev = events.filter(pl.col("event_type") == "complaint").collect()
    rows: list[dict[str, Any]] = []
    for r in ev.iter_rows(named=True):
        # raw_type as a fallback: the in-memory parsers leave `mta` to the writer
        if r.get("mta") == "pmta" or (r.get("mta") is None and r.get("raw_type") == "f"):
            rows.append(_pmta_row(r))
        elif r.get("mta") == "kumo" or (r.get("mta") is None and r.get("raw_type") == "Feedback"):
            rows.append(_kumo_row(r))
    frames = [pl.DataFrame(rows, schema=CANDIDATE_SCHEMA)] if rows else []
    if arf is not None:
        a = arf.lazy().collect() if isinstance(arf, pl.LazyFrame) else arf
        if a.height:
            for name, dtype in ARF_SCHEMA.items():
                if name not in a.columns:
                    a = a.with_columns(pl.lit(None, dtype=dtype).alias(name))
            trace = pl.col("supplemental_trace")
            frames.append(
                a.select(
                    pl.lit("arf_mail").alias("route"),
                    pl.col("source_file").alias("route_ref"),
                    pl.col("complaint_time").cast(UTC_TS),
                    pl.col("feedback_type"),
                    pl.col("user_agent"),
                    pl.col("reporting_domain"),
                    pl.concat_str(
                        [
                            pl.col("user_agent"),
                            pl.col("report_format"),
                            pl.col("report_from"),
                            pl.col("extensions").str.json_path_match("$.source[0]"),
                        ],
                        separator=" ",
                        ignore_nulls=True,
                    ).alias("reporting_hint"),
                    pl.col("recipient"),
                    pl.col("recipient_redacted").fill_null(False),
                    pl.col("original_message_id"),
                    pl.col("original_mail_from").alias("sender"),
                    pl.col("reported_domain").list.first().alias("reported_domain"),
                    pl.col("source_ip"),
                    pl.coalesce(
                        trace.str.json_path_match("$.job_id"),
                        trace.str.json_path_match("$.job"),
                        pl.col("original_x_job"),
                    ).alias("job_id"),
                    trace.str.json_path_match("$.campaign").alias("campaign"),
                    trace.str.json_path_match("$.tenant").alias("tenant"),
                    pl.lit(None, dtype=pl.String).alias("mta"),
                ).cast(CANDIDATE_SCHEMA)  # type: ignore[arg-type]
            )
    if not frames:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA)
    return pl.concat(frames, how="vertical")


# ----------------------------------------------------------------------------------------------
# join-back, identity, dedup


def _norm_msgid(expr: pl.Expr) -> pl.Expr:
    v = expr.cast(pl.String).str.replace_all(r"\s+", "").str.strip_chars("<>")
    return pl.when(v == "").then(None).otherwise(v)


def _norm_rcpt(expr: pl.Expr) -> pl.Expr:
    v = expr.cast(pl.String).str.strip_chars().str.strip_chars("<>").str.to_lowercase()
    return pl.when(v == "").then(None).otherwise(v)


def _delivery_frame(deliveries: pl.LazyFrame) -> pl.LazyFrame:
    names = deliveries.collect_schema().names()
    d = deliveries
    if "event_type" in names:
        d = d.filter(pl.col("event_type") == "delivered")
    cols = [
        (pl.col(c) if c in names else pl.lit(None, dtype=UTC_TS if c == "event_time" else pl.String))
        .cast(UTC_TS if c == "event_time" else pl.String)
        .alias(f"d_{c}")
        for c in _DELIVERY_FIELDS
    ]
    return d.select(cols).with_columns(
        _norm_rcpt(pl.col("d_recipient")).alias("rcpt_key"),
        _norm_msgid(pl.col("d_message_id")).alias("msgid"),
    )


_D_COLS = [f"d_{c}" for c in _DELIVERY_FIELDS]


def join_back(
    candidates: pl.LazyFrame, *, deliveries: pl.LazyFrame, max_lookback: timedelta = DEFAULT_LOOKBACK
) -> pl.LazyFrame:
    """Add the matched delivery's columns (``d_*``) and ``matched_by`` to complaint candidates."""
    c = candidates.with_columns(
        pl.when(~pl.col("recipient_redacted").fill_null(False))
        .then(_norm_rcpt(pl.col("recipient")))
        .alias("rcpt_key"),
        _norm_msgid(pl.col("original_message_id")).alias("msgid"),
        pl.int_range(pl.len()).alias("_row"),
    )
    # Complaints are few and the delivery window is long: keep only deliveries that can match, so
    # the scan of a month of delivered events never materialises more than those rows.
    keys = c.select("rcpt_key", "msgid").collect()
    rcpts = keys["rcpt_key"].drop_nulls().unique()
    msgids = keys["msgid"].drop_nulls().unique()
    d = _delivery_frame(deliveries).filter(
        pl.col("rcpt_key").is_in(rcpts.implode()) | pl.col("msgid").is_in(msgids.implode())
    )
    # 1a. Message-ID + recipient
    by_pair = (
        d.filter(pl.col("msgid").is_not_null() & pl.col("rcpt_key").is_not_null())
        .sort("d_event_time", "d_event_id")
        .unique(["msgid", "rcpt_key"], keep="last", maintain_order=True)
    )
    m1 = (
        c.filter(pl.col("msgid").is_not_null() & pl.col("rcpt_key").is_not_null())
        .join(by_pair, on=["msgid", "rcpt_key"], how="inner")
        .select("_row", *_D_COLS)
    )
    # 1b. Message-ID alone, when the complaint names no usable recipient and the id has one recipient
    single = (
        d.filter(pl.col("msgid").is_not_null())
        .sort("d_event_time", "d_event_id")
        .group_by("msgid", maintain_order=True)
        .agg(pl.col("rcpt_key").n_unique().alias("_n"), *[pl.col(x).last() for x in _D_COLS])
        .filter(pl.col("_n") == 1)
        .drop("_n")
    )
    m2 = (
        c.filter(pl.col("msgid").is_not_null() & pl.col("rcpt_key").is_null())
        .join(single, on="msgid", how="inner")
        .select("_row", *_D_COLS)
    )
    by_msgid = pl.concat([m1, m2], how="vertical").with_columns(pl.lit("message_id").alias("matched_by"))
    # 2. recipient + nearest earlier delivery
    unmatched = c.join(by_msgid.select("_row"), on="_row", how="anti").filter(
        pl.col("rcpt_key").is_not_null() & pl.col("complaint_time").is_not_null()
    )
    right = (
        d.filter(pl.col("rcpt_key").is_not_null() & pl.col("d_event_time").is_not_null())
        .sort("d_event_time", "d_event_id")
        .unique(["rcpt_key", "d_event_time"], keep="last", maintain_order=True)
        .sort("d_event_time")
    )
    asof = (
        unmatched.select("_row", "rcpt_key", "complaint_time")
        .sort("complaint_time")
        .join_asof(
            right.drop("msgid"),
            left_on="complaint_time",
            right_on="d_event_time",
            by="rcpt_key",
            strategy="backward",
            tolerance=max_lookback,
            check_sortedness=False,
        )
        .filter(pl.col("d_event_id").is_not_null())
        .select("_row", *_D_COLS)
        .with_columns(pl.lit("recipient_time").alias("matched_by"))
    )
    matches = pl.concat([by_msgid, asof], how="vertical")
    return c.join(matches, on="_row", how="left", maintain_order="left").sort("_row").drop("_row")


def _sha_key(s: pl.Series) -> pl.Series:
    return pl.Series(
        [hashlib.sha256(v.encode()).hexdigest()[:32] if v is not None else None for v in s.to_list()],
        dtype=pl.String,
    )


def _reporting_provider(domain: pl.Expr, hint: pl.Expr) -> pl.Expr:
    try:
        from mtashift.providers import domain_list_provider_expr

        by_domain = domain_list_provider_expr(domain)
    except ImportError:  # provider map not available: only the agent hints apply
        by_domain = pl.lit(None, dtype=pl.String)
    text = pl.concat_str([hint, domain], separator=" ", ignore_nulls=True)
    by_hint: pl.Expr = pl.lit(None, dtype=pl.String)
    for pattern, provider in reversed(REPORTING_AGENT_PROVIDERS):
        by_hint = pl.when(text.str.contains(pattern)).then(pl.lit(provider)).otherwise(by_hint)
    return pl.coalesce(pl.when(by_domain != "other").then(by_domain), by_hint, pl.lit("other"))


def _add_recipient_provider(frame: pl.LazyFrame, domain_map: pl.LazyFrame | None) -> pl.LazyFrame:
    try:
        from mtashift.providers import add_provider
    except ImportError:
        return frame.with_columns(pl.col("d_provider").alias("provider"))
    tmp = frame.with_columns(pl.col("d_mx_host").alias("mx_host"))
    tmp = add_provider(tmp, domain_map=domain_map)
    return tmp.with_columns(pl.coalesce("d_provider", "provider").alias("provider")).drop("mx_host")


def build_complaints(
    *,
    events: pl.LazyFrame,
    arf: pl.DataFrame | pl.LazyFrame | None,
    deliveries: pl.LazyFrame,
    day: str | None = None,
    domain_map: pl.LazyFrame | None = None,
    max_lookback: timedelta = DEFAULT_LOOKBACK,
) -> pl.LazyFrame:
    """Distinct complaints (COMPLAINT_SCHEMA) from complaint events and parsed ARF files.

    ``events``: events holding the complaint rows (event_type ``complaint``; other rows ignored).
    ``arf``: the ``complaints_raw`` frame (mtashift.arf.parse_fbl_folder) or None.
    ``deliveries``: delivered events to join back to (from enough days before the complaints).
    ``day``: keep only complaints whose (earliest) complaint_time falls on this UTC date; pass
    the neighbouring days' inputs too so a report logged either side of midnight merges.
    """
    cand = complaint_candidates(events=events, arf=arf)
    if cand.height == 0:
        return pl.LazyFrame(schema=COMPLAINT_SCHEMA)
    joined = join_back(cand.lazy(), deliveries=deliveries, max_lookback=max_lookback)

    recipient_final = pl.coalesce(
        pl.when(~pl.col("recipient_redacted")).then(pl.col("recipient")),
        pl.col("d_recipient"),
        pl.col("recipient"),
    )
    redacted_final = pl.col("recipient_redacted") & pl.col("d_recipient").is_null()
    base = joined.with_columns(
        recipient_final.alias("recipient_final"),
        redacted_final.alias("redacted_final"),
        pl.col("complaint_time").dt.date().alias("_cday"),
    ).with_columns(
        pl.when(~pl.col("redacted_final")).then(_norm_rcpt(pl.col("recipient_final"))).alias("id_rcpt"),
        pl.col("msgid").alias("id_msg"),
    )
    # Fill gaps across routes before keying (see module docstring).
    same = pl.col("id_rcpt").min().over("id_msg") == pl.col("id_rcpt").max().over("id_msg")
    base = base.with_columns(
        pl.when(pl.col("id_rcpt").is_null() & pl.col("id_msg").is_not_null() & same)
        .then(pl.col("id_rcpt").min().over("id_msg"))
        .otherwise(pl.col("id_rcpt"))
        .alias("id_rcpt")
    )
    same_msg = pl.col("id_msg").min().over("id_rcpt", "_cday") == pl.col("id_msg").max().over(
        "id_rcpt", "_cday"
    )
    base = base.with_columns(
        pl.when(pl.col("id_msg").is_null() & pl.col("id_rcpt").is_not_null() & same_msg)
        .then(pl.col("id_msg").min().over("id_rcpt", "_cday"))
        .otherwise(pl.col("id_msg"))
        .alias("id_msg")
    )
    has_r = pl.col("id_rcpt").is_not_null()
    has_m = pl.col("id_msg").is_not_null()
    keyed = base.with_columns(
        pl.when(has_r & has_m)
        .then(pl.lit("recipient+message_id"))
        .when(has_r)
        .then(pl.lit("recipient+day"))
        .when(has_m)
        .then(pl.lit("message_id"))
        .otherwise(pl.lit("report"))
        .alias("identity_basis"),
        pl.when(has_r & has_m)
        .then(pl.concat_str([pl.lit("m"), pl.col("id_rcpt"), pl.col("id_msg")], separator="|"))
        .when(has_r)
        .then(pl.concat_str([pl.lit("r"), pl.col("id_rcpt"), pl.col("_cday").cast(pl.String)], separator="|"))
        .when(has_m)
        .then(pl.concat_str([pl.lit("i"), pl.col("id_msg")], separator="|"))
        .otherwise(
            pl.concat_str([pl.lit("u"), pl.col("route"), pl.col("route_ref").fill_null("")], separator="|")
        )
        .alias("_identity"),
        pl.col("matched_by").replace_strict(MATCH_PRIORITY, default=9, return_dtype=pl.Int8).alias("_mrank"),
        pl.col("route").replace_strict(ROUTE_PRIORITY, default=9, return_dtype=pl.Int8).alias("_rrank"),
    ).with_columns(pl.col("_identity").map_batches(_sha_key, return_dtype=pl.String).alias("complaint_id"))

    ordered = keyed.sort("complaint_id", "_mrank", "_rrank", "complaint_time", "route_ref", nulls_last=True)
    report_fields = ["feedback_type", "user_agent", "reporting_domain", "reporting_hint", "reported_domain",
                     "sender", "source_ip", "job_id", "campaign", "tenant", "mta", "recipient_final"]  # fmt: skip
    grouped = ordered.group_by("complaint_id", maintain_order=True).agg(
        pl.col("complaint_time").min(),
        *[pl.col(f).drop_nulls().first().alias(f) for f in report_fields],
        pl.col("msgid").drop_nulls().first().alias("original_message_id"),
        pl.col("redacted_final").all().alias("recipient_redacted"),
        *[pl.col(f).first().alias(f) for f in _D_COLS],
        pl.col("matched_by").first(),
        pl.col("identity_basis").first(),
        pl.col("route").unique().sort().alias("routes"),
        pl.len().cast(pl.Int32).alias("route_rows"),
    )
    sender = pl.coalesce("d_sender", "sender")
    out = grouped.with_columns(
        pl.col("recipient_final").alias("recipient"),
        _norm_rcpt(pl.col("recipient_final")).str.split("@").list.last().alias("_rd"),
        sender.alias("sender_out"),
        pl.coalesce(pl.col("d_sender_domain"), _norm_rcpt(sender).str.split("@").list.last()).alias(
            "sender_domain"
        ),
    ).with_columns(
        pl.when(pl.col("recipient_final").str.contains("@")).then(pl.col("_rd")).alias("recipient_domain"),
        pl.when(pl.col("sender_out").str.contains("@") | pl.col("d_sender_domain").is_not_null())
        .then(pl.col("sender_domain"))
        .alias("sender_domain"),
    )
    out = _add_recipient_provider(out, domain_map)
    out = out.select(
        "complaint_id",
        "complaint_time",
        "feedback_type",
        _reporting_provider(pl.col("reporting_domain"), pl.col("reporting_hint")).alias("reporting_provider"),
        "reporting_domain",
        "user_agent",
        "recipient",
        "recipient_domain",
        "recipient_redacted",
        pl.col("sender_out").alias("sender"),
        "sender_domain",
        pl.coalesce("d_source_ip", "source_ip").alias("source_ip"),
        "reported_domain",
        pl.coalesce("d_message_id", "original_message_id").alias("message_id"),
        "original_message_id",
        pl.coalesce("d_job_id", "job_id").alias("job_id"),
        pl.coalesce("d_campaign", "campaign").alias("campaign"),
        pl.coalesce("d_tenant", "tenant").alias("tenant"),
        pl.col("d_pool").alias("pool"),
        pl.col("d_source").alias("source"),
        pl.coalesce("d_mta", "mta").alias("mta"),
        "provider",
        pl.col("d_event_id").alias("delivery_event_id"),
        pl.col("d_event_time").alias("delivery_time"),
        "routes",
        "route_rows",
        "matched_by",
        "identity_basis",
    ).cast(COMPLAINT_SCHEMA)  # type: ignore[arg-type]
    if day is not None:
        out = out.filter(pl.col("complaint_time").dt.date() == pl.lit(day).str.to_date())
    return out.sort("complaint_time", "complaint_id")


# ----------------------------------------------------------------------------------------------
# lake inputs (used by the assets; kept here so the assets stay thin)

FBL_RAW_FILE = "complaints_raw.parquet"
FBL_QUARANTINE_FILE = "fbl.parquet"


def day_window(day: str, *, before: int, after: int) -> list[str]:
    """ISO dates from ``before`` days before ``day`` to ``after`` days after it, inclusive."""
    d = date.fromisoformat(day)
    return [(d + timedelta(days=i)).isoformat() for i in range(-before, after + 1)]


def scan_event_days(
    *, lake: Lake, days: list[str], event_types: tuple[str, ...] | None = None
) -> pl.LazyFrame:
    """Canonical events of the given days that exist (empty frame of EVENT_SCHEMA when none)."""
    paths = [lake.partition_dir("events", d) for d in days]
    present = [str(p / "*.parquet") for p in paths if any(p.glob("*.parquet"))]
    if not present:
        return pl.LazyFrame(schema=EVENT_SCHEMA)
    frame = pl.concat([pl.scan_parquet(p, hive_partitioning=False) for p in present], how="diagonal_relaxed")
    if event_types is not None:
        frame = frame.filter(pl.col("event_type").is_in(list(event_types)))
    return frame


def fbl_raw_path(lake: Lake) -> Path:
    return lake.raw_dir("fbl") / FBL_RAW_FILE


def fbl_quarantine_path(lake: Lake) -> Path:
    return lake.quarantine / "fbl" / FBL_QUARANTINE_FILE


def scan_fbl_reports(*, lake: Lake, days: list[str] | None = None) -> pl.LazyFrame:
    """Parsed ARF files (ARF_SCHEMA), optionally only those whose complaint_time falls on ``days``."""
    p = fbl_raw_path(lake)
    if not p.exists():
        return pl.LazyFrame(schema=ARF_SCHEMA)
    frame = pl.scan_parquet(p)
    if days is not None:
        wanted = pl.Series([date.fromisoformat(d) for d in days], dtype=pl.Date)
        frame = frame.filter(pl.col("complaint_time").dt.date().is_in(wanted.implode()))
    return frame


# ----------------------------------------------------------------------------------------------
# rates


@dataclass(frozen=True)
class Thresholds:
    warn: float
    critical: float
    min_delivered: int
    providers: dict[str, tuple[float, float]]  # provider -> (warn, critical)

    def for_provider(self, provider: str | None) -> tuple[float, float]:
        return self.providers.get(provider or "", (self.warn, self.critical))


def default_thresholds_path() -> Path:
    return Path(str(resources.files("schemas") / "complaint_thresholds.yaml"))


def parse_thresholds(document: dict) -> Thresholds:
    def pair(spec: Any, where: str) -> tuple[float, float]:
        if not isinstance(spec, dict) or "warn" not in spec or "critical" not in spec:
            raise ValueError(f"complaint thresholds: {where}: `warn` and `critical` are required")
        warn, critical = float(spec["warn"]), float(spec["critical"])
        if not 0 < warn <= critical <= 1:
            raise ValueError(f"complaint thresholds: {where}: need 0 < warn <= critical <= 1 (fractions)")
        return warn, critical

    warn, critical = pair(document.get("default"), "default")
    providers = {str(k): pair(v, k) for k, v in (document.get("providers") or {}).items()}
    min_delivered = int(document.get("min_delivered", 0))
    if min_delivered < 0:
        raise ValueError("complaint thresholds: min_delivered must be >= 0")
    return Thresholds(warn=warn, critical=critical, min_delivered=min_delivered, providers=providers)


def load_thresholds(path: str | Path | None = None) -> Thresholds:
    if path is None:
        return _default_thresholds()
    return parse_thresholds(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


@cache
def _default_thresholds() -> Thresholds:
    return parse_thresholds(yaml.safe_load(default_thresholds_path().read_text(encoding="utf-8")))


def complaint_rates(
    *, complaints: pl.LazyFrame, deliveries: pl.LazyFrame, thresholds: Thresholds | None = None
) -> pl.LazyFrame:
    """Per (day, provider, sender_domain): complaints / delivered of the same UTC day, with status.

    ``deliveries`` must carry ``provider`` (mtashift.providers.add_provider) so both sides use one
    attribution; a cell with complaints but no deliveries gets status ``no_deliveries``.
    """
    th = thresholds or load_thresholds()
    keys = ["day", "provider", "sender_domain"]
    c = (
        complaints.with_columns(pl.col("complaint_time").dt.date().alias("day"))
        .group_by(keys)
        .agg(pl.len().cast(pl.Int64).alias("complaints"))
    )
    dnames = deliveries.collect_schema().names()
    d = deliveries
    if "event_type" in dnames:
        d = d.filter(pl.col("event_type") == "delivered")
    if "provider" not in dnames:
        d = d.with_columns(pl.lit(None, dtype=pl.String).alias("provider"))
    d = (
        d.with_columns(pl.col("event_time").dt.date().alias("day"))
        .group_by(keys)
        .agg(pl.len().cast(pl.Int64).alias("delivered"))
    )
    both = c.join(d, on=keys, how="full", coalesce=True, nulls_equal=True).with_columns(
        pl.col("complaints").fill_null(0), pl.col("delivered").fill_null(0)
    )
    provs = list(th.providers)
    warn = pl.col("provider").replace_strict(provs, [th.providers[p][0] for p in provs], default=th.warn,
                                             return_dtype=pl.Float64)  # fmt: skip
    crit = pl.col("provider").replace_strict(provs, [th.providers[p][1] for p in provs], default=th.critical,
                                             return_dtype=pl.Float64)  # fmt: skip
    rate = pl.when(pl.col("delivered") > 0).then(pl.col("complaints") / pl.col("delivered"))
    out = both.with_columns(
        rate.alias("complaint_rate"), warn.alias("warn_threshold"), crit.alias("critical_threshold")
    )
    out = out.with_columns(
        pl.when(pl.col("delivered") == 0)
        .then(pl.lit("no_deliveries"))
        .when(pl.col("complaint_rate") >= pl.col("critical_threshold"))
        .then(pl.lit("critical"))
        .when(pl.col("complaint_rate") >= pl.col("warn_threshold"))
        .then(pl.lit("warn"))
        .otherwise(pl.lit("ok"))
        .alias("status"),
        (pl.col("delivered") < th.min_delivered).alias("low_volume"),
    )
    return (
        out.select(COMPLAINT_RATE_SCHEMA.names())
        .cast(COMPLAINT_RATE_SCHEMA)
        .sort(  # type: ignore[arg-type]
            keys, nulls_last=True
        )
    )


__all__ = [
    "CANDIDATE_SCHEMA",
    "Thresholds",
    "build_complaints",
    "complaint_candidates",
    "complaint_rates",
    "day_window",
    "join_back",
    "load_thresholds",
    "parse_date",
    "scan_event_days",
    "scan_fbl_reports",
]
