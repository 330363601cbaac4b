"""Legacy list import: shapes, header detection, accounting of every line, quarantine."""

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from mtashift.suppression.legacy import import_legacy, parse_date, parse_legacy_file
from schemas.quarantine import QUARANTINE_SCHEMA, REASONS
from schemas.suppression import LEGACY_SCHEMA

FIXTURES = Path(__file__).parent / "fixtures" / "suppression" / "legacy_lists"


@pytest.fixture(scope="module")
def imported():
    return import_legacy(landing_root=FIXTURES)


def _rows(entries: pl.DataFrame, file: str) -> list[tuple]:
    return (
        entries.filter(pl.col("source_file") == file)
        .select("source_line", "address", "match_key", "kind", "reason", "added")
        .rows()
    )


def test_plain_list_with_bom_crlf_comments_domains_and_case(imported) -> None:
    assert imported.entries.schema == LEGACY_SCHEMA
    assert _rows(imported.entries, "suppression/plain.txt") == [
        (2, "Alice.Smith@example.com", "alice.smith@example.com", "address", None, None),
        (3, "bob+news@example.com", "bob+news@example.com", "address", None, None),
        (5, "b.o.b@gmail.com", "b.o.b@gmail.com", "address", None, None),
        (6, "bob@gmail.com", "bob@gmail.com", "address", None, None),
        (7, "@blocked-domain.test", "@blocked-domain.test", "domain", None, None),
        (8, "@other-blocked.example", "@other-blocked.example", "domain", None, None),
        (10, '"john doe"@example.org', '"john doe"@example.org', "address", None, None),
        (11, "jürgen@xn--mnchen-3ya.example", "jürgen@xn--mnchen-3ya.example", "address", None, None),
        (14, "ALICE.SMITH@example.com", "alice.smith@example.com", "address", None, None),
        (16, "last@example.net", "last@example.net", "address", None, None),
    ]
    q = imported.quarantine["plain.txt"]
    assert q.schema == QUARANTINE_SCHEMA
    assert q.select("source_line", "reason", "raw_text").rows() == [
        (12, "invalid_address", "not-an-address"),
        (13, "invalid_address", "two@@example.com"),
        (15, "invalid_utf8", "caf\ufffd@example.com"),
    ]
    # Byte offsets point at the line in the file (after the 3-byte BOM).
    data = (FIXTURES / "suppression" / "plain.txt").read_bytes()
    for off, raw in q.select("byte_offset", "raw_text").rows()[:2]:
        assert data[off : off + len(raw)].decode() == raw
    assert set(q["reason"]) <= set(REASONS)


def test_header_detected_with_semicolons_and_odd_names(imported) -> None:
    assert _rows(imported.entries, "suppression/export.csv") == [
        (
            2,
            "carol@example.com",
            "carol@example.com",
            "address",
            "hard bounce",
            datetime(2023, 1, 15, tzinfo=UTC),
        ),
        (
            3,
            "=1+2@example.com",
            "=1+2@example.com",
            "address",
            "=SUM(A1:A9)",
            datetime(2023, 1, 16, tzinfo=UTC),
        ),
        (4, "dave@example.com", "dave@example.com", "address", "+complaint", None),  # 2023-02-30
        (
            5,
            "-eve@example.com",
            "-eve@example.com",
            "address",
            "unsubscribed",
            datetime(2023, 3, 1, 10, tzinfo=UTC),
        ),
    ]
    assert imported.entries.filter(pl.col("source_line") == 4)["added_raw"].to_list()[0] == "2023-02-30"
    q = imported.quarantine["export.csv"]
    assert q.select("source_line", "reason", "detail").rows() == [
        (6, "invalid_address", "empty (no address cell)")
    ]


def test_csv_without_header_finds_the_address_column(imported) -> None:
    assert _rows(imported.entries, "suppression/old.csv") == [
        (1, "frank@example.com", "frank@example.com", "address", "hard", datetime(2021, 3, 4, tzinfo=UTC)),
        (2, "grace@example.com", "grace@example.com", "address", "soft", datetime(2021, 3, 4, tzinfo=UTC)),
        (4, "ivan@example.com", "ivan@example.com", "address", "spam", None),
    ]
    q = imported.quarantine["old.csv"]
    assert q.select("source_line", "reason").rows() == [(3, "malformed_csv")]


def test_utf16_with_one_column_header(imported) -> None:
    assert [r[1] for r in _rows(imported.entries, "suppression/utf16.txt")] == [
        "judy@example.com",
        "mallory@example.com",
    ]


def test_every_line_is_accounted_for(imported) -> None:
    stats = {r["source_file"]: r for r in imported.stats.iter_rows(named=True)}
    assert {k: (v["lines"], v["blank"], v["comments"], v["header"], v["entries"], v["quarantined"]) for k, v in stats.items()} == {
        "suppression/export.csv": (6, 0, 0, 1, 4, 1),
        "suppression/old.csv": (4, 0, 0, 0, 3, 1),
        "suppression/plain.txt": (16, 1, 2, 0, 10, 3),
        "suppression/utf16.txt": (3, 0, 0, 1, 2, 0),
    }  # fmt: skip
    for v in stats.values():
        assert v["lines"] == v["blank"] + v["comments"] + v["header"] + v["entries"] + v["quarantined"]
    assert imported.entries.height == 19
    assert sum(q.height for q in imported.quarantine.values()) == 5


def test_provenance_is_file_and_line(imported) -> None:
    prov = imported.entries.filter(pl.col("match_key") == "alice.smith@example.com")["provenance"].to_list()
    assert prov == ["suppression/plain.txt:2", "suppression/plain.txt:14"]


def test_header_names_pick_scope_tenant_and_date_columns() -> None:
    data = b"Added On,Recipient,Tenant,Bounce Type\n2022-05-01,x@y.com,acme,hard\n01.06.2022,z@y.com,,soft\n"
    entries, q, counts = parse_legacy_file(data, rel="suppression/t.csv")
    assert entries.select("address", "scope", "reason", "added").rows() == [
        ("x@y.com", "tenant:acme", "hard", datetime(2022, 5, 1, tzinfo=UTC)),
        ("z@y.com", None, "soft", datetime(2022, 6, 1, tzinfo=UTC)),
    ]
    assert q.height == 0
    assert counts == {"lines": 3, "blank": 0, "comments": 0, "header": 1, "entries": 2, "quarantined": 0}


def test_tab_separated_and_display_name_cells() -> None:
    data = b'email\treason\nBob B <Bob@Example.com>\tcomplaint\n\t\n"""Al"" <al@x.org>"\tcomplaint\n'
    entries, q, counts = parse_legacy_file(data, rel="suppression/t.tsv")
    assert entries.select("address", "match_key", "reason").rows() == [
        ("Bob@example.com", "bob@example.com", "complaint"),
        ("al@x.org", "al@x.org", "complaint"),
    ]
    assert counts["blank"] == 1 and counts["lines"] == 4 and q.height == 0


def test_empty_and_bom_only_files() -> None:
    for data in (b"", b"\xef\xbb\xbf", b"\n\n"):
        entries, q, counts = parse_legacy_file(data, rel="suppression/e.txt")
        assert entries.height == 0 and q.height == 0
        assert counts["lines"] == counts["blank"]


def test_missing_folder_gives_empty_import(tmp_path: Path) -> None:
    out = import_legacy(landing_root=tmp_path)
    assert out.entries.height == 0 and out.entries.schema == LEGACY_SCHEMA
    assert out.stats.height == 0 and out.quarantine == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-01-02", datetime(2023, 1, 2, tzinfo=UTC)),
        ("2023-01-02 03:04:05", datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2023-01-02T03:04:05+02:00", datetime(2023, 1, 2, 1, 4, 5, tzinfo=UTC)),
        ("2023/01/02", datetime(2023, 1, 2, tzinfo=UTC)),
        ("02.01.2023", datetime(2023, 1, 2, tzinfo=UTC)),
        ("20230102", datetime(2023, 1, 2, tzinfo=UTC)),
        ("1672531200", datetime(2023, 1, 1, tzinfo=UTC)),
        ("2 Jan 2023", datetime(2023, 1, 2, tzinfo=UTC)),
        ("03/04/2021", None),  # day/month order is not guessed
        ("yesterday", None),
        ("", None),
    ],
)
def test_parse_date(text: str, expected: datetime | None) -> None:
    assert parse_date(text) == expected


def test_domains_in_delimited_files_need_the_at_form() -> None:
    data = b"email,reason\n@Blocked.example,domain\nbad-email-at-example.com,hard\n"
    entries, q, _counts = parse_legacy_file(data, rel="suppression/d.csv")
    assert entries.select("address", "kind").rows() == [("@blocked.example", "domain")]
    assert q.select("source_line", "reason").rows() == [(3, "invalid_address")]
    assert q["detail"][0].startswith("a bare domain in an address column")


def test_agrees_with_the_simulator_legacy_lists(tmp_path: Path) -> None:
    """The simulator's own account of its legacy lists (valid entries, quarantined lines)."""
    extras = pytest.importorskip("mtashift.sim.extras")
    model_mod = pytest.importorskip("mtashift.sim.model")
    model = model_mod.build(days=2, messages_per_day=1500, seed=5, start=datetime(2026, 10, 1).date())
    valid, quarantine = extras.write_suppression(tmp_path, model, seed=5, mtime=1_700_000_000)
    out = import_legacy(landing_root=tmp_path)
    mine = sorted(out.entries.select("address", "source_file", "source_line").rows())
    assert mine == sorted((v["address"], v["file"], v["line"]) for v in valid)
    mine_q = sorted(
        (r["source_file"], r["source_line"], r["reason"])
        for q in out.quarantine.values()
        for r in q.iter_rows(named=True)
    )
    assert mine_q == sorted((r["source_file"], r["source_line"], r["reason"]) for r in quarantine)
