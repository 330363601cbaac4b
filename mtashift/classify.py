"""Bounce classification: raw category mapping first, then the ordered rules of classifier_rules.yaml.

Vectorised: the rules become one polars ``when/then`` chain evaluated over the *distinct* reply
strings of the frame (replies repeat heavily: one template per receiver and reason), and the
result is joined back. No Python runs per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import polars as pl
import yaml

from mtashift.taxonomy import OTHER, Taxonomy, consequence_expr, load_taxonomy, map_raw_category

RULE_KINDS: tuple[str, ...] = ("text", "status", "catch-all")
RAW_RULE_PREFIX = "raw:"

# Columns classify() adds (in this order).
CLASSIFY_COLUMNS: tuple[str, ...] = (
    "raw_category",
    "classifier_category",
    "classifier_rule",
    "category",
    "rule",
    "consequence",
)


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    category: str
    regex: str
    note: str | None = None

    @property
    def pattern(self) -> str:
        """The regex as matched: always case-insensitive."""
        return f"(?i){self.regex}" if self.regex else ""


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]

    @property
    def catch_all(self) -> Rule:
        return self.rules[-1]

    def category_of_rule(self) -> dict[str, str]:
        return {r.id: r.category for r in self.rules}


def default_rules_path() -> Path:
    return Path(str(resources.files("schemas") / "classifier_rules.yaml"))


def _check_regex(rule_id: str, pattern: str) -> None:
    try:
        pl.select(pl.lit("probe").str.contains(pattern)).item()
    except Exception as exc:  # polars raises ComputeError on invalid patterns
        raise ValueError(f"classifier rules: {rule_id}: invalid regex: {exc}") from exc


def parse_rules(document: dict, *, taxonomy: Taxonomy | None = None) -> RuleSet:
    """Validate a rules document: unique ids, known categories, valid regexes, text < status < catch-all."""
    tax = taxonomy or load_taxonomy()
    raw = document.get("rules")
    if not isinstance(raw, list) or not raw:
        raise ValueError("classifier rules: top-level `rules` list is required")
    rules: list[Rule] = []
    seen: set[str] = set()
    last_kind = 0
    for i, spec in enumerate(raw):
        if not isinstance(spec, dict):
            raise ValueError(f"classifier rules: entry {i} is not a mapping")
        unknown = set(spec) - {"id", "kind", "category", "regex", "note"}
        if unknown:
            raise ValueError(f"classifier rules: entry {i}: unknown keys {sorted(unknown)}")
        rid = str(spec.get("id") or "")
        if not rid or rid in seen:
            raise ValueError(f"classifier rules: entry {i}: missing or duplicate id {rid!r}")
        if rid.startswith(RAW_RULE_PREFIX):
            raise ValueError(f"classifier rules: {rid}: ids may not start with {RAW_RULE_PREFIX!r}")
        seen.add(rid)
        kind = spec.get("kind")
        if kind not in RULE_KINDS:
            raise ValueError(f"classifier rules: {rid}: kind must be one of {RULE_KINDS}")
        order = RULE_KINDS.index(kind)
        if order < last_kind:
            raise ValueError(f"classifier rules: {rid}: a {kind} rule after a {RULE_KINDS[last_kind]} rule")
        last_kind = order
        category = spec.get("category")
        if category not in tax.categories:
            raise ValueError(f"classifier rules: {rid}: unknown category {category!r}")
        regex = spec.get("regex")
        if not isinstance(regex, str) or (kind != "catch-all" and not regex):
            raise ValueError(f"classifier rules: {rid}: regex must be a non-empty string")
        rule = Rule(id=rid, kind=kind, category=category, regex=regex, note=spec.get("note"))
        if regex:
            _check_regex(rid, rule.pattern)
        rules.append(rule)
    catch_alls = [r for r in rules if r.kind == "catch-all"]
    if len(catch_alls) != 1 or rules[-1].kind != "catch-all":
        raise ValueError("classifier rules: exactly one catch-all rule, and it must be last")
    if rules[-1].category != OTHER:
        raise ValueError("classifier rules: the catch-all must map to `other`")
    return RuleSet(rules=tuple(rules))


def load_rules(path: str | Path | None = None, *, taxonomy: Taxonomy | None = None) -> RuleSet:
    """Load and validate the classifier rules (default: ``schemas/classifier_rules.yaml``, cached)."""
    if path is None and taxonomy is None:
        return _default_rules()
    p = Path(path) if path is not None else default_rules_path()
    return parse_rules(yaml.safe_load(p.read_text(encoding="utf-8")), taxonomy=taxonomy)


@cache
def _default_rules() -> RuleSet:
    return parse_rules(yaml.safe_load(default_rules_path().read_text(encoding="utf-8")))


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    s = expr.cast(pl.String).str.strip_chars()
    return pl.when(s == "").then(None).otherwise(s)


def classifier_input(
    smtp_code: pl.Expr | str = "smtp_code",
    enhanced_status: pl.Expr | str = "enhanced_status",
    response: pl.Expr | str = "response",
) -> pl.Expr:
    """``"<code> <x.y.z> <text>"`` with missing parts left out (never null: "" when all are missing)."""

    def col(c: pl.Expr | str) -> pl.Expr:
        return pl.col(c) if isinstance(c, str) else c

    # Multi-line replies were joined by the ingest; collapse any leftover whitespace runs so
    # templates and rules see one canonical spacing.
    text = _blank_to_null(col(response)).str.replace_all(r"\s+", " ")
    return pl.concat_str(
        [_blank_to_null(col(smtp_code)), _blank_to_null(col(enhanced_status)), text],
        separator=" ",
        ignore_nulls=True,
    ).fill_null("")


def rule_id_expr(text: pl.Expr, *, rules: RuleSet) -> pl.Expr:
    """The id of the first rule whose regex matches ``text`` (the catch-all's id when none does)."""
    matching = [r for r in rules.rules if r.kind != "catch-all"]
    if not matching:
        return pl.lit(rules.catch_all.id)
    chain = pl.when(text.str.contains(matching[0].pattern)).then(pl.lit(matching[0].id))
    for r in matching[1:]:
        chain = chain.when(text.str.contains(r.pattern)).then(pl.lit(r.id))
    return chain.otherwise(pl.lit(rules.catch_all.id))


def classify(
    frame: pl.LazyFrame,
    *,
    taxonomy: Taxonomy | None = None,
    rules: RuleSet | None = None,
    raw_column: str = "raw_bounce_category",
) -> pl.LazyFrame:
    """Add CLASSIFY_COLUMNS to a frame with smtp_code, enhanced_status, response and a raw label column.

    - ``raw_category``: the raw label mapped onto the taxonomy (null when blank, ``other`` if unknown);
    - ``classifier_category`` / ``classifier_rule``: what the rules say, computed for every row (so
      agreement with the MTA's own label can be measured);
    - ``category`` / ``rule``: the raw category when it is informative (not in the taxonomy's
      ``reclassify`` list), with ``rule = "raw:<label>"``; otherwise the classifier's verdict;
    - ``consequence`` of ``category``.
    Row order and count are preserved.
    """
    tax = taxonomy or load_taxonomy()
    rs = rules or load_rules(taxonomy=taxonomy)
    names = frame.collect_schema().names()
    raw = pl.col(raw_column) if raw_column in names else pl.lit(None, dtype=pl.String)
    key = "__classifier_input"
    rid = "__classifier_rule"
    with_key = frame.with_columns(
        classifier_input(
            *(
                pl.col(c) if c in names else pl.lit(None, dtype=pl.String)
                for c in ("smtp_code", "enhanced_status", "response")
            )
        ).alias(key)
    )
    templates = with_key.select(key).unique().with_columns(rule_id_expr(pl.col(key), rules=rs).alias(rid))
    joined = with_key.join(templates, on=key, how="left", maintain_order="left")
    ids = rs.category_of_rule()
    raw_cat = map_raw_category(raw, taxonomy=tax)
    needs_rules = raw_cat.is_null() | raw_cat.is_in(list(tax.reclassify))
    raw_label = raw.cast(pl.String).str.strip_chars()
    out = joined.with_columns(
        raw_cat.alias("raw_category"),
        pl.col(rid)
        .replace_strict(list(ids), list(ids.values()), return_dtype=pl.String)
        .alias("classifier_category"),
        pl.col(rid).alias("classifier_rule"),
    ).with_columns(
        pl.when(needs_rules)
        .then(pl.col("classifier_category"))
        .otherwise(pl.col("raw_category"))
        .alias("category"),
        pl.when(needs_rules)
        .then(pl.col("classifier_rule"))
        .otherwise(pl.lit(RAW_RULE_PREFIX) + raw_label)
        .alias("rule"),
    )
    return out.with_columns(consequence_expr("category", taxonomy=tax).alias("consequence")).drop(key, rid)


def classify_replies(
    replies: Sequence[str], *, taxonomy: Taxonomy | None = None, rules: RuleSet | None = None
) -> list[tuple[str, str]]:
    """(category, rule id) for each full reply string ``"<code> <x.y.z> <text>"`` (tests, docs, CLI)."""
    rs = rules or load_rules(taxonomy=taxonomy)
    ids = rs.category_of_rule()
    out = pl.DataFrame({"t": list(replies)}, schema={"t": pl.String}).select(
        rule_id_expr(pl.col("t").fill_null(""), rules=rs).alias("rule")
    )
    return [(ids[r], r) for r in out["rule"].to_list()]
