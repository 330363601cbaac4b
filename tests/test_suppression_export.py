"""Exports (CSV guard, SQLite bytes, Lua fragment) and the diff between builds."""

import csv
import io
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from mtashift.suppression.build import evaluate_suppression
from mtashift.suppression.diff import diff_suppression, legacy_unaccounted
from mtashift.suppression.export import (
    kumo_lua,
    neutralise_cell,
    sqlite_bytes,
    to_safe_csv,
    write_exports,
)
from mtashift.suppression.legacy import parse_legacy_file
from mtashift.suppression.policy import load_policy
from schemas.suppression import DIFF_SCHEMA

T0 = datetime(2024, 3, 1, tzinfo=UTC)
POLICY = load_policy()


def day(d: float) -> datetime:
    return T0 + timedelta(days=d)


def bounces(rows: list[tuple[str, str, float, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "event_id": eid,
                "event_type": "bounced",
                "event_time": day(d),
                "recipient": rcpt,
                "message_id": eid,
                "category": cat,
                "consequence": cons,
            }
            for eid, rcpt, d, cat, cons in rows
        ]
    )


def complaints(rows: list[tuple[str, str, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"complaint_id": cid, "complaint_time": day(d), "feedback_type": "abuse", "recipient": rcpt}
            for cid, rcpt, d in rows
        ]
    )


def legacy(text: str, rel: str = "suppression/list.csv") -> pl.DataFrame:
    return parse_legacy_file(text.encode(), rel=rel)[0]


def test_neutralise_cell() -> None:
    assert [neutralise_cell(v) for v in ("=1+2", "+x", "-x", "@d.com", "\tx", "\rx", "a=b", "", None)] == [
        "'=1+2",
        "'+x",
        "'-x",
        "'@d.com",
        "'\tx",
        "'\rx",
        "a=b",
        "",
        "",
    ]


def test_csv_export_neutralises_formula_cells() -> None:
    leg = legacy(
        "email,reason\n=1+2@example.com,=HYPERLINK(1)\n-eve@example.com,+x\n@blocked.example,domain\n"
    )
    table = evaluate_suppression(legacy=leg, bounces=None, complaints=None, policy=POLICY).table
    text = to_safe_csv(table, ["address", "match_key", "reason", "category", "evidence"])
    assert text.splitlines() == [
        "address,match_key,reason,category,evidence",
        "'-eve@example.com,'-eve@example.com,legacy list: +x,'+x,suppression/list.csv:3",
        "'=1+2@example.com,'=1+2@example.com,legacy list: =HYPERLINK(1),'=hyperlink(1),suppression/list.csv:2",
        "'@blocked.example,'@blocked.example,legacy list: domain,domain,suppression/list.csv:4",
    ]
    # Every cell of the parsed CSV is safe.
    for row in csv.reader(io.StringIO(text)):
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row)


def _table():
    b = bounces(
        [
            ("h1", "Hard@x.com", 1, "bad-mailbox", "suppress"),
            *[(f"s{i}", "soft@x.com", i, "quota-issues", "retry-then-suppress") for i in range(5)],
        ]
    )
    c = complaints([("c1", "pat@x.com", 2)])
    leg = legacy("a@legacy.example\n@dom.example\n", rel="suppression/l.txt")
    return evaluate_suppression(legacy=leg, bounces=b, complaints=c, policy=POLICY)


def test_sqlite_is_byte_identical_and_queryable(tmp_path: Path) -> None:
    built = _table()
    one = sqlite_bytes(built.table, as_of=built.as_of, policy_fingerprint=POLICY.fingerprint)
    two = sqlite_bytes(_table().table, as_of=built.as_of, policy_fingerprint=POLICY.fingerprint)
    assert one == two
    path = tmp_path / "s.sqlite"
    path.write_bytes(one)
    con = sqlite3.connect(path)
    try:
        rows = con.execute(
            "SELECT match_key, scope, source, expires_at, evidence_count FROM suppression"
        ).fetchall()
        assert rows == [
            ("@dom.example", "global", "legacy", None, 1),
            ("a@legacy.example", "global", "legacy", None, 1),
            ("hard@x.com", "global", "bounce", None, 1),
            ("pat@x.com", "global", "complaint", None, 1),
            ("soft@x.com", "global", "bounce", "2024-06-03T00:00:00Z", 5),
        ]
        # The lookup the Lua fragment runs: own key or @domain, in the message's scopes, not expired.
        hit = con.execute(
            "SELECT coalesce(reason, 'suppressed') FROM suppression WHERE match_key IN (?, ?) "
            "AND scope IN (?, ?, ?) AND (expires_at IS NULL OR expires_at > ?) ORDER BY match_key, scope LIMIT 1",
            ("x@dom.example", "@dom.example", "global", "global", "global", "2024-03-06T00:00:00Z"),
        ).fetchall()
        assert hit == [("legacy list",)]
        lapsed = con.execute(
            "SELECT count(*) FROM suppression WHERE match_key = ? AND (expires_at IS NULL OR expires_at > ?)",
            ("soft@x.com", "2024-06-03T00:00:00Z"),
        ).fetchone()
        assert lapsed == (0,)
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        assert meta == {
            "as_of": "2024-03-05T00:00:00Z",
            "policy": POLICY.fingerprint,
            "rows": "5",
            "schema_version": "1",
        }
        assert con.execute("PRAGMA page_size").fetchone() == (4096,)
    finally:
        con.close()


def test_write_exports_twice_gives_identical_bytes(tmp_path: Path) -> None:
    built = _table()
    diff = diff_suppression(previous=None, current=built.table, expired=built.expired)
    first = {
        k: p.read_bytes()
        for k, p in write_exports(
            folder=tmp_path, table=built.table, diff=diff, as_of=built.as_of, policy_fingerprint="f"
        ).items()
    }
    again = _table()
    second = {
        k: p.read_bytes()
        for k, p in write_exports(
            folder=tmp_path, table=again.table, diff=diff, as_of=again.as_of, policy_fingerprint="f"
        ).items()
    }
    assert sorted(first) == [
        "kumo_suppression.lua",
        "suppression.csv",
        "suppression.sqlite",
        "suppression_diff.csv",
    ]
    assert first == second
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(first)  # no temp files left behind


def test_lua_fragment_uses_the_documented_kumomta_calls() -> None:
    lua = kumo_lua(as_of=T0, policy_fingerprint="abc123")
    assert "list as of 2024-03-01T00:00:00Z, policy abc123" in lua
    for needle in (
        "require 'sqlite'",
        "sqlite.open(M.DB_PATH)",
        "db:execute(",
        "kumo.memoize(lookup, {",
        "msg:recipient()",
        "msg:sender()",
        "msg:get_meta 'tenant'",
        "kumo.reject(M.REJECT_CODE, M.REJECT_TEXT)",
        '"^[%w!#$%%&\'*+/=?^_`{|}~%.%-\\128-\\255]+$"',
        "u = (u:sub(2, -2):gsub('\\\\(.)', '%1'))",
        "type(rows) == 'table'",
        "return M",
    ):
        assert needle in lua, needle
    # Balanced blocks in the code (comments aside): each function and if has its end.
    code = "\n".join(line.split("--", 1)[0] for line in lua.splitlines())
    words = re.findall(r"[A-Za-z_]+", re.sub(r"'[^']*'|\"[^\"]*\"", "''", code))
    assert words.count("function") == 4 and words.count("if") == 4
    assert words.count("end") == words.count("function") + words.count("if")


def test_diff_added_removed_changed_expired() -> None:
    policy = load_policy(overrides={"legacy": {"expire_after_days": 365}})
    leg_prev = legacy(
        "email,date\nold@x.com,2024-01-01\nkept@x.com,\ngone@x.com,\n",
    )
    b_prev = bounces([*[(f"s{i}", "soft@x.com", i, "quota-issues", "retry-then-suppress") for i in range(5)],
                      ("h1", "pat@x.com", 1, "bad-mailbox", "suppress")])  # fmt: skip
    prev = evaluate_suppression(legacy=leg_prev, bounces=b_prev, complaints=None, policy=policy)
    assert prev.table["match_key"].to_list() == [
        "gone@x.com",
        "kept@x.com",
        "old@x.com",
        "pat@x.com",
        "soft@x.com",
    ]

    # Later: the legacy file lost `gone@`, pat@ complained, a new hard bounce, and a year passed.
    leg_now = legacy("email,date\nold@x.com,2024-01-01\nkept@x.com,\nveryold@x.com,2020-01-01\n")
    b_now = pl.concat([b_prev, bounces([("h2", "new@x.com", 400, "bad-mailbox", "suppress")])])
    now = evaluate_suppression(
        legacy=leg_now, bounces=b_now, complaints=complaints([("c1", "Pat@x.com", 3)]), policy=policy
    )
    assert now.as_of == day(400)
    diff = diff_suppression(previous=prev.table, current=now.table, expired=now.expired)
    assert diff.schema == DIFF_SCHEMA
    got = {(r["change"], r["match_key"]): r for r in diff.iter_rows(named=True)}
    assert diff.select("change", "match_key").rows() == [
        ("added", "new@x.com"),
        ("removed", "gone@x.com"),
        ("removed", "old@x.com"),
        ("removed", "soft@x.com"),
        ("changed", "pat@x.com"),
        ("expired", "veryold@x.com"),
    ]
    assert got[("removed", "gone@x.com")]["rule"] is None
    assert (
        got[("removed", "gone@x.com")]["detail"]
        == "no source supports it any more (input removed or policy changed)"
    )
    assert got[("removed", "old@x.com")]["rule"] == (
        "legacy.expire_after_days=365: dated 2024-01-01T00:00:00Z, lapsed 2024-12-31T00:00:00Z"
    )
    assert got[("removed", "soft@x.com")]["rule"] == (
        "bounces.retry_then_suppress.expire_after_days=90: last failure 2024-03-05T00:00:00Z, "
        "lapsed 2024-06-03T00:00:00Z"
    )
    ch = got[("changed", "pat@x.com")]
    assert (ch["source_before"], ch["source_after"]) == ("bounce", "complaint")
    assert ch["detail"] == (
        "address: pat@x.com -> Pat@x.com; source: bounce -> complaint; "
        "reason: bounce verdict: bad-mailbox -> complaint (abuse); "
        "category: bad-mailbox -> abuse"
    )
    assert got[("expired", "veryold@x.com")]["rule"].startswith(
        "legacy.expire_after_days=365: dated 2020-01-01"
    )
    assert got[("added", "new@x.com")]["detail"] == "bounce: bounce verdict: bad-mailbox"

    # The proof: every valid legacy entry is listed or lapsed-with-rule.
    assert legacy_unaccounted(legacy=leg_now, table=now.table, diff=diff, policy=policy).height == 0
    # Without the diff, the lapsed ones are unaccounted: the check can fail.
    missing = legacy_unaccounted(legacy=leg_now, table=now.table, diff=diff.head(0), policy=policy)
    assert missing["match_key"].to_list() == ["old@x.com", "veryold@x.com"]

    # Rebuilding with nothing new: only the standing legacy lapse is listed.
    again = diff_suppression(previous=now.table, current=now.table, expired=now.expired)
    assert again.select("change", "match_key").rows() == [
        ("expired", "old@x.com"),
        ("expired", "veryold@x.com"),
    ]


def test_diff_expiry_extension_is_a_change() -> None:
    b1 = bounces([(f"s{i}", "soft@x.com", i, "quota-issues", "retry-then-suppress") for i in range(5)])
    b2 = pl.concat([b1, bounces([("s9", "soft@x.com", 10, "quota-issues", "retry-then-suppress")])])
    one = evaluate_suppression(legacy=None, bounces=b1, complaints=None, policy=POLICY).table
    two = evaluate_suppression(legacy=None, bounces=b2, complaints=None, policy=POLICY).table
    diff = diff_suppression(previous=one, current=two)
    assert diff.select("change", "match_key", "detail").rows() == [
        ("changed", "soft@x.com", "expires_at: 2024-06-03T00:00:00Z -> 2024-06-09T00:00:00Z")
    ]
