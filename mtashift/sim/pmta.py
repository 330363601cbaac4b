"""Render the model's PowerMTA events as accounting files ``landing/pmta/<node>/acct-YYYY-MM-DD-NNNN.csv[.gz]``.

Shapes (formats.md Part A): one ``<acct-file>`` per node with ``records d,b,t,tq,r,f,rb,rs``; the
header is the union of every type's fields, each row fills only its own columns. Node ``pmta1``
writes UTC ``+0000`` times, CRLF line ends and drops trailing empty fields (rows shorter than the
header); for one period (a morning with ``iso-times no`` before a reload and a forced rotation) it
writes epoch integers. Node ``pmta2`` writes ``America/Chicago`` local times (``-0500``), LF line
ends, full-width rows, a non-default ``record-fields`` column order, and leaves ``bounceCat`` empty on
``d`` rows. File dates are the node's local dates; files rotate by size (``max-size``), files of
earlier days are gzipped (a log-rotation job compresses finished days).

Lines are built column-wise with polars string expressions and written straight from the Arrow
buffers, so no Python code runs per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from mtashift.sim import _io
from mtashift.sim import estate as E
from mtashift.sim import model as M

PMTA1_COLUMNS: tuple[str, ...] = (
    "type", "timeLogged", "timeQueued", "orig", "rcpt", "orcpt", "dsnAction", "dsnStatus", "dsnDiag",
    "dsnMta", "bounceCat", "srcType", "srcMta", "dlvType", "dlvSourceIp", "dlvDestinationIp",
    "dlvEsmtpAvailable", "dlvSize", "vmta", "jobId", "envId", "queue", "vmtaPool", "header_x-job",
    "header_Message-Id", "rcvSourceIp", "rcvDestinationIp", "dsnReportingMta", "format", "repSourceIp",
    "feedbackType", "userAgent", "reportingMta", "reportedDomain",
)  # fmt: skip
# pmta2: `record-fields` lists put the routing columns first.
PMTA2_COLUMNS: tuple[str, ...] = (
    "type", "timeLogged", "vmta", "vmtaPool", "jobId", "header_x-job", "rcpt", "orig", "dsnAction",
    "dsnStatus", "bounceCat", "dsnDiag", "dsnMta", "timeQueued", "queue", "dlvSourceIp",
    "dlvDestinationIp", "dlvEsmtpAvailable", "dlvSize", "srcType", "srcMta", "dlvType", "orcpt", "envId",
    "header_Message-Id", "rcvSourceIp", "rcvDestinationIp", "dsnReportingMta", "format", "repSourceIp",
    "feedbackType", "userAgent", "reportingMta", "reportedDomain",
)  # fmt: skip
COLUMNS = {E.PMTA1: PMTA1_COLUMNS, E.PMTA2: PMTA2_COLUMNS}

# row type codes used while rendering
TC_R, TC_D, TC_B, TC_X, TC_T, TC_TQ, TC_RB, TC_RS, TC_F = range(9)
TYPE_TEXT = ("r", "d", "b", "b", "t", "tq", "rb", "rs", "f")
KIND_TO_TC = {
    M.RECEIVED: TC_R,
    M.DELIVERED: TC_D,
    M.BOUNCED: TC_B,
    M.EXPIRED: TC_X,
    M.DEFERRED: TC_T,
    M.QDEFER: TC_TQ,
    M.RBOUNCE: TC_RB,
    M.RSTATUS: TC_RS,
    M.COMPLAINT: TC_F,
}
DBT = (TC_D, TC_B, TC_X, TC_T)
# Which record types carry which field (formats.md A.2.2-A.2.6).
FIELDS: dict[str, tuple[int, ...]] = {
    "timeQueued": DBT,
    "orig": (TC_R, *DBT, TC_RB, TC_RS, TC_F),
    "rcpt": (TC_R, *DBT, TC_RB, TC_RS, TC_F),
    "orcpt": (TC_R, *DBT, TC_RB, TC_RS),
    "dsnAction": (*DBT, TC_RS),
    "dsnStatus": (*DBT, TC_TQ, TC_RB, TC_RS),
    "dsnDiag": (*DBT, TC_TQ, TC_RB, TC_RS),
    "dsnMta": (*DBT, TC_TQ, TC_RB, TC_RS),
    "bounceCat": (*DBT, TC_RB, TC_RS),
    "srcType": (TC_R, *DBT, TC_RB, TC_RS),
    "srcMta": (TC_R, *DBT, TC_RB, TC_RS),
    "dlvType": (*DBT, TC_TQ),
    "dlvSourceIp": (*DBT, TC_TQ, TC_F),
    "dlvDestinationIp": (*DBT, TC_TQ),
    "dlvEsmtpAvailable": DBT,
    "dlvSize": (TC_D,),
    "vmta": (TC_R, *DBT, TC_TQ),
    "jobId": (TC_R, *DBT),
    "envId": (TC_R, *DBT, TC_RB, TC_RS, TC_F),
    "queue": (*DBT, TC_TQ),
    "vmtaPool": (TC_R, *DBT),
    "header_x-job": (TC_R, *DBT, TC_F),
    "header_Message-Id": (TC_R, *DBT, TC_F),
    "rcvSourceIp": (TC_R,),
    "rcvDestinationIp": (TC_R,),
    "dsnReportingMta": (TC_RB,),
    "format": (TC_RB, TC_RS, TC_F),
    "repSourceIp": (TC_F,),
    "feedbackType": (TC_F,),
    "userAgent": (TC_F,),
    "reportingMta": (TC_F,),
    "reportedDomain": (TC_F,),
}
# Only these columns can hold a comma or a double quote; the others come from a fixed vocabulary.
QUOTED = ("dsnDiag", "dlvEsmtpAvailable", "userAgent", "dsnStatus")

BAD_TIMESTAMP = "2026-13-45 25:61:00+0000"
BAD_UTF8_MARK = "\x01\x02"  # replaced by the bytes ff fe (invalid UTF-8) when the file is written
CHUNK_ROWS = 750_000
EPOCH_PERIOD_HOURS = 6


def max_size_bytes(messages_per_day: int) -> int:
    """The ``max-size`` each node's ``<acct-file>`` is configured with (a few files per day)."""
    est = messages_per_day * 0.5 * 2.3 * 420
    return max(1, math.ceil(est / 4 / 2**20)) * 2**20


def msg_id_series(msg_key: np.ndarray, seed: int, domain_idx: np.ndarray) -> pl.Series:
    """RFC 5322 Message-ID of each message (batch members share their leader's key)."""
    h = _io.hex_strings(msg_key, seed * 7 + 11)
    dom = pl.Series([p.sending_domain for p in E.POOLS]).gather(domain_idx)
    return pl.DataFrame({"h": h, "d": dom}).select(pl.format("<{}@mail.{}>", "h", "d"))["h"]


def spool_id_series(msg_key: np.ndarray, seed: int) -> pl.Series:
    return _io.hex_strings(msg_key, seed * 13 + 5, words=2)


@dataclass
class Lookups:
    """Small per-estate tables the renderers gather from."""

    model: M.Model
    addr: pl.Series = field(init=False)  # per recipient

    def __post_init__(self) -> None:
        m = self.model
        dom_names = pl.Series([d.name for d in E.DOMAINS]).gather(m.r_dom)
        self.addr = pl.DataFrame({"l": m.r_local, "d": dom_names}).select(pl.format("{}@{}", "l", "d"))["l"]


MX_WIDTH = 4


def mx_tables() -> tuple[pl.Series, pl.Series, np.ndarray]:
    hosts: list[str | None] = []
    ips: list[str | None] = []
    n_mx = np.zeros(len(E.DOMAINS), dtype=np.int64)
    for d in E.DOMAINS:
        n_mx[E.DOMAIN[d.name]] = max(1, len(d.mx))
        for k in range(MX_WIDTH):
            if d.mx:
                h, ip = d.mx[k % len(d.mx)]
                hosts.append(h)
                ips.append(ip)
            else:
                hosts.append(None)
                ips.append(None)
    return pl.Series(hosts, dtype=pl.String), pl.Series(ips, dtype=pl.String), n_mx


def reply_tables() -> dict[str, pl.Series]:
    diag, status, cat, code = [], [], [], []
    for r in E.REPLIES:
        line = E.reply_line(r)
        diag.append(f"smtp;{line}" if line else "")
        status.append(E.dsn_status_text(r.enhanced, r.code))
        cat.append(r.pmta_cat)
        code.append(r.code)
    return {
        "diag": pl.Series(diag),
        "status": pl.Series(status),
        "cat": pl.Series(cat),
    }


@dataclass
class Faults:
    bad_ts: int = -1  # eid
    bad_utf8: int = -1
    malformed: int = -1


@dataclass
class FileInfo:
    rel: str
    node: str
    rows: int = 0
    gz: bool = False
    period: int = 0  # 1 = written with epoch times (iso-times no)


@dataclass
class PmtaResult:
    files: list[FileInfo]
    quarantine: list[dict]
    fault_eids: list[int]
    epoch_file: str
    duplicate: tuple[str, str]  # (original, copy)
    max_size: int


def _quote(expr: pl.Expr) -> pl.Expr:
    return (
        pl.when(expr.str.contains(r'[",\r\n]'))
        .then(pl.lit('"') + expr.str.replace_all('"', '""', literal=True) + pl.lit('"'))
        .otherwise(expr)
    )


def _local_days(t_ns: np.ndarray, tz: str) -> np.ndarray:
    """Local calendar day number (days since 1970-01-01) of each instant in zone ``tz``."""
    if tz == "UTC":
        return (t_ns // M.DAY).astype(np.int32)
    s = pl.Series("t", t_ns).cast(pl.Datetime("ns", "UTC")).dt.convert_time_zone(tz)
    return s.dt.replace_time_zone(None).dt.date().cast(pl.Int32).to_numpy()


def _day_name(day: int) -> str:
    import datetime as _dt

    return (_dt.date(1970, 1, 1) + _dt.timedelta(days=int(day))).isoformat()


class _Writer:
    """Size-rotating accounting-file writer for one node (sequential, like PowerMTA's own)."""

    def __init__(self, root: Path, node: int, header: str, max_size: int, last_day: int) -> None:
        self.root = root
        self.name = E.NODES[node].name
        self.header = header.encode("utf-8")
        self.max_size = max_size
        self.last_day = last_day
        self.key: tuple[int, int] | None = None
        self.seq = -1
        self.bytes = 0
        self.lines = 0
        self.out: _io.Output | None = None
        self.files: list[FileInfo] = []
        self.last_t = 0

    def _open(self, day: int, period: int) -> None:
        gz = day < self.last_day
        rel = f"pmta/{self.name}/acct-{_day_name(day)}-{self.seq:04d}.csv" + (".gz" if gz else "")
        self.out = _io.Output(self.root / rel, compress="gzip" if gz else "none", mtime=0)
        self.out.write(self.header)
        self.bytes = len(self.header)
        self.lines = 1
        self.files.append(FileInfo(rel, self.name, 0, gz, period))

    def _close(self) -> None:
        if self.out is not None:
            self.out.mtime = int(self.last_t // M.NS) + 60
            self.out.close()
            self.out = None

    def write_chunk(self, lines: pl.Series, lens: np.ndarray, day: np.ndarray, period: np.ndarray, t: np.ndarray,
                    fault_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Write a chunk of lines; returns (index into ``self.files``, 1-based line number) per row."""
        n = len(lens)
        f_idx = np.zeros(n, dtype=np.int32)
        f_line = np.zeros(n, dtype=np.int64)
        key = day.astype(np.int64) * 4 + period
        bounds = np.flatnonzero(np.diff(key)) + 1
        for a, b in zip([0, *bounds.tolist()], [*bounds.tolist(), n], strict=True):
            k = (int(day[a]), int(period[a]))
            if k != self.key:
                self._close()
                # a new day restarts the sequence; a reload inside a day forces the next one
                self.seq = 0 if (self.key is None or k[0] != self.key[0]) else self.seq + 1
                self.key = k
                self._open(*k)
            run = lens[a:b]
            before = self.bytes + np.concatenate([[0], np.cumsum(run)[:-1]])
            step = before // self.max_size  # lines starting past the limit go to the next file(s)
            subs = np.flatnonzero(np.diff(step, prepend=-1))
            for sa, sb in zip(subs.tolist(), [*subs[1:].tolist(), b - a], strict=True):
                if step[sa] > 0:
                    self._close()
                    self.seq += 1
                    self._open(*k)
                ga, gb = a + sa, a + sb
                f_idx[ga:gb] = len(self.files) - 1
                f_line[ga:gb] = self.lines + 1 + np.arange(gb - ga)
                chunk = lines.slice(ga, gb - ga)
                if fault_rows[ga:gb].any():
                    data = b"".join(bytes(v) for v in _io.string_bytes(chunk))
                    self.out.write(data.replace(BAD_UTF8_MARK.encode(), b"\xff\xfe"))
                else:
                    self.out.write(_io.string_bytes(chunk))
                self.lines += gb - ga
                self.files[-1].rows += gb - ga
                self.bytes += int(lens[ga:gb].sum())
                self.last_t = int(t[gb - 1])
        return f_idx, f_line

    def finish(self) -> None:
        self._close()


def render(model: M.Model, landing: Path, *, seed: int, ledger: dict[str, np.ndarray], progress=None) -> PmtaResult:
    """Write every PowerMTA node's accounting files; fill ``ledger`` (file id, line) for each rendered event."""
    ev = model.ev
    m = model.m
    lk = Lookups(model)
    mx_host, mx_ip, n_mx = mx_tables()
    rt = reply_tables()
    max_size = max_size_bytes(model.messages_per_day)
    all_files: list[FileInfo] = []
    quarantine: list[dict] = []
    fault_eids: dict[str, int] = {}
    fault_locations: dict[str, tuple[int, int]] = {}
    for node in (E.PMTA1, E.PMTA2):
        spec = E.NODES[node]
        rows = np.flatnonzero(ev["node"] == node)
        if len(rows) == 0:
            continue
        t_all = ev["t"][rows]
        days = _local_days(t_all, spec.tz)
        period = np.zeros(len(rows), dtype=np.int64)
        epoch_day = -1
        if node == E.PMTA1:
            distinct = np.unique(days)
            epoch_day = int(distinct[min(1, len(distinct) - 1)])
            period_end = epoch_day * M.DAY + EPOCH_PERIOD_HOURS * M.HOUR
            period = ((days == epoch_day) & (t_all >= epoch_day * M.DAY) & (t_all < period_end)).astype(np.int64)
            # after the reload the same day continues in a new file (period 2)
            period = np.where((days == epoch_day) & (t_all >= period_end), 2, period)
        faults = Faults()
        kinds = ev["kind"][rows]
        d_rows = np.flatnonzero(kinds == M.DELIVERED)
        if node == E.PMTA1:
            candidates = d_rows[period[d_rows] != 1]
            if len(candidates):
                faults.bad_ts = int(rows[candidates[len(candidates) // 2]])
            faults.malformed = int(rows[-1])
        else:
            distinct = np.unique(days)
            target_day = distinct[min(1, len(distinct) - 1)]
            cand = d_rows[days[d_rows] == target_day]
            if len(cand) == 0:
                cand = d_rows
            if len(cand):
                faults.bad_utf8 = int(rows[cand[min(5, len(cand) - 1)]])
        columns = COLUMNS[node]
        header = ",".join(columns) + spec.line_end
        writer = _Writer(landing, node, header, max_size, int(days.max()))
        base_file = len(all_files)
        for c0 in range(0, len(rows), CHUNK_ROWS):
            sel = rows[c0 : c0 + CHUNK_ROWS]
            lines = _render_lines(model, sel, node, period[c0 : c0 + CHUNK_ROWS] == 1, lk, mx_host, mx_ip, n_mx, rt, seed, faults)
            lens = lines.str.len_bytes().to_numpy().astype(np.int64)
            fault_rows = sel == faults.bad_utf8
            f_idx, f_line = writer.write_chunk(lines, lens, days[c0 : c0 + CHUNK_ROWS], period[c0 : c0 + CHUNK_ROWS], ev["t"][sel], fault_rows)
            ledger["file"][sel] = f_idx + base_file
            ledger["line"][sel] = f_line
            for name, eid in (("bad_ts", faults.bad_ts), ("bad_utf8", faults.bad_utf8), ("malformed", faults.malformed)):
                hit = np.flatnonzero(sel == eid)
                if len(hit):
                    fault_locations[name] = (int(f_idx[hit[0]]) + base_file, int(f_line[hit[0]]))
            if progress:
                progress("pmta", int(min(c0 + CHUNK_ROWS, len(rows))), int(len(rows)))
        writer.finish()
        all_files.extend(writer.files)
        for name, eid in (("bad_ts", faults.bad_ts), ("bad_utf8", faults.bad_utf8), ("malformed", faults.malformed)):
            if eid >= 0:
                fault_eids[name] = eid

    epoch_file = next((f.rel for f in all_files if f.period == 1), "")
    reasons = {
        "bad_ts": ("bad_timestamp", "timeLogged is not a valid time"),
        "bad_utf8": ("invalid_utf8", "bytes ff fe inside dsnDiag"),
        "malformed": ("malformed_csv", "unterminated quoted field running to the end of the file"),
    }
    for name, (fi, line) in sorted(fault_locations.items()):
        reason, detail = reasons[name]
        quarantine.append(
            {"source_kind": "pmta", "source_file": all_files[fi].rel, "source_line": line, "reason": reason, "detail": detail}
        )
    faulty = {all_files[fi].rel for fi, _l in fault_locations.values()}

    # a byte-identical copy of one clean file under the next free name of its day
    dup = ("", "")
    for f in all_files:
        if f.node != "pmta2" or f.rel in faulty or f.rel == epoch_file:
            continue
        day_prefix = f.rel.rsplit("-", 1)[0]
        same_day = [g.rel for g in all_files if g.rel.rsplit("-", 1)[0] == day_prefix]
        last_seq = max(int(r.rsplit("-", 1)[1].split(".")[0]) for r in same_day)
        ext = ".csv.gz" if f.gz else ".csv"
        copy_rel = f"{day_prefix}-{last_seq + 1:04d}{ext}"
        src = landing / f.rel
        dst = landing / copy_rel
        st = src.stat()
        _io.write_file(dst, src.read_bytes(), mtime=int(st.st_mtime), mode=_io.READ_ONLY)
        dup = (f.rel, copy_rel)
        break
    return PmtaResult(all_files, quarantine, sorted(fault_eids.values()), epoch_file, dup, max_size)


def _render_lines(model: M.Model, sel: np.ndarray, node: int, epoch: np.ndarray, lk: Lookups,
                  mx_host: pl.Series, mx_ip: pl.Series, n_mx: np.ndarray, rt: dict[str, pl.Series],
                  seed: int, faults: Faults) -> pl.Series:
    ev = model.ev
    m = model.m
    spec = E.NODES[node]
    kind = ev["kind"][sel]
    tc = np.zeros(len(sel), dtype=np.int8)
    for k, code in KIND_TO_TC.items():
        tc[kind == k] = code
    msg = ev["msg"][sel]
    has_msg = msg >= 0
    mi = np.where(has_msg, msg, 0)
    rcpt = ev["rcpt"][sel]
    ri = np.where(rcpt >= 0, rcpt, 0)
    vm = ev["vmta"][sel].astype(np.int64)
    dom = ev["dom"][sel].astype(np.int64)
    pool = np.array([v.pool for v in E.VMTAS], dtype=np.int64)[vm]
    reply = ev["reply"][sel].astype(np.int64)
    aux = ev["aux"][sel].astype(np.int64)
    eid = sel.astype(np.int64)
    t_s = ev["t"][sel] // M.NS
    t0_s = m["t0"][mi] // M.NS
    h = M.mix64(eid.astype(np.uint64), seed)
    mx_k = (h % n_mx[dom].astype(np.uint64)).astype(np.int64)
    mx_i = dom * MX_WIDTH + mx_k
    prov = np.array([E.P[d.provider] for d in E.DOMAINS], dtype=np.int64)[dom]
    job = m["job"][mi]
    jobs = pl.Series([j for j, _t in model.jobs])
    vnames = pl.Series([v.name for v in E.VMTAS])
    vips = pl.Series([v.ip for v in E.VMTAS])
    pnames = pl.Series([p.name for p in E.POOLS])
    senders = pl.Series([p.sender for p in E.POOLS])
    sdomains = pl.Series([p.sending_domain for p in E.POOLS])
    dnames = pl.Series([d.name for d in E.DOMAINS])
    qdoms = pl.Series([d.queue or d.name for d in E.DOMAINS])
    esmtp = pl.Series([d.esmtp for d in E.DOMAINS])
    inj = pl.Series([f"{h_} ({ip})" for h_, ip in E.INJECTORS])
    inj_ip = pl.Series([ip for _h, ip in E.INJECTORS])
    ua = pl.Series([E.FBL_REPORTER.get(p, E.FBL_REPORTER["other"])[0] for p in E.PROVIDERS])
    rmta = pl.Series([E.FBL_REPORTER.get(p, E.FBL_REPORTER["other"])[1] for p in E.PROVIDERS])
    diag_reply = np.where(tc == TC_X, np.where(aux >= 0, aux, reply), reply)
    diag_reply = np.where(diag_reply >= 0, diag_reply, 0)
    msg_key = m["lead"][mi]

    fmt_time = _time_formatter(spec.tz)
    df = pl.DataFrame(
        {
            "tc": tc,
            "eid": eid,
            "t": t_s,
            "t0": t0_s,
            "epoch": epoch,
            "has_msg": has_msg,
            "rcpt": lk.addr.gather(ri),
            "vmta": vnames.gather(vm),
            "ip": vips.gather(vm),
            "pool": pnames.gather(pool),
            "orig": senders.gather(pool),
            "sdomain": sdomains.gather(pool),
            "domain": dnames.gather(dom),
            "qdom": qdoms.gather(dom),
            "mxh": mx_host.gather(mx_i),
            "mxip": mx_ip.gather(mx_i),
            "esmtp": esmtp.gather(dom),
            "job": jobs.gather(job),
            "size": m["size"][mi],
            "src": inj.gather(m["injector"][mi]),
            "src_ip": inj_ip.gather(m["injector"][mi]),
            "srctype": np.array([p.src_type for p in E.POOLS])[pool],
            "diag_t": rt["diag"].gather(diag_reply),
            "status_t": rt["status"].gather(np.where(reply >= 0, reply, 0)),
            "cat": rt["cat"].gather(np.where(reply >= 0, reply, 0)),
            "qid": _io.hex_strings(eid, seed + 99),
            "mid": msg_id_series(msg_key, seed, pool),
            "ua": ua.gather(prov),
            "rmta": rmta.gather(prov),
            "jmrp": prov == E.P["microsoft"],
            "nx": np.array([d.kind == "nxdomain" for d in E.DOMAINS])[dom],
            "relayed": reply == E.R["rs.relayed"],
        }
    )
    c = pl.col
    tcol = c("tc")

    def only(types: tuple[int, ...], value: pl.Expr) -> pl.Expr:
        return pl.when(tcol.is_in(list(types))).then(value).otherwise(pl.lit(None, dtype=pl.String))

    diag = (
        c("diag_t")
        .str.replace("{ip}", c("ip"), literal=True)
        .str.replace("{rcpt}", c("rcpt"), literal=True)
        .str.replace("{qid}", c("qid"), literal=True)
        .str.replace("{domain}", c("domain"), literal=True)
        .str.replace("{sdomain}", c("sdomain"), literal=True)
    )
    if faults.bad_utf8 >= 0:
        diag = pl.when(c("eid") == faults.bad_utf8).then(diag + pl.lit(" " + BAD_UTF8_MARK + " (d\u00e9lai)")).otherwise(diag)
    time_logged = pl.when(c("epoch")).then(c("t").cast(pl.String)).otherwise(fmt_time(c("t")))
    if faults.bad_ts >= 0:
        time_logged = pl.when(c("eid") == faults.bad_ts).then(pl.lit(BAD_TIMESTAMP)).otherwise(time_logged)
    time_queued = pl.when(c("epoch")).then(c("t0").cast(pl.String)).otherwise(fmt_time(c("t0")))
    mta_pair = pl.format("{} ({})", c("mxh"), c("mxip"))
    is_x = tcol == TC_X
    # expiries and bounces for domains without MX come from no SMTP session: no dlv*/dsnMta values
    no_session = is_x | (c("nx") & (tcol == TC_B))
    values: dict[str, pl.Expr] = {
        "type": _type_expr(tcol),
        "timeLogged": time_logged,
        "timeQueued": time_queued,
        "orig": c("orig"),
        "rcpt": c("rcpt"),
        "orcpt": pl.when(c("pool") == "pool-trans").then(pl.lit("rfc822;") + c("rcpt")).otherwise(None),
        "dsnAction": pl.when(tcol == TC_D).then(pl.lit("relayed"))
        .when(tcol.is_in([TC_B, TC_X])).then(pl.lit("failed"))
        .when(tcol == TC_T).then(pl.lit("delayed"))
        .when(c("relayed")).then(pl.lit("relayed"))
        .otherwise(pl.lit("delayed")),
        "dsnStatus": pl.when(is_x).then(pl.lit("4.4.7 (delivery time expired)")).otherwise(c("status_t")),
        "dsnDiag": diag,
        "dsnMta": pl.when(no_session).then(None).otherwise(mta_pair),
        "bounceCat": pl.when(is_x).then(pl.lit("message-expired"))
        .when(tcol == TC_D).then(pl.lit("success") if spec.success_category else pl.lit(None, dtype=pl.String))
        .otherwise(c("cat")),
        "srcType": pl.when(tcol.is_in([TC_RB, TC_RS])).then(pl.lit("smtp")).otherwise(c("srctype")),
        "srcMta": pl.when(tcol.is_in([TC_RB, TC_RS])).then(mta_pair).otherwise(c("src")),
        "dlvType": pl.when(no_session).then(None).otherwise(pl.lit("smtp")),
        "dlvSourceIp": pl.when(no_session & (tcol != TC_F)).then(None).otherwise(c("ip")),
        "dlvDestinationIp": pl.when(no_session).then(None).otherwise(c("mxip")),
        "dlvEsmtpAvailable": pl.when(no_session).then(None).otherwise(c("esmtp")),
        "dlvSize": c("size").cast(pl.String),
        "vmta": pl.when(tcol == TC_R).then(c("pool")).otherwise(c("vmta")),
        "jobId": c("job"),
        "envId": pl.lit(None, dtype=pl.String),
        "queue": pl.format("{}/{}", c("qdom"), c("vmta")),
        "vmtaPool": c("pool"),
        "header_x-job": c("job"),
        "header_Message-Id": c("mid"),
        "rcvSourceIp": c("src_ip"),
        "rcvDestinationIp": pl.lit(spec.listener_ip),
        "dsnReportingMta": c("mxh"),
        "format": pl.when(tcol == TC_F).then(pl.when(c("jmrp")).then(pl.lit("jmrp")).otherwise(pl.lit("arf"))).otherwise(pl.lit("dsn")),
        "repSourceIp": pl.lit(spec.public_ip),
        "feedbackType": pl.lit("abuse"),
        "userAgent": c("ua"),
        "reportingMta": c("rmta"),
        "reportedDomain": c("sdomain"),
    }
    exprs = []
    for name in COLUMNS[node]:
        v = values[name]
        if name in FIELDS:
            v = only(FIELDS[name], v)
        if name in QUOTED:
            v = _quote(v)
        exprs.append(v.fill_null(""))
    line = pl.concat_str(exprs, separator=",")
    if spec.drop_trailing_empty:
        line = line.str.strip_chars_end(",")
    if faults.malformed >= 0:
        # an unterminated quote opening the second field; nothing follows but the end of the file
        line = pl.when(c("eid") == faults.malformed).then(line.str.replace(",", ',"', literal=True)).otherwise(line)
    line = line + pl.lit(spec.line_end)
    return df.select(line.alias("line"))["line"]


def _type_expr(tcol: pl.Expr) -> pl.Expr:
    expr = pl.lit(None, dtype=pl.String)
    for code, text in enumerate(TYPE_TEXT):
        expr = pl.when(tcol == code).then(pl.lit(text)).otherwise(expr)
    return expr


def _time_formatter(tz: str):
    def fmt(col: pl.Expr) -> pl.Expr:
        dt = pl.from_epoch(col, time_unit="s")
        if tz == "UTC":
            return dt.dt.strftime("%Y-%m-%d %H:%M:%S+0000")
        return dt.dt.replace_time_zone("UTC").dt.convert_time_zone(tz).dt.strftime("%Y-%m-%d %H:%M:%S%z")

    return fmt
