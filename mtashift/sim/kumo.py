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
when empty (tls_*, provider_name, session_id) are omitted. Bulk records are built with polars
string expressions; the rare ones (Feedback, OOB, Rejection, multi-recipient batches) with orjson.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import zstandard

from mtashift.sim import _io
from mtashift.sim import estate as E
from mtashift.sim import model as M
from mtashift.sim.pmta import MX_WIDTH, Lookups, msg_id_series, mx_tables, spool_id_series

SEGMENT_HOURS = 3
SEGMENT_RECORDS = 200_000
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
}
PYTHON_KINDS = (M.RBOUNCE, M.COMPLAINT, M.REJECTED)
ATTEMPT_KINDS = (M.DELIVERED, M.DEFERRED, M.BOUNCED)
TLS_CIPHER = "TLS_AES_256_GCM_SHA384"
TLS_VERSION = "TLSv1.3"
RECEPTION_RESPONSE = '{"code":250,"enhanced_code":null,"content":"","command":null}'


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
    file_names: list[str] = field(default_factory=list)  # ledger file ids (offset by the caller)


def _json(s: str) -> str:
    return orjson.dumps(s).decode("utf-8")


def response_tables() -> tuple[pl.Series, pl.Series]:
    """Per reply: JSON of ``response`` up to the content value, and after it."""
    pre, post = [], []
    for r in E.REPLIES:
        enh = "null" if r.enhanced is None else '{{"class":{},"subject":{},"detail":{}}}'.format(*r.enhanced)
        cmd = "null" if r.command is None else _json(r.command)
        pre.append(f'{{"code":{r.code or 250},"enhanced_code":{enh},"content":')
        post.append(f',"command":{cmd}}}')
    return pl.Series(pre), pl.Series(post)


def _uuid(words: pl.Series) -> pl.Expr:
    s = pl.col(words.name)
    return pl.concat_str([s.str.slice(0, 8), pl.lit("-"), s.str.slice(8, 4), pl.lit("-4"), s.str.slice(13, 3), pl.lit("-a"),
                          s.str.slice(17, 3), pl.lit("-"), s.str.slice(20, 12)])


def _rfc3339(col: pl.Expr) -> pl.Expr:
    return pl.from_epoch(col, time_unit="ns").dt.strftime("%Y-%m-%dT%H:%M:%S.%9fZ")


class Renderer:
    def __init__(self, model: M.Model, seed: int) -> None:
        self.model = model
        self.seed = seed
        self.lk = Lookups(model)
        self.mx_host, self.mx_ip, self.n_mx = mx_tables()
        self.resp_pre, self.resp_post = response_tables()
        self.content = pl.Series([_json(r.text) for r in E.REPLIES])
        self.kcat = pl.Series([r.kumo_cat for r in E.REPLIES])

    # ------------------------------------------------------------------ bulk records
    def bulk_lines(self, sel: np.ndarray, node: int) -> pl.Series:
        """One JSON line (with trailing newline) per selected event; rare kinds get null (filled later)."""
        model, m, ev = self.model, self.model.m, self.model.ev
        spec = E.NODES[node]
        kind = ev["kind"][sel]
        msg = ev["msg"][sel]
        mi = np.where(msg >= 0, msg, 0)
        rcpt = np.where(ev["rcpt"][sel] >= 0, ev["rcpt"][sel], 0)
        vm = ev["vmta"][sel].astype(np.int64)
        pool = np.array([v.pool for v in E.VMTAS], dtype=np.int64)[vm]
        dom = ev["dom"][sel].astype(np.int64)
        reply = np.where(ev["reply"][sel] >= 0, ev["reply"][sel], 0).astype(np.int64)
        eid = sel.astype(np.int64)
        h = M.mix64(eid.astype(np.uint64), self.seed + 3)
        mx_i = dom * MX_WIDTH + (h % self.n_mx[dom].astype(np.uint64)).astype(np.int64)
        prov = np.array([E.P[d.provider] for d in E.DOMAINS], dtype=np.int64)[dom]
        nx = np.array([d.kind == "nxdomain" for d in E.DOMAINS])[dom]
        tls_ok = np.array([d.tls for d in E.DOMAINS])[dom]
        attempt = ev["attempt"][sel].astype(np.int64)
        is_attempt = np.isin(kind, ATTEMPT_KINDS) & ~nx
        lead = m["lead"][mi]
        # an outbound SMTP session lasts about two minutes per (node, source, domain)
        sess_key = (np.int64(node) << 56) ^ (vm << 48) ^ (dom << 32) ^ (ev["t"][sel] // (120 * M.NS))
        in_key = (np.int64(node) << 56) ^ (m["injector"][mi].astype(np.int64) << 48) ^ (ev["t"][sel] // (30 * M.NS)) ^ (1 << 47)
        sess = _io.hex_strings(np.where(kind == M.RECEIVED, in_key, sess_key).astype(np.uint64), self.seed + 17, words=2)
        num_attempts = np.where(kind == M.DEFERRED, attempt + 1, np.where(kind == M.RECEIVED, 0, attempt))
        size = np.where(((kind == M.DEFERRED) & (attempt >= 2)) | (kind == M.QDEFER), 0, m["size"][mi])
        jobs = pl.Series([j for j, _t in model.jobs])
        tenants = pl.Series([t for _j, t in model.jobs])
        df = pl.DataFrame(
            {
                "kind": kind,
                "type": pl.Series([KIND_TYPE.get(k, UNKNOWN_TYPE) for k in range(15)]).gather(kind.astype(np.int64)),
                "id": spool_id_series(lead, self.seed),
                "sender": pl.Series([p.sender for p in E.POOLS]).gather(pool),
                "rcpt": self.lk.addr.gather(rcpt),
                "domain": pl.Series([d.name for d in E.DOMAINS]).gather(dom),
                "job": jobs.gather(m["job"][mi]),
                "tenant": tenants.gather(m["job"][mi]),
                "site_name": pl.Series([d.site for d in E.DOMAINS]).gather(dom),
                "src": pl.Series([v.egress_source for v in E.VMTAS]).gather(vm),
                "epool": pl.Series([p.egress_pool for p in E.POOLS]).gather(pool),
                "size": size,
                "rpre": self.resp_pre.gather(reply),
                "rcontent": self.content.gather(reply),
                "rpost": self.resp_post.gather(reply),
                "mxh": self.mx_host.gather(mx_i),
                "mxip": self.mx_ip.gather(mx_i),
                "inj": pl.Series([n for n, _ip in E.INJECTORS]).gather(m["injector"][mi]),
                "injip": pl.Series([ip for _n, ip in E.INJECTORS]).gather(m["injector"][mi]),
                "ts": ev["t"][sel] // M.NS,
                "t": ev["t"][sel],
                "cs": m["t0"][mi] // M.NS,
                "c": m["t0"][mi],
                "na": num_attempts,
                "bc": self.kcat.gather(reply),
                "ip": pl.Series([v.ip for v in E.VMTAS]).gather(vm),
                "port": (1024 + (h >> np.uint64(20)) % np.uint64(60000)).astype(np.int64),
                "mid": msg_id_series(lead, self.seed, pool),
                "rproto": np.array([p.reception_protocol for p in E.POOLS])[pool],
                "attempt": is_attempt,
                "tls": is_attempt & tls_ok,
                "pname": pl.Series([E.KUMO_PROVIDER_NAME.get(p) for p in E.PROVIDERS], dtype=pl.String).gather(prov),
                "sess": sess,
                "qid": _io.hex_strings(eid, self.seed + 99),
                "sdomain": pl.Series([p.sending_domain for p in E.POOLS]).gather(pool),
            }
        )
        c = pl.col
        is_rec = c("kind") == M.RECEIVED
        content = (
            c("rcontent")
            .str.replace("{ip}", c("ip"), literal=True)
            .str.replace("{rcpt}", c("rcpt"), literal=True)
            .str.replace("{qid}", c("qid"), literal=True)
            .str.replace("{domain}", c("domain"), literal=True)
            .str.replace("{sdomain}", c("sdomain"), literal=True)
        )
        response = pl.when(is_rec).then(pl.lit(RECEPTION_RESPONSE)).otherwise(pl.concat_str([c("rpre"), content, c("rpost")]))
        peer = (
            pl.when(c("attempt")).then(pl.format('{{"name":"{}.","addr":"{}"}}', c("mxh"), c("mxip")))
            .when(is_rec).then(pl.format('{{"name":"{}","addr":"{}"}}', c("inj"), c("injip")))
            .otherwise(pl.lit("null"))
        )
        site = pl.when(c("attempt")).then(pl.format("{}->{}@smtp", c("src"), c("site_name"))).otherwise(pl.lit(""))
        egress = pl.when(is_rec).then(pl.lit("null")).otherwise(pl.format('"{}"', c("epool")))
        esource = pl.when(is_rec).then(pl.lit("null")).otherwise(pl.format('"{}"', c("src")))
        saddr = pl.when(c("attempt")).then(pl.format('{{"address":"{}:{}"}}', c("ip"), c("port"))).otherwise(pl.lit("null"))
        dproto = pl.when(c("attempt")).then(pl.lit('"ESMTP"')).otherwise(pl.lit("null"))
        bc = pl.when(is_rec).then(pl.lit("Uncategorized")).otherwise(c("bc"))
        tls_in = spec.rfc3339_times  # incoming TLS is logged since 2025.10.06
        tls = (
            pl.when(c("tls") | (is_rec & pl.lit(tls_in)))
            .then(pl.lit(f',"tls_cipher":"{TLS_CIPHER}","tls_protocol_version":"{TLS_VERSION}"'))
            .otherwise(pl.lit(""))
        )
        pname = pl.when(c("attempt") & c("pname").is_not_null()).then(pl.format(',"provider_name":"{}"', c("pname"))).otherwise(pl.lit(""))
        sess_id = pl.when(c("attempt") | is_rec).then(pl.concat_str([pl.lit(',"session_id":"'), _uuid(df["sess"]), pl.lit('"')])).otherwise(pl.lit(""))
        parts = [
            pl.lit('{"type":"'), c("type"),
            pl.lit('","id":"'), c("id"),
            pl.lit('","sender":"'), c("sender"),
            pl.lit('","recipient":"'), c("rcpt"),
            pl.lit('","queue":"'), c("job"), pl.lit(":"), c("tenant"), pl.lit("@"), c("domain"),
            pl.lit('","site":"'), site,
            pl.lit('","size":'), c("size").cast(pl.String),
            pl.lit(',"response":'), response,
            pl.lit(',"peer_address":'), peer,
            pl.lit(',"timestamp":'), c("ts").cast(pl.String),
        ]  # fmt: skip
        if spec.rfc3339_times:
            parts += [pl.lit(',"event_time":"'), _rfc3339(c("t")), pl.lit('"')]
        parts += [pl.lit(',"created":'), c("cs").cast(pl.String)]
        if spec.rfc3339_times:
            parts += [pl.lit(',"created_time":"'), _rfc3339(c("c")), pl.lit('"')]
        parts += [
            pl.lit(',"num_attempts":'), c("na").cast(pl.String),
            pl.lit(',"bounce_classification":"'), bc,
            pl.lit('","egress_pool":'), egress,
            pl.lit(',"egress_source":'), esource,
            pl.lit(',"source_address":'), saddr,
            pl.lit(',"feedback_report":null,"meta":{"job_id":"'), c("job"),
            pl.lit('"},"headers":{"Message-ID":"'), c("mid"),
            pl.lit('"},"delivery_protocol":'), dproto,
            pl.lit(',"reception_protocol":"'), c("rproto"),
            pl.lit(f'","nodeid":"{self.model.nodeids[node]}"'),
            tls, pname, sess_id,
            pl.lit("}\n"),
        ]  # fmt: skip
        line = pl.concat_str(parts)
        line = pl.when(c("kind").is_in(list(PYTHON_KINDS))).then(pl.lit(None, dtype=pl.String)).otherwise(line)
        return df.select(line.alias("line"))["line"]

    # ------------------------------------------------------------------ rare records
    def _times(self, node: int, rec: dict, t_ns: int, created_ns: int) -> None:
        rec["timestamp"] = t_ns // M.NS
        if E.NODES[node].rfc3339_times:
            rec["event_time"] = _rfc3339_py(t_ns)
        rec["created"] = created_ns // M.NS
        if E.NODES[node].rfc3339_times:
            rec["created_time"] = _rfc3339_py(created_ns)

    def rare_line(self, e: int, node: int, complaint_row: dict | None) -> str:
        model, m, ev = self.model, self.model.m, self.model.ev
        kind = int(ev["kind"][e])
        t = int(ev["t"][e])
        rid = int(ev["rcpt"][e])
        rcpt = self.lk.addr[rid]
        dom = E.DOMAINS[int(ev["dom"][e])]
        vm = E.VMTAS[int(ev["vmta"][e])]
        pool = E.POOLS[vm.pool]
        h = int(M.mix64(np.uint64(e), self.seed + 31))
        inbound_id = f"{int(M.mix64(np.uint64(e), self.seed + 41)):016x}{h:016x}"
        sess = f"{h:016x}{int(M.mix64(np.uint64(e), self.seed + 43)):016x}"
        session = f"{sess[:8]}-{sess[8:12]}-4{sess[13:16]}-a{sess[17:20]}-{sess[20:32]}"
        reply = E.REPLIES[int(ev["reply"][e])] if ev["reply"][e] >= 0 else None
        rec: dict = {"type": KIND_TYPE[kind]}
        if kind == M.REJECTED:
            inj = E.INJECTORS[h % len(E.INJECTORS)]
            rec.update(id="", sender=pool.sender, recipient=rcpt, queue="", site="", size=0)
            rec["response"] = _response(reply, rcpt, vm.ip, dom.name, pool.sending_domain)
            rec["peer_address"] = {"name": inj[0], "addr": inj[1]}
            self._times(node, rec, t, t)
            rec.update(num_attempts=0, bounce_classification=reply.kumo_cat, egress_pool=None, egress_source=None,
                       source_address=None, feedback_report=None, meta={}, headers={}, delivery_protocol=None,
                       reception_protocol="ESMTP", nodeid=model.nodeids[node], session_id=session)
        elif kind == M.RBOUNCE:
            mx = dom.mx[h % len(dom.mx)] if dom.mx else ("", "")
            rec.update(id=inbound_id, sender=pool.sender, recipient=rcpt, queue=pool.sender.split("@")[1], site="", size=0)
            rec["response"] = _response(reply, rcpt, vm.ip, dom.name, pool.sending_domain, command=False)
            rec["peer_address"] = {"name": mx[0], "addr": ""}
            self._times(node, rec, t, t)
            rec.update(num_attempts=0, bounce_classification=reply.kumo_cat, egress_pool=None, egress_source=None,
                       source_address=None, feedback_report=None, meta={}, headers={}, delivery_protocol=None,
                       reception_protocol="ESMTP", nodeid=model.nodeids[node])
        else:  # Feedback
            assert complaint_row is not None
            msg = int(ev["msg"][e])
            ua, rmta, rfrom = E.FBL_REPORTER.get(dom.provider, E.FBL_REPORTER["other"])
            job = model.jobs[int(m["job"][msg])][0]
            mid = complaint_row["message_id"]
            style = complaint_row["style"]
            original = (
                f"Received: from {vm.host} ({vm.host} [{vm.ip}])\r\n"
                f"From: \"Acme\" <news@{pool.sending_domain}>\r\nTo: <{rcpt}>\r\nSubject: Your offers this week\r\n"
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
                "authentication_results": [f"{rmta}; dkim=pass header.d={pool.sending_domain}; spf=pass smtp.mailfrom={pool.sender}"],
                "original_rcpto_to": [] if style == 3 else [rcpt],
                "reported_domain": [pool.sending_domain],
                "reported_uri": [],
                "extensions": {} if style < 2 else {"removal-recipient": [list(rcpt.encode("utf-8"))]},
                "original_message": original if style % 2 == 0 else list(original.encode("utf-8")),
                "supplemental_trace": {"recipient": rcpt, "job_id": job} if style >= 2 else None,
            }
            fbl_dom = f"fbl.{pool.sending_domain}"
            rec.update(id=inbound_id, sender=rfrom, recipient=f"fbl@{fbl_dom}", queue=fbl_dom, site="",
                       size=1800 + len(original))
            rec["response"] = {"code": 250, "enhanced_code": None, "content": "", "command": None}
            rec["peer_address"] = {"name": rmta, "addr": "203.0.113.250"}
            self._times(node, rec, t, t)
            rec.update(num_attempts=0, bounce_classification="Uncategorized", egress_pool=None, egress_source=None,
                       source_address=None, feedback_report=report, meta={}, headers={}, delivery_protocol=None,
                       reception_protocol="ESMTP", nodeid=model.nodeids[node], session_id=session)
        return orjson.dumps(rec).decode("utf-8") + "\n"


def _response(reply: E.Reply, rcpt: str, ip: str, domain: str, sdomain: str, command: bool = True) -> dict:
    text = reply.text.replace("{rcpt}", rcpt).replace("{ip}", ip).replace("{domain}", domain).replace("{sdomain}", sdomain)
    text = text.replace("{qid}", "0")
    enh = None if reply.enhanced is None else dict(zip(("class", "subject", "detail"), reply.enhanced, strict=True))
    return {"code": reply.code, "enhanced_code": enh, "content": text, "command": reply.command if command else None}


def _rfc3339_py(t_ns: int, nanos: bool = True) -> str:
    sec, frac = divmod(int(t_ns), M.NS)
    base = dt.datetime.fromtimestamp(sec, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z" if nanos else f"{base}Z"


def segment_name(t_ns: int, salt: int) -> str:
    opened = int(t_ns) - 1000 * (1 + int(M.mix64(np.uint64(int(t_ns) & 0xFFFFFFFF), salt)) % 997)
    sec, frac = divmod(opened, M.NS)
    return dt.datetime.fromtimestamp(sec, tz=dt.UTC).strftime("%Y%m%d-%H%M%S") + f".{frac:09d}"


def count_intact_lines(data: bytes) -> tuple[int, int]:
    """(complete newline-terminated lines, decompressed bytes) readable from a possibly cut zstd stream."""
    dobj = zstandard.ZstdDecompressor().decompressobj()
    out = b""
    try:
        out = dobj.decompress(data)
    except zstandard.ZstdError:
        out = b""
    return out.count(b"\n"), len(out)


def render(model: M.Model, landing: Path, *, seed: int, ledger: dict[str, np.ndarray], file_base: int,
           complaints: dict[int, dict], progress=None) -> KumoResult:
    """Write every KumoMTA node's segments and the webhook captures; fill ``ledger`` for rendered events."""
    ev = model.ev
    res = KumoResult()
    rnd = Renderer(model, seed)
    batch_of_msg = model.m["batch"]
    streams: list[tuple[int, str, np.ndarray]] = []
    for node in (E.KUMO1, E.KUMO2, E.KUMO3):
        rows = np.flatnonzero(ev["node"] == node)
        if E.NODES[node].recv_suffix:
            rec = ev["kind"][rows] == M.RECEIVED
            streams.append((node, "", rows[~rec]))
            streams.append((node, "_recv", rows[rec]))
        else:
            streams.append((node, "", rows))
    total = sum(len(r) for _n, _s, r in streams)
    done = 0
    open_stream = (E.KUMO1, "")
    for node, suffix, rows in streams:
        if len(rows) == 0:
            continue
        spec = E.NODES[node]
        lines = rnd.bulk_lines(rows, node)
        # rare records
        rare = np.flatnonzero(np.isin(ev["kind"][rows], PYTHON_KINDS))
        if len(rare):
            texts = [rnd.rare_line(int(rows[i]), node, complaints.get(int(ev["aux"][rows[i]]))) for i in rare]
            lines = lines.scatter(rare, pl.Series(texts, dtype=pl.String))
        # multi-recipient batches: the leader's line gets the recipient array, members disappear
        msg = ev["msg"][rows]
        in_batch = np.flatnonzero((msg >= 0) & (batch_of_msg[np.where(msg >= 0, msg, 0)] >= 0)
                                  & np.isin(ev["kind"][rows], (M.RECEIVED, M.DELIVERED)))
        keep = np.ones(len(rows), dtype=bool)
        leader_of = np.arange(len(rows))
        if len(in_batch):
            groups: dict[tuple[int, int], list[int]] = {}
            for i in in_batch.tolist():
                groups.setdefault((int(batch_of_msg[msg[i]]), int(ev["kind"][rows[i]])), []).append(i)
            upd_idx, upd_txt = [], []
            for _key, members in sorted(groups.items()):
                first = members[0]
                addrs = [rnd.lk.addr[int(ev["rcpt"][rows[i]])] for i in members]
                text = lines[first].replace(f'"recipient":{_json(addrs[0])}', '"recipient":' + orjson.dumps(addrs).decode(), 1)
                upd_idx.append(first)
                upd_txt.append(text)
                for i in members[1:]:
                    keep[i] = False
                    leader_of[i] = first
            lines = lines.scatter(upd_idx, pl.Series(upd_txt, dtype=pl.String))
        kept = np.flatnonzero(keep)
        t_rows = ev["t"][rows]
        if spec.webhook:
            _write_webhooks(model, landing, lines, rows, kept, leader_of, ledger, file_base, res, seed)
        else:
            origin = model.t_start + (node * 37 + (7 if suffix else 0)) * M.MINUTE
            bucket = (t_rows[kept] - origin) // (SEGMENT_HOURS * M.HOUR)
            seg_start = np.flatnonzero(np.diff(bucket, prepend=-1))
            # size rotation inside a time bucket
            starts: list[int] = []
            for a, b in zip(seg_start.tolist(), [*seg_start[1:].tolist(), len(kept)], strict=True):
                starts.extend(range(a, b, SEGMENT_RECORDS))
            ends = [*starts[1:], len(kept)]
            kept_lines = lines.gather(kept)
            for si, (a, b) in enumerate(zip(starts, ends, strict=True)):
                is_open = (node, suffix) == open_stream and si == len(starts) - 1
                _write_segment(model, landing, node, suffix, kept_lines.slice(a, b - a), rows[kept[a:b]],
                               kept[a:b], rows, leader_of, ledger, file_base, res, seed, is_open)
        done += len(rows)
        if progress:
            progress("kumo", done, total)
    return res


def _write_segment(model, landing, node, suffix, seg_lines, seg_eids, kept_pos, rows, leader_of, ledger, file_base,
                   res: KumoResult, seed, is_open) -> None:
    spec = E.NODES[node]
    t_first = int(model.ev["t"][seg_eids[0]])
    name = segment_name(t_first, seed + node) + suffix
    rel = f"kumo/{spec.name}/{name}"
    file_id = file_base + len(res.file_names)
    res.file_names.append(rel)
    n = len(seg_eids)
    line_no = np.arange(1, n + 1, dtype=np.int64)
    data_parts = _io.string_bytes(seg_lines)
    # fault: broken JSON lines in the first completed kumo1 main segment
    if not res.broken and node == E.KUMO1 and suffix == "" and not is_open and n >= 4:
        raw = b"".join(bytes(p) for p in data_parts)
        text_lines = raw.split(b"\n")[:-1]
        target = next((i for i, ln in enumerate(text_lines) if b'"type":"Delivery"' in ln and i > 0), None)
        if target is not None:
            half = text_lines[target][: len(text_lines[target]) // 2]
            garbage = b"\x1b[2K kumod: log writer interrupted"
            text_lines[target] = half
            text_lines.insert(1, garbage)
            raw = b"\n".join(text_lines) + b"\n"
            data_parts = [raw]
            line_no = np.where(np.arange(n) >= 1, line_no + 1, line_no)
            broken_eids = [int(seg_eids[target])]
            res.broken = {"path": rel, "lines": [2, target + 2], "garbage_line": 2, "half_record_line": target + 2}
            res.quarantine.append({"source_kind": "kumo", "source_file": rel, "source_line": 2, "reason": "invalid_json",
                                   "detail": "not JSON (log writer noise)"})
            res.quarantine.append({"source_kind": "kumo", "source_file": rel, "source_line": target + 2,
                                   "reason": "invalid_json", "detail": "record cut in half"})
            res.lost_eids.append(_with_members(np.array(broken_eids), kept_pos[[target]], rows, leader_of))
    compressed = _io.zstd_bytes(data_parts)
    intact = -1
    # fault: one completed kumo2 segment is cut short (compressed bytes truncated)
    if not res.truncated and node == E.KUMO2 and not is_open and n >= 10 and _is_middle(model, node, t_first):
        cut = max(16, int(len(compressed) * 0.55))
        compressed = compressed[:cut]
        intact, _nbytes = count_intact_lines(compressed)
        res.truncated = {"path": rel, "total_records": n, "intact_records": intact, "first_lost_line": intact + 1,
                         "compressed_bytes_kept": cut}
        res.quarantine.append({"source_kind": "kumo", "source_file": rel, "source_line": intact + 1,
                               "reason": "truncated_stream", "detail": "zstd stream ends early; later records lost"})
        lost_pos = np.arange(intact, n)
        res.lost_eids.append(_with_members(seg_eids[lost_pos], kept_pos[lost_pos], rows, leader_of))
    mtime = int(model.ev["t"][seg_eids[-1]] // M.NS) + 1
    _io.write_file(landing / rel, compressed, mtime=mtime, mode=_io.WRITABLE if is_open else _io.READ_ONLY)
    res.segments.append(SegmentInfo(rel, spec.name, n, complete=not is_open, truncated_intact=intact))
    # ledger: every event of this segment (members of batch lines share their leader's line)
    member_pos = np.flatnonzero(np.isin(leader_of, kept_pos) & (leader_of != np.arange(len(rows))))
    ledger["file"][seg_eids] = file_id
    ledger["line"][seg_eids] = line_no
    if len(member_pos):
        ledger["file"][rows[member_pos]] = file_id
        ledger["line"][rows[member_pos]] = line_no[np.searchsorted(kept_pos, leader_of[member_pos])]
    if is_open:
        res.open_segment = rel
        res.open_eids = np.concatenate([seg_eids, rows[member_pos]]) if len(member_pos) else seg_eids.copy()


def _with_members(eids: np.ndarray, positions: np.ndarray, rows: np.ndarray, leader_of: np.ndarray) -> np.ndarray:
    extra = rows[np.isin(leader_of, positions) & (leader_of != np.arange(len(rows)))]
    return np.concatenate([eids.astype(np.int64), extra.astype(np.int64)])


_MIDDLE_SEEN: dict[int, int] = {}


def _is_middle(model: M.Model, node: int, t_first: int) -> bool:
    """The truncated segment is the first kumo2 segment opened after the middle of its active period."""
    pool = next(i for i, p in enumerate(E.POOLS) if p.kumo_node == node)
    mid = model.cutover[pool] + (model.t_end - model.cutover[pool]) // 2
    return t_first >= mid


def _write_webhooks(model, landing, lines, rows, kept, leader_of, ledger, file_base, res: KumoResult, seed) -> None:
    """Webhook captures of ``kumo3``: two-hour files, three layouts, about 1.5 % repeated records."""
    ev = model.ev
    rng = np.random.default_rng(seed + 1009)
    n = len(kept)
    t = ev["t"][rows[kept]]
    bucket = (t - model.t_start) // (WEBHOOK_HOURS * M.HOUR)
    starts = np.flatnonzero(np.diff(bucket, prepend=-1))
    ends = np.concatenate([starts[1:], [n]])
    n_files = len(starts)
    file_of = np.searchsorted(starts, np.arange(n), side="right") - 1
    whole_file = 2 if n_files > 2 else n_files - 1
    # Output entries: every record once (its original), plus duplicate copies. A copy either follows
    # its original a few records later in the same file, or opens the next file (re-sent after the
    # collector rotated). Entries are ordered by (file, key); originals have key 4*pos.
    n_dup = min(n, max(3, n * 3 // 200))
    dup = np.sort(rng.choice(n, size=n_dup, replace=False))
    near_end = (ends[file_of[dup]] - dup <= 5) & (file_of[dup] + 1 < n_files)
    offset = rng.integers(0, 4, n_dup)
    dup_file = np.where(near_end, file_of[dup] + 1, file_of[dup])
    dup_key = np.where(near_end, 4 * starts[np.minimum(file_of[dup] + 1, n_files - 1)] - 1,
                       4 * np.minimum(dup + offset, ends[file_of[dup]] - 1) + 2)
    pos = np.concatenate([np.arange(n), dup])
    f_all = np.concatenate([file_of, dup_file])
    key = np.concatenate([4 * np.arange(n), dup_key])
    is_copy = np.concatenate([np.zeros(n, dtype=bool), np.ones(n_dup, dtype=bool)])
    order = np.lexsort((key, f_all))
    pos, f_all, is_copy = pos[order], f_all[order], is_copy[order]
    f_start = np.searchsorted(f_all, np.arange(n_files))
    f_end = np.concatenate([f_start[1:], [len(pos)]])
    body = lines.gather(kept).str.strip_chars_end("\n")
    line_of_pos = np.zeros(n, dtype=np.int64)
    for fi in range(n_files):
        a, b = int(f_start[fi]), int(f_end[fi])
        seq = pos[a:b]
        name = dt.datetime.fromtimestamp(int(t[starts[fi]] // M.NS), tz=dt.UTC).strftime("hook-%Y%m%d-%H%M%S") + ".json"
        rel = f"kumo/webhooks/{name}"
        file_id = file_base + len(res.file_names)
        res.file_names.append(rel)
        res.webhooks.append(rel)
        parts = body.gather(seq)
        idx = np.arange(len(seq))
        if fi == whole_file:
            frame = pl.DataFrame({"l": parts})
            text = frame.select((pl.lit("[\n") + pl.col("l").str.join(",\n") + pl.lit("\n]\n")).alias("x"))["x"]
            line = idx + 2
        elif fi % 3 == 1:
            sizes = rng.integers(1, 51, len(seq) // 1 + 1)
            cut = np.cumsum(sizes)
            batch = np.searchsorted(cut, idx, side="right")
            frame = pl.DataFrame({"l": parts, "b": batch})
            text = (frame.group_by("b", maintain_order=True).agg(pl.col("l").str.join(","))
                    .select((pl.lit("[") + pl.col("l") + pl.lit("]\n")).alias("x"))["x"])
            line = np.unique(batch, return_inverse=True)[1] + 1
        else:
            text = parts + "\n"
            line = idx + 1
        res.duplicates[rel] = int(is_copy[a:b].sum())
        data = b"".join(bytes(v) for v in _io.string_bytes(text))
        _io.write_file(landing / rel, data, mtime=int(t[ends[fi] - 1] // M.NS) + 5, mode=_io.READ_ONLY)
        orig = ~is_copy[a:b]
        ev_idx = rows[kept[seq[orig]]]
        ledger["file"][ev_idx] = file_id
        ledger["line"][ev_idx] = line[orig]
        line_of_pos[seq[orig]] = line[orig]
        members = np.flatnonzero(np.isin(leader_of, kept[seq[orig]]) & (leader_of != np.arange(len(rows))))
        if len(members):
            ledger["file"][rows[members]] = file_id
            ledger["line"][rows[members]] = line_of_pos[np.searchsorted(kept, leader_of[members])]
