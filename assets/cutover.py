"""Cutover evidence per VMTA pool: plan, before/after comparison, seed placement, drain, verdicts."""

import dagster as dg
import polars as pl

from mtashift import cutover as co
from mtashift import seedlist as sl
from mtashift.lake import Lake, replace_dir, write_parquet, write_table
from mtashift.manifest import file_key
from mtashift.providers import add_provider, daily_domain_map
from pipelines.resources import LakeResource, LandingResource

_TAGS = {"cadence": "history"}
_KINDS = {"polars", "parquet"}


def _md(frame: pl.DataFrame, n: int = 20) -> dg.MetadataValue:
    if frame.is_empty():
        return dg.MetadataValue.md("(empty)")
    return dg.MetadataValue.md(frame.head(n).to_pandas().to_markdown(index=False))


def _context(lk: Lake, landing: LandingResource) -> tuple[dict, dict, co.PoolResolver, pl.LazyFrame]:
    """Plan, policy, pool resolver and the annotated whole-history events (with provider)."""
    plan = co.read_plan(landing.path())
    policy = co.load_policy(overrides=plan.get("cutover") or {})
    events = co.scan_events(lk)
    resolver = co.pool_resolver(plan=plan, events=events)
    with_provider = add_provider(events, domain_map=daily_domain_map(events=events, lake=lk))
    return plan, policy, resolver, co.annotate(with_provider, resolver=resolver)


def _plan_table(lk: Lake) -> pl.DataFrame:
    t = co.scan_table(lk, "cutover_plan")
    return t.collect() if t is not None else pl.DataFrame(schema=co.CUTOVER_PLAN_SCHEMA)


@dg.asset(deps=["events"], group_name="cutover", tags=_TAGS, kinds=_KINDS)
def cutover_plan(lake: LakeResource, landing: LandingResource) -> dg.MaterializeResult:
    """One row per VMTA pool: cutover time (plan.yaml, else inferred from its first KumoMTA event)."""
    lk = lake.lake()
    plan, _policy, resolver, events = _context(lk, landing)
    out = co.cutover_plan(plan=plan, events=events, resolver=resolver)
    write_table(out, lake=lk, table="cutover_plan")
    return dg.MaterializeResult(
        metadata={
            "pools": out.height,
            "by_source": dg.MetadataValue.json(
                dict(out.group_by("cutover_source").len().sort("cutover_source").rows())
            ),
            "plan_found": bool(plan),
            "preview": _md(
                out.select("pool", "cutover_time", "cutover_source", "pmta_events", "kumo_events")
            ),
        }
    )


@dg.asset(
    deps=[cutover_plan, "events", "bounces", "complaints"], group_name="cutover", tags=_TAGS, kinds=_KINDS
)
def cutover_comparison(lake: LakeResource, landing: LandingResource) -> dg.MaterializeResult:
    """One row per pool x provider (and `all`) x metric: PowerMTA baseline vs KumoMTA after cutover."""
    lk = lake.lake()
    _plan, policy, resolver, events = _context(lk, landing)
    out = co.cutover_comparison(
        events=events,
        plan=_plan_table(lk),
        policy=policy,
        resolver=resolver,
        bounces=co.scan_table(lk, "bounces"),
        complaints=co.scan_table(lk, "complaints"),
    )
    write_table(out, lake=lk, table="cutover_comparison")
    significant = out.filter(pl.col("significant") & ~pl.col("small_sample"))
    return dg.MaterializeResult(
        metadata={
            "rows": out.height,
            "pools": out["pool"].n_unique() if out.height else 0,
            "small_sample_rows": int(out["small_sample"].sum()) if out.height else 0,
            "significant": _md(
                significant.select("pool", "provider", "metric", "before_value", "after_value", "p_value")
            ),
        }
    )


@dg.asset(deps=[cutover_plan], group_name="cutover", tags=_TAGS, kinds=_KINDS)
def seedlist_placement(lake: LakeResource, landing: LandingResource) -> dg.MaterializeResult:
    """One row per pool x provider (and `all`) x placement rate, seed tests before vs after cutover."""
    lk = lake.lake()
    plan = co.read_plan(landing.path())
    policy = co.load_policy(overrides=plan.get("cutover") or {})
    resolver = co.pool_resolver(plan=plan, events=co.scan_events(lk))
    seeds, quarantine, stats = sl.read_seedlists(landing.path())

    def fill(tmp):
        for rel, q in quarantine.items():
            write_parquet(q, tmp / f"{file_key(rel)}.parquet")

    replace_dir(lk.quarantine / "seedlist", fill)
    write_table(seeds, lake=lk, table="seedlist_results")
    out = sl.seedlist_placement(seeds=seeds, plan=_plan_table(lk), policy=policy, resolver=resolver)
    write_table(out, lake=lk, table="seedlist_placement")
    return dg.MaterializeResult(
        metadata={
            "files": len(stats),
            "seed_rows": seeds.height,
            "quarantined": sum(s["quarantined"] for s in stats.values()),
            "duplicates": sum(s["duplicates"] for s in stats.values()),
            "file_stats": dg.MetadataValue.json(stats),
            "rows": out.height,
            "inbox": _md(out.filter(pl.col("metric") == "inbox_rate").select(
                "pool", "provider", "before_value", "after_value", "p_value", "small_sample")),
        }
    )  # fmt: skip


@dg.asset(deps=[cutover_plan, "events"], group_name="cutover", tags=_TAGS, kinds=_KINDS)
def inflight_drain(lake: LakeResource, landing: LandingResource) -> dg.MaterializeResult:
    """One row per cut-over pool: PowerMTA drain after cutover, messages left behind, volume parity, double sends."""
    lk = lake.lake()
    _plan, policy, _resolver, events = _context(lk, landing)
    out = co.inflight_drain(events=events, plan=_plan_table(lk), policy=policy)
    write_table(out, lake=lk, table="inflight_drain")
    return dg.MaterializeResult(
        metadata={
            "pools": out.height,
            "drained_messages": int(out["drained_messages"].sum()) if out.height else 0,
            "unfinished_messages": int(out["unfinished_messages"].sum()) if out.height else 0,
            "double_sent": int(out["double_sent"].sum()) if out.height else 0,
            "preview": _md(out.select("pool", "drained_messages", "tail_last_s", "unfinished_messages",
                                      "volume_ratio", "parity_flag", "double_sent")),
        }
    )  # fmt: skip


@dg.asset(
    deps=[cutover_plan, cutover_comparison, seedlist_placement, inflight_drain],
    group_name="cutover",
    tags=_TAGS,
    kinds=_KINDS,
)
def cutover_verdicts(lake: LakeResource, landing: LandingResource) -> dg.MaterializeResult:
    """One row per cut-over pool: proceed / watch / hold / rollback with the evidence rows that triggered it."""
    lk = lake.lake()
    plan = co.read_plan(landing.path())
    policy = co.load_policy(overrides=plan.get("cutover") or {})

    def table(name: str) -> pl.DataFrame | None:
        t = co.scan_table(lk, name)
        return t.collect() if t is not None else None

    comparison = table("cutover_comparison")
    out = co.cutover_verdicts(
        plan=_plan_table(lk),
        comparison=comparison if comparison is not None else pl.DataFrame(schema=co.COMPARISON_SCHEMA),
        seedlist=table("seedlist_placement"),
        drain=table("inflight_drain"),
        policy=policy,
    )
    write_table(out, lake=lk, table="cutover_verdicts")
    per_pool = {
        r["pool"]: {"verdict": r["verdict"], "rules": r["rules_fired"]} for r in out.iter_rows(named=True)
    }
    return dg.MaterializeResult(
        metadata={
            "pools": out.height,
            "verdicts": dg.MetadataValue.json(per_pool),
            "counts": dg.MetadataValue.json(dict(out.group_by("verdict").len().sort("verdict").rows())),
            "preview": _md(out.select("pool", "cutover_source", "verdict", "evidence_count")),
        }
    )


@dg.asset_check(asset=cutover_verdicts, blocking=False)
def cutover_verdicts_alert(lake: LakeResource) -> dg.AssetCheckResult:
    """Fails when any pool is on hold or must roll back: ERROR if any rollback, else WARN."""
    t = co.scan_table(lake.lake(), "cutover_verdicts")
    verdicts = t.collect() if t is not None else pl.DataFrame(schema=co.VERDICT_SCHEMA)
    bad = verdicts.filter(pl.col("verdict").is_in(["hold", "rollback"]))
    rollback = bad.filter(pl.col("verdict") == "rollback")
    alert = {
        r["pool"]: {
            "verdict": r["verdict"],
            "evidence": [
                {k: e[k] for k in ("provider", "metric", "before", "after", "p_value", "rule")}
                for e in r["evidence"]
                if e["verdict"] in ("hold", "rollback")
            ],
        }
        for r in bad.iter_rows(named=True)
    }
    return dg.AssetCheckResult(
        passed=bad.is_empty(),
        severity=dg.AssetCheckSeverity.ERROR if rollback.height else dg.AssetCheckSeverity.WARN,
        metadata={
            "pools_checked": verdicts.height,
            "hold": dg.MetadataValue.json(sorted(bad.filter(pl.col("verdict") == "hold")["pool"].to_list())),
            "rollback": dg.MetadataValue.json(sorted(rollback["pool"].to_list())),
            "alert": dg.MetadataValue.json(alert),
        },
    )
