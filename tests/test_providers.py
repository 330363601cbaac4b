"""Provider attribution: MX suffixes, domain list, observed-MX domain map, history table."""

from datetime import UTC, datetime

import polars as pl
import pytest

from mtashift.providers import (
    PROVIDERS,
    add_provider,
    combine_domain_maps,
    domain_mx_map,
    load_provider_map,
    parse_provider_map,
    provider_for_domain,
    provider_for_mx,
    recipient_domains,
)
from schemas.events import conform


@pytest.mark.parametrize(
    ("mx", "provider"),
    [
        ("gmail-smtp-in.l.google.com", "google"),
        ("aspmx.l.google.com", "google"),  # Google Workspace custom domain
        ("ALT2.ASPMX.L.GOOGLE.COM.", "google"),  # upper-case, trailing dot
        ("gmr-smtp-in.l.googlemail.com", "google"),
        ("mta6.am0.yahoodns.net", "yahoo"),
        ("hotmail-com.olc.protection.outlook.com", "microsoft"),
        ("contoso-com.mail.protection.outlook.com", "office365"),
        ("contoso-com.o-v1.mx.microsoft", "office365"),
        ("mx01.mail.icloud.com", "apple"),
        ("mx.me.com", "apple"),
        ("mx1a1.comcast.net", "comcast"),
        ("mx00.emig.gmx.net", "gmx"),
        ("mx-ha03.web.de", "gmx"),
        ("smtp-in.orange.fr", "orange"),
        ("eu-smtp-inbound-1.mimecast.com", "mimecast"),
        ("evilgoogle.com", None),  # a suffix is a whole label sequence, not a substring
        ("google.com", None),  # the bare apex does not end with ".google.com"
        ("mx.example.org", None),
        (None, None),
    ],
)
def test_provider_for_mx(mx: str | None, provider: str | None) -> None:
    assert provider_for_mx(mx) == provider


@pytest.mark.parametrize(
    ("domain", "provider"),
    [
        ("gmail.com", "google"),
        ("googlemail.com", "google"),
        ("yahoo.com", "yahoo"),
        ("yahoo.co.uk", "yahoo"),
        ("yahoo.com.br", "yahoo"),
        ("aol.com", "yahoo"),
        ("ymail.com", "yahoo"),
        ("rocketmail.com", "yahoo"),
        ("yahoo.example.com", "other"),  # family match needs a public-suffix-like tail
        ("hotmail.fr", "microsoft"),
        ("live.com.mx", "microsoft"),
        ("outlook.com", "microsoft"),
        ("msn.com", "microsoft"),
        ("icloud.com", "apple"),
        ("mac.com", "apple"),
        ("comcast.net", "comcast"),
        ("mail.comcast.net", "comcast"),  # sub-domain of a listed domain
        ("gmx.de", "gmx"),
        ("gmx.net", "gmx"),
        ("web.de", "gmx"),
        ("wanadoo.fr", "orange"),
        ("orange.fr", "orange"),
        ("notgmail.com", "other"),
        ("example.org", "other"),
        (None, "other"),
    ],
)
def test_provider_for_domain(domain: str | None, provider: str) -> None:
    assert provider_for_domain(domain) == provider


def test_map_file_covers_closed_set() -> None:
    pmap = load_provider_map()
    named = {p for _, p in pmap.mx_suffixes} | {p for _, p in pmap.domains} | {p for _, p in pmap.families}
    assert named == set(PROVIDERS) - {"other"}
    lengths = [len(s) for s, _ in pmap.mx_suffixes]
    assert lengths == sorted(lengths, reverse=True)  # longest suffix is tried first
    assert dict(pmap.mx_suffixes)[".mail.protection.outlook.com"] == "office365"
    assert dict(pmap.mx_suffixes)[".olc.protection.outlook.com"] == "microsoft"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"providers": {"hotmail": {"mx_suffixes": [".x.com"]}}}, "unknown provider"),
        ({"providers": {"google": {"mx_suffixes": ["google.com"]}}}, "must start with"),
        ({"providers": {"google": {"domains": ["a.com"]}, "yahoo": {"domains": ["a.com"]}}}, "claimed by"),
        ({"providers": {"google": {"domians": ["a.com"]}}}, "unknown keys"),
        ({"providers": {"google": {"domains": ["bad domain"]}}}, "bad domains"),
        ({}, "providers"),
    ],
)
def test_parse_rejects_bad_maps(doc: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_provider_map(doc)


def test_custom_map_file_drives_attribution(tmp_path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "providers:\n  mimecast:\n    mx_suffixes: ['.filter.example.']\n    domains: [corp.example]\n"
    )
    pmap = load_provider_map(path)
    assert (
        provider_for_mx("mx1.filter.example", pmap=pmap) == "mimecast"
    )  # trailing dot of the suffix dropped
    assert provider_for_mx("aspmx.l.google.com", pmap=pmap) is None
    assert provider_for_domain("sub.corp.example", pmap=pmap) == "mimecast"


def _events(rows: list[dict]) -> pl.LazyFrame:
    return conform(pl.LazyFrame(rows))


def test_add_provider_precedence_and_shape() -> None:
    frame = _events(
        [
            # 0: own MX wins over the domain list (hotmail.com address hosted on a tenant MX)
            {
                "event_type": "delivered",
                "recipient_domain": "hotmail.com",
                "mx_host": "x.mail.protection.outlook.com",
            },
            # 1: consumer Outlook
            {
                "event_type": "delivered",
                "recipient_domain": "hotmail.com",
                "mx_host": "hotmail-com.olc.protection.outlook.com",
            },
            # 2: no MX on the row -> domain map (custom Workspace domain)
            {"event_type": "complaint", "recipient_domain": "acme.example", "mx_host": None},
            # 3: non-provider MX on the row -> domain map still consulted
            {"event_type": "deferred", "recipient_domain": "acme.example", "mx_host": "mx.acme.example"},
            # 4: no MX, not in the map -> domain list
            {"event_type": "expired", "recipient_domain": "gmail.com", "mx_host": None},
            # 5: nothing -> other
            {"event_type": "bounced", "recipient_domain": "example.org", "mx_host": "mx.example.org"},
            # 6: domain map beats the domain list
            {"event_type": "received", "recipient_domain": "yahoo.fr", "mx_host": None},
            # 7: null domain and MX
            {"event_type": "queue_deferred", "recipient_domain": None, "mx_host": None},
        ]
    ).with_columns(pl.lit("stale").alias("provider"))
    dmap = pl.LazyFrame(
        {
            "recipient_domain": ["acme.example", "yahoo.fr", "acme.example"],
            "provider": ["google", "mimecast", "yahoo"],
        }
    )
    out = add_provider(frame, domain_map=dmap).collect()
    assert out["provider"].to_list() == [
        "office365", "microsoft", "google", "google", "google", "other", "mimecast", "other",
    ]  # fmt: skip
    assert out.columns == [*frame.collect_schema().names()]  # replaced in place, no helper columns left
    assert out["event_type"].to_list()[:3] == ["delivered", "delivered", "complaint"]  # order kept


def test_add_provider_without_mx_column() -> None:
    frame = pl.LazyFrame({"recipient_domain": ["aol.com", "zzz.example", "icloud.com"], "n": [1, 2, 3]})
    out = add_provider(frame).collect()
    assert out.to_dict(as_series=False) == {
        "recipient_domain": ["aol.com", "zzz.example", "icloud.com"],
        "n": [1, 2, 3],
        "provider": ["yahoo", "other", "apple"],
    }


def test_add_provider_requires_a_key() -> None:
    with pytest.raises(ValueError, match="recipient_domain or mx_host"):
        add_provider(pl.LazyFrame({"x": [1]}))


def test_domain_mx_map_most_frequent_provider() -> None:
    rows = (
        # acme.example: 3 events on Google MX, 2 on an office365 MX -> google; sample = most frequent host
        [{"event_type": "delivered", "recipient_domain": "acme.example", "mx_host": "aspmx.l.google.com"}] * 2
        + [
            {
                "event_type": "deferred",
                "recipient_domain": "acme.example",
                "mx_host": "alt1.aspmx.l.google.com",
            }
        ]
        + [
            {
                "event_type": "bounced",
                "recipient_domain": "acme.example",
                "mx_host": "acme.mail.protection.outlook.com",
            }
        ]
        * 2
        # received/complaint MX values are not observations; non-provider MX hosts never count
        + [
            {
                "event_type": "received",
                "recipient_domain": "acme.example",
                "mx_host": "x.mail.protection.outlook.com",
            }
        ]
        * 5
        + [{"event_type": "delivered", "recipient_domain": "acme.example", "mx_host": "mx.acme.example"}] * 9
        # tie between yahoo and apple (1 each) -> alphabetical: apple
        + [{"event_type": "delivered", "recipient_domain": "tie.example", "mx_host": "mta5.am0.yahoodns.net"}]
        + [{"event_type": "delivered", "recipient_domain": "tie.example", "mx_host": "mx01.mail.icloud.com"}]
        + [{"event_type": "delivered", "recipient_domain": "own.example", "mx_host": "mx.own.example"}]
    )
    out = domain_mx_map(events=_events(rows)).sort("recipient_domain").collect()
    assert out.to_dicts() == [
        {
            "recipient_domain": "acme.example",
            "provider": "google",
            "mx_host_sample": "aspmx.l.google.com",
            "mx_events": 3,
        },
        {
            "recipient_domain": "tie.example",
            "provider": "apple",
            "mx_host_sample": "mx01.mail.icloud.com",
            "mx_events": 1,
        },
    ]


def test_combine_domain_maps_day_wins() -> None:
    day = pl.LazyFrame({"recipient_domain": ["a.example"], "provider": ["office365"]})
    hist = pl.LazyFrame({"recipient_domain": ["a.example", "b.example"], "provider": ["google", "mimecast"]})
    out = combine_domain_maps(day=day, history=hist).sort("recipient_domain").collect()
    assert out.rows() == [("a.example", "office365"), ("b.example", "mimecast")]
    assert combine_domain_maps(day=None, history=None) is None
    assert combine_domain_maps(day=day, history=None).collect().rows() == [("a.example", "office365")]


def _t(h: int, m: int = 0, d: int = 10) -> datetime:
    return datetime(2025, 3, d, h, m, tzinfo=UTC)


def test_recipient_domains_history_table() -> None:
    rows = [
        {"event_type": "received", "event_time": _t(8, d=9), "recipient_domain": "acme.example"},
        {
            "event_type": "delivered",
            "event_time": _t(9),
            "recipient_domain": "acme.example",
            "mx_host": "aspmx.l.google.com",
        },
        {"event_type": "complaint", "event_time": _t(7, d=12), "recipient_domain": "acme.example"},
        {
            "event_type": "delivered",
            "event_time": _t(9),
            "recipient_domain": "gmail.com",
            "mx_host": "mx.relay.example",
        },
        {
            "event_type": "deferred",
            "event_time": _t(10),
            "recipient_domain": "quiet.example",
            "mx_host": "mx.quiet.example",
        },
        {
            "event_type": "deferred",
            "event_time": _t(11),
            "recipient_domain": "quiet.example",
            "mx_host": "mx.quiet.example",
        },
        {
            "event_type": "delivered",
            "event_time": _t(12),
            "recipient_domain": "quiet.example",
            "mx_host": "mx2.quiet.example",
        },
        {"event_type": "queue_deferred", "event_time": _t(12), "recipient_domain": None},
    ]
    out = recipient_domains(events=_events(rows)).collect()
    assert out.select("recipient_domain", "provider", "provider_basis", "mx_provider", "mx_host_sample", "mx_events", "events").rows() == [
        ("acme.example", "google", "mx", "google", "aspmx.l.google.com", 1, 3),
        ("gmail.com", "google", "domain_list", None, "mx.relay.example", 0, 1),
        ("quiet.example", "other", "none", None, "mx.quiet.example", 0, 3),
    ]  # fmt: skip
    acme = out.row(0, named=True)
    assert (acme["first_seen"], acme["last_seen"]) == (_t(8, d=9), _t(7, d=12))
