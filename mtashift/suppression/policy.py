"""The suppression policy: defaults from ``schemas/suppression_policy.yaml``, estate overrides merged over.

Order (later wins): the defaults file, ``landing/plan.yaml`` key ``suppression:``,
``landing/suppression-policy.yaml``. Mappings merge key by key; lists and scalars replace.
The merged document is validated against the defaults' shape: unknown keys and wrong types raise.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mtashift.settings import deep_merge, load_yaml
from schemas.suppression import SOURCES

SCOPE_MODES: tuple[str, ...] = ("global", "sender_domain", "tenant")
CONSEQUENCES: tuple[str, ...] = ("suppress", "retry-then-suppress", "statistical")
COUNT_MODES: tuple[str, ...] = ("messages", "events")
ESTATE_POLICY_FILE = "suppression-policy.yaml"


def default_policy_path() -> Path:
    return Path(str(resources.files("schemas") / "suppression_policy.yaml"))


# Keys whose value is an open mapping (user-chosen keys), so the shape check stops there.
_OPEN_MAPPINGS = {("bounces", "consequence_overrides"), ("legacy", "file_scopes")}


def _check_shape(doc: Mapping[str, Any], ref: Mapping[str, Any], path: tuple[str, ...] = ()) -> None:
    for key, value in doc.items():
        where = ".".join((*path, str(key)))
        if key not in ref:
            raise ValueError(f"suppression policy: unknown key `{where}`")
        expected = ref[key]
        if (*path, key) in _OPEN_MAPPINGS:
            if not isinstance(value, Mapping):
                raise ValueError(f"suppression policy: `{where}` must be a mapping")
            continue
        if isinstance(expected, Mapping):
            if not isinstance(value, Mapping):
                raise ValueError(f"suppression policy: `{where}` must be a mapping")
            _check_shape(value, expected, (*path, key))


def _days(value: Any, where: str, *, nullable: bool = True) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"suppression policy: `{where}` must be a positive whole number of days")
    return value


@dataclass(frozen=True)
class SuppressionPolicy:
    precedence: tuple[str, ...]
    scopes: dict[str, str]
    evidence_cap: int
    consequence_overrides: dict[str, str]
    verdict_event_types: tuple[str, ...]
    failure_event_types: tuple[str, ...]
    unsubscribe_categories: tuple[str, ...]
    suppress_expire_days: int | None
    retry_failures: int
    retry_window_days: int
    retry_count: str
    retry_expire_days: int | None
    domain_enabled: bool
    domain_categories: tuple[str, ...]
    domain_min_recipients: int
    domain_expire_days: int | None
    complaint_ignore_types: tuple[str, ...]
    complaint_expire_days: int | None
    unsubscribe_expire_days: int | None
    legacy_expire_days: int | None
    legacy_file_scopes: tuple[tuple[str, str], ...]
    document: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        """Short digest of the merged policy document (recorded with every export)."""
        blob = json.dumps(self.document, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def rank(self, source: str) -> int:
        return self.precedence.index(source)

    def legacy_scope_for(self, rel_in_folder: str) -> str:
        for pattern, scope in self.legacy_file_scopes:
            if fnmatch.fnmatchcase(rel_in_folder, pattern):
                return scope
        return "global"


def _scope_literal(value: Any, where: str) -> str:
    if not isinstance(value, str) or not (
        value == "global" or value.startswith(("tenant:", "sender_domain:"))
    ):
        raise ValueError(
            f"suppression policy: `{where}` must be `global`, `tenant:<t>` or `sender_domain:<d>`"
        )
    return value


def from_document(doc: Mapping[str, Any]) -> SuppressionPolicy:
    """Validate a merged policy document and turn it into a :class:`SuppressionPolicy`."""
    _check_shape(doc, load_yaml(default_policy_path()))
    precedence = tuple(doc["precedence"])
    if sorted(precedence) != sorted(SOURCES):
        raise ValueError(f"suppression policy: `precedence` must list each of {list(SOURCES)} once")
    scopes = dict(doc["scopes"])
    for source, mode in scopes.items():
        if mode not in SCOPE_MODES:
            raise ValueError(f"suppression policy: `scopes.{source}` must be one of {list(SCOPE_MODES)}")
    b = doc["bounces"]
    overrides = dict(b.get("consequence_overrides") or {})
    for cat, cons in overrides.items():
        if cons not in CONSEQUENCES:
            raise ValueError(
                f"suppression policy: `bounces.consequence_overrides.{cat}` must be one of {list(CONSEQUENCES)}"
            )
    r = b["retry_then_suppress"]
    if r["count"] not in COUNT_MODES:
        raise ValueError(
            f"suppression policy: `bounces.retry_then_suppress.count` must be one of {list(COUNT_MODES)}"
        )
    d = b["domain"]
    cap = doc["evidence_cap"]
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ValueError("suppression policy: `evidence_cap` must be a positive integer")
    failures = r["failures"]
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
        raise ValueError(
            "suppression policy: `bounces.retry_then_suppress.failures` must be a positive integer"
        )
    min_rcpt = d["min_distinct_recipients"]
    if isinstance(min_rcpt, bool) or not isinstance(min_rcpt, int) or min_rcpt < 1:
        raise ValueError(
            "suppression policy: `bounces.domain.min_distinct_recipients` must be a positive integer"
        )
    file_scopes = tuple(
        (str(k), _scope_literal(v, f"legacy.file_scopes.{k}"))
        for k, v in (doc["legacy"].get("file_scopes") or {}).items()
    )
    return SuppressionPolicy(
        precedence=precedence,
        scopes={s: scopes.get(s, "global") for s in SOURCES},
        evidence_cap=cap,
        consequence_overrides=overrides,
        verdict_event_types=tuple(b["verdict_event_types"]),
        failure_event_types=tuple(b["failure_event_types"]),
        unsubscribe_categories=tuple(b["unsubscribe_categories"]),
        suppress_expire_days=_days(b["suppress"]["expire_after_days"], "bounces.suppress.expire_after_days"),
        retry_failures=failures,
        retry_window_days=int(
            _days(r["window_days"], "bounces.retry_then_suppress.window_days", nullable=False) or 0
        ),
        retry_count=r["count"],
        retry_expire_days=_days(r["expire_after_days"], "bounces.retry_then_suppress.expire_after_days"),
        domain_enabled=bool(d["enabled"]),
        domain_categories=tuple(d["categories"]),
        domain_min_recipients=min_rcpt,
        domain_expire_days=_days(d["expire_after_days"], "bounces.domain.expire_after_days"),
        complaint_ignore_types=tuple(str(t).lower() for t in doc["complaints"]["ignore_feedback_types"]),
        complaint_expire_days=_days(doc["complaints"]["expire_after_days"], "complaints.expire_after_days"),
        unsubscribe_expire_days=_days(
            doc["unsubscribes"]["expire_after_days"], "unsubscribes.expire_after_days"
        ),
        legacy_expire_days=_days(doc["legacy"]["expire_after_days"], "legacy.expire_after_days"),
        legacy_file_scopes=file_scopes,
        document=dict(doc),
    )


def load_policy(
    *, landing_root: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> SuppressionPolicy:
    """Defaults, then plan.yaml ``suppression:``, then suppression-policy.yaml, then ``overrides``."""
    doc = load_yaml(default_policy_path())
    if landing_root is not None:
        for name in ("plan.yaml", "plan.yml"):
            plan = load_yaml(landing_root / name)
            if plan:
                section = plan.get("suppression")
                if section is not None and not isinstance(section, Mapping):
                    raise ValueError(f"{landing_root / name}: `suppression:` must be a mapping")
                doc = deep_merge(doc, section)
                break
        doc = deep_merge(doc, load_yaml(landing_root / ESTATE_POLICY_FILE))
    doc = deep_merge(doc, overrides)
    return from_document(doc)
