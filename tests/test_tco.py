"""TCO model: hand-computed cash flows to the cent, payback, growth, sensitivity directions, range flags."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import polars as pl
import pytest

from mtashift import tco

INPUTS = tco.TcoInputs(
    licence_tiers=((1_000_000.0, 12_000.0), (None, 24_000.0)),
    production_licences=2,
    devtest_licences=1,
    devtest_licence_annual_usd=2500,
    pmta_nodes=2,
    pmta_operator_hours_per_month=10,
    pmta_monitoring_usd_per_month=0,
    kumo_messages_per_node_hour=500_000,
    kumo_redundancy_nodes=1,
    kumo_min_nodes=1,
    kumo_operator_hours_per_month=20,
    kumo_monitoring_usd_per_month=50,
    kumo_support_annual_usd=0,
    server_usd_per_node_month=300,
    operator_usd_per_hour=100,
    migration_base_weeks=2,
    migration_weeks_per_vmta=0.1,
    migration_weeks_per_ip=0.05,
    migration_weeks_per_million_daily=0.5,
    migration_min_weeks=2,
    migration_max_weeks=6,
    migration_team_usd_per_week=5000,
    migration_other_usd=0,
    parallel_run_months=1,
    apply_growth=False,
)
VOLUME = tco.VolumeProfile(
    mean_daily=800_000, current_daily=800_000, peak_hourly=60_000, growth_per_month=0, days_observed=30,
    pmta_nodes=2, vmtas=10, ips=20,
)  # fmt: skip


def test_hand_computed_cash_flow_to_the_cent() -> None:
    r = tco.tco_model(inputs=INPUTS, volume=VOLUME)
    # PowerMTA per month: licence 12,000 x 2 / 12 = 2,000.00; dev/test 2,500 / 12 = 208.33;
    #   servers 2 x 300 = 600.00; operations 10 h x 100 = 1,000.00; monitoring 0 -> 3,808.33.
    # KumoMTA: nodes = max(1, ceil(60,000 / 500,000)) + 1 = 2 -> servers 600.00; operations
    #   20 h x 100 = 2,000.00; monitoring 50.00 -> 2,650.00 (+ PowerMTA 3,808.33 in month 1).
    # Migration: 2 + 10 x 0.1 + 20 x 0.05 + 0.8 x 0.5 = 4.4 weeks x 5,000 = 22,000.00.
    # 3 years: PowerMTA 36 x 3,808.33 = 137,099.88; KumoMTA 36 x 2,650 + 3,808.33 + 22,000 = 121,208.33.
    # Savings 137,099.88 - 121,208.33 = 15,891.55.
    assert r.migration_weeks == 4.4
    assert r.migration_cost == Decimal("22000.00")
    assert r.savings_3y == Decimal("15891.55")
    cf = r.cashflow
    m1 = {row["option"]: row for row in cf.filter(pl.col("month") == 1).to_dicts()}
    assert m1["powermta"]["devtest_licences"] == 208.33 and m1["powermta"]["total"] == 3808.33
    assert m1["kumomta"]["nodes"] == 2 and m1["kumomta"]["parallel_run"] == 3808.33
    assert m1["kumomta"]["total"] == 6458.33
    m2 = cf.filter((pl.col("month") == 2) & (pl.col("option") == "kumomta")).to_dicts()[0]
    assert m2["total"] == 2650.0 and m2["parallel_run"] == 0.0
    m0 = cf.filter(pl.col("month") == 0).sort("option")
    assert m0["migration"].to_list() == [22000.0, 0.0]  # kumomta, powermta
    last = {row["option"]: row["cumulative"] for row in cf.filter(pl.col("month") == 36).to_dicts()}
    assert last == {"powermta": 137099.88, "kumomta": 121208.33}
    s = {row["option"]: row for row in r.summary.to_dicts()}
    assert s["powermta"]["total_3y"] == 137099.88 and s["kumomta"]["total_3y"] == 121208.33
    assert s["kumomta"]["one_off"] == 22000.0 and s["kumomta"]["running_3y"] == 99208.33
    # Cash flow and summary reconcile to the cent.
    per_option = cf.group_by("option").agg(pl.col("total").sum().round(2)).sort("option").rows()
    assert per_option == [("kumomta", 121208.33), ("powermta", 137099.88)]


def test_payback_month() -> None:
    r = tco.tco_model(inputs=INPUTS, volume=VOLUME)
    # Month 1 saves 3,808.33 - 6,458.33 = -2,650.00; every later month 1,158.33.
    # Cumulative after m months = -2,650 + 1,158.33 (m - 1): m = 22 -> 21,674.93 < 22,000;
    # m = 23 -> 22,833.26 >= 22,000.
    assert r.payback_month == 23
    s = r.summary.to_dicts()[0]
    assert s["payback_month"] == 23 and s["recommendation"] == "migrate"
    # Never within 36 months: a 6-week project at 50,000/week.
    slow = tco.tco_model(
        inputs=tco.TcoInputs(**{**INPUTS.__dict__, "migration_team_usd_per_week": 50_000}), volume=VOLUME
    )
    assert slow.payback_month is None
    assert slow.summary["recommendation"][0] == "stay"
    assert "staying on PowerMTA is cheaper" in slow.note


def test_growth_moves_licence_tier_and_nodes() -> None:
    inputs = tco.TcoInputs(**{**INPUTS.__dict__, "apply_growth": True, "max_monthly_growth": 0.10})
    volume = tco.VolumeProfile(
        mean_daily=900_000, current_daily=900_000, peak_hourly=450_000, growth_per_month=50_000, days_observed=60,
        pmta_nodes=2, vmtas=10, ips=20,
    )  # fmt: skip
    cf = tco.tco_model(inputs=inputs, volume=volume).cashflow.filter(pl.col("option") == "powermta")
    # month m daily = 900,000 + 50,000 (m - 1): month 3 = 1,000,000 (tier 1), month 4 = 1,050,000 (tier 2).
    licence = dict(zip(cf["month"], cf["licence"], strict=True))
    assert (licence[3], licence[4]) == (2000.0, 4000.0)
    kumo = tco.tco_model(inputs=inputs, volume=volume).cashflow.filter(pl.col("option") == "kumomta")
    nodes = dict(zip(kumo["month"], kumo["nodes"], strict=True))
    # peak scales with volume: month 3 = 450,000 x 1.0M/0.9M = 500,000 -> 1 + 1 node; month 4 -> 525,000 -> 2 + 1.
    assert (nodes[3], nodes[4]) == (2, 3)
    # The clamp: a fitted slope of 200,000/month is cut to 10 % of 900,000 = 90,000/month.
    fast = tco.VolumeProfile(**{**volume.__dict__, "growth_per_month": 200_000})
    assert tco.projected_daily(3, inputs, fast) == 900_000 + 2 * 90_000


def test_migration_weeks_clamped() -> None:
    tiny = tco.VolumeProfile(mean_daily=0, current_daily=0, peak_hourly=0, growth_per_month=0)
    huge = tco.VolumeProfile(
        mean_daily=1, current_daily=1, peak_hourly=1, growth_per_month=0, vmtas=500, ips=900
    )
    quick = tco.TcoInputs(**{**INPUTS.__dict__, "migration_base_weeks": 0.5})
    assert tco.migration_weeks(quick, tiny) == 2.0  # 0.5 raw -> floor of 2 weeks
    assert tco.migration_weeks(INPUTS, huge) == 6.0  # 2 + 50 + 45 raw -> ceiling of 6 weeks
    # The effort multiplier (sensitivity knob) applies after the clamp.
    assert (
        tco.migration_weeks(tco.TcoInputs(**{**INPUTS.__dict__, "migration_effort_multiplier": 1.2}), huge)
        == 7.2
    )


def _deltas() -> dict[str, tuple[float, float]]:
    sens = tco.tco_sensitivity(inputs=INPUTS, volume=VOLUME, delta=0.2)
    assert sens["base_savings_3y"].unique().to_list() == [15891.55]
    return {r["input"]: (r["delta_low"], r["delta_high"]) for r in sens.to_dicts()}


def test_sensitivity_directions() -> None:
    d = _deltas()
    # Dearer PowerMTA licences -> bigger savings from leaving: +20 % of 2,000/month x 35 months
    # (month 1 is paid by both options) = 14,000.00.
    assert d["powermta.licence_price"] == (pytest.approx(-14000.0), pytest.approx(14000.0))
    # More KumoMTA operator hours -> smaller savings: 4 h x 100 x 36 = 14,400.00.
    assert d["kumomta.operator_hours_per_month"] == (pytest.approx(14400.0), pytest.approx(-14400.0))
    # A dearer operator hour hurts the option that needs more hours (KumoMTA 20 h vs 10 h).
    low, high = d["operator_usd_per_hour"]
    assert high < 0 < low
    # More PowerMTA operator hours -> bigger savings.
    assert d["powermta.operator_hours_per_month"][1] > 0 > d["powermta.operator_hours_per_month"][0]
    # A dearer migration team or a longer project -> smaller savings: 20 % of 22,000 = 4,400.
    assert d["migration.team_usd_per_week"] == (pytest.approx(4400.0), pytest.approx(-4400.0))
    assert d["migration.effort_weeks"] == (pytest.approx(4400.0), pytest.approx(-4400.0))
    # KumoMTA monitoring: 50 x 0.2 x 36 = 360.
    assert d["kumomta.monitoring_usd_per_month"] == (pytest.approx(360.0), pytest.approx(-360.0))
    # Zero-valued inputs do not move.
    assert d["kumomta.support_annual_usd"] == (0.0, 0.0)


def test_sensitivity_sorted_for_tornado() -> None:
    sens = tco.tco_sensitivity(inputs=INPUTS, volume=VOLUME)
    swings = sens["swing"].to_list()
    assert swings == sorted(swings, reverse=True)
    assert sens["input"][0] == "kumomta.operator_hours_per_month"  # 28,800 swing, the widest
    assert set(sens["input"]) == set(tco.SENSITIVITY_KNOBS)


@pytest.mark.parametrize(
    ("daily", "flag"),
    [(499_999, "below_range"), (500_000, "in_range"), (5_000_000, "in_range"), (5_000_001, "above_range")],
)
def test_range_flags(daily: float, flag: str) -> None:
    assert tco.range_flag(daily, low=500_000, high=5_000_000) == flag


def test_below_range_note_says_staying_can_be_better() -> None:
    small = tco.VolumeProfile(**{**VOLUME.__dict__, "mean_daily": 100_000, "current_daily": 100_000})
    r = tco.tco_model(inputs=INPUTS, volume=small)
    assert r.range_flag == "below_range"
    assert "staying on PowerMTA can be the better call" in r.note
    assert r.summary["range_flag"].unique().to_list() == ["below_range"]


def test_volume_profile_linear_fit() -> None:
    start = date(2024, 1, 1)
    # 20 days: 1,000,000 + 10,000 x day -> slope 10,000/day = 304,375/month; last day 1,190,000.
    daily = pl.DataFrame(
        {
            "day": [str(start + timedelta(days=i)) for i in range(20)],
            "messages": [1_000_000 + 10_000 * i for i in range(20)],
        }
    )
    v = tco.volume_profile(daily=daily, peak_hourly=90_000, min_days_for_trend=14)
    assert v.mean_daily == 1_095_000
    assert v.growth_per_month == pytest.approx(304_375.0)
    assert v.current_daily == pytest.approx(1_190_000.0)
    assert (v.days_observed, v.first_day, v.last_day) == (20, "2024-01-01", "2024-01-20")
    # Too few days for a trend: mean volume, no growth.
    short = tco.volume_profile(daily=daily.head(5), peak_hourly=1, min_days_for_trend=14)
    assert (short.current_daily, short.growth_per_month) == (1_020_000, 0.0)
    empty = tco.volume_profile(daily=daily.clear(), peak_hourly=0)
    assert (empty.mean_daily, empty.days_observed) == (0.0, 0)


def test_daily_volumes_from_events() -> None:
    from datetime import UTC, datetime

    t = datetime(2024, 5, 1, 10, tzinfo=UTC)
    ev = pl.LazyFrame(
        {
            "event_type": ["delivered", "deferred", "bounced", "expired", "delivered", "received"],
            "event_time": [t, t, t + timedelta(minutes=5), t + timedelta(hours=2), t + timedelta(days=1), t],
        },
        schema_overrides={"event_time": pl.Datetime("us", "UTC")},
    )
    daily, peak = tco.daily_volumes(ev)
    assert daily.rows() == [("2024-05-01", 3), ("2024-05-02", 1)]
    assert peak == 2.0


def test_plan_overrides_and_assumptions() -> None:
    inputs, assumptions = tco.load_tco_inputs(
        plan_tco={
            "shared": {"server_usd_per_node_month": 500},
            "kumomta": {"operator_hours_per_month": {"value": 30, "source": "our ops team estimate"}},
            "powermta": {"licence_tiers": [{"max_daily_messages": None, "annual_usd": 9000}]},
        }
    )
    assert inputs.server_usd_per_node_month == 500.0
    assert inputs.kumo_operator_hours_per_month == 30.0
    assert inputs.licence_tiers == ((None, 9000.0),)
    assert inputs.operator_usd_per_hour == 85.0  # default kept
    a = {r["name"]: r for r in assumptions.to_dicts()}
    assert (
        a["shared.server_usd_per_node_month"]["overridden"]
        and a["shared.server_usd_per_node_month"]["source"] == "plan.yaml"
    )
    assert a["kumomta.operator_hours_per_month"]["source"] == "our ops team estimate"
    assert a["kumomta.operator_hours_per_month"]["unit"] == "hours/month"
    assert not a["shared.operator_usd_per_hour"]["overridden"]
    assert all(r["source"] for r in a.values())
    with pytest.raises(ValueError, match="increasing"):
        tco.load_tco_inputs(
            plan_tco={
                "powermta": {
                    "licence_tiers": [
                        {"max_daily_messages": None, "annual_usd": 1},
                        {"max_daily_messages": 5, "annual_usd": 2},
                    ]
                }
            }
        )


def test_estate_counts_events_then_inventory() -> None:
    ev = pl.LazyFrame(
        {
            "mta": ["pmta", "pmta", "pmta", "kumo"],
            "node": ["n1", "n2", "n2", "k1"],
            "source": ["v1", "v2", "v2", "src9"],
            "source_ip": ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.9.9"],
        }
    )
    got = tco.estate_counts(events=ev)
    assert (got["pmta_nodes"], got["vmtas"], got["ips"]) == (2, 2, 3)
    assert set(got["basis"].values()) == {"events"}
    inventory = pl.LazyFrame(
        {
            "node": ["n1", "n1", "n1", "n2", "n3"],
            "kind": ["vmta", "vmta", "source_ip", "vmta", "sender_domain"],
            "name": ["v1", "v3", "10.0.0.1", "v1", "example.com"],
        }
    )
    got = tco.estate_counts(events=ev, inventory=inventory)
    # VMTAs v1, v3 (v1 on two nodes counts once); one IP; three nodes.
    assert (got["pmta_nodes"], got["vmtas"], got["ips"]) == (3, 2, 1)
    assert got["basis"] == {
        "pmta_nodes": "estate_inventory",
        "vmtas": "estate_inventory",
        "ips": "estate_inventory",
    }


def test_per_option_operator_rate() -> None:
    # KumoMTA staff at 150/hour instead of the shared 100: 20 h x 50 x 36 = 36,000 less savings.
    dear = tco.TcoInputs(**{**INPUTS.__dict__, "kumo_operator_usd_per_hour": 150})
    r = tco.tco_model(inputs=dear, volume=VOLUME)
    assert r.savings_3y == Decimal("15891.55") - Decimal("36000.00")
    m2 = r.cashflow.filter((pl.col("month") == 2) & (pl.col("option") == "kumomta"))["operations"].item()
    assert m2 == 3000.0
    # The rate knob scales the per-option rate too: +20 % of (150 x 20 - 100 x 10) x 36 months
    # (month 1 also pays PowerMTA's 1,000 in the parallel run) = 0.2 x (3,000 x 36 - 1,000 x 35) = 14,600.
    sens = {r["input"]: r for r in tco.tco_sensitivity(inputs=dear, volume=VOLUME, delta=0.2).to_dicts()}
    assert sens["operator_usd_per_hour"]["delta_high"] == pytest.approx(-14600.0)
