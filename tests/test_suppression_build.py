"""Rebuilding the list: thresholds, expiry, precedence, scopes, policy overrides."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from mtashift.suppression.build import build_suppression, compute_as_of, evaluate_suppression
from mtashift.suppression.policy import load_policy
from schemas.suppression import SUPPRESSION_SCHEMA

T0 = datetime(2024, 3, 1, tzinfo=UTC)
DEFAULT = load_policy()


def day(d: float) -> datetime:
    return T0 + timedelta(days=d)


def bounce(eid: str, rcpt: str, d: float, category: str, consequence: str, **kw) -> dict:
    row = {
        "event_id": eid,
        "event_type": "bounced",
        "event_time": day(d),
        "recipient": rcpt,
        "sender_domain": "news.example",
        "tenant": "acme",
        "message_id": f"msg-{eid}",
        "category": category,
        "consequence": consequence,
    }
    row.update(kw)
    return row


def soft(prefix: str, rcpt: str, days: list[float], **kw) -> list[dict]:
    return [
        bounce(f"{prefix}{i}", rcpt, d, "quota-issues", "retry-then-suppress", **kw)
        for i, d in enumerate(days)
    ]


def complaint(cid: str, rcpt: str, d: float, feedback_type: str = "abuse", **kw) -> dict:
    row = {
        "complaint_id": cid,
        "complaint_time": day(d),
        "feedback_type": feedback_type,
        "recipient": rcpt,
        "recipient_redacted": False,
        "sender_domain": "news.example",
        "tenant": "acme",
    }
    row.update(kw)
    return row


def run(bounces=None, complaints=None, legacy=None, policy=DEFAULT, as_of=None):
    b = pl.DataFrame(bounces) if bounces else None
    c = pl.DataFrame(complaints) if complaints else None
    return evaluate_suppression(legacy=legacy, bounces=b, complaints=c, policy=policy, as_of=as_of)


def keys(build) -> list[str]:
    return build.table["match_key"].to_list()


def test_soft_threshold_four_is_not_enough_five_within_30_days_is() -> None:
    rows = soft("a", "four@x.com", [0, 7, 14, 21]) + soft("b", "five@x.com", [0, 7, 14, 21, 28])
    out = run(rows, as_of=day(30))
    assert keys(out) == ["five@x.com"]
    r = out.table.row(0, named=True)
    assert r["source"] == "bounce" and r["rule"] == "bounces.retry_then_suppress"
    assert r["first_seen"] == day(28)  # the failure that reached the threshold
    assert r["last_seen"] == day(28)
    assert r["expires_at"] == day(28 + 90)
    assert r["evidence"] == ["b0", "b1", "b2", "b3", "b4"] and r["evidence_count"] == 5
    assert r["reason"] == "repeated failures: 5 or more within 30 days (quota-issues)"
    assert r["category"] == "quota-issues"


def test_five_spread_over_40_days_do_not_suppress() -> None:
    out = run(soft("s", "spread@x.com", [0, 10, 20, 30, 40]), as_of=day(40))
    assert out.table.height == 0
    assert out.expired.height == 0


def test_window_includes_both_ends() -> None:
    # Day 0 and day 30 are within 30 days of each other; day 0 and day 30.1 are not.
    out = run(soft("w", "edge@x.com", [0, 10, 20, 29.9, 30]), as_of=day(31))
    assert keys(out) == ["edge@x.com"]
    out = run(soft("w", "edge@x.com", [0, 10, 20, 29.9, 30.1]), as_of=day(31))
    assert out.table.height == 0


def test_expiry_after_90_days_since_last_failure() -> None:
    rows = soft("e", "exp@x.com", [0, 1, 2, 3, 4])
    before = run(rows, as_of=day(4 + 89))
    assert keys(before) == ["exp@x.com"]
    at = run(rows, as_of=day(4 + 90))  # expires_at == as_of: lapsed
    assert at.table.height == 0
    assert at.expired.select("match_key", "source", "rule").rows() == [
        (
            "exp@x.com",
            "bounce",
            "bounces.retry_then_suppress.expire_after_days=90: last failure 2024-03-05T00:00:00Z, "
            "lapsed 2024-06-03T00:00:00Z",
        )
    ]


def test_failures_while_suppressed_extend_the_expiry_and_old_runs_do_not_come_back() -> None:
    rows = soft("r", "run@x.com", [0, 1, 2, 3, 4, 60])
    out = run(rows, as_of=day(100))
    r = out.table.row(0, named=True)
    assert (r["first_seen"], r["last_seen"], r["expires_at"]) == (day(4), day(60), day(150))
    # After a lapse (gap >= 90 days), two new failures do not re-suppress.
    rows = soft("r", "run@x.com", [0, 1, 2, 3, 4, 200, 201])
    out = run(rows, as_of=day(201))
    assert out.table.height == 0
    assert out.expired["match_key"].to_list() == ["run@x.com"]


def test_count_messages_collapses_one_message_counted_as_events_by_option() -> None:
    rows = [
        bounce(f"m{i}", "one@x.com", i, "quota-issues", "retry-then-suppress", message_id="same")
        for i in range(5)
    ]
    assert run(rows, as_of=day(5)).table.height == 0
    events = load_policy(overrides={"bounces": {"retry_then_suppress": {"count": "events"}}})
    assert keys(run(rows, policy=events, as_of=day(5))) == ["one@x.com"]


def test_only_verdict_event_types_count() -> None:
    rows = [
        bounce("d1", "def@x.com", 1, "bad-mailbox", "suppress", event_type="deferred"),
        bounce("r1", "rej@x.com", 1, "bad-mailbox", "suppress", event_type="rejected"),
        bounce("o1", "oob@x.com", 1, "bad-mailbox", "suppress", event_type="remote_bounce"),
        # An expiry is not a verdict: its category is the last temporary reply's.
        bounce("x1", "exp@x.com", 1, "bad-mailbox", "suppress", event_type="expired"),
        bounce("s1", "stat@x.com", 1, "spam-related", "statistical"),
    ]
    assert keys(run(rows)) == ["oob@x.com"]
    # ...but expiries count as failures towards the threshold; deferrals do not.
    mixed = [
        *[
            bounce(f"x{i}", "mix@x.com", i, "message-expired", "retry-then-suppress", event_type="expired")
            for i in range(3)
        ],
        bounce("r1", "mix@x.com", 3, "quota-issues", "retry-then-suppress", event_type="remote_bounce"),
        *[
            bounce(f"d{i}", "mix@x.com", 4, "quota-issues", "retry-then-suppress", event_type="deferred")
            for i in range(3)
        ],
    ]
    assert run(mixed, as_of=day(5)).table.height == 0
    mixed.append(bounce("b1", "mix@x.com", 4, "quota-issues", "retry-then-suppress"))
    assert keys(run(mixed, as_of=day(5))) == ["mix@x.com"]


def test_hard_bounce_suppresses_at_once_and_never_expires() -> None:
    out = run([bounce("h1", "Hard@X.com", 1, "bad-mailbox", "suppress")], as_of=day(5000))
    r = out.table.row(0, named=True)
    assert (r["address"], r["match_key"], r["expires_at"], r["reason"]) == (
        "Hard@x.com",
        "hard@x.com",
        None,
        "bounce verdict: bad-mailbox",
    )


@pytest.mark.parametrize(("bounce_day", "complaint_day"), [(1, 3), (3, 1)])
def test_complaint_and_hard_bounce_precedence_and_evidence(bounce_day: int, complaint_day: int) -> None:
    out = run(
        [bounce("h1", "Pat@x.com", bounce_day, "bad-mailbox", "suppress")],
        [complaint("c1", "pat@X.COM", complaint_day)],
    )
    assert out.table.height == 1
    r = out.table.row(0, named=True)
    assert r["source"] == "complaint"
    assert r["rule"] == "complaints"
    assert r["category"] == "abuse"
    assert r["reason"] == "complaint (abuse)"
    assert r["address"] == "pat@x.com"  # the winning source's spelling
    assert r["sources"] == ["complaint", "bounce"]
    assert r["first_seen"] == day(1) and r["last_seen"] == day(3)
    expected = ["h1", "c1"] if bounce_day < complaint_day else ["c1", "h1"]
    assert r["evidence"] == expected and r["evidence_count"] == 2
    assert r["expires_at"] is None


def test_unsubscribe_category_is_its_own_source() -> None:
    rows = [bounce("u1", "u@x.com", 2, "unsubscribe", "suppress", event_type="remote_bounce")]
    r = run(rows).table.row(0, named=True)
    assert (r["source"], r["rule"], r["reason"]) == (
        "unsubscribe",
        "unsubscribes",
        "unsubscribe request (unsubscribe)",
    )


def test_complaint_feedback_types_and_redaction() -> None:
    rows = [
        complaint("c1", "a@x.com", 1, "not-spam"),
        complaint("c2", "b@x.com", 1, "auth-failure"),
        complaint("c3", "c@x.com", 1, None),
        complaint("c4", "d@x.com", 1, "ABUSE"),
        complaint("c5", "3f2a9c", 1, "abuse", recipient_redacted=True),
    ]
    out = run(complaints=rows)
    assert keys(out) == ["c@x.com", "d@x.com"]
    assert out.table["category"].to_list() == [None, "abuse"]
    assert out.stats["complaints_ignored_feedback_type"] == 2
    assert out.stats["complaints_unusable_recipient"] == 1


def test_scopes_by_policy_with_global_fallback() -> None:
    policy = load_policy(overrides={"scopes": {"bounce": "sender_domain", "complaint": "tenant"}})
    out = run(
        [
            bounce("h1", "a@x.com", 1, "bad-mailbox", "suppress", sender_domain="Mail.Brand.example"),
            bounce("h2", "b@x.com", 1, "bad-mailbox", "suppress", sender_domain=None),
        ],
        [complaint("c1", "a@x.com", 2, tenant="acme"), complaint("c2", "c@x.com", 2, tenant=None)],
        policy=policy,
    )
    assert out.table.select("match_key", "scope", "source").rows() == [
        ("a@x.com", "sender_domain:mail.brand.example", "bounce"),
        ("a@x.com", "tenant:acme", "complaint"),
        ("b@x.com", "global", "bounce"),
        ("c@x.com", "global", "complaint"),
    ]


def test_domain_suppression_is_off_by_default_and_thresholded_when_on() -> None:
    rows = [bounce(f"d{i}", f"u{i}@dead.example", i, "bad-domain", "suppress") for i in range(3)]
    rows.append(bounce("d9", "u9@live.example", 1, "bad-domain", "suppress"))
    assert "@dead.example" not in keys(run(rows))
    on = load_policy(overrides={"bounces": {"domain": {"enabled": True}}})
    out = run(rows, policy=on, as_of=day(10))
    r = out.table.filter(pl.col("match_key") == "@dead.example").row(0, named=True)
    assert r["rule"] == "bounces.domain"
    assert r["evidence"] == ["d0", "d1", "d2"]
    # One recipient is not enough for a domain entry; the recipient itself is suppressed.
    assert "@live.example" not in keys(out) and "u9@live.example" in keys(out)


def test_domain_entry_fields() -> None:
    rows = [bounce(f"d{i}", f"u{i}@dead.example", i, "bad-domain", "suppress") for i in range(4)]
    on = load_policy(overrides={"bounces": {"domain": {"enabled": True, "min_distinct_recipients": 3}}})
    r = (
        run(rows, policy=on, as_of=day(10))
        .table.filter(pl.col("match_key") == "@dead.example")
        .row(0, named=True)
    )
    assert (r["address"], r["source"], r["rule"]) == ("@dead.example", "bounce", "bounces.domain")
    assert r["first_seen"] == day(2) and r["last_seen"] == day(3)
    assert r["expires_at"] == day(93)
    assert r["evidence"] == ["d0", "d1", "d2", "d3"]
    assert r["reason"] == "domain verdict: 4 distinct recipients (bad-domain)"


def test_consequence_override_turns_a_hard_category_soft() -> None:
    policy = load_policy(
        overrides={"bounces": {"consequence_overrides": {"inactive-mailbox": "retry-then-suppress"}}}
    )
    rows = [bounce("i1", "in@x.com", 1, "inactive-mailbox", "suppress")]
    assert keys(run(rows)) == ["in@x.com"]
    assert run(rows, policy=policy).table.height == 0


def test_as_of_is_the_newest_event_and_later_events_are_ignored() -> None:
    b = pl.DataFrame([bounce("h1", "a@x.com", 1, "bad-mailbox", "suppress")])
    c = pl.DataFrame([complaint("c1", "b@x.com", 7)])
    assert compute_as_of(bounces=b, complaints=c) == day(7)
    assert compute_as_of(bounces=None, complaints=None) == datetime(1970, 1, 1, tzinfo=UTC)
    out = run(
        [bounce("h1", "a@x.com", 1, "bad-mailbox", "suppress")], [complaint("c1", "b@x.com", 7)], as_of=day(3)
    )
    assert keys(out) == ["a@x.com"]


def test_evidence_cap_keeps_the_count() -> None:
    rows = [bounce(f"h{i:02d}", "a@x.com", i, "bad-mailbox", "suppress") for i in range(30)]
    r = run(rows).table.row(0, named=True)
    assert r["evidence_count"] == 30
    assert r["evidence"] == [f"h{i:02d}" for i in range(20)]


def test_invalid_recipients_are_counted_not_suppressed() -> None:
    out = run([bounce("h1", "not an address", 1, "bad-mailbox", "suppress")])
    assert out.table.height == 0 and out.stats["bounce_invalid_recipients"] == 1


def test_missing_inputs_and_missing_columns() -> None:
    empty = build_suppression(legacy=None, bounces=None, complaints=None, policy=DEFAULT)
    assert empty.height == 0 and empty.schema == SUPPRESSION_SCHEMA
    lean = pl.DataFrame({"event_id": ["x"], "event_type": ["bounced"], "event_time": [day(1)],
                         "recipient": ["a@x.com"], "category": ["bad-mailbox"], "consequence": ["suppress"]})  # fmt: skip
    out = build_suppression(legacy=None, bounces=lean, complaints=None, policy=DEFAULT)
    assert out["match_key"].to_list() == ["a@x.com"]


def test_rebuild_is_deterministic_whatever_the_input_order() -> None:
    rows = (
        soft("b", "five@x.com", [0, 7, 14, 21, 28])
        + [bounce("h1", "Pat@x.com", 1, "bad-mailbox", "suppress")]
        + [bounce(f"h{i}", f"u{i}@x.com", i % 5, "bad-mailbox", "suppress") for i in range(2, 40)]
    )
    cs = [complaint("c1", "pat@x.com", 3), complaint("c2", "u7@x.com", 2)]
    a = run(rows, cs).table
    b = run(list(reversed(rows)), list(reversed(cs))).table
    assert a.equals(b)


def test_policy_overrides_from_landing(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(
        "suppression:\n  bounces:\n    retry_then_suppress:\n      failures: 3\n      window_days: 10\n"
    )
    (tmp_path / "suppression-policy.yaml").write_text("bounces:\n  retry_then_suppress:\n    failures: 4\n")
    p = load_policy(landing_root=tmp_path)
    assert (p.retry_failures, p.retry_window_days, p.retry_expire_days, p.retry_count) == (
        4,
        10,
        90,
        "messages",
    )
    assert p.fingerprint != DEFAULT.fingerprint
    with pytest.raises(ValueError, match=re.escape("unknown key `bounces.retry_then_suppress.failure`")):
        load_policy(overrides={"bounces": {"retry_then_suppress": {"failure": 3}}})
    with pytest.raises(ValueError, match=re.escape("scopes.bounce")):
        load_policy(overrides={"scopes": {"bounce": "everywhere"}})
    with pytest.raises(ValueError, match="precedence"):
        load_policy(overrides={"precedence": ["complaint", "bounce"]})
