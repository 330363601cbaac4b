"""Classifier rules on real-looking provider replies, rule order, raw-category precedence, bounces table."""

from datetime import UTC, datetime

import polars as pl
import pytest
import yaml

from mtashift.bounces import (
    build_bounces,
    category_agreement,
    classifier_stats,
    reply_template,
    rule_hits,
    unmatched_replies,
)
from mtashift.classify import classify, classify_replies, default_rules_path, load_rules, parse_rules
from schemas.bounces import BOUNCE_SCHEMA
from schemas.events import EVENT_SCHEMA

# (reply as "<code> <x.y.z> <text>", expected category, expected rule). Texts follow the shape of
# real provider replies (ids, IPs and host names invented).
REPLIES = [
    # --- Gmail
    (
        "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. For more information, go to https://support.google.com/mail/?p=NoSuchUser 41be03b00d2f7-5e3f1c2a71esi1234567a12.150 - gsmtp",
        "bad-mailbox",
        "gmail.no-such-user",
    ),
    (
        "550 5.2.1 The email account that you tried to reach is disabled. For more information, go to https://support.google.com/mail/?p=DisabledUser a1si2 - gsmtp",
        "inactive-mailbox",
        "gmail.disabled-user",
    ),
    (
        "452 4.2.2 The recipient's inbox is out of storage space. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp b2si3 - gsmtp",
        "quota-issues",
        "gmail.over-quota",
    ),
    (
        "450 4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered. For more information, go to https://support.google.com/mail/?p=ReceivingRatePerm c3si4 - gsmtp",
        "policy-related",
        "gmail.receiving-rate",
    ),
    (
        "421 4.7.28 Gmail has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited. For more information, go to https://support.google.com/mail/?p=UnsolicitedRateLimitError to review our Bulk Email Senders Guidelines. d9443c01a7336-2f1e3c9b2dbsi12345 - gsmtp",
        "spam-related",
        "gmail.unsolicited-rate",
    ),
    (
        "550 5.7.1 Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked. For more information, go to https://support.google.com/mail/?p=UnsolicitedMessageError e5si6 - gsmtp",
        "spam-related",
        "gmail.unsolicited",
    ),
    (
        "550 5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM. For more information, go to https://support.google.com/mail/answer/81126#authentication f6si7 - gsmtp",
        "authentication-failed",
        "gmail.unauthenticated",
    ),
    (
        "550 5.7.25 The IP address sending this message does not have a PTR record setup, or the corresponding forward DNS entry does not point to the sending IP. g7si8 - gsmtp",
        "authentication-failed",
        "gmail.ptr",
    ),
    # --- Yahoo
    (
        "421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        "spam-related",
        "yahoo.tss",
    ),
    (
        "554 delivery error: dd This user doesn't have a yahoo.com account (frank@yahoo.com) [0] - mta1234.mail.bf1.yahoo.com",
        "bad-mailbox",
        "yahoo.no-account",
    ),
    (
        "554 5.7.9 Message not accepted for policy reasons.  See https://postmaster.yahooinc.com/error-codes",
        "policy-related",
        "yahoo.policy",
    ),
    # --- Microsoft
    (
        "550 5.7.515 Access denied, sending domain [NEWS.SENDER.EXAMPLE] does not meet the required authentication level. The sender's domain in the 5322.From address doesn't meet the authentication requirements defined for the sender. To learn more, go to https://go.microsoft.com/fwlink/?linkid=2319586",
        "authentication-failed",
        "microsoft.authentication-level",
    ),
    (
        "451 4.7.650 The mail server [192.0.2.10] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S775) [Name=Protocol Filter Agent][AGT=PFA][MxId=11BA7AB1D8C6E2F1] [BN2NAM02FT012.eop-nam02.prod.protection.outlook.com 2024-05-01T10:00:00.000Z 08DC6A1B2C3D4E5F]",
        "policy-related",
        "microsoft.ip-reputation-rate-limit",
    ),
    (
        "550 5.7.1 Unfortunately, messages from [192.0.2.10] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.",
        "spam-related",
        "microsoft.block-list",
    ),
    (
        "550 5.4.1 Recipient address rejected: Access denied. For more information see https://aka.ms/EXOSmtpErrors [XXX.namprd05.prod.outlook.com 2026-03-13T18:10:42.797Z XXX]",
        "bad-mailbox",
        "microsoft.directory-edge-block",
    ),
    # --- Mimecast / Orange
    (
        "550 Administrative prohibition - envelope blocked - https://community.mimecast.com/docs/DOC-1369#550",
        "policy-related",
        "mimecast.envelope-blocked",
    ),
    (
        "550 5.1.1 mwinf5c10 ME Adresse d au moins un destinataire invalide. Invalid recipient. OFR_416 [416]",
        "bad-mailbox",
        "orange.invalid-recipient",
    ),
    # --- generic text
    ("4.4.7 Message expired after 72 hours in queue", "message-expired", "text.message-expired"),
    (
        "550 Your message is held by a challenge-response system until you confirm",
        "challenge-response",
        "text.challenge-response",
    ),
    ("I am out of the office until Monday", "auto-reply", "text.auto-reply"),
    ("452 Too many recipients received this hour", "too-many-recipients", "text.too-many-recipients"),
    ("554 5.7.1 Message rejected: Virus found: Win.Trojan.Agent", "virus-related", "text.virus"),
    (
        "552 5.3.4 Message contains a prohibited attachment type (.exe)",
        "content-related",
        "text.prohibited-attachment",
    ),
    (
        "550 5.7.23 Message rejected due to SPF fail for news.sender.example",
        "authentication-failed",
        "text.authentication",
    ),
    (
        "553 5.1.8 <bounce@news.sender.example>: Sender address rejected: Domain not found",
        "invalid-sender",
        "text.invalid-sender",
    ),
    ("451 4.4.3 Host not found", "dns-failure", "text.dns-failure"),
    (
        "Host or domain name not found. Name service error for name=mx.gone.example type=MX: Host not found, try again",
        "dns-failure",
        "text.dns-failure",
    ),
    (
        "550 5.1.2 <u@gone.example>: Recipient address rejected: Domain does not exist",
        "bad-domain",
        "text.bad-domain",
    ),
    (
        "450 4.2.1 Mailbox temporarily unavailable, try again later",
        "transient-failure",
        "text.mailbox-temporarily-unavailable",
    ),
    ("550 5.2.1 This account has been disabled or discontinued", "inactive-mailbox", "text.inactive-mailbox"),
    ("452 4.2.2 mailbox full", "quota-issues", "text.quota"),
    (
        "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
        "bad-mailbox",
        "text.bad-mailbox",
    ),
    ("421 4.4.1 Connection timed out", "no-answer-from-host", "text.no-answer"),
    ("421 4.4.2 Connection reset by peer", "bad-connection", "text.bad-connection"),
    ("530 5.7.0 Must issue a STARTTLS command first", "bad-configuration", "text.tls-required"),
    ("554 5.7.1 <u@example.org>: Relay access denied", "relaying-issues", "text.relaying"),
    ("554 5.4.6 Routing loop detected", "routing-errors", "text.routing"),
    ("554 5.7.1 Message content rejected as spam", "content-related", "text.content"),
    (
        "554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org",
        "spam-related",
        "text.spam",
    ),
    ("450 4.7.1 Greylisted, please try again later", "policy-related", "text.policy"),
    ("503 5.5.1 Bad sequence of commands", "protocol-errors", "text.protocol"),
    # --- status codes (texts that no text rule matches)
    ("250 2.0.0 OK queued as 7F2A10", "success", "status.2xx-success"),
    ("550 5.1.10 RESOLVER.ADR.RecipientNotFound; see https://aka.ms/nullmx", "bad-domain", "status.x.1.10"),
    ("550 5.1.1 RESOLVER.ADR.RecipientNotFound", "bad-mailbox", "status.x.1.1"),
    ("550 5.1.2 bad destination system address", "bad-domain", "status.x.1.2"),
    ("550 5.1.6 recipient has moved", "inactive-mailbox", "status.x.1.6-x.2.1"),
    ("550 5.7.18 RESOLVER.ADR.Ownerchanged", "bad-domain", "status.x.7.18"),
    ("553 5.1.7 bad sender's mailbox address syntax", "invalid-sender", "status.x.1.7"),
    ("552 5.2.2 see you later", "quota-issues", "status.x.2.2"),
    ("552 5.3.4 Message is too big for this system", "content-related", "status.x.2.3"),
    ("554 5.3.5 system incorrectly configured", "bad-configuration", "status.x.3.5"),
    ("451 4.4.1 ", "no-answer-from-host", "status.x.4.1"),
    ("421 4.4.2 bye", "bad-connection", "status.x.4.2"),
    ("451 4.4.3 temporary failure", "dns-failure", "status.x.4.3"),
    ("550 5.4.4 unable to deliver", "routing-errors", "status.x.4.4"),
    ("451 4.4.5 system congestion", "transient-failure", "status.x.4.5"),
    ("4.4.7", "message-expired", "status.x.4.7"),
    ("452 4.5.3 try with fewer", "too-many-recipients", "status.x.5.3"),
    ("501 5.5.4 invalid parameters", "protocol-errors", "status.x.5"),
    ("421 4.7.28 slow down", "spam-related", "status.x.7.28"),
    ("550 5.7.26 multiple checks failed", "authentication-failed", "status.x.7.auth"),
    ("550 5.7.1 whatever this means", "policy-related", "status.x.7"),
    ("421 Service not available, closing transmission channel", "other", "catch-all"),
    ("", "other", "catch-all"),
]


def test_every_rule_has_an_example():
    ids = {r.id for r in load_rules().rules}
    assert ids == {rule for _t, _c, rule in REPLIES}


@pytest.mark.parametrize(
    ("reply", "category", "rule"), REPLIES, ids=[f"{r[2]}:{i}" for i, r in enumerate(REPLIES)]
)
def test_reply_classifies_as_documented(reply, category, rule):
    assert classify_replies([reply]) == [(category, rule)]


def test_text_rules_beat_status_codes():
    got = classify_replies(
        [
            "550 5.1.1 blocked",  # PowerMTA semantics: text first, "blocked" is spam-related
            "550 5.1.1 <a@example.com>: Recipient address rejected: User unknown; sender blocked",
            "550 5.1.1",  # no text: the status rule decides
            "450 4.2.1 The user you are trying to contact is receiving mail too quickly",  # not x.2.1 inactive
        ]
    )
    assert got == [
        ("spam-related", "text.spam"),
        ("bad-mailbox", "text.bad-mailbox"),
        ("bad-mailbox", "status.x.1.1"),
        ("policy-related", "gmail.receiving-rate"),
    ]


def test_matching_is_case_insensitive():
    assert classify_replies(["452 4.2.2 MAILBOX FULL", "host NOT found"]) == [
        ("quota-issues", "text.quota"),
        ("dns-failure", "text.dns-failure"),
    ]


def _rules_doc() -> dict:
    return yaml.safe_load(default_rules_path().read_text(encoding="utf-8"))


def test_rule_validation():
    doc = _rules_doc()
    doc["rules"].insert(0, {"id": "early-status", "kind": "status", "category": "bad-mailbox", "regex": "^5"})
    with pytest.raises(ValueError, match="text rule after a status rule"):
        parse_rules(doc)
    doc = _rules_doc()
    doc["rules"].pop()
    with pytest.raises(ValueError, match="catch-all"):
        parse_rules(doc)
    doc = _rules_doc()
    doc["rules"][0]["category"] = "not-a-category"
    with pytest.raises(ValueError, match="unknown category"):
        parse_rules(doc)
    doc = _rules_doc()
    doc["rules"][0]["regex"] = "(unclosed"
    with pytest.raises(ValueError, match="invalid regex"):
        parse_rules(doc)
    doc = _rules_doc()
    doc["rules"][1]["id"] = doc["rules"][0]["id"]
    with pytest.raises(ValueError, match="duplicate id"):
        parse_rules(doc)


def test_rules_file_order_is_data(tmp_path):
    doc = _rules_doc()
    # Move the generic spam rule ahead of the mailbox phrases: the mixed reply changes category.
    spam = next(r for r in doc["rules"] if r["id"] == "text.spam")
    doc["rules"].remove(spam)
    doc["rules"].insert(0, spam)
    p = tmp_path / "rules.yaml"
    p.write_text(yaml.safe_dump(doc), encoding="utf-8")
    reply = "550 5.1.1 <a@example.com>: Recipient address rejected: User unknown; sender blocked"
    assert classify_replies([reply], rules=load_rules(p)) == [("spam-related", "text.spam")]


T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def _events(rows: list[dict]) -> pl.LazyFrame:
    full = []
    for i, r in enumerate(rows):
        base = dict.fromkeys(EVENT_SCHEMA.names())
        base.update(
            event_id=f"e{i:02d}", mta="pmta", event_time=T0.replace(minute=i), recipient_domain="gmail.com"
        )
        base.update(r)
        full.append(base)
    return pl.DataFrame(full, schema=EVENT_SCHEMA).lazy()


def test_classify_raw_category_precedence():
    frame = pl.DataFrame(
        {
            "smtp_code": [452, 452, 550, 550, 550, 550],
            "enhanced_status": ["4.2.2", "4.2.2", "5.1.1", "5.1.1", "5.1.1", None],
            "response": ["mailbox full", "mailbox full", "no such user", "no such user", "no such user", ""],
            "raw_bounce_category": ["bad-mailbox", "Uncategorized", "my-custom", "success", None, "   "],
        },
        schema={
            "smtp_code": pl.Int16,
            "enhanced_status": pl.String,
            "response": pl.String,
            "raw_bounce_category": pl.String,
        },
    )
    out = classify(frame.lazy()).collect()
    assert out.columns[-6:] == [
        "raw_category",
        "classifier_category",
        "classifier_rule",
        "category",
        "rule",
        "consequence",
    ]
    assert out["raw_category"].to_list() == ["bad-mailbox", "other", "other", "success", None, None]
    assert out["classifier_category"].to_list() == [
        "quota-issues",
        "quota-issues",
        "bad-mailbox",
        "bad-mailbox",
        "bad-mailbox",
        "other",
    ]
    assert out["category"].to_list() == [
        "bad-mailbox",
        "quota-issues",
        "bad-mailbox",
        "bad-mailbox",
        "bad-mailbox",
        "other",
    ]
    assert out["rule"].to_list() == [
        "raw:bad-mailbox",
        "text.quota",
        "text.bad-mailbox",
        "text.bad-mailbox",
        "text.bad-mailbox",
        "catch-all",
    ]
    assert out["consequence"].to_list() == [
        "suppress",
        "retry-then-suppress",
        "suppress",
        "suppress",
        "suppress",
        "statistical",
    ]


def test_build_bounces_keeps_failure_events_only_with_the_declared_schema():
    events = _events(
        [
            {"event_type": "delivered", "smtp_code": 250, "enhanced_status": "2.0.0", "response": "OK"},
            {"event_type": "bounced", "smtp_code": 550, "enhanced_status": "5.1.1", "response": "user unknown", "raw_bounce_category": "bad-mailbox"},
            {"event_type": "deferred", "mta": "kumo", "smtp_code": 421, "enhanced_status": "4.7.0",
             "response": "[TSS04] Messages from 192.0.2.1 temporarily deferred due to user complaints", "raw_bounce_category": "Uncategorized"},
            {"event_type": "expired", "enhanced_status": "4.4.7", "response": "message expired", "raw_bounce_category": "message-expired"},
            {"event_type": "queue_deferred", "response": "Host not found"},
            {"event_type": "remote_bounce", "smtp_code": 552, "enhanced_status": "5.2.2", "response": "over quota"},
            {"event_type": "rejected", "mta": "kumo", "smtp_code": 550, "response": "relaying denied"},
            {"event_type": "admin_bounce", "mta": "kumo", "response": "KumoMTA internal: administratively bounced"},
            {"event_type": "complaint"},
            {"event_type": "received"},
        ]
    )  # fmt: skip
    out = build_bounces(events=events).collect()
    assert out.schema == BOUNCE_SCHEMA
    assert out["event_id"].to_list() == ["e01", "e02", "e03", "e04", "e05", "e06", "e07"]
    assert out["category"].to_list() == [
        "bad-mailbox", "spam-related", "message-expired", "dns-failure", "quota-issues", "relaying-issues", "other",
    ]  # fmt: skip
    assert out["rule"].to_list() == [
        "raw:bad-mailbox", "yahoo.tss", "raw:message-expired", "text.dns-failure", "text.quota", "text.relaying", "catch-all",
    ]  # fmt: skip
    assert out["provider"].to_list() == [None] * 7


def test_build_bounces_passes_provider_through():
    events = _events([{"event_type": "bounced", "response": "user unknown"}]).with_columns(
        pl.lit("google").alias("provider")
    )
    assert build_bounces(events=events).collect()["provider"].to_list() == ["google"]


def _bounces() -> pl.LazyFrame:
    rows = [
        # pmta / google: 3 rows with bounceCat; one disagrees with our rules
        {"event_type": "bounced", "smtp_code": 550, "enhanced_status": "5.1.1", "response": "user unknown", "raw_bounce_category": "bad-mailbox"},
        {"event_type": "bounced", "smtp_code": 550, "enhanced_status": "5.1.1", "response": "user unknown", "raw_bounce_category": "bad-mailbox"},
        {"event_type": "bounced", "smtp_code": 550, "enhanced_status": "5.7.1", "response": "blocked by rbl", "raw_bounce_category": "policy-related"},
        # pmta / google: 3 unclassified rows, two share a template
        {"event_type": "deferred", "smtp_code": 421, "response": "Service not available from 192.0.2.10 id 4411", "raw_bounce_category": "other"},
        {"event_type": "deferred", "smtp_code": 421, "response": "Service not available from 192.0.2.77 id 98", "raw_bounce_category": "other"},
        {"event_type": "deferred", "smtp_code": 421, "response": "Try elsewhere", "raw_bounce_category": ""},
        # kumo / yahoo
        {"event_type": "deferred", "mta": "kumo", "recipient_domain": "yahoo.com", "smtp_code": 421, "enhanced_status": "4.7.0",
         "response": "[TSS04] Messages from 192.0.2.1 temporarily deferred due to user complaints", "raw_bounce_category": "Uncategorized"},
    ]  # fmt: skip
    ev = _events(rows).with_columns(
        pl.when(pl.col("recipient_domain") == "yahoo.com")
        .then(pl.lit("yahoo"))
        .otherwise(pl.lit("google"))
        .alias("provider")
    )
    return build_bounces(events=ev)


def test_classifier_stats_values():
    out = classifier_stats(bounces=_bounces()).collect()
    assert out.select(
        "provider", "mta", "failures", "classified_by_raw", "classified_by_rules", "unclassified"
    ).rows() == [
        ("google", "pmta", 6, 3, 0, 3),
        ("yahoo", "kumo", 1, 0, 1, 0),
    ]
    assert out["unclassified_rate"].to_list() == [0.5, 0.0]
    assert out["day"].to_list() == [T0.date(), T0.date()]


def test_rule_hits_values():
    out = rule_hits(bounces=_bounces()).collect()
    assert out.select("provider", "mta", "rule", "category", "hits").rows() == [
        ("google", "pmta", "catch-all", "other", 3),
        ("google", "pmta", "raw:bad-mailbox", "bad-mailbox", 2),
        ("google", "pmta", "raw:policy-related", "policy-related", 1),
        ("yahoo", "kumo", "yahoo.tss", "spam-related", 1),
    ]


def test_unmatched_replies_group_by_template():
    out = unmatched_replies(bounces=_bounces()).collect()
    assert out.select("provider", "rank", "smtp_code", "template", "failures", "example").rows() == [
        (
            "google",
            1,
            421,
            "Service not available from <ip> id <n>",
            2,
            "Service not available from 192.0.2.10 id 4411",
        ),
        ("google", 2, 421, "Try elsewhere", 1, "Try elsewhere"),
    ]


def test_category_agreement_matrix():
    out = category_agreement(bounces=_bounces()).collect()
    assert out.select(
        "mta", "raw_bounce_category", "raw_category", "classifier_category", "agree", "rows"
    ).rows() == [
        ("kumo", "Uncategorized", "other", "spam-related", False, 1),
        ("pmta", "bad-mailbox", "bad-mailbox", "bad-mailbox", True, 2),
        ("pmta", "other", "other", "other", True, 2),
        ("pmta", "policy-related", "policy-related", "spam-related", False, 1),
    ]


def test_reply_template_strips_variable_parts():
    replies = [
        "<bob.smith@example.com>: Recipient address rejected",
        "[TSS04] Messages from 192.0.2.10 deferred - see https://postmaster.yahooinc.com/error-codes",
        "rate limited [BN2NAM02FT012.eop-nam02.prod.protection.outlook.com 2024-01-01T00:00:00.000Z 08DC0A1B2C3D4E5F]",
        "from 2001:db8::1 at 10:22:01 via mta7.am0.yahoodns.net",
    ]
    out = pl.select(reply_template(pl.Series(replies))).to_series().to_list()
    assert out == [
        "<<addr>>: Recipient address rejected",
        "[TSS<n>] Messages from <ip> deferred - see <url>",
        "rate limited [<host> <time> <id>]",
        "from <ip> at <time> via <host>",
    ]


def test_classification_uses_distinct_replies_but_preserves_rows():
    n = 5000
    frame = pl.DataFrame(
        {
            "smtp_code": [550] * n,
            "enhanced_status": ["5.1.1"] * n,
            "response": [f"user {i % 7} unknown" for i in range(n)],
        },
        schema={"smtp_code": pl.Int16, "enhanced_status": pl.String, "response": pl.String},
    ).with_row_index("i")
    out = classify(frame.lazy()).collect()
    assert out.height == n
    assert out["i"].to_list() == list(range(n))
    assert out["category"].unique().to_list() == ["bad-mailbox"]


def test_unclassified_rate_view(tmp_path):
    from mtashift import catalog
    from mtashift.lake import Lake, write_partition

    lake = Lake.at(tmp_path / "lake")
    stats = classifier_stats(bounces=_bounces()).collect()
    write_partition(stats, lake=lake, table="classifier_stats", day="2024-05-01")
    assert "unclassified_rate" in catalog.refresh(lake)["created"]
    got = catalog.query(
        lake,
        "SELECT provider, failures, unclassified, unclassified_rate FROM unclassified_rate ORDER BY provider",
    )
    assert got.rows() == [("google", 6, 3, 0.5), ("yahoo", 1, 0, 0.0)]
