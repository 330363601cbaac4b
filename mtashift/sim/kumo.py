"""Render the model's KumoMTA events as zstd JSONL segments and webhook captures.

* ``landing/kumo/<node>/YYYYMMDD-HHMMSS.fffffffff`` — one zstd frame of JSONL per segment, named
  after the UTC time it was opened; rotated every ``SEGMENT_HOURS`` hours of traffic or
  ``SEGMENT_RECORDS`` records. ``kumo1`` logs Reception records to a separate ``_recv`` stream
  (``per_record = { Reception = { suffix = "_recv" } }``). Completed segments are read-only; the
  newest ``kumo1`` main segment is still open (writable). ``kumo2`` runs an older release: records
  carry the epoch ``timestamp``/``created`` only (no ``event_time``/``created_time``).
* ``landing/kumo/webhooks/hook-*.json`` — ``kumo3`` ships by HTTP log hook; the collector stores
  what it received: one object per line, or a JSON array per line (batched hooks), or one
  whole-file array; at-least-once delivery repeats some records (within and across files).

Records follow the struct order of ``JsonLogRecord`` (formats.md B.1); keys that KumoMTA omits
when empty (tls_*, provider_name, session_id) are omitted. Bulk records are built from line
templates (:mod:`mtashift.sim._template`); the rare ones (Feedback, OOB, Rejection) and the
recipient arrays of multi-recipient batches with orjson.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import zstandard

from mtashift.sim import _io
from mtashift.sim import estate as E
from mtashift.sim import model as M
from mtashift.sim._template import Low, Template, TimeTable, Var, chars_to_series, hex_words, uuid_series
from mtashift.sim.pmta import MX_WIDTH, N_MX, lookups

SEGMENT_HOURS = 3
SEGMENT_RECORDS = 200_000
CHUNK_RECORDS = 400_000
JOB_RECORDS = 700_000  # records per worker job (whole segments)
WEBHOOK_HOURS = 2
UNKNOWN_TYPE = "SuspendNotice"  # a record type this pipeline has never seen (-> other)

KIND_TYPE = {
    M.RECEIVED: "Reception",
    M.DELIVERED: "Delivery",
    M.DEFERRED: "TransientFailure",
    M.BOUNCED: "Bounce",
    M.EXPIRED: "Expiration",
    M.QDEFER: "Delayed",
    M.RBOUNCE: "OOB",
    M.COMPLAINT: "Feedback",
    M.REJECTED: "Rejection",
    M.ADMIN_BOUNCE: "AdminBounce",
    M.REBIND: "AdminRebind",
    M.XFER_OUT: "XferOut",
    M.XFER_IN: "XferIn",
    M.UNKNOWN: UNKNOWN_TYPE,
    M.DINJ_REBIND: "DeferredInjectionRebind",
}
PYTHON_KINDS = (M.RBOUNCE, M.COMPLAINT, M.REJECTED)
ATTEMPT_KINDS = (M.DELIVERED, M.DEFERRED, M.BOUNCED)
TLS_CIPHER = "TLS_AES_256_GCM_SHA384"
TLS_VERSION = "TLSv1.3"
NA_CAP = 63


@dataclass
class SegmentInfo:
    rel: str
    node: str
    records: int
    complete: bool = True
    truncated_intact: int = -1  # records still readable after the cut, -1 when not truncated


@dataclass
class KumoResult:
    segments: list[SegmentInfo] = field(default_factory=list)
    webhooks: list[str] = field(default_factory=list)
    duplicates: dict[str, int] = field(default_factory=dict)
    quarantine: list[dict] = field(default_factory=list)
    lost_eids: list[np.ndarray] = field(default_factory=list)
    open_eids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    open_segment: str = ""
    truncated: dict = field(default_factory=dict)
    broken: dict = field(default_factory=dict)


def _json(s: str) -> str:
    return orjson.dumps(s).decode("utf-8")


def _esc(s: str) -> str:
    """JSON string-content escaping of a fragment (no surrounding quotes)."""
    return _json(s)[1:-1]


def split_text(reply: E.Reply) -> tuple[str, str, int]:
    """A reply's content text split around its high-cardinality placeholder (0 none, 1 qid, 2 rcpt)."""
    for var, ph in ((1, "{qid}"), (2, "{rcpt}")):
        if ph in reply.text:
            head, tail = reply.text.split(ph, 1)
            return head, tail, var
    return reply.text, "", 0


TEXT_SPLIT = [split_text(r) for r in E.REPLIES]
TEXT_VAR = np.array([0] + [v for _h, _t, v in TEXT_SPLIT], dtype=np.int8)  # indexed by reply + 1


def _fill(text: str, vmta: int, dom: int) -> str:
    v = E.VMTAS[vmta]
    return (
        text.replace("{ip}", v.ip)
        .replace("{domain}", E.DOMAINS[dom].name)
        .replace("{sdomain}", E.POOLS[v.pool].sending_domain)
    )


def build_template(model: M.Model, node: int) -> Template:
    spec = E.NODES[node]
    nodeid = model.nodeids[node]
    jobs = model.jobs
    rfc = spec.rfc3339_times

    def dom(k):
        return E.DOMAINS[k["mx"] // MX_WIDTH]

    def mx(k):
        d = dom(k)
        return d.mx[(k["mx"] % MX_WIDTH) % len(d.mx)] if d.mx else None

    def attempt(k):
        return k["kind"] in ATTEMPT_KINDS and mx(k) is not None

    def vm(k):
        return E.VMTAS[k["vmta"]]

    def reply(k):
        return E.REPLIES[k["reply"] - 1] if k["reply"] > 0 else None

    def is_rec(k):
        return k["kind"] == M.RECEIVED

    def run_a(k):
        return '{"type":' + _json(KIND_TYPE.get(k["kind"], UNKNOWN_TYPE)) + ',"id":"'

    def run_b(k):
        return '","sender":' + _json(E.POOLS[vm(k).pool].sender) + ',"recipient":"'

    def run_c(k):
        job, tenant = jobs[k["job"]]
        site = f"{vm(k).egress_source}->{dom(k).site}@smtp" if attempt(k) else ""
        return f'","queue":{_json(f"{job}:{tenant}@{dom(k).name}")},"site":{_json(site)},"size":'

    def run_d(k):
        if is_rec(k) or reply(k) is None:
            return ',"response":{"code":250,"enhanced_code":null,"content":"'
        r = reply(k)
        enh = "null" if r.enhanced is None else '{{"class":{},"subject":{},"detail":{}}}'.format(*r.enhanced)
        head = _fill(TEXT_SPLIT[k["reply"] - 1][0], k["vmta"], k["mx"] // MX_WIDTH)
        return f',"response":{{"code":{r.code or 250},"enhanced_code":{enh},"content":"{_esc(head)}'

    def run_e(k):
        if reply(k) is None:
            return '","command":null},"peer_address":null'
        if is_rec(k):
            text = '","command":null}'
            peer = '{{"name":{},"addr":{}}}'.format(*(_json(x) for x in E.INJECTORS[k["inj"]]))
        else:
            r = reply(k)
            tail = _fill(TEXT_SPLIT[k["reply"] - 1][1], k["vmta"], k["mx"] // MX_WIDTH)
            text = f'{_esc(tail)}","command":{"null" if r.command is None else _json(r.command)}}}'
            peer = (
                '{{"name":{},"addr":{}}}'.format(_json(mx(k)[0] + "."), _json(mx(k)[1]))
                if attempt(k)
                else "null"
            )
        return text + ',"peer_address":' + peer

    def run_g(k):
        r = reply(k)
        cls = "Uncategorized" if is_rec(k) or r is None else r.kumo_cat
        pool = E.POOLS[vm(k).pool]
        egress = ("null", "null") if is_rec(k) else (_json(pool.egress_pool), _json(vm(k).egress_source))
        src = '{"address":"' + vm(k).ip + ":" if attempt(k) else "null"
        return (
            ('Z"' if rfc else "") + f',"num_attempts":{k["na"]},"bounce_classification":{_json(cls)},'
            f'"egress_pool":{egress[0]},"egress_source":{egress[1]},"source_address":{src}'
        )

    def run_h(k):
        return (
            ('"}' if attempt(k) else "")
            + ',"feedback_report":null,"meta":{"job_id":'
            + _json(jobs[k["job"]][0])
            + '},"headers":{"Message-ID":"<'
        )

    def run_i(k):
        pool = E.POOLS[vm(k).pool]
        out = f'@mail.{pool.sending_domain}>"}},"delivery_protocol":{chr(34) + "ESMTP" + chr(34) if attempt(k) else "null"}'
        out += f',"reception_protocol":{_json(pool.reception_protocol)},"nodeid":"{nodeid}"'
        if (attempt(k) and dom(k).tls) or (is_rec(k) and rfc):
            out += f',"tls_cipher":"{TLS_CIPHER}","tls_protocol_version":"{TLS_VERSION}"'
        if attempt(k) and dom(k).provider in E.KUMO_PROVIDER_NAME:
            out += f',"provider_name":{_json(E.KUMO_PROVIDER_NAME[dom(k).provider])}'
        if attempt(k) or is_rec(k):
            out += ',"session_id":"'
        return out

    def run_j(k):
        return ('"' if (attempt(k) or is_rec(k)) else "") + "}\n"

    items = [
        Low(run_a, ("kind",)), Var("id"),
        Low(run_b, ("vmta",)), Var("rcpt"),
        Low(run_c, ("job", "mx", "vmta", "kind")), Var("size"),
        Low(run_d, ("kind", "reply", "vmta", "mx")), Var("cv"),
        Low(run_e, ("kind", "reply", "vmta", "mx", "inj")), Var("ts"),
    ]  # fmt: skip
    if rfc:
        items += [Var("tns"), 'Z"', Var("cr"), Var("cns")]
    else:
        items += [Var("cr")]
    items += [
        Low(run_g, ("kind", "na", "reply", "vmta", "mx")), Var("port"),
        Low(run_h, ("kind", "mx", "job")), Var("mid"),
        Low(run_i, ("kind", "mx", "vmta")), Var("sess"),
        Low(run_j, ("kind", "mx")),
    ]  # fmt: skip
    sizes = {
        "kind": M.N_KINDS,
        "vmta": len(E.VMTAS),
        "mx": len(E.DOMAINS) * MX_WIDTH,
        "reply": len(E.REPLIES) + 1,
        "inj": len(E.INJECTORS),
        "job": max(1, len(jobs)),
        "na": NA_CAP + 1,
    }
    return Template(items, sizes)


def nanos(values: np.ndarray) -> pl.Series:
    """Nine-digit zero-padded strings of 0 <= v < 10**9."""
    return pl.Series(np.asarray(values, dtype=np.int64) + M.NS).cast(pl.String).str.slice(1)


class Renderer:
    def __init__(self, model: M.Model, seed: int) -> None:
        self.model = model
        self.seed = seed
        self.lk = lookups(model, seed)
        t0 = int(model.t_start // M.NS) - 1
        t1 = int(model.t_end // M.NS) + 1
        nodes = {n for n in (E.KUMO1, E.KUMO2, E.KUMO3) if (model.ev["node"] == n).any()}
        rfc = any(E.NODES[n].rfc3339_times for n in nodes)
        old = any(not E.NODES[n].rfc3339_times for n in nodes)
        if rfc:
            self.ts_rfc = TimeTable(t0, t1, ',"timestamp":%s,"event_time":"%Y-%m-%dT%H:%M:%S.')
            self.cr_rfc = TimeTable(t0, t1, ',"created":%s,"created_time":"%Y-%m-%dT%H:%M:%S.')
        if old:
            self.ts_old = TimeTable(t0, t1, ',"timestamp":%s')
            self.cr_old = TimeTable(t0, t1, ',"created":%s')
        self.templates = {n: build_template(model, n) for n in (E.KUMO1, E.KUMO2, E.KUMO3)}
        self.complaints: dict[int, dict] = {}

    def lines(self, sel: np.ndarray, node: int) -> pl.Series:
        """One JSON line (with newline) per selected event; rare kinds are rendered in Python."""
        m, ev = self.model.m, self.model.ev
        spec = E.NODES[node]
        n = len(sel)
        kind = ev["kind"][sel]
        msg = ev["msg"][sel]
        mi = np.where(msg >= 0, msg, 0)
        dom = ev["dom"][sel].astype(np.int64)
        eid = sel.astype(np.int64)
        h = M.mix64(eid.astype(np.uint64), self.seed + 3)
        mx = dom * MX_WIDTH + (h % N_MX[dom].astype(np.uint64)).astype(np.int64)
        nx = np.array([d.kind == "nxdomain" for d in E.DOMAINS])[dom]
        attempt = ev["attempt"][sel].astype(np.int64)
        is_att = np.isin(kind, ATTEMPT_KINDS) & ~nx
        is_rec = kind == M.RECEIVED
        na = np.where(kind == M.DEFERRED, attempt + 1, np.where(is_rec, 0, attempt)).clip(0, NA_CAP)
        reply1 = ev["reply"][sel].astype(np.int64) + 1
        keys = {
            "kind": kind,
            "vmta": ev["vmta"][sel],
            "mx": mx,
            "reply": reply1,
            "inj": m["injector"][mi],
            "job": m["job"][mi],
            "na": na,
        }
        lead = m["lead"][mi]
        rcpt = self.lk.addr_blank.gather(np.where(ev["rcpt"][sel] >= 0, ev["rcpt"][sel], len(self.lk.addr)))
        size = pl.Series(
            np.where(((kind == M.DEFERRED) & (attempt >= 2)) | (kind == M.QDEFER), 0, m["size"][mi])
        ).cast(pl.String)
        vkind = TEXT_VAR[reply1]
        ar = np.arange(n)
        with_qid = np.flatnonzero(vkind == 1)
        qid = chars_to_series(hex_words(eid[with_qid], self.seed + 99))
        qpos = np.full(n, -1, dtype=np.int64)
        qpos[with_qid] = np.arange(len(with_qid))
        nq = len(with_qid)
        blank = pl.Series([""], dtype=pl.String)
        cv = pl.concat([qid, rcpt, blank]).gather(
            np.where(vkind == 1, qpos, np.where(vkind == 2, nq + ar, nq + n))
        )
        t = ev["t"][sel]
        c = m["t0"][mi]
        if spec.rfc3339_times:
            ts, cr = self.ts_rfc(t // M.NS), self.cr_rfc(c // M.NS)
        else:
            ts, cr = self.ts_old(t // M.NS), self.cr_old(c // M.NS)
        port = pl.concat(
            [
                pl.Series((1024 + (h >> np.uint64(20)) % np.uint64(60000)).astype(np.int64)).cast(pl.String),
                blank,
            ]
        )
        port = port.gather(np.where(is_att, ar, n))
        # one session per (node, source, domain, two minutes) outbound, (node, injector, 30 s) inbound
        sess_key = np.where(
            is_rec,
            (np.int64(node) << 56)
            ^ (m["injector"][mi].astype(np.int64) << 48)
            ^ (t // (30 * M.NS))
            ^ (1 << 47),
            (np.int64(node) << 56)
            ^ (ev["vmta"][sel].astype(np.int64) << 48)
            ^ (dom << 32)
            ^ (t // (120 * M.NS)),
        )
        with_sess = is_att | is_rec
        skeys, sinv = np.unique(np.where(with_sess, sess_key, -1), return_inverse=True)
        sess = pl.concat([uuid_series(skeys.astype(np.uint64), self.seed + 17), blank])
        sess = sess.gather(np.where(with_sess, sinv, len(skeys)))
        variables = {
            "id": self.lk.spool_id.gather(lead),
            "rcpt": rcpt,
            "size": size,
            "cv": cv,
            "ts": ts,
            "cr": cr,
            "port": port,
            "mid": self.lk.mid_hex.gather(lead),
            "sess": sess,
        }
        if spec.rfc3339_times:
            variables["tns"] = nanos(t % M.NS)
            variables["cns"] = nanos(c % M.NS)
        out = self.templates[node].render(n, keys, variables)
        rare = np.flatnonzero(np.isin(kind, PYTHON_KINDS))
        if len(rare):
            out = out.scatter(
                rare, pl.Series([self.rare_line(int(sel[i]), node) for i in rare], dtype=pl.String)
            )
        return out

    # ------------------------------------------------------------------ rare records
    def _times(self, node: int, rec: dict, t_ns: int, created_ns: int) -> None:
        rec["timestamp"] = t_ns // M.NS
        if E.NODES[node].rfc3339_times:
            rec["event_time"] = _rfc3339_py(t_ns)
        rec["created"] = created_ns // M.NS
        if E.NODES[node].rfc3339_times:
            rec["created_time"] = _rfc3339_py(created_ns)

    def rare_line(self, e: int, node: int) -> str:
        model, m, ev = self.model, self.model.m, self.model.ev
        kind = int(ev["kind"][e])
        t = int(ev["t"][e])
        rid = int(ev["rcpt"][e])
        rcpt = self.lk.addr[rid]
        dom = E.DOMAINS[int(ev["dom"][e])]
        vm = E.VMTAS[int(ev["vmta"][e])]
        pool = E.POOLS[vm.pool]
        h = M.mix64_int(e, self.seed + 31)
        inbound_id = f"{M.mix64_int(e, self.seed + 41):016x}{h:016x}"
        sess = f"{h:016x}{M.mix64_int(e, self.seed + 43):016x}"
        session = f"{sess[:8]}-{sess[8:12]}-4{sess[13:16]}-a{sess[17:20]}-{sess[20:32]}"
        reply = E.REPLIES[int(ev["reply"][e])] if ev["reply"][e] >= 0 else None
        rec: dict = {"type": KIND_TYPE[kind]}
        if kind == M.REJECTED:
            inj = E.INJECTORS[h % len(E.INJECTORS)]
            rec.update(id="", sender=pool.sender, recipient=rcpt, queue="", site="", size=0)
            rec["response"] = _response(reply, rcpt, vm.ip, dom.name, pool.sending_domain)
            rec["peer_address"] = {"name": inj[0], "addr": inj[1]}
            self._times(node, rec, t, t)
            rec.update(_inbound_tail(reply, model.nodeids[node]), session_id=session)
        elif kind == M.RBOUNCE:
            mx = dom.mx[h % len(dom.mx)] if dom.mx else ("", "")
            rec.update(
                id=inbound_id,
                sender=pool.sender,
                recipient=rcpt,
                queue=pool.sender.split("@")[1],
                site="",
                size=0,
            )
            rec["response"] = _response(reply, rcpt, vm.ip, dom.name, pool.sending_domain, command=False)
            rec["peer_address"] = {"name": mx[0], "addr": ""}
            self._times(node, rec, t, t)
            rec.update(_inbound_tail(reply, model.nodeids[node]))
        else:  # Feedback
            complaint_row = self.complaints[int(ev["aux"][e])]
            msg = int(ev["msg"][e])
            ua, rmta, rfrom = E.FBL_REPORTER.get(dom.provider, E.FBL_REPORTER["other"])
            job = model.jobs[int(m["job"][msg])][0]
            mid = complaint_row["message_id"]
            style = complaint_row["style"]
            original = (
                f"Received: from {vm.host} ({vm.host} [{vm.ip}])\r\n"
                f'From: "Acme" <news@{pool.sending_domain}>\r\nTo: <{rcpt}>\r\nSubject: Your offers this week\r\n'
                f"Message-ID: {mid}\r\nX-Job: {job}\r\n\r\n"
            )
            report = {
                "feedback_type": "abuse",
                "user_agent": ua,
                "version": "1" if style % 2 == 0 else 1,
                "arrival_date": _rfc3339_py(complaint_row["delivered_ns"], nanos=False),
                "incidents": None,
                "original_envelope_id": None,
                "original_mail_from": f"<{pool.sender}>",
                "reporting_mta": {"mta_type": "dns", "name": rmta},
                "source_ip": vm.ip,
                "authentication_results": [
                    f"{rmta}; dkim=pass header.d={pool.sending_domain}; spf=pass smtp.mailfrom={pool.sender}"
                ],
                "original_rcpto_to": [] if style == 3 else [rcpt],
                "reported_domain": [pool.sending_domain],
                "reported_uri": [],
                "extensions": {} if style < 2 else {"removal-recipient": [list(rcpt.encode("utf-8"))]},
                "original_message": original if style % 2 == 0 else list(original.encode("utf-8")),
                "supplemental_trace": {"recipient": rcpt, "job_id": job} if style >= 2 else None,
            }
            fbl_dom = f"fbl.{pool.sending_domain}"
            rec.update(
                id=inbound_id,
                sender=rfrom,
                recipient=f"fbl@{fbl_dom}",
                queue=fbl_dom,
                site="",
                size=1800 + len(original),
            )
            rec["response"] = {"code": 250, "enhanced_code": None, "content": "", "command": None}
            rec["peer_address"] = {"name": rmta, "addr": "203.0.113.250"}
            self._times(node, rec, t, t)
            rec.update(
                num_attempts=0,
                bounce_classification="Uncategorized",
                egress_pool=None,
                egress_source=None,
                source_address=None,
                feedback_report=report,
                meta={},
                headers={},
                delivery_protocol=None,
                reception_protocol="ESMTP",
                nodeid=model.nodeids[node],
                session_id=session,
            )
        return orjson.dumps(rec).decode("utf-8") + "\n"


def _inbound_tail(reply: E.Reply, nodeid: str) -> dict:
    """The fields after the times of a record KumoMTA writes for inbound traffic (Rejection, OOB), in struct order."""
    return {
        "num_attempts": 0,
        "bounce_classification": reply.kumo_cat,
        "egress_pool": None,
        "egress_source": None,
        "source_address": None,
        "feedback_report": None,
        "meta": {},
        "headers": {},
        "delivery_protocol": None,
        "reception_protocol": "ESMTP",
        "nodeid": nodeid,
    }


def _response(reply: E.Reply, rcpt: str, ip: str, domain: str, sdomain: str, command: bool = True) -> dict:
    text = (
        reply.text.replace("{rcpt}", rcpt)
        .replace("{ip}", ip)
        .replace("{domain}", domain)
        .replace("{sdomain}", sdomain)
    )
    text = text.replace("{qid}", "0")
    enh = (
        None
        if reply.enhanced is None
        else dict(zip(("class", "subject", "detail"), reply.enhanced, strict=True))
    )
    return {
        "code": reply.code,
        "enhanced_code": enh,
        "content": text,
        "command": reply.command if command else None,
    }


def _rfc3339_py(t_ns: int, nanos: bool = True) -> str:
    sec, frac = divmod(int(t_ns), M.NS)
    base = dt.datetime.fromtimestamp(sec, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z" if nanos else f"{base}Z"


def segment_name(t_ns: int, salt: int) -> str:
    opened = int(t_ns) - 1000 * (1 + M.mix64_int(int(t_ns) & 0xFFFFFFFF, salt) % 997)
    sec, frac = divmod(opened, M.NS)
    return dt.datetime.fromtimestamp(sec, tz=dt.UTC).strftime("%Y%m%d-%H%M%S") + f".{frac:09d}"


def count_intact_lines(data: bytes) -> int:
    """Complete newline-terminated lines a streaming decoder reads from a possibly cut zstd stream."""
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
    out = bytearray()
    while True:
        try:
            chunk = reader.read(1 << 16)
        except zstandard.ZstdError:
            break
        if not chunk:
            break
        out += chunk
    return bytes(out).count(b"\n")


# The log streams: (node, segment-name suffix). kumo1 logs Reception records to a `_recv` stream.
STREAMS: tuple[tuple[int, str], ...] = ((E.KUMO1, ""), (E.KUMO1, "_recv"), (E.KUMO2, ""), (E.KUMO3, ""))


def stream_rows(model: M.Model, node: int, suffix: str) -> np.ndarray:
    """Event ids one stream writes, in time order."""
    rows = model.node_rows(node)
    if not E.NODES[node].recv_suffix:
        return rows
    rec = model.ev["kind"][rows] == M.RECEIVED
    return rows[rec] if suffix == "_recv" else rows[~rec]


class _Stream:
    """The rows one log stream writes, with multi-recipient batches folded into their leader's line.

    Positions index ``kept`` (the rows that get a line of their own).
    """

    def __init__(self, model: M.Model, rnd: Renderer, node: int, rows: np.ndarray) -> None:
        ev, m = model.ev, model.m
        self.model, self.rnd, self.node, self.rows = model, rnd, node, rows
        msg = ev["msg"][rows]
        batch = np.where(msg >= 0, m["batch"][np.where(msg >= 0, msg, 0)], -1)
        in_batch = np.flatnonzero((batch >= 0) & np.isin(ev["kind"][rows], (M.RECEIVED, M.DELIVERED)))
        keep = np.ones(len(rows), dtype=bool)
        groups: dict[tuple[int, int], list[int]] = {}
        for i in in_batch.tolist():  # a handful of batch records
            groups.setdefault((int(batch[i]), int(ev["kind"][rows[i]])), []).append(i)
        leaders = {members[0]: members for members in groups.values()}
        for members in groups.values():
            keep[members[1:]] = False
        self.kept = np.flatnonzero(keep)
        lead_rows = np.array(sorted(leaders), dtype=np.int64)
        self.leader_pos = np.searchsorted(self.kept, lead_rows)  # sorted positions of leaders
        self.members = {int(pos): leaders[int(r)] for pos, r in zip(self.leader_pos, lead_rows, strict=True)}

    def _leaders_in(self, positions: np.ndarray) -> np.ndarray:
        return (
            np.flatnonzero(np.isin(positions, self.leader_pos))
            if len(self.leader_pos)
            else np.zeros(0, dtype=np.int64)
        )

    def lines(self, positions: np.ndarray) -> pl.Series:
        out = self.rnd.lines(self.rows[self.kept[positions]], self.node)
        idx = self._leaders_in(positions)
        if len(idx):
            texts = []
            for j in idx.tolist():
                addrs = [
                    self.rnd.lk.addr[int(self.model.ev["rcpt"][self.rows[q]])]
                    for q in self.members[int(positions[j])]
                ]
                texts.append(
                    out[j].replace(
                        '"recipient":' + _json(addrs[0]), '"recipient":' + orjson.dumps(addrs).decode(), 1
                    )
                )
            out = out.scatter(idx, pl.Series(texts, dtype=pl.String))
        return out

    def eids(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(event ids, owning position) of every event on the given positions' lines, batch members included."""
        e = [self.rows[self.kept[positions]].astype(np.int64)]
        o = [np.asarray(positions, dtype=np.int64)]
        for j in self._leaders_in(positions).tolist():
            extra = self.members[int(positions[j])][1:]
            e.append(self.rows[extra].astype(np.int64))
            o.append(np.full(len(extra), positions[j], dtype=np.int64))
        return np.concatenate(e), np.concatenate(o)


@dataclass
class Plan:
    """What one log stream writes, decided before any file is rendered (so jobs can split it)."""

    st: _Stream
    suffix: str
    webhook: bool
    starts: np.ndarray  # per file: first kept position (segments) / first entry (webhooks)
    ends: np.ndarray
    file_base: int
    open_index: int = -1
    broken: tuple[int, int] = (-1, -1)  # (segment index, position of the record cut in half)
    truncated_index: int = -1
    # webhooks: the ordered entries (kept position, is a repeated copy) and the file layouts
    entries: np.ndarray | None = None
    is_copy: np.ndarray | None = None
    first_pos: np.ndarray | None = None  # per file: kept position of its first original record


def plan_stream(
    model: M.Model, rnd: Renderer, stream: tuple[int, str], *, seed: int, file_base: int
) -> Plan | None:
    node, suffix = stream
    rows = stream_rows(model, node, suffix)
    if len(rows) == 0:
        return None
    st = _Stream(model, rnd, node, rows)
    ev = model.ev
    kept_rows = st.rows[st.kept]
    t = ev["t"][kept_rows]
    if E.NODES[node].webhook:
        return _plan_webhooks(model, st, t, seed=seed, file_base=file_base)
    origin = model.t_start + (node * 37 + (7 if suffix else 0)) * M.MINUTE
    bucket = (t - origin) // (SEGMENT_HOURS * M.HOUR)
    seg_start = np.flatnonzero(np.diff(bucket, prepend=-1))
    starts: list[int] = []
    for a, b in zip(seg_start.tolist(), [*seg_start[1:].tolist(), len(t)], strict=True):
        starts.extend(range(a, b, SEGMENT_RECORDS))
    ends = [*starts[1:], len(t)]
    plan = Plan(st, suffix, False, np.array(starts), np.array(ends), file_base)
    if node == E.KUMO1 and suffix == "":
        plan.open_index = len(starts) - 1
        # broken JSON: in the first completed segment holding a Delivery after its first line
        kinds = ev["kind"][kept_rows]
        for k in range(len(starts) - 1):
            deliveries = np.flatnonzero(kinds[starts[k] + 1 : ends[k]] == M.DELIVERED)
            if len(deliveries) and ends[k] - starts[k] >= 4:
                plan.broken = (k, int(deliveries[0]) + 1)
                break
    if node == E.KUMO2:
        # truncated: the first segment opened after the middle of the node's period, not too small
        pool = next(i for i, p in enumerate(E.POOLS) if p.kumo_node == node)
        mid = model.cutover[pool] + (model.t_end - model.cutover[pool]) // 2
        for k in range(len(starts)):
            if t[starts[k]] >= mid and ends[k] - starts[k] >= 40:
                plan.truncated_index = k
                break
    return plan


def jobs(plan: Plan, max_records: int = JOB_RECORDS) -> list[tuple[int, int]]:
    """File-index ranges of about ``max_records`` records each."""
    sizes = plan.ends - plan.starts
    out, k0, acc = [], 0, 0
    for k, size in enumerate(sizes.tolist()):
        if acc and acc + size > max_records:
            out.append((k0, k))
            k0, acc = k, 0
        acc += size
    out.append((k0, len(sizes)))
    return out


def run_job(
    model: M.Model,
    landing: Path,
    plan: Plan,
    files: tuple[int, int],
    *,
    seed: int,
    ledger: dict[str, np.ndarray],
    progress=None,
) -> KumoResult:
    res = KumoResult()
    if plan.webhook:
        _write_webhooks(model, landing, plan, files, ledger, res, seed)
    else:
        k = files[0]
        while k < files[1]:
            k2 = k
            while k2 < files[1] and plan.ends[k2] - plan.starts[k] <= CHUNK_RECORDS:
                k2 += 1
            k2 = max(k2, k + 1)
            a, b = int(plan.starts[k]), int(plan.ends[k2 - 1])
            lines = plan.st.lines(np.arange(a, b))
            for j in range(k, k2):
                s0, s1 = int(plan.starts[j]), int(plan.ends[j])
                _write_segment(
                    model,
                    landing,
                    plan,
                    j,
                    lines.slice(s0 - a, s1 - s0),
                    np.arange(s0, s1),
                    ledger,
                    res,
                    seed,
                )
            k = k2
    if progress:
        # jobs of one stream finish in any order: report this job's share, the caller adds them up
        progress(f"kumo:{E.NODES[plan.st.node].name}{plan.suffix}", files[1] - files[0], len(plan.starts))
    return res


def merge(results: list[KumoResult]) -> KumoResult:
    out = KumoResult()
    for r in results:
        out.segments += r.segments
        out.webhooks += r.webhooks
        out.duplicates.update(r.duplicates)
        out.quarantine += r.quarantine
        out.lost_eids += r.lost_eids
        if r.open_segment:
            out.open_segment, out.open_eids = r.open_segment, r.open_eids
        out.truncated = out.truncated or r.truncated
        out.broken = out.broken or r.broken
    return out


def render(
    model: M.Model,
    landing: Path,
    *,
    seed: int,
    ledger: dict[str, np.ndarray],
    file_base: int,
    complaints: dict[int, dict],
    progress=None,
) -> KumoResult:
    """Every stream in sequence (the generator runs :func:`run_job` on worker threads)."""
    rnd = Renderer(model, seed)
    rnd.complaints = complaints
    results = []
    for i, stream in enumerate(STREAMS):
        plan = plan_stream(model, rnd, stream, seed=seed, file_base=file_base + (i << 16))
        if plan is not None:
            results += [
                run_job(model, landing, plan, r, seed=seed, ledger=ledger, progress=progress)
                for r in jobs(plan)
            ]
    return merge(results)


def _write_segment(
    model, landing, plan: Plan, k: int, seg_lines, positions, ledger, res: KumoResult, seed
) -> None:
    st = plan.st
    node = st.node
    spec = E.NODES[node]
    is_open = k == plan.open_index
    first_eid = int(st.rows[st.kept[positions[0]]])
    t_first = int(model.ev["t"][first_eid])
    rel = f"kumo/{spec.name}/{segment_name(t_first, seed + node)}{plan.suffix}"
    file_id = plan.file_base + k
    n = len(positions)
    line_of_pos = np.arange(1, n + 1, dtype=np.int64)
    data_parts = _io.string_bytes(seg_lines)
    if k == plan.broken[0]:
        # fault: a line of log-writer noise after the first record, and one record cut in half
        target = plan.broken[1]
        raw = b"".join(bytes(p) for p in data_parts)
        text_lines = raw.split(b"\n")[:-1]
        text_lines[target] = text_lines[target][: len(text_lines[target]) // 2]
        text_lines.insert(1, b"\x1b[2K kumod: log writer interrupted")
        data_parts = [b"\n".join(text_lines) + b"\n"]
        line_of_pos = np.where(np.arange(n) >= 1, line_of_pos + 1, line_of_pos)
        res.broken = {
            "path": rel,
            "lines": [2, target + 2],
            "garbage_line": 2,
            "half_record_line": target + 2,
        }
        for line, detail in ((2, "not JSON (log writer noise)"), (target + 2, "record cut in half")):
            res.quarantine.append(
                {
                    "source_kind": "kumo",
                    "source_file": rel,
                    "source_line": line,
                    "reason": "invalid_json",
                    "detail": detail,
                }
            )
        res.lost_eids.append(st.eids(positions[[target]])[0])
    # the segment that gets cut was written with small flushes, so part of it still decodes
    compressed = _io.zstd_bytes(
        data_parts, flush_bytes=16 * 1024 if k == plan.truncated_index else _io.FLUSH_BYTES
    )
    intact = -1
    if k == plan.truncated_index:
        # fault: the stream is cut so that some blocks still decode and the rest is lost
        for fraction in (0.55, 0.7, 0.85, 0.95):
            cut = max(16, int(len(compressed) * fraction))
            intact = count_intact_lines(compressed[:cut])
            if 0 < intact < n:
                break
        compressed = compressed[:cut]
        res.truncated = {
            "path": rel,
            "total_records": n,
            "intact_records": intact,
            "first_lost_line": intact + 1,
            "compressed_bytes_kept": cut,
        }
        res.quarantine.append(
            {
                "source_kind": "kumo",
                "source_file": rel,
                "source_line": intact + 1,
                "reason": "truncated_stream",
                "detail": "zstd stream ends early; later records lost",
            }
        )
        res.lost_eids.append(st.eids(positions[intact:])[0])
    last_eid = int(st.rows[st.kept[positions[-1]]])
    mtime = int(model.ev["t"][last_eid] // M.NS) + 1
    _io.write_file(landing / rel, compressed, mtime=mtime, mode=_io.WRITABLE if is_open else _io.READ_ONLY)
    res.segments.append(SegmentInfo(rel, spec.name, n, complete=not is_open, truncated_intact=intact))
    eids, owner = st.eids(positions)
    ledger["file"][eids] = file_id
    ledger["line"][eids] = line_of_pos[owner - positions[0]]
    if is_open:
        res.open_segment = rel
        res.open_eids = eids


def _plan_webhooks(model: M.Model, st: _Stream, t: np.ndarray, *, seed: int, file_base: int) -> Plan:
    """Two-hour capture files; about 1.5 % of records are delivered again (same bytes)."""
    rng = np.random.default_rng([seed, 1009])
    n = len(t)
    bucket = (t - model.t_start) // (WEBHOOK_HOURS * M.HOUR)
    starts = np.flatnonzero(np.diff(bucket, prepend=-1))
    ends = np.concatenate([starts[1:], [n]])
    n_files = len(starts)
    file_of = np.searchsorted(starts, np.arange(n), side="right") - 1
    # Entries: every record once (its original) plus duplicate copies. A copy follows its original a
    # few records later in the same file, or opens the next file (re-sent after the collector
    # rotated). Entries are ordered by (file, key); an original at position p has key 4p.
    n_dup = min(n, max(3, n * 3 // 200))
    dup = np.sort(rng.choice(n, size=n_dup, replace=False))
    near_end = (ends[file_of[dup]] - dup <= 5) & (file_of[dup] + 1 < n_files)
    offset = rng.integers(0, 4, n_dup)
    dup_file = np.where(near_end, file_of[dup] + 1, file_of[dup])
    dup_key = np.where(
        near_end,
        4 * starts[np.minimum(file_of[dup] + 1, n_files - 1)] - 1,
        4 * np.minimum(dup + offset, ends[file_of[dup]] - 1) + 2,
    )
    pos = np.concatenate([np.arange(n), dup])
    f_all = np.concatenate([file_of, dup_file])
    key = np.concatenate([4 * np.arange(n), dup_key])
    is_copy = np.concatenate([np.zeros(n, dtype=bool), np.ones(n_dup, dtype=bool)])
    order = np.lexsort((key, f_all))
    f_all = f_all[order]
    f_start = np.searchsorted(f_all, np.arange(n_files))
    f_end = np.concatenate([f_start[1:], [len(order)]])
    plan = Plan(st, "", True, f_start, f_end, file_base)
    plan.entries, plan.is_copy, plan.first_pos = pos[order], is_copy[order], starts
    return plan


def _write_webhooks(
    model, landing, plan: Plan, files: tuple[int, int], ledger, res: KumoResult, seed
) -> None:
    ev = model.ev
    st = plan.st
    n_files = len(plan.starts)
    whole_file = 2 if n_files > 2 else n_files - 1
    for fi in range(*files):
        a, b = int(plan.starts[fi]), int(plan.ends[fi])
        seq = plan.entries[a:b]
        is_copy = plan.is_copy[a:b]
        t_first = int(ev["t"][st.rows[st.kept[int(plan.first_pos[fi])]]])
        name = dt.datetime.fromtimestamp(t_first // M.NS, tz=dt.UTC).strftime("hook-%Y%m%d-%H%M%S") + ".json"
        rel = f"kumo/webhooks/{name}"
        res.webhooks.append(rel)
        parts = st.lines(seq).str.strip_chars_end("\n")
        idx = np.arange(len(seq))
        if fi == whole_file:
            text = pl.DataFrame({"l": parts}).select(
                (pl.lit("[\n") + pl.col("l").str.join(",\n") + pl.lit("\n]\n")).alias("x")
            )["x"]
            line = idx + 2
        elif fi % 3 == 1:
            rng = np.random.default_rng([seed, 1013, fi])
            cut = np.cumsum(rng.integers(1, 51, len(seq) + 1))
            batch = np.searchsorted(cut, idx, side="right")
            text = (
                pl.DataFrame({"l": parts, "b": batch})
                .group_by("b", maintain_order=True)
                .agg(pl.col("l").str.join(","))
                .select((pl.lit("[") + pl.col("l") + pl.lit("]\n")).alias("x"))["x"]
            )
            line = np.unique(batch, return_inverse=True)[1] + 1
        else:
            text = parts + "\n"
            line = idx + 1
        res.duplicates[rel] = int(is_copy.sum())
        last_eid = int(st.rows[st.kept[int(seq.max())]])
        out = _io.Output(landing / rel, mtime=int(ev["t"][last_eid] // M.NS) + 5)
        out.write(_io.string_bytes(text))
        out.close()
        orig = ~is_copy
        eids, owner = st.eids(seq[orig])
        ledger["file"][eids] = plan.file_base + fi
        op = seq[orig]
        srt = np.argsort(op)
        ledger["line"][eids] = line[orig][srt][np.searchsorted(op[srt], owner)]
