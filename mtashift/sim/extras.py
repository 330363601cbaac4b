"""The rest of the landing folder: PowerMTA configs, ARF reports, legacy suppression lists, seed lists, plan.yaml.

``plan.yaml`` shape::

    pools:                      # PowerMTA pool -> planned cutover (ISO 8601, UTC)
      pool-news: {cutover: '2026-10-06T10:00:00Z'}
    vmta_map:                   # PowerMTA VMTA -> the KumoMTA egress source and pool that replace it
      vmta-n1: {egress_source: news-1, egress_pool: news}
    tco: {}                     # placeholder for cost inputs

PowerMTA config include convention: ``config`` includes ``/etc/pmta/vmtas.conf`` and
``/etc/pmta/conf.d/shaping.conf``; in the landing folder an absolute include path is found under the
node folder by its path below ``/etc/pmta/`` (``pmta-config/<node>/vmtas.conf``,
``pmta-config/<node>/conf.d/shaping.conf``).
"""

from __future__ import annotations

import datetime as dt
import email.utils
from pathlib import Path

import idna
import numpy as np
import yaml

from mtashift.sim import _io
from mtashift.sim import estate as E
from mtashift.sim import model as M
from mtashift.sim.pmta import COLUMNS, FIELDS, KIND_TO_TC, TYPE_TEXT

# --------------------------------------------------------------------------------------------------
# PowerMTA configuration (the intended inventory is data; the files are rendered from it)

GLOBAL_DOMAIN_RULES: tuple[tuple[str, dict[str, str]], ...] = (
    (
        "*",
        {
            "max-smtp-out": "20",
            "max-msg-per-connection": "100",
            "retry-after": "10m,20m,40m,1h,2h,4h",
            "bounce-after": "2d",
            "smtp-pattern-list": "common-errors",
            "use-starttls": "yes",
            "dkim-sign": "yes",
        },
    ),
    ("[*.]gmail.com", {"max-smtp-out": "40", "max-msg-rate": "5000/h", "max-msg-per-connection": "50"}),
    ("googlemail.com", {"max-smtp-out": "10", "max-msg-rate": "500/h"}),
    (
        "yahoo.$tld",
        {
            "max-smtp-out": "10",
            "max-msg-rate": "83/10m",
            "max-connect-rate": "10/m",
            "retry-after": "15m,30m,1h,2h,4h",
            "bounce-after": "1d12h",
        },
    ),
    (
        "aol.com",
        {
            "max-smtp-out": "10",
            "max-msg-rate": "83/10m",
            "retry-after": "15m,30m,1h,2h,4h",
            "bounce-after": "1d12h",
        },
    ),
    ("[*.]outlook.com", {"max-smtp-out": "15", "max-msg-rate": "3000/h", "max-msg-per-connection": "20"}),
    ("hotmail.$tld", {"max-smtp-out": "15", "max-msg-rate": "3000/h", "max-msg-per-connection": "20"}),
    ("live.com", {"max-smtp-out": "15", "max-msg-per-connection": "20"}),
    ("hotmail.rollup", {"max-smtp-out": "30"}),
    ("*.icloud.com", {"max-smtp-out": "10"}),
    ("[*.]icloud.com", {"max-msg-rate": "unlimited", "max-smtp-out": "10"}),
    ("comcast.net", {"max-smtp-out": "2", "max-msg-per-connection": "25", "max-connect-rate": "6/m"}),
    ("gmx.de", {"max-connect-rate": "20/m", "max-smtp-out": "5"}),
    ("web.de", {"max-connect-rate": "20/m", "max-smtp-out": "5"}),
    ("orange.fr", {"max-smtp-out": "3", "max-msg-rate": "1000/h"}),
)
DOMAIN_MACROS = {"tld": ["com", "fr", "de", "co.uk", "ca"]}
MX_ROLLUPS = (
    ("gmail-smtp-in.l.google.com", "gmail.rollup"),
    ("*.am0.yahoodns.net", "yahoo.rollup"),
    ("*.gm0.yahoodns.net", "yahoo.rollup"),
    ("*.olc.protection.outlook.com", "hotmail.rollup"),
)
POOL_DOMAIN_RULES: dict[str, tuple[tuple[str, dict[str, str]], ...]] = {
    "pool-mkt": (("yahoo.$tld", {"max-msg-rate": "83/10m", "max-smtp-out": "5"}),),
    "pool-news": (("[*.]gmail.com", {"max-msg-rate": "2000/h"}),),
    "pool-trans": (("*", {"max-smtp-out": "30", "retry-after": "5m,10m,20m,1h", "bounce-after": "6h"}),),
}
VMTA_DOMAIN_RULES: dict[str, tuple[tuple[str, dict[str, str]], ...]] = {
    "vmta-m4": (
        ("*", {"max-msg-rate": "2000/d", "max-smtp-out": "5"}),
        ("gmail.com", {"max-msg-rate": "500/h"}),
    ),
    "vmta-t1": (("yahoo.com", {"max-msg-rate": "250/h"}),),
}
PATTERN_LIST = (
    ("/\\[TSS04\\]/", "mode=backoff"),
    ("/4\\.7\\.650/", "mode=backoff"),
    ("/unusual rate of unsolicited mail/", "mode=backoff"),
    ("/too many (sessions|connections)/", "mode=backoff"),
    ("/Client host .* blocked using/", "disable-source-ip reenable-after=4h"),
)


def _fields_for(node: int, code: int) -> list[str]:
    return [c for c in COLUMNS[node] if c == "type" or c == "timeLogged" or code in FIELDS.get(c, ())]


def pmta_config(node: int, *, max_size: int) -> tuple[dict[str, str], dict]:
    """The files of one node's configuration and the inventory they encode."""
    spec = E.NODES[node]
    pools = [i for i, p in enumerate(E.POOLS) if p.pmta_node == node]
    vmtas = [v for v in E.VMTAS if v.pool in pools]
    main = [
        f"# PowerMTA configuration of {spec.name} (acme sending estate)",
        f"host-name {spec.name}.acme.example",
        "postmaster postmaster@acme.example",
        "",
        "include /etc/pmta/vmtas.conf",
        "include /etc/pmta/conf.d/shaping.conf",
        "",
        "<source 0/0>",
        "    process-x-job yes",
        "    process-x-virtual-mta yes",
        "    always-allow-relaying no",
        "</source>",
        "",
        "<source 10.20.0.0/24>    # injectors",
        "    always-allow-relaying yes",
        "    process-x-job yes",
        f"    default-virtual-mta {E.POOLS[pools[0]].name}",
        "</source>",
        "",
        f"smtp-listener {spec.listener_ip}:25",
        f"smtp-listener {spec.public_ip}:25",
        "",
        "<acct-file /var/log/pmta/acct.csv>",
        "    records d,b,t,tq,r,f,rb,rs",
    ]
    if node == E.PMTA1:
        for t in ("d", "b", "t", "r", "f"):
            main.append(f"    record-fields {t} *,header_x-job,header_Message-Id")
    else:
        done = set()
        for code, t in enumerate(TYPE_TEXT):
            if t in done:
                continue
            done.add(t)
            main.append(f"    record-fields {t} " + ",".join(_fields_for(node, code)))
    size_m = max_size // 2**20
    main += [
        f"    max-size {size_m}M",
        "    delete-after never",
        "    iso-times yes",
        "</acct-file>",
        "",
        "<feedback-loop-processor>",
        "    deliver-unmatched-email no",
        "    <address-list>",
        "        address /^fbl@fbl\\./",
        "    </address-list>",
        "</feedback-loop-processor>",
        "",
        "<bounce-processor>",
        "    deliver-unmatched-email no",
        "    <address-list>",
        "        address /^bounces@bounce\\./",
        "    </address-list>",
        "</bounce-processor>",
        "",
        "<bounce-category-patterns>",
        "    /spam/ spam-related",
        "    /quota|mailbox full|out of storage/ quota-issues",
        "    /unknown|does not exist|not our customer/ bad-mailbox",
        "    /disabled|inactive/ inactive-mailbox",
        "    /policy|denied|rejected/ policy-related",
    ]
    if spec.success_category:
        main.append("    /^2\\.\\d+\\.\\d+/ success")
    main += [
        "    /^[45]\\.1\\.1/ bad-mailbox",
        "    /^[45]\\.1\\.2/ bad-domain",
        "    // other",
        "</bounce-category-patterns>",
        "",
    ]

    vm_lines: list[str] = [f"# VirtualMTAs and pools of {spec.name}", ""]
    dkim = []
    for v in vmtas:
        pool = E.POOLS[v.pool]
        vm_lines += [f"<virtual-mta {v.name}>", f"    smtp-source-host {v.ip} {v.host}"]
        for sel in E.DKIM[pool.sending_domain]:
            key = f"/etc/pmta/dkim/{pool.sending_domain}.{sel}.pem"
            vm_lines.append(f"    domain-key {sel},{pool.sending_domain},{key}")
            dkim.append({"vmta": v.name, "selector": sel, "domain": pool.sending_domain, "key": key})
        for pattern, directives in VMTA_DOMAIN_RULES.get(v.name, ()):
            vm_lines += _domain_block(pattern, directives, indent="    ")
        vm_lines += ["</virtual-mta>", ""]
    for pi in pools:
        pool = E.POOLS[pi]
        vm_lines.append(f"<virtual-mta-pool {pool.name}>")
        vm_lines += [f"    virtual-mta {v.name}" for v in vmtas if v.pool == pi]
        for pattern, directives in POOL_DOMAIN_RULES.get(pool.name, ()):
            vm_lines += _domain_block(pattern, directives, indent="    ")
        vm_lines += ["</virtual-mta-pool>", ""]

    shp = ["# Traffic shaping shared by all nodes", ""]
    for name, values in DOMAIN_MACROS.items():
        shp.append(f"domain-macro {name} {','.join(values)}")
    shp += ["", "<mx-rollup-list>"]
    shp += [f"    mx {mx} {rollup}" for mx, rollup in MX_ROLLUPS]
    shp += ["</mx-rollup-list>", "", "<smtp-pattern-list common-errors>"]
    shp += [f"    reply {rx} {act}" for rx, act in PATTERN_LIST]
    shp += ["</smtp-pattern-list>", ""]
    for pattern, directives in GLOBAL_DOMAIN_RULES:
        shp += _domain_block(pattern, directives, indent="")
        shp.append("")
    files = {
        "config": "\n".join(main) + "\n",
        "vmtas.conf": "\n".join(vm_lines) + "\n",
        "conf.d/shaping.conf": "\n".join(shp) + "\n",
    }
    rules = [
        {"scope": "global", "scope_name": "", "pattern": p, "directives": d} for p, d in GLOBAL_DOMAIN_RULES
    ]
    for pi in pools:
        name = E.POOLS[pi].name
        rules += [
            {"scope": "pool", "scope_name": name, "pattern": p, "directives": d}
            for p, d in POOL_DOMAIN_RULES.get(name, ())
        ]
    for v in vmtas:
        rules += [
            {"scope": "vmta", "scope_name": v.name, "pattern": p, "directives": d}
            for p, d in VMTA_DOMAIN_RULES.get(v.name, ())
        ]
    inventory = {
        "node": spec.name,
        "files": sorted(files),
        "vmtas": [{"name": v.name, "ip": v.ip, "ehlo": v.host, "pool": E.POOLS[v.pool].name} for v in vmtas],
        "pools": [
            {"name": E.POOLS[pi].name, "vmtas": [v.name for v in vmtas if v.pool == pi]} for pi in pools
        ],
        "dkim": dkim,
        "domain_macros": DOMAIN_MACROS,
        "mx_rollups": [{"mx": mx, "rollup": r} for mx, r in MX_ROLLUPS],
        "domain_rules": rules,
        "smtp_pattern_lists": {"common-errors": [{"reply": rx, "actions": a} for rx, a in PATTERN_LIST]},
        "acct_file": {
            "path": "/var/log/pmta/acct.csv",
            "records": "d,b,t,tq,r,f,rb,rs",
            "max_size": f"{size_m}M",
            "columns": list(COLUMNS[node]),
        },
        "sources": [
            {"match": "0/0", "process-x-job": "yes"},
            {"match": "10.20.0.0/24", "process-x-job": "yes"},
        ],
    }
    return files, inventory


def _domain_block(pattern: str, directives: dict[str, str], indent: str) -> list[str]:
    return [
        f"{indent}<domain {pattern}>",
        *(f"{indent}    {k} {v}" for k, v in directives.items()),
        f"{indent}</domain>",
    ]


def write_pmta_configs(landing: Path, *, max_size: int, mtime: int) -> list[dict]:
    out = []
    for node in (E.PMTA1, E.PMTA2):
        files, inv = pmta_config(node, max_size=max_size)
        for rel, text in sorted(files.items()):
            _io.write_file(landing / "pmta-config" / E.NODES[node].name / rel, text, mtime=mtime)
        out.append(inv)
    return out


# --------------------------------------------------------------------------------------------------
# plan.yaml


def write_plan(landing: Path, model: M.Model, *, mtime: int) -> dict:
    plan = {
        "pools": {p.name: {"cutover": _iso(int(model.cutover[i]))} for i, p in enumerate(E.POOLS)},
        "vmta_map": {
            v.name: {"egress_source": v.egress_source, "egress_pool": E.POOLS[v.pool].egress_pool}
            for v in E.VMTAS
        },
        "tco": {},
    }
    header = "# Cutover plan of the acme estate: pool cutover times (UTC) and the VMTA -> egress mapping.\n"
    _io.write_file(landing / "plan.yaml", header + yaml.safe_dump(plan, sort_keys=True), mtime=mtime)
    return plan


def _iso(t_ns: int) -> str:
    return dt.datetime.fromtimestamp(t_ns // M.NS, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc2822(t_ns: int) -> str:
    return email.utils.format_datetime(dt.datetime.fromtimestamp(t_ns // M.NS, tz=dt.UTC))


# --------------------------------------------------------------------------------------------------
# ARF reports


def write_fbl(landing: Path, model: M.Model, complaints: list[dict], *, seed: int) -> list[dict]:
    """One .eml per complaint that reached the sender's FBL mailbox. Returns per-complaint eml facts."""
    out = []
    jmrp_done = False
    for c in complaints:
        if not c["eml"]:
            continue
        msg = c["msg"]
        rcpt = c["recipient"]
        vm = E.VMTAS[int(model.m["vmta"][msg])]
        pool = E.POOLS[vm.pool]
        dom = E.DOMAINS[int(model.m["dom"][msg])]
        ua, rmta, rfrom = E.FBL_REPORTER.get(dom.provider, E.FBL_REPORTER["other"])
        job = model.jobs[int(model.m["job"][msg])][0]
        h = f"{int(M.mix64(np.uint64(c['cid']), seed + 71)):016x}"
        date = _rfc2822(c["t"])
        arrival = _rfc2822(c["delivered_ns"])
        jmrp = (not jmrp_done) and dom.provider == "microsoft" and c["mta_route"] and c["mta_visible"]
        # a redacted report names no recipient: only when an MTA route that names it was counted
        redact = (
            (not jmrp)
            and c["mta_route"]
            and c["mta_visible"]
            and dom.provider in ("yahoo", "microsoft")
            and c["style"] in (1, 2)
        )
        headers_only = c["style"] % 2 == 1
        to_hdr = "redacted" if redact else f"<{rcpt}>"
        original = [
            f"Received: from {vm.host} ({vm.host} [{vm.ip}])",
            f"    by {dom.mx[0][0] if dom.mx else dom.name} with ESMTPS id {h[:12]};",
            f"    {arrival}",
            f'From: "Acme" <news@{pool.sending_domain}>',
            f"To: {to_hdr}",
            "Subject: Your offers this week",
            f"Date: {arrival}",
            f"Message-ID: {c['message_id']}",
            f"X-Job: {job}",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
        ]
        body = "\nHello, here are this week's offers.\nUnsubscribe: https://acme.example/u\n"
        if jmrp:
            jmrp_done = True
            b = f"jmrp_{h}"
            text = "\n".join(
                [
                    f"From: {rfrom}",
                    f"Date: {date}",
                    f"Subject: complaint about message from {vm.ip}",
                    f"To: <fbl@fbl.{pool.sending_domain}>",
                    f"Message-ID: <{h}.jmrp@{rmta}>",
                    "MIME-Version: 1.0",
                    f'Content-Type: multipart/mixed; boundary="{b}"',
                    "",
                    f"--{b}",
                    'Content-Type: text/plain; charset="us-ascii"',
                    "",
                    f"This is a Junk Mail Reporting Program (JMRP) report for a message sent from {vm.ip}.",
                    "",
                    f"--{b}",
                    "Content-Type: message/rfc822",
                    "Content-Disposition: attachment",
                    "",
                    f"X-HmXmrOriginalRecipient: <{rcpt}>",
                    *original,
                    body,
                    f"--{b}--",
                    "",
                ]
            )
        else:
            b = f"arf_{h}"
            report = [
                "Feedback-Type: abuse",
                f"User-Agent: {ua}",
                "Version: 1",
                f"Original-Mail-From: <{pool.sender}>",
            ]
            if not redact:
                report.append(f"Original-Rcpt-To: <{rcpt}>")
            report += [
                f"Arrival-Date: {arrival}",
                f"Reporting-MTA: dns; {rmta}",
                f"Source-IP: {vm.ip}",
                f"Reported-Domain: {pool.sending_domain}",
            ]
            text = "\n".join(
                [
                    f"From: <{rfrom}>",
                    f"Date: {date}",
                    "Subject: FW: Your offers this week",
                    f"To: <fbl@fbl.{pool.sending_domain}>",
                    f"Message-ID: <{h}.arf@{rmta}>",
                    "MIME-Version: 1.0",
                    "Content-Type: multipart/report; report-type=feedback-report;",
                    f'    boundary="{b}"',
                    "",
                    f"--{b}",
                    'Content-Type: text/plain; charset="US-ASCII"',
                    "Content-Transfer-Encoding: 7bit",
                    "",
                    f"This is an email abuse report for an email message received from IP {vm.ip} on {arrival}.",
                    "",
                    f"--{b}",
                    "Content-Type: message/feedback-report",
                    "",
                    *report,
                    "",
                    f"--{b}",
                    "Content-Type: text/rfc822-headers" if headers_only else "Content-Type: message/rfc822",
                    "Content-Disposition: inline",
                    "",
                    *original,
                    *([] if headers_only else [body]),
                    f"--{b}--",
                    "",
                ]
            )
        stamp = dt.datetime.fromtimestamp(c["t"] // M.NS, tz=dt.UTC).strftime("%Y%m%d-%H%M%S")
        rel = f"fbl/arf-{stamp}-{c['cid']:05d}.eml"
        _io.write_file(landing / rel, text, mtime=int(c["t"] // M.NS) + 120)
        out.append(
            {"cid": c["cid"], "file": rel, "redacted": redact, "jmrp": jmrp, "headers_only": headers_only}
        )
    return out


# --------------------------------------------------------------------------------------------------
# legacy suppression lists


def normalise_address(text: str) -> str | None:
    """Suppression-list normal form: trimmed; domain lower-case IDNA (A-labels); local part as spelled.

    A whole-domain entry (``@example.com`` or a bare ``example.com``) becomes ``@example.com``.
    Returns None when the entry is not an address or domain.
    """
    s = text.strip().lstrip("\ufeff").strip()
    if not s:
        return None
    if "@" in s:
        local, _sep, domain = s.rpartition("@")
        if "@" in local or not domain:
            return None
        dom = _domain(domain)
        if dom is None:
            return None
        return f"{local}@{dom}" if local else f"@{dom}"
    dom = _domain(s)
    return f"@{dom}" if dom is not None else None


def _domain(text: str) -> str | None:
    if "." not in text or " " in text:
        return None
    try:
        return idna.encode(text.lower(), uts46=True).decode("ascii")
    except idna.IDNAError:
        return None


def write_suppression(
    landing: Path, model: M.Model, *, seed: int, mtime: int
) -> tuple[list[dict], list[dict]]:
    """Write both legacy lists. Returns (valid entries as {address, file, line}, quarantine rows)."""
    rng = np.random.default_rng(seed + 501)
    n_rcpt = len(model.r_dom)
    picks = np.sort(rng.choice(n_rcpt, size=min(n_rcpt, max(12, n_rcpt // 400)), replace=False))
    addrs = [model.address(int(i)) for i in picks]
    half = len(addrs) // 2
    valid: list[dict] = []
    quarantine: list[dict] = []

    lines = [
        "# Legacy global suppression list, exported from the previous ESP on 2026-09-15",
        "# One address per line; '@domain' or a bare domain suppresses the whole domain.",
        "",
    ]
    for k, a in enumerate(addrs[:half]):
        local, _s, domain = a.rpartition("@")
        if k % 4 == 1:
            a = f"{local}@{domain.upper()}"
        if k % 5 == 2:
            a = f"  {a}\t "
        lines.append(a)
    lines += [
        "@gmial.example",
        "no-such-domain.example",
        "@Competitor-Corp.EXAMPLE",
        "  Spamtrap.Network.example  ",
        "Jürgen.Weber@BÜCHER.example",
        "not-an-address",
        "john.smith@",
        "a@b@c.example",
        "",
    ]
    text = "\ufeff" + "\n".join(lines) + "\n"
    rel = "suppression/legacy-global.txt"
    _io.write_file(landing / rel, text, mtime=mtime)
    for ln, raw in enumerate(text.split("\n")[:-1], start=1):
        s = raw.lstrip("\ufeff").strip()
        if not s or s.startswith("#"):
            continue
        norm = normalise_address(s)
        if norm is None:
            quarantine.append(
                {
                    "source_kind": "suppression",
                    "source_file": rel,
                    "source_line": ln,
                    "reason": "invalid_address",
                    "detail": f"not an address or domain: {s!r}",
                }
            )
        else:
            valid.append({"address": norm, "file": rel, "line": ln})

    reasons = ["hard_bounce", "complaint", '"unsubscribe, via preference center"', "manual"]
    rows = ["email,reason,date"]
    for k, a in enumerate(addrs[half:]):
        day = dt.date(2025, 6, 1) + dt.timedelta(days=int(rng.integers(0, 400)))
        if k % 3 == 0:
            local, _s, domain = a.rpartition("@")
            a = f"{local.upper()}@{domain}"
        rows.append(f"{a},{reasons[k % len(reasons)]},{day.isoformat()}")
    rows += ["bad-email-at-example.com,hard_bounce,2026-02-01", "someone@@example.org,complaint,2026-03-04"]
    text = "\n".join(rows) + "\n"
    rel = "suppression/legacy-esp.csv"
    _io.write_file(landing / rel, text, mtime=mtime)
    for ln, raw in enumerate(text.split("\n")[1:-1], start=2):
        email_field = raw.split(",", 1)[0]
        norm = normalise_address(email_field) if "@" in email_field else None
        if norm is None or norm.startswith("@"):
            quarantine.append(
                {
                    "source_kind": "suppression",
                    "source_file": rel,
                    "source_line": ln,
                    "reason": "invalid_address",
                    "detail": f"not an address: {email_field!r}",
                }
            )
        else:
            valid.append({"address": norm, "file": rel, "line": ln})
    return valid, quarantine


# --------------------------------------------------------------------------------------------------
# seed lists


def write_seedlists(landing: Path, model: M.Model, *, seed: int) -> list[dict]:
    """Daily placement tests per pool; the regressing pool degrades at its provider after cutover."""
    rng = np.random.default_rng(seed + 601)
    rows: list[dict] = []
    reg_pool = E.REGRESSION["pool"]
    for d in range(model.days):
        day = model.start + dt.timedelta(days=d)
        lines = ["test_id,sent_at,pool,provider,seed_address,placement"]
        for pi, pool in enumerate(E.POOLS):
            sent_ns = M.epoch_ns(day) + 14 * M.HOUR + pi * 5 * M.MINUTE
            after = sent_ns >= model.cutover[pi]
            test_id = f"sl-{day.strftime('%Y%m%d')}-{pool.egress_pool}"
            for prov in E.SEED_PROVIDERS:
                probs = (0.9, 0.08, 0.02)
                if after and pool.name == reg_pool and prov == E.REGRESSION["provider"]:
                    probs = (0.45, 0.5, 0.05)
                for k in range(E.SEEDS_PER_PROVIDER):
                    placement = ("inbox", "spam", "missing")[int(rng.choice(3, p=probs))]
                    addr = f"seed{k + 1:02d}.acme@{E.SEED_DOMAINS[prov]}"
                    lines.append(f"{test_id},{_iso(sent_ns)},{pool.name},{prov},{addr},{placement}")
                    rows.append(
                        {
                            "test_id": test_id,
                            "sent_at_ns": sent_ns,
                            "pool": pool.name,
                            "provider": prov,
                            "phase": "after" if after else "before",
                            "placement": placement,
                        }
                    )
        _io.write_file(
            landing / f"seedlist/placement-{day.isoformat()}.csv",
            "\n".join(lines) + "\n",
            mtime=int((M.epoch_ns(day) + 20 * M.HOUR) // M.NS),
        )
    return rows


__all__ = [
    "KIND_TO_TC",
    "normalise_address",
    "pmta_config",
    "write_fbl",
    "write_plan",
    "write_pmta_configs",
    "write_seedlists",
    "write_suppression",
]
