"""PowerMTA config parser: includes, comments, blocks, CIDRs, macros, patterns, inheritance, errors."""

from pathlib import Path

import pytest

from mtashift.pmta_config import (
    Loc,
    PmtaConfigError,
    classify_pattern,
    effective_domain_rules,
    effective_settings,
    parse_estate,
    parse_node,
    parse_text,
    strip_comment,
)

FIX = Path(__file__).parent / "fixtures" / "pmta-config"
MTA1 = FIX / "estate" / "mta1"


@pytest.fixture(scope="module")
def mta1():
    return parse_node(MTA1)


def _issues(cfg, code):
    return [(i.loc, i.message) for i in cfg.issues if i.code == code]


# ---------------------------------------------------------------------------------------------- files


def test_includes_relative_absolute_and_wildcard(mta1) -> None:
    # /etc/pmta/vmtas.conf -> vmtas.conf, patterns.conf (relative), /etc/pmta/domains/*.conf -> domains/keys.conf
    assert mta1.node == "mta1"
    assert mta1.files == ["config", "vmtas.conf", "patterns.conf", "domains/keys.conf"]
    assert mta1.vmtas["txn-1"].loc == Loc("vmtas.conf", 13)
    assert mta1.pools["pool-marketing"].members == [
        ("mkt-1", Loc("vmtas.conf", 26)),
        ("mkt-2", Loc("vmtas.conf", 27)),
    ]
    assert [i for i in mta1.issues if i.severity == "error"] == []


def test_include_windows_path_and_cycle(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("include c:\\pmta\\extra.conf\ninclude config\n", encoding="utf-8")
    (tmp_path / "extra.conf").write_text(
        "<virtual-mta w>\n  smtp-source-host 192.0.2.9 w.example\n</virtual-mta>\n"
    )
    cfg = parse_node(tmp_path, node="n")
    assert cfg.vmtas["w"].source_hosts[0].ip == "192.0.2.9"
    assert cfg.vmtas["w"].source_hosts[0].loc == Loc("extra.conf", 2)
    assert _issues(cfg, "include-cycle") == [(Loc("config", 2), "include 'config' includes itself")]


def test_include_inside_a_block(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("<domain gmail.com>\n  include limits.conf\n</domain>\n")
    (tmp_path / "limits.conf").write_text("max-smtp-out 7\n")
    cfg = parse_node(tmp_path)
    (block,) = cfg.domains
    assert [(d.name, d.value, d.loc) for d in block.directives] == [
        ("max-smtp-out", "7", Loc("limits.conf", 1))
    ]


def test_parse_estate_one_config_per_node_folder(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config").write_text("host-name b.example\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config").write_text("host-name a.example\n")
    (tmp_path / "no-config").mkdir()
    assert [(c.node, c.host_name) for c in parse_estate(tmp_path)] == [("a", "a.example"), ("b", "b.example")]
    assert parse_estate(tmp_path / "missing") == []


# ---------------------------------------------------------------------------------------------- lexing


def test_comments_quotes_and_escapes() -> None:
    assert strip_comment('user-string "a # b"   # trailing') == 'user-string "a # b"   '
    assert strip_comment("reply /x\\#y/ skip-mx # c") == "reply /x\\#y/ skip-mx "
    assert strip_comment('reply /say \\"hi\\" # there/ skip-mx') == 'reply /say \\"hi\\" '
    cfg = parse_text('<acct-file /x.csv>\n  user-string "a # b"   # trailing\n</acct-file>\n')
    assert [(d.name, d.value) for d in cfg.acct_files[0].directives] == [("user-string", '"a # b"')]


def test_line_continuation_is_liberal_but_not_for_paths() -> None:
    cfg = parse_text(
        "<domain x.com>\n"
        "  smtp-hosts [192.0.2.1]:25 \\\n"
        "             [192.0.2.2]:25\n"
        "  move-to c:\\pmta\\acct\\\n"
        "  max-smtp-out 3 \\\n"
        "</domain>\n"
    )
    (block,) = cfg.domains
    assert [(d.name, d.value, d.loc.line) for d in block.directives] == [
        ("smtp-hosts", "[192.0.2.1]:25 [192.0.2.2]:25", 2),
        ("move-to", "c:\\pmta\\acct\\", 4),
        ("max-smtp-out", "3", 5),
    ]
    assert [i.loc.line for i in cfg.issues if i.code == "line-continuation"] == [2, 5]
    assert [i for i in cfg.issues if i.severity == "error"] == []


# ---------------------------------------------------------------------------------------------- VMTAs


def test_cidr_source_hosts_expand(mta1) -> None:
    hosts = mta1.vmtas["txn-1"].source_hosts
    assert [(h.ip, h.hostname, h.spec) for h in hosts] == [
        ("198.51.100.1", "txn.mta1.example.net", "198.51.100.0/30"),
        ("198.51.100.2", "txn.mta1.example.net", "198.51.100.0/30"),
    ]


def test_cidr_forms() -> None:
    cfg = parse_text(
        "<virtual-mta a>\n smtp-source-host 10.1/30 a.example\n smtp-source-host 192.0.2.7/32 b.example\n</virtual-mta>\n"
        "<virtual-mta b>\n smtp-source-host 127.0.0.0/30 lo.example\n smtp-source-host 2001:db8::/126 v6.example\n</virtual-mta>\n"
        "<virtual-mta c>\n smtp-source-host 10/8 big.example\n smtp-source-host not-an-ip x\n</virtual-mta>\n"
    )
    assert [h.ip for h in cfg.vmtas["a"].source_hosts] == ["10.1.0.1", "10.1.0.2", "192.0.2.7"]
    # 127.0.0.1 is never a source address; IPv6 ranges expand too
    assert [h.ip for h in cfg.vmtas["b"].source_hosts] == [
        "127.0.0.2",
        "2001:db8::1",
        "2001:db8::2",
        "2001:db8::3",
    ]
    assert [(h.ip, h.spec) for h in cfg.vmtas["c"].source_hosts] == [(None, "10/8")]
    assert [i.code for i in cfg.issues] == ["cidr-not-expanded", "bad-source-host"]


def test_several_source_host_lines_and_global_default() -> None:
    cfg = parse_text(
        "host-name mta.example\nsmtp-source-host 192.0.2.1 g.example\n"
        "<virtual-mta v>\n smtp-source-host 192.0.2.2 v1.example\n smtp-source-host 192.0.2.3\n</virtual-mta>\n"
    )
    assert [(h.ip, h.hostname) for h in cfg.vmtas["v"].source_hosts] == [
        ("192.0.2.2", "v1.example"),
        ("192.0.2.3", None),
    ]
    assert [h.ip for h in cfg.global_source_hosts] == ["192.0.2.1"]
    assert cfg.host_name == "mta.example"


def test_pools_and_undefined_members() -> None:
    cfg = parse_text(
        "<virtual-mta a>\n</virtual-mta>\n<virtual-mta-pool p>\n virtual-mta a\n virtual-mta ghost\n</virtual-mta-pool>\n"
    )
    assert cfg.pools_of("a") == ["p"]
    assert _issues(cfg, "unknown-pool-member") == [
        (Loc("config", 5), "pool p lists undefined virtual-mta ghost")
    ]


# ---------------------------------------------------------------------------------------------- blocks


def test_domain_keys_paths_only(mta1) -> None:
    keys = [(k.selector, k.domain, k.path, k.scope, k.scope_name, k.loc) for k in mta1.domain_keys]
    assert keys == [
        (
            "txn",
            "txn.example.com",
            "/etc/pmta/keys/txn.example.com.pem",
            "vmta",
            "txn-1",
            Loc("vmtas.conf", 15),
        ),
        (
            "s2024",
            "example.com",
            "/etc/pmta/keys/example.com.pem",
            "global",
            None,
            Loc("domains/keys.conf", 2),
        ),
        (
            "s2023",
            "example.com",
            "/etc/pmta/keys/example.com.old.pem",
            "global",
            None,
            Loc("domains/keys.conf", 3),
        ),
        ("k1", "news.example.com", "/etc/pmta/keys/news.pem", "global", None, Loc("domains/keys.conf", 4)),
    ]


def test_smtp_pattern_list(mta1) -> None:
    rules = mta1.pattern_lists["blocking"].rules
    assert [(r.regex, r.actions, r.loc.line) for r in rules] == [
        ("generating high volumes of.* complaints", ("mode=backoff",), 2),
        ("TSS04", ("mode=backoff", "disable-source-ip", "reenable-after=2h"), 3),
        ("account over quota", ("bounce-rcpt",), 4),
        ("permanently deferred", ("bounce-queue",), 5),
        ("rule \\x23CR-IN-DEF-2", ("skip-mx",), 6),
    ]


def test_mx_rollup_acct_file_and_source(mta1) -> None:
    assert [(m.mx_host, m.rollup, m.by_ip) for m in mta1.mx_rollups] == [
        ("*.olc.protection.outlook.com", "hotmail.rollup", True),
        ("mx1.hotmail.com", "hotmail.rollup", False),
    ]
    acct, diag = mta1.acct_files
    assert (acct.path, acct.records, acct.record_fields) == (
        "/var/log/pmta/acct.csv",
        ("d", "b", "t", "tq", "f", "rb"),
        {"d": "*,header_Message-Id"},
    )
    assert (diag.path, diag.records) == ("/var/log/pmta/diag.csv", ("t",))
    assert [(s.name, [d.name for d in s.directives]) for s in mta1.sources] == [
        ("127.0.0.1", ["always-allow-relaying", "process-x-virtual-mta", "default-virtual-mta"]),
        ("0/0", ["log-connections"]),
    ]


def test_unknown_directives_and_tags_are_kept_and_reported(mta1) -> None:
    assert [(scope, d.name, d.value, d.loc) for scope, d in mta1.unknown] == [
        ("global/domain hotmail.com", "frobnicate-level", "3", Loc("config", 80)),
    ]
    assert _issues(mta1, "unknown-directive") == [
        (Loc("config", 80), "unknown directive 'frobnicate-level' in global/domain hotmail.com")
    ]
    assert _issues(mta1, "unknown-tag") == [(Loc("config", 105), "unknown block <bogus-block>")]
    (bogus,) = [b for b in mta1.other_blocks if b.tag == "bogus-block"]
    assert [(d.name, d.value) for d in bogus.directives()] == [("anything", "goes")]


# ---------------------------------------------------------------------------------------------- errors


def test_unclosed_tag_in_included_file_names_file_and_line() -> None:
    cfg = parse_node(FIX / "broken" / "unclosed")
    assert _issues(cfg, "unclosed-tag") == [
        (
            Loc("tail.conf", 1),
            "<domain gmail.com> opened at tail.conf:1 is not closed by the end of tail.conf",
        )
    ]
    # the rest of the file still parses
    assert [d.name for d in cfg.global_directives] == ["max-smtp-out"]
    with pytest.raises(PmtaConfigError) as exc:
        parse_node(FIX / "broken" / "unclosed", strict=True)
    assert exc.value.loc == Loc("tail.conf", 1)
    assert str(exc.value).startswith("tail.conf:1: <domain gmail.com>")


def test_mismatched_tags() -> None:
    cfg = parse_node(FIX / "broken" / "mismatched")
    assert [(i.code, i.loc) for i in cfg.issues if i.severity == "error"] == [
        ("unclosed-tag", Loc("config", 4)),
        ("unmatched-close", Loc("config", 5)),
    ]
    assert "opened at config:2" in cfg.issues[0].message
    assert [h.ip for h in cfg.vmtas["b"].source_hosts] == ["192.0.2.2"]
    with pytest.raises(PmtaConfigError) as exc:
        parse_node(FIX / "broken" / "mismatched", strict=True)
    assert exc.value.loc == Loc("config", 4)


def test_missing_include_is_reported_not_fatal() -> None:
    cfg = parse_node(FIX / "broken" / "missing-include")
    assert _issues(cfg, "include-missing") == [
        (Loc("config", 1), "include '/etc/pmta/nowhere.conf' matches no file in the node folder")
    ]
    assert list(cfg.vmtas) == ["a"]


def test_missing_main_file(tmp_path: Path) -> None:
    cfg = parse_node(tmp_path)
    assert [i.code for i in cfg.issues] == ["missing-main-file"]


# ---------------------------------------------------------------------------------------------- macros


def test_nested_macros_expand(mta1) -> None:
    assert mta1.macros == {"eu": ["de", "fr"], "tld": ["com", "co.uk", "de", "fr"]}
    (block,) = [b for b in mta1.domains if b.raw_pattern == "yahoo.$tld"]
    assert [(p.text, p.kind, p.from_macro) for p in block.patterns] == [
        ("yahoo.com", "exact", True),
        ("yahoo.co.uk", "exact", True),
        ("yahoo.de", "exact", True),
        ("yahoo.fr", "exact", True),
    ]


def test_macro_loops_undefined_and_products() -> None:
    cfg = parse_text(
        "domain-macro a x, $b\ndomain-macro b $a\ndomain-macro t com, net\ndomain-macro s mail, mx\n"
        "<domain $s.example.$t>\n max-smtp-out 1\n</domain>\n<domain foo.$nope>\n max-smtp-out 1\n</domain>\n"
    )
    assert [i.code for i in cfg.issues if i.code == "macro-loop"] == ["macro-loop"]
    blk_ok, blk_bad = cfg.domains
    assert [p.text for p in blk_ok.patterns] == [
        "mail.example.com",
        "mail.example.net",
        "mx.example.com",
        "mx.example.net",
    ]
    assert blk_bad.patterns == []
    assert (Loc("config", 8), "$nope is not a defined domain-macro") in _issues(cfg, "undefined-macro")


# ---------------------------------------------------------------------------------------------- patterns


def test_pattern_classification() -> None:
    assert classify_pattern("*").kind == "all"
    assert (classify_pattern("*.X.com").text, classify_pattern("*.X.com").kind) == ("*.x.com", "subdomains")
    assert classify_pattern("[*.]x.com").kind == "domain_and_subdomains"
    assert classify_pattern("Bücher.de").text == "xn--bcher-kva.de"
    assert classify_pattern("mail.*.com").kind == "other"


WILDCARDS = """
<domain *>
  max-smtp-out 1
</domain>
<domain [*.]x.com>
  max-smtp-out 2
</domain>
<domain *.x.com>
  max-smtp-out 3
</domain>
<domain a.x.com>
  max-smtp-out 4
</domain>
<domain [*.]b.x.com>
  max-smtp-out 5
</domain>
"""


@pytest.mark.parametrize(
    ("domain", "expected", "winner"),
    [
        ("a.x.com", "4", "a.x.com"),  # exact beats every wildcard
        ("c.x.com", "3", "*.x.com"),  # *.x beats [*.]x for a subdomain
        ("x.com", "2", "[*.]x.com"),  # *.x does not match the apex; [*.]x does
        ("y.com", "1", "*"),  # only * left
        ("b.x.com", "5", "[*.]b.x.com"),  # [*.]b.x names a longer suffix than *.x
        ("deep.b.x.com", "5", "[*.]b.x.com"),
    ],
)
def test_wildcard_precedence(domain: str, expected: str, winner: str) -> None:
    cfg = parse_text(WILDCARDS)
    eff = effective_settings(cfg, None, classify_pattern(domain))
    s = eff[("max-smtp-out", "")]
    assert (s.value, s.source_pattern.text) == (expected, winner)


def test_explicit_pattern_beats_macro_expansion(mta1) -> None:
    rows = {(r.vmta, r.pattern.text, r.directive): r for r in effective_domain_rules(mta1)}
    r = rows[(None, "yahoo.com", "max-msg-rate")]
    assert (r.value, r.loc, r.source_pattern.from_macro) == ("1000/h", Loc("config", 70), False)
    r = rows[(None, "yahoo.de", "max-msg-rate")]
    assert (r.value, r.loc, r.source_pattern.from_macro) == ("83/10m", Loc("config", 65), True)


def test_inheritance_global_pool_vmta(mta1) -> None:
    rows = {(r.vmta, r.pattern.text, r.directive): r for r in effective_domain_rules(mta1)}

    def val(vmta, pattern, directive):
        r = rows[(vmta, pattern, directive)]
        return r.value, r.scope, r.loc

    # global view
    assert val(None, "gmail.com", "max-msg-rate") == ("500/h", "global", Loc("config", 58))
    assert val(None, "gmail.com", "max-smtp-out") == ("10", "global", Loc("config", 57))
    assert val(None, "gmail.com", "bounce-after") == ("4d12h", "global", Loc("config", 49))  # from '*'
    # VMTA scope overrides global
    assert val("mkt-1", "gmail.com", "max-msg-rate") == ("200/h", "vmta", Loc("vmtas.conf", 5))
    assert val("mkt-1", "gmail.com", "max-smtp-out") == ("10", "global", Loc("config", 57))
    # pool scope overrides global for members only
    assert val("mkt-2", "yahoo.com", "max-smtp-out") == ("4", "pool", Loc("vmtas.conf", 29))
    assert val("warm-1", "yahoo.com", "max-smtp-out") == ("8", "global", Loc("config", 64))
    # a VMTA's <domain *> beats a global, more specific pattern (scope before specificity)
    assert val("txn-1", "gmail.com", "max-smtp-out") == ("40", "vmta", Loc("vmtas.conf", 17))
    assert val("txn-1", "*", "max-smtp-out") == ("40", "vmta", Loc("vmtas.conf", 17))
    # [*.] apex row vs *. row vs exact
    assert val(None, "[*.]example.org", "max-smtp-out")[0] == "3"
    assert val(None, "*.example.org", "max-smtp-out")[0] == "4"
    assert val(None, "sub.example.org", "max-smtp-out")[0] == "5"
    assert val(None, "sub.example.org", "route")[0] == "relay.example.net"  # inherited from [*.]example.org


def test_vmta_in_two_pools_with_domains_is_an_error() -> None:
    cfg = parse_text(
        "<virtual-mta a>\n</virtual-mta>\n"
        "<virtual-mta-pool p1>\n virtual-mta a\n <domain x.com>\n  max-smtp-out 1\n </domain>\n</virtual-mta-pool>\n"
        "<virtual-mta-pool p2>\n virtual-mta a\n <domain x.com>\n  max-smtp-out 2\n </domain>\n</virtual-mta-pool>\n"
    )
    assert [i.code for i in cfg.issues] == ["vmta-in-several-pools-with-domains"]
    # pools apply in file order: the later pool wins
    assert effective_settings(cfg, "a", classify_pattern("x.com"))[("max-smtp-out", "")].value == "2"


def test_source_ip_keyed_directives_keep_each_cidr() -> None:
    cfg = parse_text(
        "<domain *>\n source-ip-max-msg-rate 192.0.2.1/32 10/h\n source-ip-max-msg-rate 192.0.2.2/32 20/h\n</domain>\n"
    )
    eff = effective_settings(cfg, None, classify_pattern("*"))
    assert {k: s.value for k, s in eff.items()} == {
        ("source-ip-max-msg-rate", "192.0.2.1/32"): "10/h",
        ("source-ip-max-msg-rate", "192.0.2.2/32"): "20/h",
    }
