"""The unified bounce taxonomy: load ``schemas/bounce_taxonomy.yaml`` and map raw labels onto it.

Raw labels are PowerMTA ``bounceCat`` values (``bad-mailbox``), KumoMTA ``bounce_classification``
values (``InvalidRecipient``) or anything an operator defined. Matching ignores case and every
non-alphanumeric character, so ``bad-mailbox``, ``Bad_Mailbox`` and ``BADMAILBOX`` are one label;
the taxonomy file is validated so that this folding never makes two categories collide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import polars as pl
import yaml

CONSEQUENCES: tuple[str, ...] = ("suppress", "retry-then-suppress", "statistical")
OTHER = "other"

# Exact spellings the taxonomy must cover (formats.md A.4.1 + `success`, B.3.1).
PMTA_CATEGORIES: tuple[str, ...] = (
    "bad-configuration",
    "bad-connection",
    "bad-domain",
    "bad-mailbox",
    "content-related",
    "inactive-mailbox",
    "invalid-sender",
    "message-expired",
    "no-answer-from-host",
    "other",
    "policy-related",
    "protocol-errors",
    "quota-issues",
    "relaying-issues",
    "routing-errors",
    "spam-related",
    "virus-related",
    "success",
)
KUMO_CLASSES: tuple[str, ...] = (
    "InvalidRecipient",
    "DNSFailure",
    "SpamBlock",
    "SpamContent",
    "ProhibitedAttachment",
    "RelayDenied",
    "AutoReply",
    "TransientFailure",
    "Subscribe",
    "Unsubscribe",
    "ChallengeResponse",
    "BadConfiguration",
    "BadConnection",
    "BadDomain",
    "ContentRelated",
    "InactiveMailbox",
    "InvalidSender",
    "MessageExpired",
    "NoAnswerFromHost",
    "PolicyRelated",
    "ProtocolErrors",
    "QuotaIssues",
    "RelayingIssues",
    "RoutingErrors",
    "SpamRelated",
    "VirusRelated",
    "AuthenticationFailed",
    "TooManyRecipients",
    "Uncategorized",
)

_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def fold_label(label: str) -> str:
    """The matching key of a raw label: lower case, alphanumerics only."""
    return re.sub(r"[^a-z0-9]", "", label.lower())


@dataclass(frozen=True)
class Category:
    name: str
    description: str
    consequence: str
    pmta: tuple[str, ...]
    kumo: tuple[str, ...]


@dataclass(frozen=True)
class Taxonomy:
    categories: dict[str, Category]
    reclassify: tuple[str, ...]
    labels: dict[str, str]  # folded raw label -> category name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.categories)

    def consequence_of(self, category: str) -> str:
        return self.categories[category].consequence

    def category_of(self, raw: str | None) -> str | None:
        """Scalar form of :func:`map_raw_category` (for docs, tests and one-off lookups)."""
        if raw is None or not raw.strip():
            return None
        return self.labels.get(fold_label(raw), OTHER)


def default_taxonomy_path() -> Path:
    return Path(str(resources.files("schemas") / "bounce_taxonomy.yaml"))


def parse_taxonomy(document: dict) -> Taxonomy:
    """Validate a taxonomy document (the YAML, loaded). Raises ValueError on any inconsistency."""
    cats = document.get("categories")
    if not isinstance(cats, dict) or not cats:
        raise ValueError("taxonomy: top-level `categories` mapping is required")
    if OTHER not in cats:
        raise ValueError("taxonomy: an `other` category is required (unknown labels map to it)")
    categories: dict[str, Category] = {}
    labels: dict[str, str] = {}
    seen_pmta: dict[str, str] = {}
    seen_kumo: dict[str, str] = {}

    def claim(label: str, name: str) -> None:
        key = fold_label(label)
        if not key:
            raise ValueError(f"taxonomy: empty label under {name}")
        if labels.get(key, name) != name:
            raise ValueError(
                f"taxonomy: label {label!r} folds to {key!r}, claimed by {labels[key]} and {name}"
            )
        labels[key] = name

    for name, spec in cats.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"taxonomy: bad category name {name!r}")
        spec = spec or {}
        unknown = set(spec) - {"description", "consequence", "pmta", "kumo"}
        if unknown:
            raise ValueError(f"taxonomy: {name}: unknown keys {sorted(unknown)}")
        if not spec.get("description"):
            raise ValueError(f"taxonomy: {name}: description is required")
        if spec.get("consequence") not in CONSEQUENCES:
            raise ValueError(f"taxonomy: {name}: consequence must be one of {CONSEQUENCES}")
        pmta = tuple(str(x) for x in spec.get("pmta") or [])
        kumo = tuple(str(x) for x in spec.get("kumo") or [])
        for label in pmta:
            if label in seen_pmta:
                raise ValueError(
                    f"taxonomy: PowerMTA label {label!r} listed under {seen_pmta[label]} and {name}"
                )
            seen_pmta[label] = name
        for label in kumo:
            if label in seen_kumo:
                raise ValueError(
                    f"taxonomy: KumoMTA label {label!r} listed under {seen_kumo[label]} and {name}"
                )
            seen_kumo[label] = name
        categories[name] = Category(name, str(spec["description"]), spec["consequence"], pmta, kumo)

    for name, cat in categories.items():
        claim(name, name)
        for label in (*cat.pmta, *cat.kumo):
            claim(label, name)

    missing_pmta = [c for c in PMTA_CATEGORIES if c not in seen_pmta]
    missing_kumo = [c for c in KUMO_CLASSES if c not in seen_kumo]
    if missing_pmta or missing_kumo:
        raise ValueError(f"taxonomy: unmapped PowerMTA {missing_pmta} / KumoMTA {missing_kumo}")

    reclassify = tuple(document.get("reclassify") or [OTHER])
    bad = [c for c in reclassify if c not in categories]
    if bad:
        raise ValueError(f"taxonomy: reclassify names unknown categories {bad}")
    if OTHER not in reclassify:
        raise ValueError("taxonomy: `other` must be in reclassify (unknown labels must be classified)")
    return Taxonomy(categories=categories, reclassify=reclassify, labels=labels)


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Load and validate the taxonomy (default: ``schemas/bounce_taxonomy.yaml``, cached)."""
    if path is None:
        return _default_taxonomy()
    return parse_taxonomy(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


@cache
def _default_taxonomy() -> Taxonomy:
    return parse_taxonomy(yaml.safe_load(default_taxonomy_path().read_text(encoding="utf-8")))


def _as_expr(col: pl.Expr | str) -> pl.Expr:
    return pl.col(col) if isinstance(col, str) else col


def fold_label_expr(raw: pl.Expr | str) -> pl.Expr:
    return _as_expr(raw).cast(pl.String).str.to_lowercase().str.replace_all(r"[^a-z0-9]", "")


def map_raw_category(
    raw: pl.Expr | str = "raw_bounce_category", *, taxonomy: Taxonomy | None = None
) -> pl.Expr:
    """Unified category of a raw label column: null for null/blank, ``other`` for unknown labels."""
    tax = taxonomy or load_taxonomy()
    folded = fold_label_expr(raw)
    mapped = folded.replace_strict(
        list(tax.labels.keys()), list(tax.labels.values()), default=pl.lit(OTHER), return_dtype=pl.String
    )
    return pl.when(folded.is_null() | (folded == "")).then(pl.lit(None, dtype=pl.String)).otherwise(mapped)


def raw_label_known(
    raw: pl.Expr | str = "raw_bounce_category", *, taxonomy: Taxonomy | None = None
) -> pl.Expr:
    """True where the raw label is one the taxonomy lists (false for unknown, null for blank)."""
    tax = taxonomy or load_taxonomy()
    folded = fold_label_expr(raw)
    return pl.when(folded.is_null() | (folded == "")).then(None).otherwise(folded.is_in(list(tax.labels)))


def consequence_expr(category: pl.Expr | str = "category", *, taxonomy: Taxonomy | None = None) -> pl.Expr:
    """Consequence of a unified category column (null for null)."""
    tax = taxonomy or load_taxonomy()
    return _as_expr(category).replace_strict(
        list(tax.categories),
        [c.consequence for c in tax.categories.values()],
        default=None,
        return_dtype=pl.String,
    )


def taxonomy_frame(taxonomy: Taxonomy | None = None) -> pl.DataFrame:
    """One row per (category, source, raw label): the mapping as a table (docs, catalog)."""
    tax = taxonomy or load_taxonomy()
    rows = []
    for cat in tax.categories.values():
        entries = [("pmta", label) for label in cat.pmta] + [("kumo", label) for label in cat.kumo]
        for mta, label in entries or [(None, None)]:
            rows.append(
                {
                    "category": cat.name,
                    "consequence": cat.consequence,
                    "description": cat.description,
                    "mta": mta,
                    "raw_label": label,
                }
            )
    return pl.DataFrame(
        rows, schema={k: pl.String for k in ("category", "consequence", "description", "mta", "raw_label")}
    )
