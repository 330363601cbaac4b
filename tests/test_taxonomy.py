"""The unified bounce taxonomy: every PowerMTA category and KumoMTA class maps as documented."""

from pathlib import Path

import polars as pl
import pytest
import yaml

from mtashift.taxonomy import (
    KUMO_CLASSES,
    PMTA_CATEGORIES,
    consequence_expr,
    default_taxonomy_path,
    load_taxonomy,
    map_raw_category,
    parse_taxonomy,
    raw_label_known,
    taxonomy_frame,
)

PMTA_EXPECTED = {
    "bad-configuration": "bad-configuration",
    "bad-connection": "bad-connection",
    "bad-domain": "bad-domain",
    "bad-mailbox": "bad-mailbox",
    "content-related": "content-related",
    "inactive-mailbox": "inactive-mailbox",
    "invalid-sender": "invalid-sender",
    "message-expired": "message-expired",
    "no-answer-from-host": "no-answer-from-host",
    "other": "other",
    "policy-related": "policy-related",
    "protocol-errors": "protocol-errors",
    "quota-issues": "quota-issues",
    "relaying-issues": "relaying-issues",
    "routing-errors": "routing-errors",
    "spam-related": "spam-related",
    "virus-related": "virus-related",
    "success": "success",
}

KUMO_EXPECTED = {
    "InvalidRecipient": "bad-mailbox",
    "DNSFailure": "dns-failure",
    "SpamBlock": "spam-related",
    "SpamContent": "content-related",
    "ProhibitedAttachment": "content-related",
    "RelayDenied": "relaying-issues",
    "AutoReply": "auto-reply",
    "TransientFailure": "transient-failure",
    "Subscribe": "subscribe",
    "Unsubscribe": "unsubscribe",
    "ChallengeResponse": "challenge-response",
    "BadConfiguration": "bad-configuration",
    "BadConnection": "bad-connection",
    "BadDomain": "bad-domain",
    "ContentRelated": "content-related",
    "InactiveMailbox": "inactive-mailbox",
    "InvalidSender": "invalid-sender",
    "MessageExpired": "message-expired",
    "NoAnswerFromHost": "no-answer-from-host",
    "PolicyRelated": "policy-related",
    "ProtocolErrors": "protocol-errors",
    "QuotaIssues": "quota-issues",
    "RelayingIssues": "relaying-issues",
    "RoutingErrors": "routing-errors",
    "SpamRelated": "spam-related",
    "VirusRelated": "virus-related",
    "AuthenticationFailed": "authentication-failed",
    "TooManyRecipients": "too-many-recipients",
    "Uncategorized": "other",
}

CONSEQUENCE_EXPECTED = {
    "bad-mailbox": "suppress",
    "inactive-mailbox": "suppress",
    "bad-domain": "suppress",
    "unsubscribe": "suppress",
    "quota-issues": "retry-then-suppress",
    "dns-failure": "retry-then-suppress",
    "no-answer-from-host": "retry-then-suppress",
    "routing-errors": "retry-then-suppress",
    "relaying-issues": "retry-then-suppress",
    "message-expired": "retry-then-suppress",
    "bad-connection": "statistical",
    "transient-failure": "statistical",
    "spam-related": "statistical",
    "policy-related": "statistical",
    "authentication-failed": "statistical",
    "invalid-sender": "statistical",
    "bad-configuration": "statistical",
    "protocol-errors": "statistical",
    "too-many-recipients": "statistical",
    "content-related": "statistical",
    "virus-related": "statistical",
    "auto-reply": "statistical",
    "challenge-response": "statistical",
    "subscribe": "statistical",
    "success": "statistical",
    "other": "statistical",
}


def test_expected_tables_cover_the_reference_lists():
    assert set(PMTA_EXPECTED) == set(PMTA_CATEGORIES)
    assert len(PMTA_EXPECTED) == 18
    assert set(KUMO_EXPECTED) == set(KUMO_CLASSES)
    assert len(KUMO_EXPECTED) == 29


@pytest.mark.parametrize(("label", "category"), sorted(PMTA_EXPECTED.items()))
def test_every_powermta_category_maps(label, category):
    assert load_taxonomy().category_of(label) == category


@pytest.mark.parametrize(("label", "category"), sorted(KUMO_EXPECTED.items()))
def test_every_kumomta_class_maps(label, category):
    assert load_taxonomy().category_of(label) == category


def test_categories_and_consequences_are_exactly_the_documented_set():
    tax = load_taxonomy()
    assert {n: c.consequence for n, c in tax.categories.items()} == CONSEQUENCE_EXPECTED
    assert tax.reclassify == ("other", "success")


def test_vectorised_mapping_matches_the_tables_and_handles_blank_unknown_and_case():
    labels = [
        *PMTA_EXPECTED,
        *KUMO_EXPECTED,
        "Bad_Mailbox",
        "INVALIDRECIPIENT",
        " spam-related ",
        "my-custom-cat",
        "",
        None,
    ]
    expected = [
        *PMTA_EXPECTED.values(),
        *KUMO_EXPECTED.values(),
        "bad-mailbox",
        "bad-mailbox",
        "spam-related",
        "other",
        None,
        None,
    ]
    out = pl.DataFrame({"raw": labels}, schema={"raw": pl.String}).select(
        map_raw_category("raw").alias("category"), raw_label_known("raw").alias("known")
    )
    assert out["category"].to_list() == expected
    assert out["known"].to_list() == [True] * (len(labels) - 3) + [False, None, None]


def test_consequence_expression():
    out = pl.DataFrame({"category": ["bad-mailbox", "quota-issues", "spam-related", None]}).select(
        consequence_expr("category")
    )
    assert out.to_series().to_list() == ["suppress", "retry-then-suppress", "statistical", None]


def test_taxonomy_frame_lists_every_label_once():
    frame = taxonomy_frame()
    assert frame.height == 18 + 29
    assert frame.filter(pl.col("mta") == "pmta").height == 18
    assert frame.filter(pl.col("mta") == "kumo").height == 29
    assert frame.filter(pl.col("raw_label") == "SpamBlock")["category"].item() == "spam-related"


def _doc() -> dict:
    return yaml.safe_load(default_taxonomy_path().read_text(encoding="utf-8"))


def test_validation_rejects_a_label_mapped_twice():
    doc = _doc()
    doc["categories"]["spam-related"]["kumo"].append("SpamContent")
    with pytest.raises(ValueError, match="SpamContent"):
        parse_taxonomy(doc)


def test_validation_rejects_an_unmapped_reference_label():
    doc = _doc()
    doc["categories"]["dns-failure"]["kumo"] = []
    with pytest.raises(ValueError, match="DNSFailure"):
        parse_taxonomy(doc)


def test_validation_rejects_unknown_consequence_and_folding_collisions():
    doc = _doc()
    doc["categories"]["other"]["consequence"] = "ignore"
    with pytest.raises(ValueError, match="consequence"):
        parse_taxonomy(doc)
    doc = _doc()
    doc["categories"]["other"]["pmta"].append("Bad_Mailbox")  # folds to bad-mailbox's key
    with pytest.raises(ValueError, match="badmailbox"):
        parse_taxonomy(doc)


def test_docs_describe_every_category():
    text = (Path(default_taxonomy_path()).parent / "docs" / "bounce_taxonomy.md").read_text(encoding="utf-8")
    for name, cat in load_taxonomy().categories.items():
        assert f"| {name} | {cat.consequence} |" in text, name
