"""Total cost of ownership: staying on PowerMTA vs migrating to KumoMTA, month by month.

Inputs are ``schemas/tco_defaults.yaml`` with plan.yaml ``tco:`` merged over it (every value keeps
its unit and source); volumes come from the events. Money is computed in ``Decimal`` and every
monthly component is rounded to the cent (half up) before it is summed, so totals reconcile to the
cent with the cash-flow table. Formulas: ``schemas/docs/tco.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import stats as sps

from mtashift.settings import deep_merge, load_yaml

CENT = Decimal("0.01")
DAYS_PER_MONTH = 30.4375  # 365.25 / 12
FINAL_TYPES: tuple[str, ...] = ("delivered", "bounced", "expired")
OPTIONS: tuple[str, ...] = ("powermta", "kumomta")
RANGE_FLAGS: tuple[str, ...] = ("below_range", "in_range", "above_range")

# Flat input name -> path in the defaults / plan `tco:` document.
FIELDS: dict[str, tuple[str, ...]] = {
    "horizon_months": ("horizon_months",),
    "licence_tiers": ("powermta", "licence_tiers"),
    "production_licences": ("powermta", "production_licences"),
    "devtest_licences": ("powermta", "devtest_licences"),
    "devtest_licence_annual_usd": ("powermta", "devtest_licence_annual_usd"),
    "pmta_nodes": ("powermta", "nodes"),
    "pmta_operator_hours_per_month": ("powermta", "operator_hours_per_month"),
    "pmta_monitoring_usd_per_month": ("powermta", "monitoring_usd_per_month"),
    "kumo_messages_per_node_hour": ("kumomta", "messages_per_node_hour"),
    "kumo_redundancy_nodes": ("kumomta", "redundancy_nodes"),
    "kumo_min_nodes": ("kumomta", "min_nodes"),
    "kumo_operator_hours_per_month": ("kumomta", "operator_hours_per_month"),
    "kumo_monitoring_usd_per_month": ("kumomta", "monitoring_usd_per_month"),
    "kumo_support_annual_usd": ("kumomta", "support_annual_usd"),
    "server_usd_per_node_month": ("shared", "server_usd_per_node_month"),
    "operator_usd_per_hour": ("shared", "operator_usd_per_hour"),
    "pmta_operator_usd_per_hour": ("powermta", "operator_usd_per_hour"),
    "kumo_operator_usd_per_hour": ("kumomta", "operator_usd_per_hour"),
    "migration_base_weeks": ("migration", "base_weeks"),
    "migration_weeks_per_vmta": ("migration", "weeks_per_vmta"),
    "migration_weeks_per_ip": ("migration", "weeks_per_ip"),
    "migration_weeks_per_million_daily": ("migration", "weeks_per_million_daily"),
    "migration_min_weeks": ("migration", "min_weeks"),
    "migration_max_weeks": ("migration", "max_weeks"),
    "migration_team_usd_per_week": ("migration", "team_usd_per_week"),
    "migration_other_usd": ("migration", "other_one_off_usd"),
    "parallel_run_months": ("migration", "parallel_run_months"),
    "range_low_daily": ("volume", "range_low_daily"),
    "range_high_daily": ("volume", "range_high_daily"),
    "apply_growth": ("volume", "apply_growth"),
    "min_days_for_trend": ("volume", "min_days_for_trend"),
    "max_monthly_growth": ("volume", "max_monthly_growth"),
    "sensitivity_delta": ("sensitivity", "delta"),
}


@dataclass(frozen=True)
class TcoInputs:
    """Every cost input of the model (see schemas/tco_defaults.yaml for units and sources)."""

    licence_tiers: tuple[tuple[float | None, float], ...]  # (max daily messages or None, annual USD)
    horizon_months: int = 36
    production_licences: int | None = None  # None: one per PowerMTA node
    devtest_licences: int = 1
    devtest_licence_annual_usd: float = 2000
    pmta_nodes: int | None = None  # None: observed
    pmta_operator_hours_per_month: float = 12
    pmta_monitoring_usd_per_month: float = 0
    kumo_messages_per_node_hour: float = 1_000_000
    kumo_redundancy_nodes: int = 1
    kumo_min_nodes: int = 1
    kumo_operator_hours_per_month: float = 20
    kumo_monitoring_usd_per_month: float = 100
    kumo_support_annual_usd: float = 0
    server_usd_per_node_month: float = 350
    operator_usd_per_hour: float = 85
    pmta_operator_usd_per_hour: float | None = None  # None: the shared rate
    kumo_operator_usd_per_hour: float | None = None  # None: the shared rate
    migration_base_weeks: float = 2
    migration_weeks_per_vmta: float = 0.05
    migration_weeks_per_ip: float = 0.01
    migration_weeks_per_million_daily: float = 0.25
    migration_min_weeks: float = 2
    migration_max_weeks: float = 6
    migration_team_usd_per_week: float = 6000
    migration_other_usd: float = 0
    parallel_run_months: int = 1
    range_low_daily: float = 500_000
    range_high_daily: float = 5_000_000
    apply_growth: bool = True
    min_days_for_trend: int = 14
    max_monthly_growth: float = 0.10
    sensitivity_delta: float = 0.20
    # Sensitivity knobs with no yaml leaf of their own: scale a whole schedule or estimate.
    licence_price_multiplier: float = 1.0
    migration_effort_multiplier: float = 1.0


@dataclass(frozen=True)
class VolumeProfile:
    """What the events say about the sending volume and the estate."""

    mean_daily: float  # mean messages/day over the observed days
    current_daily: float  # the trend's value on the last observed day (mean when no trend)
    peak_hourly: float  # busiest observed hour
    growth_per_month: float  # messages/day added per month (linear fit), 0 when no trend
    days_observed: int = 0
    pmta_nodes: int = 1
    vmtas: int = 0
    ips: int = 0
    first_day: str | None = None
    last_day: str | None = None


@dataclass(frozen=True)
class TcoResult:
    summary: pl.DataFrame  # one row per option
    cashflow: pl.DataFrame  # one row per (month, option); month 0 = one-off migration cost
    payback_month: int | None
    savings_3y: Decimal
    migration_weeks: float
    migration_cost: Decimal
    range_flag: str
    note: str


# --------------------------------------------------------------------------- inputs


def default_tco_path() -> Path:
    return Path(str(resources.files("schemas") / "tco_defaults.yaml"))


def _get(doc: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = doc
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _normalise_overrides(defaults: Mapping[str, Any], over: Any) -> Any:
    """Let the plan give bare values where the defaults have ``{value, unit, source}`` leaves."""
    if not isinstance(over, Mapping):
        return over
    out: dict[str, Any] = {}
    for key, value in over.items():
        base = defaults.get(key) if isinstance(defaults, Mapping) else None
        if (
            isinstance(base, Mapping)
            and "value" in base
            and not (isinstance(value, Mapping) and "value" in value)
        ):
            out[key] = {"value": value, "source": "plan.yaml"}
        elif isinstance(base, Mapping) and "value" in base:
            out[key] = {"source": "plan.yaml", **value}
        else:
            out[key] = _normalise_overrides(base or {}, value)
    return out


def _tiers(raw: Any) -> tuple[tuple[float | None, float], ...]:
    tiers = []
    for t in raw or []:
        cap = t.get("max_daily_messages")
        tiers.append((None if cap is None else float(cap), float(t["annual_usd"])))
    if not tiers:
        raise ValueError("tco: powermta.licence_tiers must list at least one tier")
    bounded = [c for c, _ in tiers if c is not None]
    if bounded != sorted(bounded) or any(c is None for c, _ in tiers[:-1]):
        raise ValueError("tco: licence tiers must be in increasing order with only the last unbounded")
    return tuple(tiers)


def load_tco_inputs(
    *, plan_tco: Mapping[str, Any] | None = None, defaults_path: str | Path | None = None
) -> tuple[TcoInputs, pl.DataFrame]:
    """(inputs, assumptions table) from the defaults with plan.yaml ``tco:`` merged over them."""
    if plan_tco is not None and not isinstance(plan_tco, Mapping):
        raise ValueError("plan.yaml `tco:` must be a mapping of input overrides")
    defaults = load_yaml(defaults_path or default_tco_path())
    merged = deep_merge(defaults, _normalise_overrides(defaults, plan_tco or {}))
    kwargs: dict[str, Any] = {}
    rows = []
    types = {f.name: f.type for f in dataclasses.fields(TcoInputs)}
    for name, path in FIELDS.items():
        leaf = _get(merged, path)
        value = leaf.get("value") if isinstance(leaf, Mapping) else leaf
        if name == "licence_tiers":
            kwargs[name] = _tiers(value)
        elif value is None:
            kwargs[name] = None
        elif "bool" in str(types[name]):
            kwargs[name] = bool(value)
        elif str(types[name]).startswith("int"):
            kwargs[name] = int(value)
        else:
            kwargs[name] = float(value)
        base_leaf = _get(defaults, path)
        rows.append(
            {
                "name": ".".join(path),
                "value": json.dumps(value, sort_keys=True),
                "unit": (leaf or {}).get("unit") if isinstance(leaf, Mapping) else None,
                "source": (leaf or {}).get("source") if isinstance(leaf, Mapping) else None,
                "overridden": value
                != (base_leaf.get("value") if isinstance(base_leaf, Mapping) else base_leaf),
            }
        )
    assumptions = pl.DataFrame(rows, schema=ASSUMPTIONS_SCHEMA)
    return TcoInputs(**kwargs), assumptions


ASSUMPTIONS_SCHEMA = pl.Schema(
    {
        "name": pl.String(),
        "value": pl.String(),
        "unit": pl.String(),
        "source": pl.String(),
        "overridden": pl.Boolean(),
    }
)


# --------------------------------------------------------------------------- volume


def daily_volumes(events: pl.LazyFrame) -> tuple[pl.DataFrame, float]:
    """(day, messages) per UTC day and the busiest hour's count, from final outcomes.

    A message to one recipient ends exactly once (delivered, bounced or expired), whichever MTA
    sent it, so final outcomes count the sender's volume without double counting retries.
    """
    finals = events.filter(pl.col("event_type").is_in(FINAL_TYPES)).select("event_time")
    daily = (
        finals.group_by(pl.col("event_time").dt.date().cast(pl.String).alias("day"))
        .agg(pl.len().cast(pl.Int64).alias("messages"))
        .sort("day")
        .collect()
    )
    peak = (
        finals.group_by(pl.col("event_time").dt.truncate("1h"))
        .agg(pl.len().alias("n"))
        .select(pl.col("n").max())
    )
    peak_value = peak.collect().item()
    return daily, float(peak_value or 0)


def volume_profile(
    *,
    daily: pl.DataFrame,
    peak_hourly: float,
    min_days_for_trend: int = 14,
    pmta_nodes: int = 1,
    vmtas: int = 0,
    ips: int = 0,
) -> VolumeProfile:
    """Mean, trend (scipy ``linregress`` of messages on day number) and peak of the daily volumes."""
    if daily.is_empty():
        return VolumeProfile(0.0, 0.0, float(peak_hourly), 0.0, 0, pmta_nodes, vmtas, ips)
    days = daily.sort("day")
    x = np.asarray(
        [(np.datetime64(d) - np.datetime64(days["day"][0])).astype(int) for d in days["day"]], dtype=float
    )
    y = days["messages"].cast(pl.Float64).to_numpy()
    mean = float(y.mean())
    growth, current = 0.0, mean
    if days.height >= max(min_days_for_trend, 2) and np.ptp(x) > 0:
        fit = sps.linregress(x, y)
        growth = float(fit.slope) * DAYS_PER_MONTH
        current = max(float(fit.intercept + fit.slope * x[-1]), 0.0)
    return VolumeProfile(
        mean_daily=mean,
        current_daily=current,
        peak_hourly=float(peak_hourly),
        growth_per_month=growth,
        days_observed=days.height,
        pmta_nodes=pmta_nodes,
        vmtas=vmtas,
        ips=ips,
        first_day=days["day"][0],
        last_day=days["day"][-1],
    )


def range_flag(mean_daily: float, *, low: float, high: float) -> str:
    if mean_daily < low:
        return "below_range"
    if mean_daily > high:
        return "above_range"
    return "in_range"


# --------------------------------------------------------------------------- model


def _money(x: float | Decimal) -> Decimal:
    return Decimal(str(x)).quantize(CENT, rounding=ROUND_HALF_UP)


def licence_annual(daily: float, inputs: TcoInputs) -> float:
    for cap, price in inputs.licence_tiers:
        if cap is None or daily <= cap:
            return price * inputs.licence_price_multiplier
    return inputs.licence_tiers[-1][1] * inputs.licence_price_multiplier


def migration_weeks(inputs: TcoInputs, volume: VolumeProfile) -> float:
    """clamp(base + per-VMTA + per-IP + per-million-daily, min, max) x effort multiplier."""
    raw = (
        inputs.migration_base_weeks
        + inputs.migration_weeks_per_vmta * volume.vmtas
        + inputs.migration_weeks_per_ip * volume.ips
        + inputs.migration_weeks_per_million_daily * (volume.current_daily / 1_000_000)
    )
    clamped = min(max(raw, inputs.migration_min_weeks), inputs.migration_max_weeks)
    return round(clamped * inputs.migration_effort_multiplier, 6)


def projected_daily(month: int, inputs: TcoInputs, volume: VolumeProfile) -> float:
    """Mean daily volume of month ``month`` (1-based): the current level plus the clamped trend."""
    if not inputs.apply_growth:
        return volume.current_daily
    limit = inputs.max_monthly_growth * volume.current_daily
    growth = min(max(volume.growth_per_month, -limit), limit)
    return max(volume.current_daily + growth * (month - 1), 0.0)


def kumo_nodes(peak_hourly: float, inputs: TcoInputs) -> int:
    needed = math.ceil(peak_hourly / inputs.kumo_messages_per_node_hour) if peak_hourly > 0 else 0
    return max(inputs.kumo_min_nodes, needed) + inputs.kumo_redundancy_nodes


CASHFLOW_SCHEMA = pl.Schema(
    {
        "month": pl.Int64(),
        "option": pl.String(),
        "projected_daily_messages": pl.Float64(),
        "projected_peak_hourly": pl.Float64(),
        "nodes": pl.Int64(),
        "licence": pl.Float64(),
        "devtest_licences": pl.Float64(),
        "servers": pl.Float64(),
        "operations": pl.Float64(),
        "monitoring": pl.Float64(),
        "support": pl.Float64(),
        "parallel_run": pl.Float64(),
        "migration": pl.Float64(),
        "total": pl.Float64(),
        "cumulative": pl.Float64(),
    }
)

SUMMARY_SCHEMA = pl.Schema(
    {
        "option": pl.String(),
        "total_3y": pl.Float64(),
        "running_3y": pl.Float64(),
        "one_off": pl.Float64(),
        "monthly_mean": pl.Float64(),
        "nodes_first_month": pl.Int64(),
        "nodes_last_month": pl.Int64(),
        "savings_3y": pl.Float64(),
        "payback_month": pl.Int64(),
        "migration_weeks": pl.Float64(),
        "mean_daily_messages": pl.Float64(),
        "current_daily_messages": pl.Float64(),
        "peak_hourly_messages": pl.Float64(),
        "growth_per_month": pl.Float64(),
        "days_observed": pl.Int64(),
        "range_flag": pl.String(),
        "recommendation": pl.String(),
        "note": pl.String(),
    }
)


def _months(inputs: TcoInputs, volume: VolumeProfile) -> list[dict[str, Any]]:
    """Per month the PowerMTA and KumoMTA component costs, each rounded to the cent."""
    shared_rate = inputs.operator_usd_per_hour
    pmta_rate = Decimal(
        str(
            inputs.pmta_operator_usd_per_hour
            if inputs.pmta_operator_usd_per_hour is not None
            else shared_rate
        )
    )
    kumo_rate = Decimal(
        str(
            inputs.kumo_operator_usd_per_hour
            if inputs.kumo_operator_usd_per_hour is not None
            else shared_rate
        )
    )
    server = Decimal(str(inputs.server_usd_per_node_month))
    pmta_nodes = inputs.pmta_nodes if inputs.pmta_nodes is not None else max(volume.pmta_nodes, 1)
    licences = inputs.production_licences if inputs.production_licences is not None else pmta_nodes
    out = []
    for m in range(1, inputs.horizon_months + 1):
        daily = projected_daily(m, inputs, volume)
        peak = (
            volume.peak_hourly * daily / volume.current_daily
            if volume.current_daily > 0
            else volume.peak_hourly
        )
        pm = {
            "licence": _money(Decimal(str(licence_annual(daily, inputs))) * licences / 12),
            "devtest_licences": _money(
                Decimal(str(inputs.devtest_licence_annual_usd)) * inputs.devtest_licences / 12
            ),
            "servers": _money(server * pmta_nodes),
            "operations": _money(Decimal(str(inputs.pmta_operator_hours_per_month)) * pmta_rate),
            "monitoring": _money(inputs.pmta_monitoring_usd_per_month),
            "support": Decimal("0.00"),
        }
        nodes = kumo_nodes(peak, inputs)
        km = {
            "licence": Decimal("0.00"),
            "devtest_licences": Decimal("0.00"),
            "servers": _money(server * nodes),
            "operations": _money(Decimal(str(inputs.kumo_operator_hours_per_month)) * kumo_rate),
            "monitoring": _money(inputs.kumo_monitoring_usd_per_month),
            "support": _money(Decimal(str(inputs.kumo_support_annual_usd)) / 12),
        }
        pm_total = sum(pm.values(), Decimal(0))
        km["parallel_run"] = pm_total if m <= inputs.parallel_run_months else Decimal("0.00")
        pm["parallel_run"] = Decimal("0.00")
        out.append(
            {
                "month": m,
                "daily": daily,
                "peak": peak,
                "pmta": pm,
                "pmta_nodes": pmta_nodes,
                "kumo": km,
                "kumo_nodes": nodes,
            }
        )
    return out


def tco_model(*, inputs: TcoInputs, volume: VolumeProfile) -> TcoResult:
    """3-year cash flows of both options, savings, payback month and the volume-range flag."""
    weeks = migration_weeks(inputs, volume)
    migration_cost = _money(Decimal(str(weeks)) * Decimal(str(inputs.migration_team_usd_per_week))) + _money(
        inputs.migration_other_usd
    )
    months = _months(inputs, volume)
    rows: list[dict[str, Any]] = []
    cum = {"powermta": Decimal(0), "kumomta": migration_cost}
    zero = dict.fromkeys(
        ("licence", "devtest_licences", "servers", "operations", "monitoring", "support", "parallel_run"), 0.0
    )
    for option in OPTIONS:
        rows.append(
            {
                "month": 0,
                "option": option,
                "projected_daily_messages": None,
                "projected_peak_hourly": None,
                "nodes": None,
                **zero,
                "migration": float(migration_cost) if option == "kumomta" else 0.0,
                "total": float(migration_cost) if option == "kumomta" else 0.0,
                "cumulative": float(cum[option]),
            }
        )
    payback: int | None = None
    savings_cum = Decimal(0)
    totals = {"powermta": Decimal(0), "kumomta": Decimal(0)}
    for mo in months:
        month_totals = {}
        for option, key, nodes in (
            ("powermta", "pmta", mo["pmta_nodes"]),
            ("kumomta", "kumo", mo["kumo_nodes"]),
        ):
            parts = mo[key]
            total = sum(parts.values(), Decimal(0))
            month_totals[option] = total
            totals[option] += total
            cum[option] += total
            rows.append(
                {
                    "month": mo["month"],
                    "option": option,
                    "projected_daily_messages": round(mo["daily"], 3),
                    "projected_peak_hourly": round(mo["peak"], 3),
                    "nodes": nodes,
                    **{k: float(v) for k, v in parts.items()},
                    "migration": 0.0,
                    "total": float(total),
                    "cumulative": float(cum[option]),
                }
            )
        savings_cum += month_totals["powermta"] - month_totals["kumomta"]
        if payback is None and savings_cum >= migration_cost:
            payback = mo["month"]
    cashflow = pl.DataFrame(rows, schema=CASHFLOW_SCHEMA).sort("month", "option")
    total_pm = totals["powermta"]
    total_km = totals["kumomta"] + migration_cost
    savings = total_pm - total_km
    flag = range_flag(volume.mean_daily, low=inputs.range_low_daily, high=inputs.range_high_daily)
    recommendation = "migrate" if savings > 0 and payback is not None else "stay"
    note = _note(
        flag=flag,
        volume=volume,
        inputs=inputs,
        savings=savings,
        payback=payback,
        recommendation=recommendation,
    )
    first, last = months[0] if months else None, months[-1] if months else None
    summary_rows = []
    for option, total, one_off, nodes_key in (
        ("powermta", total_pm, Decimal(0), "pmta_nodes"),
        ("kumomta", total_km, migration_cost, "kumo_nodes"),
    ):
        summary_rows.append(
            {
                "option": option,
                "total_3y": float(total),
                "running_3y": float(total - one_off),
                "one_off": float(one_off),
                "monthly_mean": float(_money((total - one_off) / max(inputs.horizon_months, 1))),
                "nodes_first_month": first[nodes_key] if first else None,
                "nodes_last_month": last[nodes_key] if last else None,
                "savings_3y": float(savings),
                "payback_month": payback,
                "migration_weeks": weeks,
                "mean_daily_messages": volume.mean_daily,
                "current_daily_messages": volume.current_daily,
                "peak_hourly_messages": volume.peak_hourly,
                "growth_per_month": volume.growth_per_month,
                "days_observed": volume.days_observed,
                "range_flag": flag,
                "recommendation": recommendation,
                "note": note,
            }
        )
    return TcoResult(
        summary=pl.DataFrame(summary_rows, schema=SUMMARY_SCHEMA),
        cashflow=cashflow,
        payback_month=payback,
        savings_3y=savings,
        migration_weeks=weeks,
        migration_cost=migration_cost,
        range_flag=flag,
        note=note,
    )


def _note(
    *,
    flag: str,
    volume: VolumeProfile,
    inputs: TcoInputs,
    savings: Decimal,
    payback: int | None,
    recommendation: str,
) -> str:
    low, high = inputs.range_low_daily, inputs.range_high_daily
    parts = [f"Measured volume: {volume.mean_daily:,.0f} messages/day over {volume.days_observed} days."]
    if flag == "below_range":
        parts.append(
            f"This is below the {low:,.0f}-{high:,.0f}/day range in which a migration usually pays off: "
            "staying on PowerMTA can be the better call."
        )
    elif flag == "above_range":
        parts.append(
            f"This is above the {low:,.0f}-{high:,.0f}/day range: PowerMTA pricing is a private quote at this "
            "size and KumoMTA node sizing should be load-tested; check both inputs before deciding."
        )
    else:
        parts.append(
            f"This is within the {low:,.0f}-{high:,.0f}/day range in which migrations usually pay off."
        )
    months = inputs.horizon_months
    if savings > 0:
        parts.append(f"Migrating saves {savings:,.2f} USD over {months} months")
        parts[-1] += (
            f", paying back in month {payback}."
            if payback is not None
            else ", but does not pay back in time."
        )
    else:
        parts.append(f"Over {months} months staying on PowerMTA is cheaper by {-savings:,.2f} USD.")
    parts.append(f"Recommendation from cost alone: {recommendation}.")
    return " ".join(parts)


# --------------------------------------------------------------------------- sensitivity

Knob = Callable[[TcoInputs, VolumeProfile, float], tuple[TcoInputs, VolumeProfile]]


def _scale_input(name: str) -> Knob:
    def apply(inputs: TcoInputs, volume: VolumeProfile, factor: float) -> tuple[TcoInputs, VolumeProfile]:
        return dataclasses.replace(inputs, **{name: getattr(inputs, name) * factor}), volume

    return apply


def _scale_rates(inputs: TcoInputs, volume: VolumeProfile, factor: float) -> tuple[TcoInputs, VolumeProfile]:
    """The operator hourly rate of both options (shared and any per-option rate) together."""
    changes = {
        name: getattr(inputs, name) * factor
        for name in ("operator_usd_per_hour", "pmta_operator_usd_per_hour", "kumo_operator_usd_per_hour")
        if getattr(inputs, name) is not None
    }
    return dataclasses.replace(inputs, **changes), volume


def _scale_volume(inputs: TcoInputs, volume: VolumeProfile, factor: float) -> tuple[TcoInputs, VolumeProfile]:
    return inputs, dataclasses.replace(
        volume,
        mean_daily=volume.mean_daily * factor,
        current_daily=volume.current_daily * factor,
        peak_hourly=volume.peak_hourly * factor,
        growth_per_month=volume.growth_per_month * factor,
    )


def _scale_growth(inputs: TcoInputs, volume: VolumeProfile, factor: float) -> tuple[TcoInputs, VolumeProfile]:
    return inputs, dataclasses.replace(volume, growth_per_month=volume.growth_per_month * factor)


SENSITIVITY_KNOBS: dict[str, Knob] = {
    "powermta.licence_price": _scale_input("licence_price_multiplier"),
    "powermta.devtest_licence_annual_usd": _scale_input("devtest_licence_annual_usd"),
    "powermta.operator_hours_per_month": _scale_input("pmta_operator_hours_per_month"),
    "powermta.monitoring_usd_per_month": _scale_input("pmta_monitoring_usd_per_month"),
    "kumomta.messages_per_node_hour": _scale_input("kumo_messages_per_node_hour"),
    "kumomta.operator_hours_per_month": _scale_input("kumo_operator_hours_per_month"),
    "kumomta.monitoring_usd_per_month": _scale_input("kumo_monitoring_usd_per_month"),
    "kumomta.support_annual_usd": _scale_input("kumo_support_annual_usd"),
    "shared.server_usd_per_node_month": _scale_input("server_usd_per_node_month"),
    "operator_usd_per_hour": _scale_rates,
    "migration.team_usd_per_week": _scale_input("migration_team_usd_per_week"),
    "migration.effort_weeks": _scale_input("migration_effort_multiplier"),
    "volume.daily_messages": _scale_volume,
    "volume.growth_per_month": _scale_growth,
}

SENSITIVITY_SCHEMA = pl.Schema(
    {
        "input": pl.String(),
        "delta": pl.Float64(),
        "base_savings_3y": pl.Float64(),
        "savings_low": pl.Float64(),
        "savings_high": pl.Float64(),
        "delta_low": pl.Float64(),
        "delta_high": pl.Float64(),
        "swing": pl.Float64(),
        "payback_low": pl.Int64(),
        "payback_high": pl.Int64(),
    }
)


def tco_sensitivity(*, inputs: TcoInputs, volume: VolumeProfile, delta: float | None = None) -> pl.DataFrame:
    """Each input at -delta and +delta (others at base): 3-year savings and its change vs base.

    ``low``/``high`` are the input decreased/increased. Rows are sorted by swing (largest first),
    the order of a tornado chart.
    """
    d = inputs.sensitivity_delta if delta is None else delta
    base = tco_model(inputs=inputs, volume=volume)
    rows = []
    for name, knob in SENSITIVITY_KNOBS.items():
        lo = tco_model(inputs=knob(inputs, volume, 1 - d)[0], volume=knob(inputs, volume, 1 - d)[1])
        hi = tco_model(inputs=knob(inputs, volume, 1 + d)[0], volume=knob(inputs, volume, 1 + d)[1])
        dl, dh = lo.savings_3y - base.savings_3y, hi.savings_3y - base.savings_3y
        rows.append(
            {
                "input": name,
                "delta": d,
                "base_savings_3y": float(base.savings_3y),
                "savings_low": float(lo.savings_3y),
                "savings_high": float(hi.savings_3y),
                "delta_low": float(dl),
                "delta_high": float(dh),
                "swing": float(abs(dh - dl)),
                "payback_low": lo.payback_month,
                "payback_high": hi.payback_month,
            }
        )
    return pl.DataFrame(rows, schema=SENSITIVITY_SCHEMA).sort(["swing", "input"], descending=[True, False])


def estate_counts(*, events: pl.LazyFrame, inventory: pl.LazyFrame | None = None) -> dict[str, Any]:
    """PowerMTA nodes, VMTAs and sending IPs of the estate to migrate.

    From ``estate_inventory`` when built (long form: ``kind`` in vmta/source_ip with ``name``, and
    ``node``; configured or merely seen, both need migrating), else from the PowerMTA events
    (distinct node, source = VMTA, source_ip). ``basis`` says which.
    """
    pmta = events.filter(pl.col("mta") == "pmta")
    observed = pmta.select(
        pl.col("node").drop_nulls().n_unique().alias("pmta_nodes"),
        pl.col("source").drop_nulls().n_unique().alias("vmtas"),
        pl.col("source_ip").drop_nulls().n_unique().alias("ips"),
    ).collect()
    out: dict[str, Any] = {k: int(observed[k][0]) for k in ("pmta_nodes", "vmtas", "ips")}
    basis = dict.fromkeys(out, "events")
    if inventory is not None:
        names = set(inventory.collect_schema().names())
        found: dict[str, int] = {}
        if {"kind", "name"} <= names:
            for key, kind in (("vmtas", "vmta"), ("ips", "source_ip")):
                found[key] = (
                    inventory.filter(pl.col("kind") == kind)
                    .select(pl.col("name").drop_nulls().n_unique())
                    .collect()
                    .item()
                )
        if "node" in names:
            found["pmta_nodes"] = inventory.select(pl.col("node").drop_nulls().n_unique()).collect().item()
        for key, n in found.items():
            if n:
                out[key], basis[key] = int(n), "estate_inventory"
    out["basis"] = basis
    return out


def assumptions_with_volume(
    assumptions: pl.DataFrame, *, volume: VolumeProfile, estate: Mapping[str, Any] | None = None
) -> pl.DataFrame:
    """The input assumptions plus the measured volume and estate figures the model used."""
    basis = (estate or {}).get("basis", {})
    window = f"events {volume.first_day}..{volume.last_day}" if volume.first_day else "events (none yet)"
    measured = [
        (
            "measured.mean_daily_messages",
            volume.mean_daily,
            "messages/day",
            f"{window}: mean of final outcomes per UTC day",
        ),
        (
            "measured.current_daily_messages",
            volume.current_daily,
            "messages/day",
            f"{window}: linear trend at the last day",
        ),
        (
            "measured.growth_per_month",
            volume.growth_per_month,
            "messages/day per month",
            f"{window}: scipy linregress slope x 30.4375",
        ),
        ("measured.peak_hourly_messages", volume.peak_hourly, "messages/hour", f"{window}: busiest UTC hour"),
        ("measured.days_observed", volume.days_observed, "days", window),
        ("measured.pmta_nodes", volume.pmta_nodes, "servers", basis.get("pmta_nodes", "events")),
        ("measured.vmtas", volume.vmtas, "VMTAs", basis.get("vmtas", "events")),
        ("measured.ips", volume.ips, "IPs", basis.get("ips", "events")),
    ]
    rows = pl.DataFrame(
        [
            {"name": n, "value": json.dumps(v), "unit": u, "source": s, "overridden": False}
            for n, v, u, s in measured
        ],
        schema=ASSUMPTIONS_SCHEMA,
    )
    return pl.concat([assumptions, rows], how="vertical")
