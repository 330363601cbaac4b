"""Render the model's PowerMTA events as accounting files ``landing/pmta/<node>/acct-YYYY-MM-DD-NNNN.csv[.gz]``.

Shapes (formats.md Part A): one ``<acct-file>`` per node with ``records d,b,t,tq,r,f,rb,rs``; the
header is the union of every type's fields, each row fills only its own columns. Node ``pmta1``
writes UTC ``+0000`` times, CRLF line ends and drops trailing empty fields (rows shorter than the
header); for one period (a morning with ``iso-times no`` before a reload and a forced rotation) it
writes epoch integers. Node ``pmta2`` writes ``America/Chicago`` local times (``-0500``), LF line
ends, full-width rows, a non-default ``record-fields`` column order, and leaves ``bounceCat`` empty on
``d`` rows. File dates are the node's local dates; files rotate by size (``max-size``), files of
earlier days are gzipped (a log-rotation job compresses finished days).

Lines come from a line template (:mod:`mtashift.sim._template`: key-dependent text rendered once per
distinct key combination, per-row variables gathered) and are written straight from the Arrow
buffers, so no Python code runs per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from mtashift.sim import _io
from mtashift.sim import estate as E
from mtashift.sim import model as M
from mtashift.sim._template import Low, Template, TimeTable, Var, chars_to_series, hex_words

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

BLANK = pl.Series([""], dtype=pl.String)
BAD_TIMESTAMP = "2026-13-45 25:61:00+0000"
BAD_UTF8_MARK = "\x01\x02"  # replaced by the bytes ff fe (invalid UTF-8) when the file is written
CHUNK_ROWS = 750_000
EPOCH_PERIOD_HOURS = 6


def max_size_bytes(messages_per_day: int) -> int:
    """The ``max-size`` each node's ``<acct-file>`` is configured with (a few files per day)."""
    est = messages_per_day * 0.5 * 2.3 * 420
    return max(1, math.ceil(est / 4 / 2**20)) * 2**20


def msg_id_series(msg_key: np.ndarray, seed: int, pool_idx: np.ndarray) -> pl.Series:
    """RFC 5322 Message-ID of each message (batch members share their leader's key)."""
    h = chars_to_series(hex_words(msg_key, seed * 7 + 11))
    dom = pl.Series([p.sending_domain for p in E.POOLS]).gather(pool_idx)
    return pl.DataFrame({"h": h, "d": dom}).select(pl.format("<{}@mail.{}>", "h", "d"))["h"]


class Lookups:
    """Per-estate tables the renderers gather from (built once, shared read-only by both renderers)."""

    def __init__(self, model: M.Model, seed: int) -> None:
        m = model
        dom_names = pl.Series([d.name for d in E.DOMAINS]).gather(m.r_dom)
        self.addr = pl.DataFrame({"l": m.r_local, "d": dom_names}).select(pl.format("{}@{}", "l", "d"))["l"]
        self.addr_blank = pl.concat([self.addr, BLANK])  # index len(addr) = no recipient
        msgs = np.arange(m.n_messages)
        # per message: the Message-ID local part and the KumoMTA spool id
        self.mid_hex = chars_to_series(hex_words(msgs, seed * 7 + 11))
        self.spool_id = chars_to_series(hex_words(msgs, seed * 13 + 5, words=2))


def lookups(model: M.Model, seed: int) -> Lookups:
    cached = getattr(model, "_lookups", None)
    if cached is None:
        cached = Lookups(model, seed)
        model._lookups = cached  # type: ignore[attr-defined]
    return cached


MX_WIDTH = 4


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

    def write_chunk(
        self,
        lines: pl.Series,
        lens: np.ndarray,
        day: np.ndarray,
        period: np.ndarray,
        t: np.ndarray,
        fault_rows: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
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
                hits = np.flatnonzero(fault_rows[ga:gb])
                cut = ga
                for hpos in (ga + hits).tolist():
                    self.out.write(_io.string_bytes(lines.slice(cut, hpos - cut)))
                    self.out.write(lines[hpos].encode("utf-8").replace(BAD_UTF8_MARK.encode(), b"\xff\xfe"))
                    cut = hpos + 1
                self.out.write(_io.string_bytes(lines.slice(cut, gb - cut)))
                self.lines += gb - ga
                self.files[-1].rows += gb - ga
                self.bytes += int(lens[ga:gb].sum())
                self.last_t = int(t[gb - 1])
        return f_idx, f_line

    def finish(self) -> None:
        self._close()


REASONS = {
    "bad_ts": ("bad_timestamp", "timeLogged is not a valid time"),
    "bad_utf8": ("invalid_utf8", "bytes ff fe inside dsnDiag"),
    "malformed": ("malformed_csv", "unterminated quoted field running to the end of the file"),
}


@dataclass
class NodeResult:
    files: list[FileInfo]
    quarantine: list[dict]
    fault_eids: list[int]


def render_node(
    model: M.Model,
    landing: Path,
    node: int,
    *,
    seed: int,
    ledger: dict[str, np.ndarray],
    file_base: int,
    progress=None,
) -> NodeResult:
    """Write one PowerMTA node's accounting files; fill ``ledger`` (file id, line) for its events."""
    ev = model.ev
    spec = E.NODES[node]
    lk = lookups(model, seed)
    tables = TimeTables(model)
    max_size = max_size_bytes(model.messages_per_day)
    rows = model.node_rows(node)
    if len(rows) == 0:
        return NodeResult([], [], [])
    t_all = ev["t"][rows]
    days = _local_days(t_all, spec.tz)
    period = np.zeros(len(rows), dtype=np.int64)
    if node == E.PMTA1:
        # one morning written with iso-times off; a reload at 06:00 forces a new file for the rest of the day
        distinct = np.unique(days)
        epoch_day = int(distinct[min(1, len(distinct) - 1)])
        period_end = epoch_day * M.DAY + EPOCH_PERIOD_HOURS * M.HOUR
        period = ((days == epoch_day) & (t_all < period_end)).astype(np.int64)
        period = np.where((days == epoch_day) & (t_all >= period_end), 2, period)
    faults = Faults()
    d_rows = np.flatnonzero(ev["kind"][rows] == M.DELIVERED)
    if node == E.PMTA1:
        candidates = d_rows[period[d_rows] != 1]
        if len(candidates):
            faults.bad_ts = int(rows[candidates[len(candidates) // 2]])
        faults.malformed = int(rows[-1])
    else:
        distinct = np.unique(days)
        cand = d_rows[days[d_rows] == distinct[min(1, len(distinct) - 1)]]
        if len(cand) == 0:
            cand = d_rows
        if len(cand):
            faults.bad_utf8 = int(rows[cand[min(5, len(cand) - 1)]])
    tmpl = build_template(node, [j for j, _t in model.jobs])
    writer = _Writer(landing, node, ",".join(COLUMNS[node]) + spec.line_end, max_size, int(days.max()))
    locations: dict[str, tuple[int, int]] = {}
    named = {"bad_ts": faults.bad_ts, "bad_utf8": faults.bad_utf8, "malformed": faults.malformed}
    for c0 in range(0, len(rows), CHUNK_ROWS):
        sel = rows[c0 : c0 + CHUNK_ROWS]
        part = slice(c0, c0 + CHUNK_ROWS)
        lines = _render_lines(model, sel, node, period[part] == 1, lk, tmpl, seed, faults, tables)
        lens = lines.str.len_bytes().to_numpy().astype(np.int64)
        f_idx, f_line = writer.write_chunk(
            lines, lens, days[part], period[part], ev["t"][sel], sel == faults.bad_utf8
        )
        ledger["file"][sel] = f_idx + file_base
        ledger["line"][sel] = f_line
        for name, eid in named.items():
            hit = np.flatnonzero(sel == eid)
            if len(hit):
                locations[name] = (int(f_idx[hit[0]]), int(f_line[hit[0]]))
        if progress:
            progress(f"pmta:{spec.name}", min(c0 + CHUNK_ROWS, len(rows)), len(rows))
    writer.finish()
    quarantine = []
    for name, (fi, line) in sorted(locations.items()):
        reason, detail = REASONS[name]
        quarantine.append(
            {
                "source_kind": "pmta",
                "source_file": writer.files[fi].rel,
                "source_line": line,
                "reason": reason,
                "detail": detail,
            }
        )
    return NodeResult(writer.files, quarantine, sorted(e for e in named.values() if e >= 0))


def finalize(landing: Path, model: M.Model, results: list[NodeResult]) -> PmtaResult:
    """Merge the nodes' results and add the duplicate file: a byte-identical copy of one clean file."""
    files = [f for r in results for f in r.files]
    quarantine = [q for r in results for q in r.quarantine]
    faulty = {q["source_file"] for q in quarantine}
    epoch_file = next((f.rel for f in files if f.period == 1), "")
    dup = ("", "")
    for f in files:
        if f.node != "pmta2" or f.rel in faulty or f.rel == epoch_file:
            continue
        day_prefix = f.rel.rsplit("-", 1)[0]
        last_seq = max(
            int(g.rel.rsplit("-", 1)[1].split(".")[0]) for g in files if g.rel.rsplit("-", 1)[0] == day_prefix
        )
        copy_rel = f"{day_prefix}-{last_seq + 1:04d}" + (".csv.gz" if f.gz else ".csv")
        src = landing / f.rel
        _io.write_file(
            landing / copy_rel, src.read_bytes(), mtime=int(src.stat().st_mtime), mode=_io.READ_ONLY
        )
        dup = (f.rel, copy_rel)
        break
    return PmtaResult(
        files,
        quarantine,
        sorted(e for r in results for e in r.fault_eids),
        epoch_file,
        dup,
        max_size_bytes(model.messages_per_day),
    )


def render(
    model: M.Model, landing: Path, *, seed: int, ledger: dict[str, np.ndarray], progress=None
) -> PmtaResult:
    """Both nodes in sequence (the generator runs :func:`render_node` per node on worker threads)."""
    results = [
        render_node(
            model, landing, node, seed=seed, ledger=ledger, file_base=(i + 1) << 16, progress=progress
        )
        for i, node in enumerate((E.PMTA1, E.PMTA2))
    ]
    return finalize(landing, model, results)


def split_reply(reply: E.Reply) -> tuple[str, str, int]:
    """A reply's one-line text split around its one high-cardinality placeholder.

    Returns (head, tail, var) with var 0 = none, 1 = {qid}, 2 = {rcpt}; low-cardinality
    placeholders ({ip}, {domain}, {sdomain}) stay in head/tail for the template to fill.
    """
    line = E.reply_line(reply)
    for var, ph in ((1, "{qid}"), (2, "{rcpt}")):
        if ph in line:
            head, tail = line.split(ph, 1)
            if "{qid}" in tail or "{rcpt}" in tail:
                raise ValueError(f"reply {reply.key} has two high-cardinality placeholders")
            return head, tail, var
    return line, "", 0


REPLY_SPLIT = [split_reply(r) for r in E.REPLIES]
REPLY_VAR = np.array([0] + [v for _h, _t, v in REPLY_SPLIT], dtype=np.int8)  # indexed by reply + 1


def fill_low(text: str, vmta: int, dom: int) -> str:
    v = E.VMTAS[vmta]
    return (
        text.replace("{ip}", v.ip)
        .replace("{domain}", E.DOMAINS[dom].name)
        .replace("{sdomain}", E.POOLS[v.pool].sending_domain)
    )


def csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(ch in text for ch in ',"\r\n') else text


def _mx(k: dict[str, int]) -> tuple[str, str] | None:
    d = E.DOMAINS[k["mx"] // MX_WIDTH]
    if not d.mx:
        return None
    return d.mx[(k["mx"] % MX_WIDTH) % len(d.mx)]


def _value_fns(node: int, jobs: list[str]) -> dict[str, Low | Var | tuple]:
    """Per column: how its text is made (Low from keys, a Var, or the split diag)."""
    spec = E.NODES[node]

    def vm(k):
        return E.VMTAS[k["vmta"]]

    def reply(k):
        return E.REPLIES[k["reply"] - 1] if k["reply"] > 0 else None

    def no_session(k):
        return k["tc"] == TC_X or (k["tc"] == TC_B and _mx(k) is None)

    def action(k):
        tc = k["tc"]
        if tc == TC_D:
            return "relayed"
        if tc in (TC_B, TC_X):
            return "failed"
        if tc == TC_RS and reply(k) is not None and reply(k).key == "rs.relayed":
            return "relayed"
        return "delayed"

    def status(k):
        if k["tc"] == TC_X:
            return "4.4.7 (delivery time expired)"
        r = reply(k)
        return csv_field(E.dsn_status_text(r.enhanced, r.code)) if r else ""

    def bounce_cat(k):
        tc = k["tc"]
        if tc == TC_X:
            return "message-expired"
        if tc == TC_D:
            return "success" if spec.success_category else ""
        r = reply(k)
        return r.pmta_cat if r else ""

    def mta_pair(k):
        mx = _mx(k)
        return f"{mx[0]} ({mx[1]})" if mx else ""

    def session_value(fn):
        return lambda k: "" if no_session(k) else fn(k)

    def diag_head(k):
        r = reply(k)
        if r is None:
            return ""
        head, tail, _v = REPLY_SPLIT[k["reply"] - 1]
        text = fill_low(head, k["vmta"], k["mx"] // MX_WIDTH)
        full = text + fill_low(tail, k["vmta"], k["mx"] // MX_WIDTH)
        prefix = "smtp;" if (head or tail) else ""
        return ('"' + (prefix + text).replace('"', '""')) if _needs_quote(full) else prefix + text

    def diag_tail(k):
        r = reply(k)
        if r is None:
            return ""
        head, tail, _v = REPLY_SPLIT[k["reply"] - 1]
        text = fill_low(tail, k["vmta"], k["mx"] // MX_WIDTH)
        full = fill_low(head, k["vmta"], k["mx"] // MX_WIDTH) + text
        return (text.replace('"', '""') + '"') if _needs_quote(full) else text

    def prov(k):
        return E.DOMAINS[k["mx"] // MX_WIDTH].provider

    return {
        "type": Low(lambda k: TYPE_TEXT[k["tc"]], ("tc",)),
        "timeLogged": Var("tl"),
        "timeQueued": Var("tq"),
        "orig": Low(lambda k: E.POOLS[vm(k).pool].sender, ("vmta",)),
        "rcpt": Var("rcpt"),
        "orcpt": Low(lambda k: "", ()),
        "dsnAction": Low(action, ("tc", "reply")),
        "dsnStatus": Low(status, ("tc", "reply")),
        "dsnDiag": (
            Low(diag_head, ("reply", "vmta", "mx")),
            Var("dv"),
            Low(diag_tail, ("reply", "vmta", "mx")),
        ),
        "dsnMta": Low(session_value(mta_pair), ("tc", "mx")),
        "bounceCat": Low(bounce_cat, ("tc", "reply")),
        "srcType": Low(
            lambda k: "smtp" if k["tc"] in (TC_RB, TC_RS) else E.POOLS[vm(k).pool].src_type, ("tc", "vmta")
        ),
        "srcMta": Low(
            lambda k: mta_pair(k) if k["tc"] in (TC_RB, TC_RS) else "{} ({})".format(*E.INJECTORS[k["inj"]]),
            ("tc", "mx", "inj"),
        ),
        "dlvType": Low(session_value(lambda k: "smtp"), ("tc", "mx")),
        "dlvSourceIp": Low(
            lambda k: vm(k).ip if (k["tc"] == TC_F or not no_session(k)) else "", ("tc", "mx", "vmta")
        ),
        "dlvDestinationIp": Low(session_value(lambda k: (_mx(k) or ("", ""))[1]), ("tc", "mx")),
        "dlvEsmtpAvailable": Low(
            session_value(lambda k: csv_field(E.DOMAINS[k["mx"] // MX_WIDTH].esmtp)), ("tc", "mx")
        ),
        "dlvSize": Var("size"),
        "vmta": Low(lambda k: E.POOLS[vm(k).pool].name if k["tc"] == TC_R else vm(k).name, ("tc", "vmta")),
        "jobId": Low(lambda k: jobs[k["job"]], ("job",)),
        "envId": Low(lambda k: "", ()),
        "queue": Low(
            lambda k: (
                f"{E.DOMAINS[k['mx'] // MX_WIDTH].queue or E.DOMAINS[k['mx'] // MX_WIDTH].name}/{vm(k).name}"
            ),
            ("mx", "vmta"),
        ),
        "vmtaPool": Low(lambda k: E.POOLS[vm(k).pool].name, ("vmta",)),
        "header_x-job": Low(lambda k: jobs[k["job"]], ("job",)),
        "header_Message-Id": (
            Low(lambda k: "<", ()),
            Var("mid"),
            Low(lambda k: f"@mail.{E.POOLS[vm(k).pool].sending_domain}>", ("vmta",)),
        ),
        "rcvSourceIp": Low(lambda k: E.INJECTORS[k["inj"]][1], ("inj",)),
        "rcvDestinationIp": Low(lambda k: spec.listener_ip, ()),
        "dsnReportingMta": Low(lambda k: (_mx(k) or ("", ""))[0], ("mx",)),
        "format": Low(
            lambda k: ("jmrp" if prov(k) == "microsoft" else "arf") if k["tc"] == TC_F else "dsn",
            ("tc", "mx"),
        ),
        "repSourceIp": Low(lambda k: spec.public_ip, ()),
        "feedbackType": Low(lambda k: "abuse", ()),
        "userAgent": Low(
            lambda k: csv_field(E.FBL_REPORTER.get(prov(k), E.FBL_REPORTER["other"])[0]), ("mx",)
        ),
        "reportingMta": Low(lambda k: E.FBL_REPORTER.get(prov(k), E.FBL_REPORTER["other"])[1], ("mx",)),
        "reportedDomain": Low(lambda k: E.POOLS[vm(k).pool].sending_domain, ("vmta",)),
    }


def _needs_quote(text: str) -> bool:
    return any(ch in text for ch in ',"\r\n')


def build_template(node: int, jobs: list[str]) -> Template:
    spec = E.NODES[node]
    columns = COLUMNS[node]
    fns = _value_fns(node, jobs)
    last = {
        tc: max(i for i, c in enumerate(columns) if c in ("type", "timeLogged") or tc in FIELDS.get(c, ()))
        for tc in range(len(TYPE_TEXT))
    }

    def applies(col: str, tc: int) -> bool:
        return col in ("type", "timeLogged") or tc in FIELDS.get(col, ())

    def guard(col: str, low: Low) -> Low:
        return Low(
            lambda k, f=low.fn: f(k) if applies(col, k["tc"]) else "", tuple(sorted({"tc", *low.keys}))
        )

    items: list = []
    for i, col in enumerate(columns):
        if i > 0:
            if spec.drop_trailing_empty:
                items.append(Low(lambda k, i=i: "," if i <= last[k["tc"]] else "", ("tc",)))
            else:
                items.append(",")
        value = fns[col]
        parts = value if isinstance(value, tuple) else (value,)
        for part in parts:
            items.append(part if isinstance(part, Var) else guard(col, part))
    items.append(spec.line_end)
    sizes = {
        "tc": len(TYPE_TEXT),
        "vmta": len(E.VMTAS),
        "mx": len(E.DOMAINS) * MX_WIDTH,
        "reply": len(E.REPLIES) + 1,
        "inj": len(E.INJECTORS),
        "job": max(1, len(jobs)),
    }
    return Template(items, sizes)


def _render_lines(
    model: M.Model,
    sel: np.ndarray,
    node: int,
    epoch: np.ndarray,
    lk: Lookups,
    tmpl: Template,
    seed: int,
    faults: Faults,
    tables: TimeTables,
) -> pl.Series:
    ev = model.ev
    m = model.m
    spec = E.NODES[node]
    kind = ev["kind"][sel]
    tc = KIND_TC[kind]
    msg = ev["msg"][sel]
    mi = np.where(msg >= 0, msg, 0)
    eid = sel.astype(np.int64)
    dom = ev["dom"][sel].astype(np.int64)
    h = M.mix64(eid.astype(np.uint64), seed)
    mx = dom * MX_WIDTH + (h % N_MX[dom].astype(np.uint64)).astype(np.int64)
    reply1 = ev["reply"][sel].astype(np.int64) + 1
    keys = {
        "tc": tc,
        "vmta": ev["vmta"][sel],
        "mx": mx,
        "reply": reply1,
        "inj": m["injector"][mi],
        "job": m["job"][mi],
    }
    n = len(sel)
    dbt = np.isin(tc, DBT)
    table = tables.for_tz(spec.tz)
    blank_i = len(table.table)  # index of "" in the padded table
    t_s = ev["t"][sel] // M.NS
    tq_i = np.where(dbt, m["t0"][mi] // M.NS - table.t0, blank_i)
    tl = table.padded.gather(t_s - table.t0)
    tq = table.padded.gather(tq_i)
    if epoch.any():
        e_tl = pl.Series(t_s).cast(pl.String)
        e_tq = pl.concat([pl.Series(m["t0"][mi] // M.NS).cast(pl.String), BLANK])
        tl = pl.DataFrame({"a": tl, "b": e_tl, "e": epoch}).select(
            pl.when("e").then("b").otherwise("a").alias("x")
        )["x"]
        tq = pl.DataFrame({"a": tq, "b": e_tq.gather(np.where(dbt, np.arange(n), n)), "e": epoch}).select(
            pl.when("e").then("b").otherwise("a").alias("x")
        )["x"]
    rcpt_idx = np.where(tc == TC_TQ, len(lk.addr), np.where(ev["rcpt"][sel] >= 0, ev["rcpt"][sel], 0))
    rcpt = lk.addr_blank.gather(rcpt_idx)
    var_kind = REPLY_VAR[reply1]
    ar = np.arange(n)
    with_qid = np.flatnonzero(var_kind == 1)
    qid = chars_to_series(hex_words(eid[with_qid], seed + 99))
    pos = np.full(n, -1, dtype=np.int64)
    pos[with_qid] = np.arange(len(with_qid))
    dv = pl.concat([qid, rcpt, BLANK]).gather(
        np.where(var_kind == 1, pos, np.where(var_kind == 2, len(with_qid) + ar, len(with_qid) + n))
    )
    size = pl.concat([pl.Series(m["size"][mi]).cast(pl.String), BLANK]).gather(np.where(tc == TC_D, ar, n))
    mid = lk.mid_hex.gather(m["lead"][mi])
    mid = pl.concat([mid, BLANK]).gather(np.where(np.isin(tc, MID_TYPES), ar, n))
    if faults.bad_ts >= 0 and (pos := np.flatnonzero(sel == faults.bad_ts)).size:
        tl = tl.scatter(pos, BAD_TIMESTAMP)
    if faults.bad_utf8 >= 0 and (pos := np.flatnonzero(sel == faults.bad_utf8)).size:
        dv = dv.scatter(pos, dv[int(pos[0])] + " " + BAD_UTF8_MARK + " (d\u00e9lai)")
    lines = tmpl.render(n, keys, {"tl": tl, "tq": tq, "rcpt": rcpt, "dv": dv, "size": size, "mid": mid})
    if faults.malformed >= 0 and (pos := np.flatnonzero(sel == faults.malformed)).size:
        # an unterminated quote opening the second field; nothing follows but the end of the file
        lines = lines.scatter(pos, lines[int(pos[0])].replace(",", ',"', 1))
    return lines


KIND_TC = np.zeros(M.N_KINDS, dtype=np.int8)
for _k, _c in KIND_TO_TC.items():
    KIND_TC[_k] = _c
MID_TYPES = (TC_R, *DBT, TC_F)
N_MX = np.array([max(1, len(d.mx)) for d in E.DOMAINS], dtype=np.int64)


class TimeTables:
    """PowerMTA ``YYYY-MM-DD HH:MM:SS±hhmm`` strings for every second of the period, per time zone."""

    def __init__(self, model: M.Model) -> None:
        self.t0 = int(model.t_start // M.NS) - 1
        self.t1 = int(model.t_end // M.NS) + 1
        self._by_tz: dict[str, TimeTable] = {}

    def for_tz(self, tz: str) -> TimeTable:
        if tz not in self._by_tz:
            fmt = "%Y-%m-%d %H:%M:%S+0000" if tz == "UTC" else "%Y-%m-%d %H:%M:%S%z"
            self._by_tz[tz] = TimeTable(self.t0, self.t1, fmt, tz=None if tz == "UTC" else tz)
        return self._by_tz[tz]
