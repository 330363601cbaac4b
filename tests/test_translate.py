"""PowerMTA -> KumoMTA translation: value conversion, files, option-name validation, evidence, report."""

import tomllib
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from mtashift.inventory import pmta_domain_rules
from mtashift.pmta_config import parse_estate, parse_node, parse_text
from mtashift.translate import (
    convert_rate,
    kumo_duration,
    kumo_options,
    observed_peaks,
    parse_interval,
    rate_verdict,
    report_markdown,
    safe_comment,
    signature_rules,
    tenant_pool_hints,
    translate_estate,
    validate_kumo_file,
    validate_kumo_text,
    warmup_rows,
)

FIX = Path(__file__).parent / "fixtures" / "pmta-config"
MTA1 = FIX / "estate" / "mta1"


@pytest.fixture(scope="module")
def mta1_result():
    return translate_estate(configs=[parse_node(MTA1)])


@pytest.fixture(scope="module")
def mta1_toml(mta1_result):
    return {name: tomllib.loads(text) for name, text in mta1_result.files.items()}


def _row(report: pl.DataFrame, file: str, line: int, directive: str) -> dict:
    (r,) = report.filter(
        (pl.col("file") == file) & (pl.col("line") == line) & (pl.col("directive") == directive)
    ).to_dicts()
    return r


# ---------------------------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("raw", "kumo", "per_hour", "exact"),
    [
        ("500/h", "500/h", 500.0, True),
        ("83/10m", "498/h", 498.0, True),  # 83 per 10 minutes = 8.3/min (not whole) = 498/h
        ("100/15m", "400/h", 400.0, True),
        ("10/s", "10/s", 36000.0, True),
        ("10/sec", "10/s", 36000.0, True),
        ("83/5s", "996/min", 59760.0, True),
        ("100/7m", "857/h", 100 * 60 / 7, False),  # 857.14/h rounded DOWN
        ("1000/2d", "500/d", 1000 / 48, True),
        ("1,000/hr", "1000/h", 1000.0, True),
        ("50/day", "50/d", 50 / 24, True),
    ],
)
def test_rate_conversion(raw: str, kumo: str, per_hour: float, exact: bool) -> None:
    rc = convert_rate(raw)
    assert (rc.kumo, rc.valid, rc.exact) == (kumo, True, exact)
    assert rc.per_hour == pytest.approx(per_hour)


@pytest.mark.parametrize("raw", ["unlimited", "0", "UNLIMITED", "0/h"])
def test_unlimited_rates_are_omitted(raw: str) -> None:
    rc = convert_rate(raw)
    assert (rc.kumo, rc.valid) == (None, True)


@pytest.mark.parametrize("raw", ["fast", "10/fortnight", "10/0m", "/h"])
def test_invalid_rates(raw: str) -> None:
    assert convert_rate(raw).valid is False


def test_intervals_and_durations() -> None:
    assert parse_interval("4d12h") == 4 * 86400 + 12 * 3600
    assert parse_interval("10m") == 600
    assert parse_interval("90") == 90
    assert parse_interval("never") is None
    assert parse_interval("soon") is None
    assert kumo_duration(388800) == "108 hours"
    assert kumo_duration(600) == "10 minutes"
    assert kumo_duration(3600) == "1 hour"
    assert kumo_duration(2 * 86400) == "2 days"
    assert kumo_duration(61) == "61 seconds"


# ---------------------------------------------------------------------------------------------- files


def test_files_parse_and_use_documented_options_only(mta1_result) -> None:
    assert mta1_result.errors == {
        "sources.toml": [],
        "shaping.toml": [],
        "queue.toml": [],
        "dkim_data.toml": [],
    }
    for name, text in mta1_result.files.items():
        assert validate_kumo_text(name, text) == []
        tomllib.loads(text)


def test_sources_toml(mta1_toml) -> None:
    src = mta1_toml["sources.toml"]
    assert src["source"] == {
        "mkt-1": {"source_address": "192.0.2.10", "ehlo_domain": "mkt-1.mta1.example.net"},
        "mkt-2": {"source_address": "192.0.2.11", "ehlo_domain": "mkt-2.mta1.example.net"},
        "txn-1-198.51.100.1": {"source_address": "198.51.100.1", "ehlo_domain": "txn.mta1.example.net"},
        "txn-1-198.51.100.2": {"source_address": "198.51.100.2", "ehlo_domain": "txn.mta1.example.net"},
        "warm-1": {"source_address": "203.0.113.5", "ehlo_domain": "warm-1.mta1.example.net"},
    }
    # a 2-address VMTA next to a 1-address VMTA: each address gets half the VMTA's turn (weights 1, 1, 2)
    assert src["pool"] == {
        "pool-marketing": {"mkt-1": {"weight": 1}, "mkt-2": {"weight": 1}},
        "pool-transactional": {
            "txn-1-198.51.100.1": {"weight": 1},
            "txn-1-198.51.100.2": {"weight": 1},
            "warm-1": {"weight": 2},
        },
    }


def test_shaping_default_and_domains(mta1_toml) -> None:
    sh = mta1_toml["shaping.toml"]
    default = {k: v for k, v in sh["default"].items() if k != "automation"}
    assert default == {
        "max_deliveries_per_connection": 100,
        "connection_limit": 20,
        "enable_tls": "Opportunistic",
    }
    gmail = {k: v for k, v in sh["gmail.com"].items() if k not in ("sources", "automation")}
    assert gmail == {
        "max_connection_rate": "400/h",
        "max_message_rate": "500/h",
        "connection_limit": 10,
        "enable_tls": "Required",
    }
    assert "automation" not in sh["gmail.com"]  # the '*' pattern list lives in ["default"] only
    assert sh["gmail.com"]["sources"] == {
        "mkt-1": {"max_message_rate": "200/h"},
        "txn-1-198.51.100.1": {"connection_limit": 40},
        "txn-1-198.51.100.2": {"connection_limit": 40},
    }
    yahoo = {k: v for k, v in sh["yahoo.com"].items() if k != "sources"}
    assert yahoo == {"max_deliveries_per_connection": 20, "max_message_rate": "1000/h", "connection_limit": 8}
    assert sh["yahoo.com"]["sources"]["mkt-2"] == {"connection_limit": 4}
    assert sh["yahoo.de"]["max_message_rate"] == "498/h"
    assert {k: v for k, v in sh["comcast.net"].items() if k != "sources"} == {"connection_limit": 2}
    assert sh["hotmail.com"]["max_message_rate"] == "10/s"
    assert sh["sub.example.org"]["connection_limit"] == 5
    assert sh["example.org"]["connection_limit"] == 3
    # *.example.org is configured, so [*.]example.org needs no provider of its own
    prov = sh["provider"]
    assert "pmta [*.]example.org" not in prov
    assert {k: v for k, v in prov["pmta *.example.org"].items() if k != "sources"} == {
        "match": [{"DomainSuffix": ".example.org"}],
        "connection_limit": 4,
    }
    assert prov["yahoo"]["match"] == [{"MXSuffix": ".yahoodns.net"}]
    # txn-1's <domain *> reaches every provider-map block per source
    assert prov["google"]["sources"]["txn-1-198.51.100.1"] == {"connection_limit": 40}


def test_shaping_automation_from_pattern_list(mta1_toml) -> None:
    rules = mta1_toml["shaping.toml"]["default"]["automation"]
    assert rules == [
        {
            "regex": "(?i)generating high volumes of.* complaints",
            "action": {"SetConfig": {"name": "max_message_rate", "value": "100/h"}},
            "duration": "1 hour",
        },
        {"regex": "(?i)TSS04", "action": "Suspend", "duration": "2 hours"},
        {"regex": "(?i)permanently deferred", "action": "Bounce", "duration": "5 minutes"},
    ]


def test_queue_and_dkim(mta1_toml) -> None:
    q = mta1_toml["queue.toml"]["queue"]
    assert q["default"] == {
        "retry_interval": "10 minutes",
        "max_retry_interval": "12 hours",
        "max_age": "108 hours",
    }
    assert q["example.org"] == {"routing_domain": "relay.example.net"}
    assert q["*.example.org"] == {"routing_domain": "relay.example.net"}
    assert mta1_toml["dkim_data.toml"] == {
        "domain": {
            "txn.example.com": {"selector": "txn", "filename": "/etc/pmta/keys/txn.example.com.pem"},
            "example.com": {"selector": "s2024", "filename": "/etc/pmta/keys/example.com.pem"},
            "news.example.com": {"selector": "k1", "filename": "/etc/pmta/keys/news.pem"},
        }
    }


def test_translation_is_deterministic() -> None:
    a = translate_estate(configs=parse_estate(FIX / "estate"))
    b = translate_estate(configs=parse_estate(FIX / "estate"))
    assert a.files == b.files
    assert a.report.equals(b.report)
    assert a.report_json == b.report_json


def test_two_nodes_merge(tmp_path: Path) -> None:
    t = translate_estate(configs=parse_estate(FIX / "estate"))
    sources = tomllib.loads(t.files["sources.toml"])
    # mkt-1 exists on both nodes with different addresses: names are node-qualified
    assert sources["source"]["mta1.mkt-1"]["source_address"] == "192.0.2.10"
    assert sources["source"]["mta2.mkt-1"]["source_address"] == "192.0.2.20"
    assert sources["pool"]["pool-marketing"] == {"mta1.mkt-1": {"weight": 1}, "mkt-2": {"weight": 1}}
    assert sources["pool"]["mta2.mkt-1"] == {"mta2.mkt-1": {"weight": 1}}
    shaping = t.files["shaping.toml"]
    assert tomllib.loads(shaping)["default"]["connection_limit"] == 20
    assert "# node mta2 configures connection_limit = 25; kept 20 from node mta1" in shaping


# ---------------------------------------------------------------------------------------------- validation


def test_validation_rejects_undocumented_names() -> None:
    assert validate_kumo_file("shaping.toml", {"default": {"max_msg_rate": "1/h"}}) == [
        "[default]: 'max_msg_rate' is not a documented option here"
    ]
    assert validate_kumo_file("shaping.toml", {"x.com": {"max_message_rate": "fast"}}) == [
        "[x.com].max_message_rate: 'fast' is not a throttle spec"
    ]
    bad_rule = {"regex": "x", "action": "Explode", "duration": "1h", "when": 1}
    assert validate_kumo_file("shaping.toml", {"default": {"automation": [bad_rule]}}) == [
        "[default].automation[0]: 'when' is not a documented option here",
        "[default].automation[0]: action 'Explode' is not documented",
    ]
    assert validate_kumo_file("shaping.toml", {"provider": {"p": {"match": [{"Regex": "x"}]}}}) == [
        "provider.p.match[0]: {'Regex': 'x'} is not a documented match"
    ]
    assert validate_kumo_file(
        "sources.toml", {"source": {"a": {"source_ip": "1"}}, "pool": {"p": {"b": {"weight": 1}}}}
    ) == [
        "source.a: 'source_ip' is not a documented option here",
        "pool.p.b: member is not a defined source",
    ]
    assert validate_kumo_file("queue.toml", {"queue": {"x.com": {"retry": "1h"}}}) == [
        "queue.x.com: 'retry' is not a documented option here"
    ]
    assert validate_kumo_file("dkim_data.toml", {"domain": {"x.com": {"key": "k"}}}) == [
        "domain.x.com: 'key' is not a documented option here"
    ]
    assert validate_kumo_text("queue.toml", "[queue\n")[0].startswith("queue.toml: not valid TOML")


def test_option_list_is_the_documented_one() -> None:
    ko = kumo_options()
    assert ko["egress_source"]["source_address"] == "docs/reference/kumo/make_egress_source/source_address.md"
    assert ko["egress_path"]["max_message_rate"] == "docs/reference/kumo/make_egress_path/max_message_rate.md"
    assert ko["queue_config"]["egress_pool"] == "docs/reference/kumo/make_queue_config/egress_pool.md"
    assert "provider_source_selection_rate" in ko["shaping_toml"]["provider_source_block"]


# ---------------------------------------------------------------------------------------------- report


def test_report_covers_every_directive_and_rule(mta1_result) -> None:
    rep = mta1_result.report
    cfg = parse_node(MTA1)
    rules = pmta_domain_rules([cfg]).select("node", "file", "line", "directive").unique()
    assert rules.join(rep, on=["node", "file", "line", "directive"], how="anti").height == 0
    # one row per directive or opening tag: config 67, vmtas.conf 21, patterns.conf 6, domains/keys.conf 3
    assert rep.height == 97
    assert set(rep["status"]) == {"translated", "unnecessary", "not_translated"}
    assert _row(rep, "config", 101, "mx")["status"] == "unnecessary"
    assert _row(rep, "config", 100, "<mx-rollup-list>")["status"] == "unnecessary"
    assert _row(rep, "config", 43, "domain-macro")["status"] == "unnecessary"
    assert _row(rep, "config", 38, "include")["status"] == "unnecessary"
    r = _row(rep, "config", 65, "max-msg-rate")
    assert (r["status"], r["target_file"], r["note"]) == ("translated", "shaping.toml", "83/10m rescaled")
    assert r["target_key"] == (
        '["yahoo.de"].max_message_rate; ["yahoo.fr"].max_message_rate; ["yahoo.co.uk"].max_message_rate'
    )
    r = _row(rep, "config", 75, "max-msg-rate")
    assert (r["status"], r["note"]) == ("unnecessary", "unlimited: nothing to set")
    r = _row(rep, "config", 80, "frobnicate-level")
    assert (r["status"], r["note"]) == (
        "not_translated",
        "unknown PowerMTA directive (see pmta_config_issues)",
    )
    assert _row(rep, "patterns.conf", 4, "reply")["status"] == "not_translated"
    assert _row(rep, "patterns.conf", 3, "reply")["target_key"] == '["default"].automation'
    assert _row(rep, "domains/keys.conf", 3, "domain-key")["status"] == "not_translated"
    assert _row(rep, "vmtas.conf", 14, "smtp-source-host")["target_key"] == (
        'source."txn-1-198.51.100.1"; source."txn-1-198.51.100.2"'
    )
    r = _row(rep, "config", 96, "<domain>")
    assert (r["status"], r["note"]) == ("not_translated", "container: 1 not translated")
    assert _row(rep, "config", 105, "<bogus-block>")["note"] == "unknown PowerMTA block"


def test_unlimited_lifting_a_default_limit_is_reported() -> None:
    cfg = parse_text(
        "<domain *>\n max-msg-rate 100/h\n</domain>\n<domain x.com>\n max-msg-rate unlimited\n</domain>\n"
    )
    t = translate_estate(configs=[cfg])
    r = _row(t.report, "config", 5, "max-msg-rate")
    assert r["status"] == "not_translated"
    assert "cannot unset max_message_rate" in r["note"]
    assert tomllib.loads(t.files["shaping.toml"])["default"]["max_message_rate"] == "100/h"


def test_markdown_report_escapes_untrusted_text() -> None:
    cfg = parse_text("<domain *>\n frobnicate a|b <script>\n</domain>\n")
    t = translate_estate(configs=[cfg])
    md = report_markdown(t.report, t.errors)
    assert "a\\|b &lt;script&gt;" in md
    assert "<script>" not in md
    assert md.startswith(
        "# PowerMTA -> KumoMTA translation report\n\n2 PowerMTA directives and blocks read: "
    )
    assert safe_comment("bad\nline\x00x") == "bad line x"


# ---------------------------------------------------------------------------------------------- evidence


WARMUP = pl.DataFrame(
    {
        "source_ip": ["203.0.113.5", "203.0.113.5", "192.0.2.10", "198.51.100.1"],
        "provider": ["google", "yahoo", "google", "gmx"],
        "first_day": [date(2024, 5, 20), date(2024, 5, 20), date(2023, 1, 1), date(2023, 1, 1)],
        "as_of": [date(2024, 6, 1)] * 4,
        "sustained_level": [1000, 401, 50000, 300],
        "trend_slope": [50.0, 10.0, 0.0, 30.0],
        "trend_ratio": [1.5, 1.2, 1.0, 1.25],
    }
)


def test_warmup_caps_for_warming_ips_only() -> None:
    t = translate_estate(configs=[parse_node(MTA1)], warmup=WARMUP)
    prov = tomllib.loads(t.files["shaping.toml"])["provider"]
    # young (first seen 12 days before as_of): level x 1.5, rounded up
    assert prov["google"]["sources"]["warm-1"] == {"provider_source_selection_rate": "1500/d,max_burst=1"}
    assert prov["yahoo"]["sources"]["warm-1"] == {"provider_source_selection_rate": "602/d,max_burst=1"}
    # old but rising (ratio 1.25): capped too
    assert prov["gmx"]["sources"]["txn-1-198.51.100.1"] == {
        "connection_limit": 40,  # txn-1's <domain *>
        "provider_source_selection_rate": "450/d,max_burst=1",
    }
    # old and flat: no cap
    assert "mkt-1" not in prov["google"].get("sources", {})
    sources = t.files["sources.toml"]
    assert (
        "# warm-up: warmed; sustained (max delivered/day, last 7 days): google 50,000/day; first seen 2023-01-01"
        in sources
    )
    assert (
        "# warm-up: WARMING; sustained (max delivered/day, last 7 days): google 1,000/day, yahoo 401/day"
        in sources
    )
    assert t.errors["shaping.toml"] == []


def test_warmup_trend_labels() -> None:
    rows = {(w.source_ip, w.provider): w.trend for w in warmup_rows(WARMUP)}
    assert rows[("192.0.2.10", "google")] == "flat"
    assert rows[("198.51.100.1", "gmx")] == "rising"
    undefined = WARMUP.with_columns(pl.lit(None, pl.Float64).alias("trend_ratio"))
    assert {w.trend for w in warmup_rows(undefined)} == {"rising", "flat"}


RATES = pl.DataFrame(
    {
        "hour": [1, 1, 2, 1, 1],
        "provider": ["google", "google", "google", "yahoo", "google"],
        "source": ["mkt-1", "mkt-2", "mkt-1", "mkt-1", "kumo-src"],
        "mta": ["pmta", "pmta", "pmta", "pmta", "kumo"],
        "delivered": [300, 200, 480, 4000, 99999],
    }
)


def test_observed_peaks_busiest_source_per_hour() -> None:
    # kumo rows ignored; per (hour, source): google 300, 200, 480 -> 480
    assert observed_peaks(RATES) == {
        "google": (480.0, "busiest source in one hour"),
        "yahoo": (4000.0, "busiest source in one hour"),
    }
    assert rate_verdict(500, 480).startswith("observed at the configured limit")
    assert rate_verdict(498, 4000).startswith("observed ABOVE configured")
    assert rate_verdict(36000, 480).startswith("configured FAR ABOVE observed")
    assert rate_verdict(1000, 480) == "observed within the configured limit"


def test_observed_rates_commented_in_shaping() -> None:
    t = translate_estate(configs=[parse_node(MTA1)], provider_rates=RATES)
    sh = t.files["shaping.toml"]
    assert (
        "# evidence: configured max_message_rate 500/h = 500/hour per queue; observed peak at google 480 "
        "delivered/hour (busiest source in one hour): observed at the configured limit: it was binding"
    ) in sh
    assert (
        "observed peak at yahoo 4,000 delivered/hour (busiest source in one hour): observed ABOVE configured"
        in sh
    )


SIGNATURES = pl.DataFrame(
    {
        "provider": ["yahoo", "yahoo", "google", "google", "other"],
        "template": [
            "421 4.7.0 [TSS04] Messages from <ip> temporarily deferred",
            "421 4.7.0 [TSS04] Messages from <ip> deferred due to user complaints",
            "421-4.7.28 Gmail has detected an unusual rate of unsolicited mail",
            "452 4.2.2 The email account that you tried to reach is over quota",
            "421 Too many connections from your IP",
        ],
        "count": [1200, 300, 50, 999, 7],
    }
)


def test_signature_rules_match_the_catalogue() -> None:
    hits = [(e["id"], p, n, len(top)) for e, p, n, top in signature_rules(SIGNATURES)]
    assert hits == [
        ("any-too-many-connections", "other", 7, 1),
        ("google-unsolicited-rate", "google", 50, 1),
        ("yahoo-tss04", "yahoo", 1500, 2),
    ]


def test_signature_automation_in_provider_blocks() -> None:
    t = translate_estate(configs=[parse_node(MTA1)], deferral_signatures=SIGNATURES)
    sh = tomllib.loads(t.files["shaping.toml"])
    assert sh["provider"]["yahoo"]["automation"] == [
        {"regex": "TSS?04", "action": "Suspend", "duration": "2 hours"}
    ]
    assert sh["provider"]["google"]["automation"] == [
        {
            "regex": "4\\.7\\.28",
            "action": {"SetConfig": {"name": "max_message_rate", "value": "60/h"}},
            "duration": "1 hour",
            "trigger": {"Threshold": "10/hr"},
        },
    ]
    # provider 'other' has no block: the generic rule goes to ["default"]
    assert sh["default"]["automation"][-1]["regex"] == "too many (concurrent )?connections"
    assert (
        "# evidence: 1,500 deferrals at yahoo matching this signature in the logs" in t.files["shaping.toml"]
    )
    assert t.errors["shaping.toml"] == []


def test_tenant_pool_hints_and_queue_toml() -> None:
    events = pl.DataFrame(
        {
            "mta": ["pmta"] * 7,
            "node": ["mta1"] * 7,
            "tenant": ["acme", "acme", "acme", "beta", "beta", None, "acme"],
            "pool": [
                "pool-marketing",
                "pool-marketing",
                "pool-marketing",
                "pool-transactional",
                None,
                "x",
                None,
            ],
            "source": ["mkt-1", "mkt-2", "mkt-1", "txn-1", "warm-1", "x", "mkt-1"],
            "event_type": [
                "delivered",
                "deferred",
                "bounced",
                "delivered",
                "delivered",
                "delivered",
                "received",
            ],
        }
    ).lazy()
    hints = tenant_pool_hints(events)
    assert hints.to_dicts() == [
        {"tenant": "acme", "pool": "pool-marketing", "events": 3, "total": 3, "share": 1.0}
    ]
    t = translate_estate(configs=[parse_node(MTA1)], events=events)
    q = tomllib.loads(t.files["queue.toml"])
    assert q["tenant"] == {"acme": {"egress_pool": "pool-marketing"}}
    # warm-1 was seen sending with no pool: it gets a pool of one
    assert tomllib.loads(t.files["sources.toml"])["pool"]["warm-1"] == {"warm-1": {"weight": 1}}
    assert (
        "# evidence: 3 of 3 sending events of this tenant went through pool-marketing (100.0%)"
        in t.files["queue.toml"]
    )
