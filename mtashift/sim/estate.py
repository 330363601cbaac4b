"""The static sample estate: pools, VMTAs, nodes, recipient domains and the SMTP reply catalogue.

Everything here is plain data. :mod:`mtashift.sim.model` draws traffic over it, the renderers turn
it into each server's files, and :mod:`mtashift.sim.truth` writes it to ``truth/estate.json``.
Addresses use documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) for everything
the sender owns and for the long tail of receivers; the big providers keep plausible real MX names
because the provider map keys on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtashift.providers import PROVIDERS

P = {name: i for i, name in enumerate(PROVIDERS)}

# KumoMTA shaping provider block names (provider_name); `other` has none, so the key is omitted.
KUMO_PROVIDER_NAME: dict[str, str] = {
    "google": "google",
    "yahoo": "yahoo",
    "microsoft": "outlook",
    "office365": "office365",
    "apple": "icloud",
    "comcast": "comcast",
    "gmx": "gmx",
    "orange": "orange",
    "mimecast": "mimecast",
}


@dataclass(frozen=True)
class Node:
    name: str
    mta: str  # pmta | kumo
    # PowerMTA: IANA zone whose offset the node writes; KumoMTA: unused
    tz: str = "UTC"
    line_end: str = "\r\n"
    drop_trailing_empty: bool = False
    success_category: bool = False
    # KumoMTA
    version: str = ""
    rfc3339_times: bool = True
    recv_suffix: bool = False
    webhook: bool = False
    listener_ip: str = ""
    public_ip: str = ""


NODES: tuple[Node, ...] = (
    Node(
        "pmta1",
        "pmta",
        tz="UTC",
        line_end="\r\n",
        drop_trailing_empty=True,
        success_category=True,
        listener_ip="10.20.0.21",
        public_ip="192.0.2.5",
    ),
    Node(
        "pmta2",
        "pmta",
        tz="America/Chicago",
        line_end="\n",
        drop_trailing_empty=False,
        success_category=False,
        listener_ip="10.20.0.22",
        public_ip="198.51.100.5",
    ),
    Node(
        "kumo1",
        "kumo",
        version="2026.03.04-bb5f6c9a",
        recv_suffix=True,
        listener_ip="10.20.0.31",
        public_ip="192.0.2.6",
    ),
    Node(
        "kumo2",
        "kumo",
        version="2025.05.06-b29689af",
        rfc3339_times=False,
        listener_ip="10.20.0.32",
        public_ip="198.51.100.6",
    ),
    Node(
        "kumo3",
        "kumo",
        version="2026.03.04-bb5f6c9a",
        webhook=True,
        listener_ip="10.20.0.33",
        public_ip="192.0.2.7",
    ),
)
NODE = {n.name: i for i, n in enumerate(NODES)}
PMTA1, PMTA2, KUMO1, KUMO2, KUMO3 = range(5)


@dataclass(frozen=True)
class Pool:
    name: str  # PowerMTA pool
    egress_pool: str  # KumoMTA egress pool
    share: float
    sending_domain: str
    sender: str  # envelope sender
    pmta_node: int
    kumo_node: int
    cutover_fraction: float  # position of the cutover in the simulated period
    src_type: str  # PowerMTA srcType of injections (api | smtp)
    reception_protocol: str  # KumoMTA reception_protocol


POOLS: tuple[Pool, ...] = (
    Pool(
        "pool-trans",
        "trans",
        0.25,
        "acme.example",
        "bounces@bounce.acme.example",
        PMTA1,
        KUMO1,
        8 / 14,
        "api",
        "HTTP",
    ),
    Pool(
        "pool-mkt",
        "mkt",
        0.50,
        "acme-offers.example",
        "bounces@bounce.acme-offers.example",
        PMTA2,
        KUMO2,
        5 / 14,
        "smtp",
        "ESMTP",
    ),
    Pool(
        "pool-news",
        "news",
        0.25,
        "acme-news.example",
        "bounces@bounce.acme-news.example",
        PMTA1,
        KUMO3,
        11 / 14,
        "smtp",
        "ESMTP",
    ),
)
TRANS, MKT, NEWS = range(3)

# The pool that regresses after its cutover, where, and how.
REGRESSION = {"pool": "pool-mkt", "provider": "yahoo", "metric": "deferral_rate", "factor": 3.0}


@dataclass(frozen=True)
class Vmta:
    name: str
    ip: str
    host: str  # EHLO name
    pool: int
    egress_source: str
    weight: float = 1.0
    warmup: bool = False  # a new IP whose share ramps up day by day


VMTAS: tuple[Vmta, ...] = (
    Vmta("vmta-t1", "192.0.2.10", "t1.mta.acme.example", TRANS, "trans-1"),
    Vmta("vmta-t2", "192.0.2.11", "t2.mta.acme.example", TRANS, "trans-2"),
    Vmta("vmta-t3", "192.0.2.12", "t3.mta.acme.example", TRANS, "trans-3"),
    Vmta("vmta-m1", "198.51.100.20", "m1.mta.acme-offers.example", MKT, "mkt-1"),
    Vmta("vmta-m2", "198.51.100.21", "m2.mta.acme-offers.example", MKT, "mkt-2"),
    Vmta("vmta-m3", "198.51.100.22", "m3.mta.acme-offers.example", MKT, "mkt-3"),
    Vmta("vmta-m4", "198.51.100.23", "m4.mta.acme-offers.example", MKT, "mkt-4", warmup=True),
    Vmta("vmta-n1", "192.0.2.30", "n1.mta.acme-news.example", NEWS, "news-1"),
    Vmta("vmta-n2", "192.0.2.31", "n2.mta.acme-news.example", NEWS, "news-2"),
    Vmta("vmta-n3", "192.0.2.32", "n3.mta.acme-news.example", NEWS, "news-3"),
)

# Warm-up ramp of the new IP: share of its full weight on simulated day d (0-based).
WARMUP_START = 0.04
WARMUP_GROWTH = 1.8


def warmup_factor(day: int) -> float:
    return min(1.0, WARMUP_START * WARMUP_GROWTH**day)


DKIM: dict[str, tuple[str, ...]] = {
    "acme.example": ("s2026a",),
    "acme-offers.example": ("mkt2026", "mkt2025"),
    "acme-news.example": ("news1",),
}

INJECTORS: tuple[tuple[str, str], ...] = (
    ("inject1.acme.example", "10.20.0.5"),
    ("inject2.acme.example", "10.20.0.6"),
)

# Jobs (x-job / KumoMTA campaign) and tenants per pool. Marketing and newsletter jobs are per day.
TRANS_JOBS: tuple[tuple[str, float], ...] = (
    ("trans-receipts", 0.6),
    ("trans-password-reset", 0.25),
    ("trans-shipping", 0.15),
)
MKT_JOBS: tuple[tuple[str, str, float], ...] = (
    ("a", "shop", 0.45),
    ("b", "shop", 0.3),
    ("c", "travel", 0.25),
)
TENANT_TRANS = "shop"
TENANT_NEWS = "media"


@dataclass(frozen=True)
class Domain:
    name: str  # as written in addresses (Unicode for the IDN domain)
    provider: str
    weight: float
    mx: tuple[tuple[str, str], ...]  # (host, ip), lowest preference set
    site: str  # KumoMTA ready-queue site name
    queue: str = ""  # PowerMTA queue domain (rollup); empty = the domain itself
    kind: str = "normal"  # normal | nxdomain | xss | strict | workspace
    tls: bool = True
    esmtp: str = "PIPELINING,SIZE,ETRN,STARTTLS,ENHANCEDSTATUSCODES,8BITMIME,DSN"

    @property
    def ascii(self) -> str:
        return self.name.encode("idna").decode("ascii") if not self.name.isascii() else self.name


G_ESMTP = "SIZE,8BITMIME,STARTTLS,ENHANCEDSTATUSCODES,PIPELINING,CHUNKING,SMTPUTF8"
Y_ESMTP = "PIPELINING,SIZE,8BITMIME,STARTTLS"
MS_ESMTP = "SIZE,PIPELINING,DSN,ENHANCEDSTATUSCODES,STARTTLS,8BITMIME,BINARYMIME,CHUNKING,SMTPUTF8"
GMAIL_MX = (
    ("gmail-smtp-in.l.google.com", "142.250.153.26"),
    ("alt1.gmail-smtp-in.l.google.com", "142.251.9.27"),
)
ASPMX = (("aspmx.l.google.com", "142.250.153.27"), ("alt1.aspmx.l.google.com", "142.251.9.26"))
YAHOO_MX = (
    ("mta5.am0.yahoodns.net", "67.195.204.72"),
    ("mta6.am0.yahoodns.net", "67.195.204.74"),
    ("mta7.am0.yahoodns.net", "98.136.96.74"),
)

_TAIL = (
    "brightwave",
    "kestrel-mail",
    "alpine-isp",
    "oakridge",
    "lumen-net",
    "harborview",
    "quillpost",
    "redfern",
    "saltmarsh",
    "tidewater",
    "umbra-mail",
    "vantage-isp",
    "willowbank",
    "yellowpine",
    "zephyr-net",
    "amberly",
    "birchfield",
    "cobalt-isp",
    "driftwood",
    "elmstead",
)


def _tail_domains() -> tuple[Domain, ...]:
    out = []
    for i, word in enumerate(_TAIL):
        name = f"{word}.example"
        mx = (f"mx{1 + i % 2}.{name}", f"203.0.113.{20 + i}")
        out.append(Domain(name, "other", 0.45 - 0.01 * i, (mx,), mx[0], tls=i % 4 != 3))
    return tuple(out)


DOMAINS: tuple[Domain, ...] = (
    Domain(
        "gmail.com",
        "google",
        26.0,
        GMAIL_MX,
        "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com",
        "gmail.rollup",
        esmtp=G_ESMTP,
    ),
    Domain(
        "googlemail.com",
        "google",
        1.0,
        GMAIL_MX,
        "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com",
        "gmail.rollup",
        esmtp=G_ESMTP,
    ),
    Domain(
        "fabrikam.example",
        "google",
        2.0,
        ASPMX,
        "(alt1|alt2|alt3|alt4)?.aspmx.l.google.com",
        kind="workspace",
        esmtp=G_ESMTP,
    ),
    Domain(
        "tailspin-toys.example",
        "google",
        1.5,
        ASPMX,
        "(alt1|alt2|alt3|alt4)?.aspmx.l.google.com",
        kind="workspace",
        esmtp=G_ESMTP,
    ),
    Domain(
        "yahoo.com",
        "yahoo",
        8.0,
        YAHOO_MX,
        "(mta5|mta6|mta7).am0.yahoodns.net",
        "yahoo.rollup",
        esmtp=Y_ESMTP,
    ),
    Domain(
        "aol.com",
        "yahoo",
        3.0,
        (("mx-aol.mail.gm0.yahoodns.net", "67.195.204.79"),),
        "mx-aol.mail.gm0.yahoodns.net",
        "yahoo.rollup",
        esmtp=Y_ESMTP,
    ),
    Domain(
        "yahoo.fr",
        "yahoo",
        0.5,
        (("mx-eu.mail.am0.yahoodns.net", "188.125.72.73"),),
        "mx-eu.mail.am0.yahoodns.net",
        "yahoo.rollup",
        esmtp=Y_ESMTP,
    ),
    Domain(
        "outlook.com",
        "microsoft",
        6.0,
        (("outlook-com.olc.protection.outlook.com", "52.101.68.4"),),
        "outlook-com.olc.protection.outlook.com",
        "hotmail.rollup",
        esmtp=MS_ESMTP,
    ),
    Domain(
        "hotmail.com",
        "microsoft",
        7.0,
        (("hotmail-com.olc.protection.outlook.com", "52.101.68.15"),),
        "hotmail-com.olc.protection.outlook.com",
        "hotmail.rollup",
        esmtp=MS_ESMTP,
    ),
    Domain(
        "live.com",
        "microsoft",
        2.0,
        (("live-com.olc.protection.outlook.com", "52.101.68.22"),),
        "live-com.olc.protection.outlook.com",
        "hotmail.rollup",
        esmtp=MS_ESMTP,
    ),
    Domain(
        "contoso.example",
        "office365",
        2.5,
        (("contoso-example.mail.protection.outlook.com", "52.101.40.18"),),
        "contoso-example.mail.protection.outlook.com",
        esmtp=MS_ESMTP,
    ),
    Domain(
        "adatum.example",
        "office365",
        1.5,
        (("adatum-example.mail.protection.outlook.com", "52.101.41.7"),),
        "adatum-example.mail.protection.outlook.com",
        esmtp=MS_ESMTP,
    ),
    Domain(
        "icloud.com",
        "apple",
        6.0,
        (("mx01.mail.icloud.com", "17.57.154.33"), ("mx02.mail.icloud.com", "17.42.251.62")),
        "(mx01|mx02).mail.icloud.com",
    ),
    Domain(
        "me.com",
        "apple",
        1.5,
        (("mx01.mail.icloud.com", "17.57.154.33"), ("mx02.mail.icloud.com", "17.42.251.62")),
        "(mx01|mx02).mail.icloud.com",
    ),
    Domain(
        "comcast.net",
        "comcast",
        3.0,
        (("mx1a1.comcast.net", "96.102.18.146"), ("mx2h1.comcast.net", "96.103.146.48")),
        "(mx1a1|mx2h1).comcast.net",
    ),
    Domain(
        "gmx.de",
        "gmx",
        2.5,
        (("mx00.gmx.net", "212.227.15.15"), ("mx01.gmx.net", "212.227.17.5")),
        "(mx00|mx01).gmx.net",
    ),
    Domain(
        "web.de",
        "gmx",
        1.5,
        (("mx-ha03.web.de", "212.227.15.41"), ("mx-ha02.web.de", "212.227.17.8")),
        "(mx-ha02|mx-ha03).web.de",
    ),
    Domain("orange.fr", "orange", 2.0, (("smtp-in.orange.fr", "80.12.242.10"),), "smtp-in.orange.fr"),
    Domain(
        "woodgrove-bank.example",
        "mimecast",
        1.5,
        (
            ("eu-smtp-inbound-1.mimecast.com", "195.130.217.26"),
            ("eu-smtp-inbound-2.mimecast.com", "195.130.217.27"),
        ),
        "(eu-smtp-inbound-1|eu-smtp-inbound-2).mimecast.com",
    ),
    Domain(
        "bücher.example",
        "other",
        0.5,
        (("mx.xn--bcher-kva.example", "203.0.113.200"),),
        "mx.xn--bcher-kva.example",
    ),
    Domain(
        "hostile-mx.example",
        "other",
        0.35,
        (("mx.hostile-mx.example", "203.0.113.201"),),
        "mx.hostile-mx.example",
        kind="xss",
    ),
    Domain(
        "strict-filter.example",
        "other",
        0.45,
        (("mx.strict-filter.example", "203.0.113.202"),),
        "mx.strict-filter.example",
        kind="strict",
    ),
    Domain("no-such-domain.example", "other", 0.25, (), "", kind="nxdomain", tls=False),
    Domain("gmial.example", "other", 0.15, (), "", kind="nxdomain", tls=False),
    *_tail_domains(),
)
DOMAIN = {d.name: i for i, d in enumerate(DOMAINS)}


@dataclass(frozen=True)
class Reply:
    key: str
    code: int
    enhanced: tuple[int, int, int] | None
    text: str  # placeholders: {ip} {rcpt} {qid} {domain} {sdomain}
    pmta_cat: str
    kumo_cat: str
    command: str | None = "RCPT TO"


# Reply catalogue. Categories are explicit on every failure so the pipeline's taxonomy maps them
# without falling back to text classification (truth/README.md, suppression).
REPLIES: tuple[Reply, ...] = (
    # --- deliveries
    Reply("ok.google", 250, (2, 0, 0), "OK  {qid} - gsmtp", "success", "Uncategorized", "."),
    Reply("ok.yahoo", 250, None, "ok dirdel", "success", "Uncategorized", "."),
    Reply(
        "ok.microsoft",
        250,
        (2, 6, 0),
        "[InternalId={qid}] Queued mail for delivery",
        "success",
        "Uncategorized",
        ".",
    ),
    Reply("ok.apple", 250, (2, 0, 0), "Ok: queued as {qid}", "success", "Uncategorized", "."),
    Reply("ok.comcast", 250, (2, 0, 0), "{qid} mail accepted for delivery", "success", "Uncategorized", "."),
    Reply(
        "ok.gmx",
        250,
        None,
        "Requested mail action okay, completed: id={qid}",
        "success",
        "Uncategorized",
        ".",
    ),
    Reply("ok.mimecast", 250, None, "Ok", "success", "Uncategorized", "."),
    Reply("ok.other", 250, (2, 0, 0), "Ok: queued as {qid}", "success", "Uncategorized", "."),
    # --- deferrals (per attempt)
    Reply(
        "defer.google.rate",
        421,
        (4, 7, 28),
        "[{ip}] Gmail has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited. For more information, go to https://support.google.com/mail/?p=UnsolicitedRateLimitError {qid} - gsmtp",
        "spam-related",
        "SpamRelated",
        ".",
    ),
    Reply(
        "defer.google.receiving",
        450,
        (4, 2, 1),
        "The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered. Please resend your message at a later point. If the user is able to receive mail at that time, your message will be delivered. For more information, go to https://support.google.com/mail/?p=ReceivingRate {qid} - gsmtp",
        "policy-related",
        "PolicyRelated",
    ),
    Reply(
        "defer.yahoo.tss04",
        421,
        (4, 7, 0),
        "[TSS04] Messages from {ip} temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        "spam-related",
        "SpamRelated",
        "MAIL FROM",
    ),
    Reply(
        "defer.microsoft.650",
        451,
        (4, 7, 650),
        "The mail server [{ip}] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S775) [Name=Protocol Filter Agent][AGT=PFA][MxId={qid}]",
        "policy-related",
        "PolicyRelated",
        "MAIL FROM",
    ),
    Reply(
        "defer.office365.busy",
        451,
        (4, 7, 500),
        "Server busy. Please try again later from [{ip}]. (S77719) [{qid}.prod.protection.outlook.com]",
        "policy-related",
        "PolicyRelated",
        "MAIL FROM",
    ),
    Reply(
        "defer.apple.cs01",
        421,
        (4, 7, 0),
        "[CS01] Message rejected due to local policy. Please visit https://support.apple.com/en-us/HT204137",
        "policy-related",
        "PolicyRelated",
        "MAIL FROM",
    ),
    Reply(
        "defer.comcast.sessions",
        421,
        (4, 7, 0),
        "{ip} comcast Too many sessions opened. Please see https://postmaster.comcast.net/smtp-error-codes.php#RL000010",
        "policy-related",
        "PolicyRelated",
        "MAIL FROM",
    ),
    Reply(
        "defer.gmx.rate",
        421,
        (4, 7, 0),
        "Service temporarily unavailable, too many messages from {ip}, try again later",
        "policy-related",
        "PolicyRelated",
        "MAIL FROM",
    ),
    Reply(
        "defer.orange.rate",
        421,
        (4, 7, 0),
        "mwinf5c09 ME Service refuse. Veuillez essayer plus tard. Service refused, please try later. OFR005_101 [101]",
        "policy-related",
        "PolicyRelated",
        "MAIL FROM",
    ),
    Reply(
        "defer.mimecast.resources",
        451,
        (4, 7, 1),
        "Internal resources are temporarily unavailable, try again later - https://community.mimecast.com/docs/DOC-1369#451 [{qid}.eu123]",
        "policy-related",
        "PolicyRelated",
    ),
    Reply(
        "defer.other.greylist",
        451,
        (4, 7, 1),
        "Greylisting in action, please come back later",
        "policy-related",
        "PolicyRelated",
    ),
    Reply(
        "defer.other.busy",
        421,
        (4, 3, 2),
        "Service not available, too many concurrent connections, closing transmission channel",
        "bad-connection",
        "BadConnection",
        "MAIL FROM",
    ),
    Reply(
        "defer.xss",
        451,
        (4, 7, 1),
        "<script>alert(1)</script> greylisted, please try again later",
        "policy-related",
        "PolicyRelated",
    ),
    Reply(
        "defer.quota.google",
        452,
        (4, 2, 2),
        "The recipient's inbox is out of storage space. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp {qid} - gsmtp",
        "quota-issues",
        "QuotaIssues",
    ),
    Reply(
        "defer.quota.other",
        452,
        (4, 2, 2),
        "<{rcpt}>: Mailbox full, try again later",
        "quota-issues",
        "QuotaIssues",
    ),
    # --- policy / spam blocks (statistical)
    Reply(
        "block.google",
        550,
        (5, 7, 1),
        "[{ip}] Gmail has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked. For more information, go to https://support.google.com/mail/?p=UnsolicitedMessageError {qid} - gsmtp",
        "spam-related",
        "SpamBlock",
        ".",
    ),
    Reply(
        "block.yahoo",
        554,
        (5, 7, 9),
        "Message not accepted for policy reasons. See https://postmaster.yahooinc.com/error-codes",
        "policy-related",
        "PolicyRelated",
        ".",
    ),
    Reply(
        "block.microsoft.515",
        550,
        (5, 7, 515),
        "Access denied, sending domain {sdomain} does not meet the required authentication level. The sender's domain in the 5322.From address doesn't meet the authentication requirements defined for the sender. To learn more, visit https://aka.ms/SenderRequirements",
        "policy-related",
        "AuthenticationFailed",
        ".",
    ),
    Reply(
        "block.apple",
        550,
        (5, 7, 1),
        "[HM08] Message rejected due to local policy. Please visit https://support.apple.com/en-us/HT204137",
        "policy-related",
        "PolicyRelated",
        ".",
    ),
    Reply(
        "block.comcast",
        554,
        (5, 7, 1),
        "{ip} comcast Not allowed to send mail from this IP. Please see https://postmaster.comcast.net/smtp-error-codes.php#BL000000",
        "policy-related",
        "PolicyRelated",
        "MAIL FROM",
    ),
    Reply(
        "block.gmx",
        554,
        (5, 7, 1),
        "Transaction failed, Reject due to policy restrictions. For explanation visit https://postmaster.gmx.net/en/error-messages?ip={ip}&c=hi",
        "policy-related",
        "PolicyRelated",
        ".",
    ),
    Reply(
        "block.orange",
        550,
        (5, 7, 1),
        "mwinf5c09 ME Adresse IP source bloquee pour incident de spam. Client host blocked for spamming issues. OFR006_102 Ref http://csi.cloudmark.com",
        "spam-related",
        "SpamBlock",
        "MAIL FROM",
    ),
    Reply(
        "block.mimecast",
        550,
        None,
        "Rejected by header based Anti-Spoofing policy: {sdomain} - https://community.mimecast.com/docs/DOC-1369#550 [{qid}.eu123]",
        "policy-related",
        "PolicyRelated",
        ".",
    ),
    Reply(
        "block.other",
        554,
        (5, 7, 1),
        "Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org",
        "spam-related",
        "SpamBlock",
        "MAIL FROM",
    ),
    Reply(
        "block.strict",
        550,
        (5, 7, 1),
        'Message rejected: "spam score" too high, see https://strict-filter.example/policy, contact postmaster',
        "spam-related",
        "SpamBlock",
        ".",
    ),
    # --- the address does not exist / is disabled (suppress)
    Reply(
        "badmb.google",
        550,
        (5, 1, 1),
        "The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. For more information, go to https://support.google.com/mail/?p=NoSuchUser {qid} - gsmtp",
        "bad-mailbox",
        "InvalidRecipient",
    ),
    Reply(
        "badmb.yahoo",
        554,
        None,
        "delivery error: dd This user doesn't have a {domain} account ({rcpt}) [0] - mta4032.mail.bf1.yahoo.com",
        "bad-mailbox",
        "InvalidRecipient",
        ".",
    ),
    Reply(
        "badmb.microsoft",
        550,
        (5, 5, 0),
        "Requested action not taken: mailbox unavailable (S2017062302). [{qid}.prod.outlook.com]",
        "bad-mailbox",
        "InvalidRecipient",
    ),
    Reply(
        "badmb.office365",
        550,
        (5, 4, 1),
        "Recipient address rejected: Access denied. For more information see https://aka.ms/EXOSmtpErrors [{qid}.prod.protection.outlook.com]",
        "bad-mailbox",
        "InvalidRecipient",
    ),
    Reply("badmb.apple", 550, (5, 1, 1), "<{rcpt}>: user does not exist", "bad-mailbox", "InvalidRecipient"),
    Reply("badmb.comcast", 550, (5, 1, 1), "<{rcpt}> Not our Customer", "bad-mailbox", "InvalidRecipient"),
    Reply(
        "badmb.gmx",
        550,
        None,
        "Requested action not taken: mailbox unavailable",
        "bad-mailbox",
        "InvalidRecipient",
    ),
    Reply(
        "badmb.orange",
        550,
        (5, 1, 1),
        "mwinf5c09 ME Adresse d au moins un destinataire invalide. Invalid recipient. OFR_416 [416]",
        "bad-mailbox",
        "InvalidRecipient",
    ),
    Reply(
        "badmb.mimecast",
        550,
        (5, 1, 1),
        "Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550 [{qid}.eu123]",
        "bad-mailbox",
        "InvalidRecipient",
    ),
    Reply(
        "badmb.other",
        550,
        (5, 1, 1),
        "<{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table",
        "bad-mailbox",
        "InvalidRecipient",
    ),
    Reply(
        "inactive.google",
        550,
        (5, 2, 1),
        "The email account that you tried to reach is disabled. For more information, go to https://support.google.com/mail/?p=DisabledUser {qid} - gsmtp",
        "inactive-mailbox",
        "InactiveMailbox",
    ),
    Reply(
        "inactive.other",
        550,
        (5, 2, 1),
        "<{rcpt}>: Mailbox disabled, not accepting messages",
        "inactive-mailbox",
        "InactiveMailbox",
    ),
    Reply(
        "nxdomain.512",
        550,
        (5, 1, 2),
        "<{rcpt}>: Recipient address rejected: Domain not found",
        "bad-domain",
        "BadDomain",
    ),
    Reply(
        "nxdomain.544",
        554,
        (5, 4, 4),
        "Unable to route: no mail hosts for domain {domain} (domain does not exist)",
        "bad-domain",
        "BadDomain",
        None,
    ),
    # --- mailbox full, permanent (retry-then-suppress)
    Reply(
        "quota.google",
        552,
        (5, 2, 2),
        "The recipient's inbox is out of storage space. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaPerm {qid} - gsmtp",
        "quota-issues",
        "QuotaIssues",
        ".",
    ),
    Reply("quota.other", 552, (5, 2, 2), "<{rcpt}>: Mailbox full", "quota-issues", "QuotaIssues"),
    # --- asynchronous bounces (rb / OOB) and remote status (rs)
    Reply(
        "async.badmb",
        550,
        (5, 1, 1),
        "<{rcpt}>: Recipient address rejected: User unknown",
        "bad-mailbox",
        "InvalidRecipient",
        None,
    ),
    Reply(
        "async.content",
        550,
        (5, 7, 1),
        "Message rejected by content filter: message content policy violation",
        "content-related",
        "ContentRelated",
        None,
    ),
    Reply(
        "async.unsubscribe",
        550,
        None,
        "List-Unsubscribe request received for {rcpt}",
        "unsubscribe",
        "Unsubscribe",
        None,
    ),
    Reply("rs.relayed", 250, (2, 0, 0), "Relayed to internal gateway", "success", "Uncategorized", None),
    Reply(
        "rs.delayed",
        451,
        (4, 4, 1),
        "Delivery delayed: downstream host not responding, will keep trying",
        "other",
        "Uncategorized",
        None,
    ),
    # --- queue-level (tq)
    Reply("tq.noanswer", 0, (4, 4, 1), "", "no-answer-from-host", "NoAnswerFromHost", None),
    Reply(
        "tq.dropped",
        421,
        (4, 4, 2),
        "Connection dropped by remote host",
        "bad-connection",
        "BadConnection",
        None,
    ),
    # --- KumoMTA internal
    Reply(
        "kumo.expired",
        551,
        (5, 4, 7),
        "KumoMTA internal: Next delivery time would be after the expiry time configured via set_scheduling",
        "message-expired",
        "MessageExpired",
        None,
    ),
    Reply(
        "kumo.nxdomain",
        550,
        (5, 4, 4),
        "KumoMTA internal: no MX or A records: domain {domain} does not exist (NXDOMAIN)",
        "bad-domain",
        "BadDomain",
        None,
    ),
    Reply(
        "kumo.delayed",
        451,
        (4, 4, 5),
        "KumoMTA internal: throttled by shaping: max_message_rate reached for this site",
        "policy-related",
        "Uncategorized",
        None,
    ),
    Reply(
        "kumo.adminbounce",
        551,
        (5, 7, 1),
        "KumoMTA internal: Administratively failed: campaign cancelled by operator",
        "other",
        "Uncategorized",
        None,
    ),
    Reply(
        "kumo.rebind",
        250,
        None,
        "KumoMTA internal: rebound via admin API: routing changed",
        "other",
        "Uncategorized",
        None,
    ),
    Reply(
        "kumo.dinjrebind",
        250,
        None,
        "KumoMTA internal: moved out of the deferred injection queue",
        "other",
        "Uncategorized",
        None,
    ),
    Reply(
        "kumo.xferout", 250, None, "KumoMTA internal: transferred to kumo1", "other", "Uncategorized", None
    ),
    Reply("kumo.xferin", 250, None, "KumoMTA internal: received from kumo3", "other", "Uncategorized", None),
    Reply(
        "kumo.unknown",
        250,
        None,
        "KumoMTA internal: tenant suspension notice",
        "other",
        "Uncategorized",
        None,
    ),
    Reply(
        "reject.connections",
        421,
        (4, 7, 0),
        "Too many concurrent connections from this client, try again later",
        "bad-connection",
        "BadConnection",
        "MAIL FROM",
    ),
    Reply(
        "reject.size",
        552,
        (5, 3, 4),
        "Message size exceeds fixed maximum message size",
        "content-related",
        "ContentRelated",
        "DATA",
    ),
)
R = {r.key: i for i, r in enumerate(REPLIES)}

# Per-provider reply choices: (reply key, weight). `other` also serves the long tail.
DELIVER = {
    "google": "ok.google",
    "yahoo": "ok.yahoo",
    "microsoft": "ok.microsoft",
    "office365": "ok.microsoft",
    "apple": "ok.apple",
    "comcast": "ok.comcast",
    "gmx": "ok.gmx",
    "orange": "ok.comcast",
    "mimecast": "ok.mimecast",
    "other": "ok.other",
}
DEFER: dict[str, tuple[tuple[str, float], ...]] = {
    "google": (("defer.google.rate", 0.7), ("defer.google.receiving", 0.3)),
    "yahoo": (("defer.yahoo.tss04", 1.0),),
    "microsoft": (("defer.microsoft.650", 1.0),),
    "office365": (("defer.office365.busy", 1.0),),
    "apple": (("defer.apple.cs01", 1.0),),
    "comcast": (("defer.comcast.sessions", 1.0),),
    "gmx": (("defer.gmx.rate", 1.0),),
    "orange": (("defer.orange.rate", 1.0),),
    "mimecast": (("defer.mimecast.resources", 1.0),),
    "other": (("defer.other.greylist", 0.6), ("defer.other.busy", 0.4)),
}
BLOCK: dict[str, tuple[tuple[str, float], ...]] = {
    "google": (("block.google", 1.0),),
    "yahoo": (("block.yahoo", 1.0),),
    "microsoft": (("block.microsoft.515", 1.0),),
    "office365": (("block.microsoft.515", 1.0),),
    "apple": (("block.apple", 1.0),),
    "comcast": (("block.comcast", 1.0),),
    "gmx": (("block.gmx", 1.0),),
    "orange": (("block.orange", 1.0),),
    "mimecast": (("block.mimecast", 1.0),),
    "other": (("block.other", 1.0),),
}
BAD_MAILBOX = {
    "google": "badmb.google",
    "yahoo": "badmb.yahoo",
    "microsoft": "badmb.microsoft",
    "office365": "badmb.office365",
    "apple": "badmb.apple",
    "comcast": "badmb.comcast",
    "gmx": "badmb.gmx",
    "orange": "badmb.orange",
    "mimecast": "badmb.mimecast",
    "other": "badmb.other",
}
INACTIVE = {p: ("inactive.google" if p == "google" else "inactive.other") for p in PROVIDERS}
QUOTA = {p: ("quota.google" if p == "google" else "quota.other") for p in PROVIDERS}
QUOTA_TEMP = {p: ("defer.quota.google" if p == "google" else "defer.quota.other") for p in PROVIDERS}

# Per-attempt deferral probability, probability that a deferred message never gets through
# (expires), and per-message block probability, by provider.
P_DEFER = {
    "google": 0.025,
    "yahoo": 0.06,
    "microsoft": 0.04,
    "office365": 0.015,
    "apple": 0.02,
    "comcast": 0.05,
    "gmx": 0.03,
    "orange": 0.04,
    "mimecast": 0.02,
    "other": 0.03,
}
P_STUCK = {p: (0.06 if p == "yahoo" else 0.02) for p in PROVIDERS}
P_BLOCK = {
    "google": 0.002,
    "yahoo": 0.0015,
    "microsoft": 0.003,
    "office365": 0.001,
    "apple": 0.001,
    "comcast": 0.002,
    "gmx": 0.001,
    "orange": 0.002,
    "mimecast": 0.002,
    "other": 0.002,
}
# Complaint rate per delivered message (Gmail, iCloud and Microsoft 365 tenants run no per-message FBL).
P_COMPLAINT = {
    "google": 0.0,
    "yahoo": 0.0015,
    "microsoft": 0.001,
    "office365": 0.0,
    "apple": 0.0,
    "comcast": 0.002,
    "gmx": 0.0005,
    "orange": 0.0005,
    "mimecast": 0.0,
    "other": 0.0002,
}
# Providers whose complaints reach the MTA's feedback-loop processor (f / Feedback) besides the mailbox.
FBL_TO_MTA = ("yahoo", "microsoft", "comcast")
FBL_REPORTER: dict[str, tuple[str, str, str]] = {
    # provider -> (User-Agent, Reporting-MTA, report From address)
    "yahoo": ("Yahoo!-Mail-Feedback/2.0", "feedback.yahoo.com", "feedback@arf.mail.yahoo.com"),
    "microsoft": ("Microsoft JMRP/1.0", "jmrp.hotmail.com", "staff@hotmail.com"),
    "comcast": ("ReturnPathFBL/2.0", "fbl.returnpath.net", "fbl-noreply@comcast.net"),
    "gmx": ("GMX FBL/1.0", "fbl.gmx.net", "abuse-report@gmx.net"),
    "orange": ("Orange FBL/1.0", "fbl.orange.fr", "fbl@orange.fr"),
    "other": ("SomeGenerator/1.0", "abuse.example", "abuse@abuse.example"),
}

# Retry schedules (minutes between attempts; the last value repeats) and lifetimes (seconds).
PMTA_RETRY = (10, 20, 40, 60, 120, 240)
PMTA_RETRY_YAHOO = (15, 30, 60, 120, 240)
PMTA_RETRY_TRANS = (5, 10, 20, 60)
KUMO_RETRY = (20, 40, 80, 160, 240)
KUMO_RETRY_TRANS = (5, 10, 20, 40, 60)
PMTA_BOUNCE_AFTER = 2 * 86400
PMTA_BOUNCE_AFTER_YAHOO = 36 * 3600
KUMO_MAX_AGE = 2 * 86400
TRANS_LIFETIME = 6 * 3600  # password resets and receipts are worthless after a few hours

SEED_PROVIDERS = ("google", "yahoo", "microsoft", "apple", "gmx", "orange")
SEEDS_PER_PROVIDER = 3
SEED_DOMAINS = {
    "google": "gmail.com",
    "yahoo": "yahoo.com",
    "microsoft": "outlook.com",
    "apple": "icloud.com",
    "gmx": "gmx.de",
    "orange": "orange.fr",
}


def dsn_status_text(enhanced: tuple[int, int, int] | None, code: int) -> str:
    """PowerMTA-style ``dsnStatus``: ``x.y.z (RFC 3463 description)``."""
    if enhanced is None:
        cls = code // 100 if code else 4
        enhanced = (cls, 0, 0)
    key = "{}.{}.{}".format(*enhanced)
    known = {
        "2.0.0": "success",
        "4.0.0": "undefined status",
        "5.0.0": "undefined status",
        "5.1.1": "bad destination mailbox address",
        "5.1.2": "bad destination system address",
        "5.2.1": "mailbox disabled, not accepting messages",
        "4.2.2": "mailbox full",
        "5.2.2": "mailbox full",
        "4.2.1": "mailbox disabled, not accepting messages",
        "4.4.1": "no answer from host",
        "4.4.2": "bad connection",
        "5.4.4": "unable to route",
        "4.4.7": "delivery time expired",
        "5.5.0": "other or undefined protocol status",
        "5.7.1": "delivery not authorized, message refused",
        "4.7.1": "delivery not authorized, message refused",
        "4.3.2": "system not accepting network messages",
        "5.3.4": "message too big for system",
    }
    if key in known:
        return f"{key} ({known[key]})"
    subjects = {
        0: "other undefined status",
        1: "other address status",
        2: "other or undefined mailbox status",
        3: "other or undefined mail system status",
        4: "other or undefined network or routing status",
        5: "other or undefined protocol status",
        6: "other or undefined media error",
        7: "other or undefined security status",
    }
    return f"{key} ({subjects.get(enhanced[1], 'other undefined status')})"


def reply_line(reply: Reply) -> str:
    """The one-line reply as a receiver sent it: ``code [x.y.z ]text`` (placeholders kept)."""
    parts = [str(reply.code)] if reply.code else []
    if reply.enhanced is not None and reply.code:
        parts.append("{}.{}.{}".format(*reply.enhanced))
    if reply.text:
        parts.append(reply.text)
    return " ".join(parts)
