"""Address normalisation: the one definition shared by legacy lists, bounces and complaints."""

import polars as pl
import pytest

from mtashift.suppression.address import InvalidAddress, normalize_address, normalize_column


@pytest.mark.parametrize(
    ("text", "address", "match_key"),
    [
        ("  John.Doe@Example.COM ", "John.Doe@example.com", "john.doe@example.com"),
        ("\ufeffq@w.com\u200b", "q@w.com", "q@w.com"),
        ("a@example.com.", "a@example.com", "a@example.com"),
        # IDN: UTS #46 maps upper case and encodes to ACE; the local part keeps its letters.
        ("jürgen@MÜNCHEN.de", "jürgen@xn--mnchen-3ya.de", "jürgen@xn--mnchen-3ya.de"),
        ("x@xn--mnchen-3ya.de", "x@xn--mnchen-3ya.de", "x@xn--mnchen-3ya.de"),
        ("a@faß.de", "a@xn--fa-hia.de", "a@xn--fa-hia.de"),
        # Quoted local parts: unquoted when the content is a dot-atom, else kept quoted.
        ('"Jo"@x.org', '"Jo"@x.org', "jo@x.org"),
        ('"John Doe"@x.org', '"John Doe"@x.org', '"john doe"@x.org'),
        ('"a@b"@x.com', '"a@b"@x.com', '"a@b"@x.com'),
        ('"a\\"b"@x.com', '"a\\"b"@x.com', '"a\\"b"@x.com'),
        ('"a\\b"@x.com', '"a\\b"@x.com', "ab@x.com"),
        ("Name <A@B.com>", "A@b.com", "a@b.com"),
        ("<z@y.com>", "z@y.com", "z@y.com"),
        ("MAILTO:z@y.com", "z@y.com", "z@y.com"),
        ("a@[192.0.2.1]", "a@[192.0.2.1]", "a@[192.0.2.1]"),
        ("a@[IPv6:2001:DB8:0:0::1]", "a@[IPv6:2001:db8::1]", "a@[IPv6:2001:db8::1]"),
        ("=1+2@example.com", "=1+2@example.com", "=1+2@example.com"),
    ],
)
def test_valid_addresses(text: str, address: str, match_key: str) -> None:
    n = normalize_address(text)
    assert (n.address, n.match_key, n.kind) == (address, match_key, "address")


def test_plus_addresses_and_gmail_dots_stay_distinct() -> None:
    keys = [normalize_address(t).match_key for t in ("bob@gmail.com", "b.o.b@gmail.com", "bob+x@gmail.com")]
    assert keys == ["bob@gmail.com", "b.o.b@gmail.com", "bob+x@gmail.com"]
    assert len(set(keys)) == 3


def test_case_of_local_part_is_ignored_for_matching_but_kept_for_display() -> None:
    a, b = normalize_address("Alice@EXAMPLE.com"), normalize_address("aLiCe@example.COM")
    assert a.match_key == b.match_key == "alice@example.com"
    assert (a.address, b.address) == ("Alice@example.com", "aLiCe@example.com")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("plainaddress", "no @"),
        ("@example.com", "empty local part"),
        ('""@x.com', "empty local part"),
        ("a..b@x.com", "neither a dot-atom"),
        (".a@x.com", "neither a dot-atom"),
        ("a.@x.com", "neither a dot-atom"),
        ("a b@x.com", "neither a dot-atom"),
        ('a"b@x.com', "neither a dot-atom"),
        ("two@@x.com", "neither a dot-atom"),
        ("a@b", "single label"),
        ("a@localhost", "single label"),
        ("a@b_c.com", "not valid host name labels"),
        ("a@-x.com", "not valid host name labels"),
        ("a@x..com", "not valid host name labels"),
        ("a@1.2.3.4", "numeric"),
        ("a@xn--abc.de", "invalid xn-- label"),
        ("a@[999.1.1.1]", "address literal"),
        ("a\tb@x.com", "control characters"),
        ("a" * 65 + "@x.com", "longer than 64"),
        ("a@" + ".".join(["b" * 63] * 4) + ".com", "longer than 253"),
    ],
)
def test_invalid_addresses(text: str, why: str) -> None:
    with pytest.raises(InvalidAddress, match=why):
        normalize_address(text)


def test_domain_entries_only_when_allowed() -> None:
    assert normalize_address("@Example.COM", allow_domain=True).match_key == "@example.com"
    bare = normalize_address("sub.Example.com", allow_domain=True)
    assert (bare.address, bare.match_key, bare.kind, bare.local_part) == (
        "@sub.example.com",
        "@sub.example.com",
        "domain",
        None,
    )
    assert normalize_address("@münchen.de", allow_domain=True).match_key == "@xn--mnchen-3ya.de"
    with pytest.raises(InvalidAddress, match="not an address, and not a domain"):
        normalize_address("john", allow_domain=True)
    with pytest.raises(InvalidAddress, match="no @"):
        normalize_address("example.com")


def test_vectorised_column_matches_scalar_and_keeps_rows() -> None:
    values = ["A@X.com", None, "bad", "Ü@ÜBER.de", "A@X.com", "b@über.de"]
    out = normalize_column(pl.DataFrame({"rcpt": values, "n": range(6)}), "rcpt", prefix="r_").collect()
    assert out["n"].to_list() == [0, 1, 2, 3, 4, 5]  # order and count preserved
    assert out["r_match_key"].to_list() == [
        "a@x.com",
        None,
        None,
        "ü@xn--ber-goa.de",
        "a@x.com",
        "b@xn--ber-goa.de",
    ]
    assert out["r_invalid"].to_list() == [None, "empty", "no @", None, None, None]
    for v, key in zip(values, out["r_match_key"].to_list(), strict=True):
        if key is not None:
            assert normalize_address(v).match_key == key


def test_vectorised_on_lazy_frame_with_many_rows() -> None:
    n = 20_000
    frame = pl.LazyFrame({"r": [f"User{i}@Dom{i % 7}.Example" for i in range(n)]})
    out = normalize_column(frame, "r").collect()
    assert out.height == n
    assert out["invalid"].null_count() == n
    assert out["match_key"][12345] == "user12345@dom4.example"
    assert out["address"][12345] == "User12345@dom4.example"
