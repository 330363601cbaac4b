"""PowerMTA configuration -> KumoMTA policy-helper files, with a report of what became of every directive.

Input: the parsed estate (:mod:`mtashift.pmta_config`), plus optional evidence tables from the lake
(warm-up state, observed hourly provider rates, deferral signatures, events for tenant -> pool
hints). Output (:class:`KumoTranslation`): ``sources.toml``, ``shaping.toml``, ``queue.toml``,
``dkim_data.toml`` (text, rendered with tomlkit, keys checked against ``schemas/kumo_options.yaml``)
and the translation report (table + markdown + JSON). Every rule, with the reasons, is written down
in ``schemas/docs/translation.md``; the short version lives next to each function.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from importlib import resources
from typing import Any

import polars as pl
import tomlkit
import yaml

from mtashift.pmta_config import (
    DomainPattern,
    EffectiveSetting,
    Loc,
    PmtaConfig,
    effective_settings,
    iter_all_directives,
    normalise_cidr,
    unquote,
    view_patterns,
    vocabulary,
)
from mtashift.providers import PROVIDERS, ProviderMap, load_provider_map, provider_for_domain

STATUSES = ("translated", "unnecessary", "not_translated")
KUMO_FILES = ("sources.toml", "shaping.toml", "queue.toml", "dkim_data.toml")

TRANSLATION_REPORT_SCHEMA = pl.Schema(
    {
        "node": pl.String(),
        "scope": pl.String(),
        "block": pl.String(),
        "directive": pl.String(),
        "value": pl.String(),
        "file": pl.String(),
        "line": pl.Int64(),
        "status": pl.String(),
        "target_file": pl.String(),
        "target_key": pl.String(),
        "note": pl.String(),
    }
)


# ==================================================================================================
# documented KumoMTA option names


@cache
def kumo_options() -> dict:
    with resources.files("schemas").joinpath("kumo_options.yaml").open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


# ==================================================================================================
# value conversion: rates and intervals

_RATE_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}
_OUT_UNITS = (("s", 1), ("min", 60), ("h", 3600), ("d", 86400))
_RATE = re.compile(r"^(\d[\d,_]*)\s*/\s*(\d*)\s*([a-z]+)$")


@dataclass(frozen=True)
class RateConversion:
    """A PowerMTA rate (``N/[M]unit``) as a KumoMTA throttle string."""

    raw: str
    kumo: str | None  # None: nothing to set (unlimited) or invalid
    per_hour: float | None
    valid: bool
    exact: bool
    note: str


def convert_rate(text: str) -> RateConversion:
    """``500/h`` -> ``500/h``; ``83/10m`` -> ``498/h``; ``unlimited``/``0`` -> omitted.

    KumoMTA's documented periods are s/min/h/d. A PowerMTA multiplier (``83/10m``, ``100/15m``) is
    rescaled to the smallest documented unit at least as long as the written period for which the
    count is a whole number (``83/10m`` = 498/h, ``83/5s`` = 996/min, ``100/15m`` = 400/h). When no
    unit up to a day gives a whole number (``100/7m``), the smallest such unit is used and the count
    rounded DOWN (857/h), so the translated limit never exceeds the configured intent. Periods longer
    than a day become per-day counts (rounded down, minimum 1).
    """
    t = text.strip().lower()
    if t in ("unlimited", "0", ""):
        return RateConversion(text, None, None, True, True, "unlimited: nothing to set")
    m = _RATE.match(t)
    if not m or m.group(3) not in _RATE_UNITS:
        return RateConversion(text, None, None, False, False, f"not a PowerMTA rate: {text!r}")
    n = int(m.group(1).replace(",", "").replace("_", ""))
    mult = int(m.group(2) or 1)
    if n == 0:
        return RateConversion(text, None, None, True, True, "unlimited: nothing to set")
    if mult == 0:
        return RateConversion(text, None, None, False, False, f"zero period in {text!r}")
    period = mult * _RATE_UNITS[m.group(3)]
    per_hour = n * 3600 / period
    if mult == 1:
        unit = next(name for name, secs in _OUT_UNITS if secs == period)
        return RateConversion(text, f"{n}/{unit}", per_hour, True, True, "")
    candidates = [(name, secs) for name, secs in _OUT_UNITS if secs >= period] or [("d", 86400)]
    for name, secs in candidates:
        num = n * secs
        if num % period == 0:
            return RateConversion(text, f"{num // period}/{name}", per_hour, True, True, f"{text} rescaled")
    name, secs = candidates[0]
    exact_value = n * secs / period
    count = max(1, math.floor(exact_value))
    return RateConversion(
        text, f"{count}/{name}", per_hour, True, False, f"{text} = {exact_value:.2f}/{name}, rounded down"
    )


_INTERVAL_UNITS = {
    "s": 1,
    "sec": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "hr": 3600,
    "d": 86400,
    "day": 86400,
    "w": 604800,
}
_INTERVAL_PART = re.compile(r"(\d+)\s*([a-z]*)")


def parse_interval(text: str) -> int | None:
    """PowerMTA interval (``10m``, ``4d12h``, ``90``) -> seconds; ``never``/invalid -> None."""
    t = text.strip().lower().replace(" ", "")
    if not t or t == "never":
        return None
    pos = 0
    total = 0
    for m in _INTERVAL_PART.finditer(t):
        if m.start() != pos:
            return None
        unit = m.group(2) or "s"
        if unit not in _INTERVAL_UNITS:
            return None
        total += int(m.group(1)) * _INTERVAL_UNITS[unit]
        pos = m.end()
    return total if pos == len(t) and total > 0 else None


def kumo_duration(seconds: int) -> str:
    """Seconds -> ``"N unit"`` in the largest whole unit (``108 hours``, ``10 minutes``)."""
    for name, secs in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % secs == 0:
            n = seconds // secs
            return f"{n} {name}" + ("" if n == 1 else "s")
    return f"{seconds} seconds"


def parse_bool(text: str) -> bool | None:
    t = unquote(text).strip().lower()
    if t in ("yes", "true", "on", "1"):
        return True
    if t in ("no", "false", "off", "0"):
        return False
    return None


def _int(text: str) -> int | None:
    t = unquote(text).strip().replace(",", "").replace("_", "")
    return int(t) if t.isdigit() else None


# ==================================================================================================
# TOML plan: nested dicts + comments, rendered with tomlkit


class Inline(dict):
    """A mapping rendered as an inline table (``{MXSuffix = ".x"}``, automation actions)."""


COMMENTS_KEY = "__comments__"
_CTRL = re.compile(r"[\x00-\x1f\x7f]+")


def safe_comment(text: str, limit: int = 160) -> str:
    """Untrusted text (SMTP replies, config values) made safe for a one-line TOML comment."""
    t = _CTRL.sub(" ", str(text)).strip()
    return t if len(t) <= limit else t[: limit - 1] + "…"


@dataclass
class TomlPlan:
    header: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    comments: dict[tuple[str, ...], list[str]] = field(default_factory=dict)

    def table(self, *path: str) -> dict:
        cur = self.data
        for p in path:
            cur = cur.setdefault(p, {})
        return cur

    def set(self, path: tuple[str, ...], key: str, value: Any) -> None:
        self.table(*path)[key] = value

    def get(self, path: tuple[str, ...], key: str) -> Any:
        cur: Any = self.data
        for p in path:
            if not isinstance(cur, dict) or p not in cur:
                return None
            cur = cur[p]
        return cur.get(key) if isinstance(cur, dict) else None

    def note(self, path: tuple[str, ...], text: str) -> None:
        self.table(*path)
        lst = self.comments.setdefault(path, [])
        c = safe_comment(text, limit=400)
        if c not in lst:
            lst.append(c)

    def append(self, path: tuple[str, ...], key: str, item: dict) -> None:
        lst = self.table(*path).setdefault(key, [])
        plain = {k: v for k, v in item.items() if k != COMMENTS_KEY}
        for existing in lst:
            if {k: v for k, v in existing.items() if k != COMMENTS_KEY} == plain:
                for c in item.get(COMMENTS_KEY, []):
                    if c not in existing.setdefault(COMMENTS_KEY, []):
                        existing[COMMENTS_KEY].append(c)
                return
        lst.append(item)

    def to_toml(self) -> str:
        doc = tomlkit.document()
        for line in self.header:
            doc.add(tomlkit.comment(safe_comment(line, limit=400)))
        if self.header:
            doc.add(tomlkit.nl())
        self._render(doc, self.data, ())
        return tomlkit.dumps(doc)

    def _render(self, container, data: dict, path: tuple[str, ...]) -> None:
        for c in self.comments.get(path, []):
            container.add(tomlkit.comment(c))
        tables, aots = [], []
        for k, v in data.items():
            if isinstance(v, dict) and not isinstance(v, Inline):
                tables.append((k, v))
            elif (
                isinstance(v, list)
                and v
                and all(isinstance(i, dict) and not isinstance(i, Inline) for i in v)
            ):
                aots.append((k, v))
            else:
                container.add(k, _item(k, v))
        for k, v in tables:
            sub = (*path, k)
            has_own = any(
                not (isinstance(x, dict) and not isinstance(x, Inline)) for x in v.values()
            ) or bool(self.comments.get(sub))
            t = tomlkit.table(is_super_table=not has_own and bool(v))
            self._render(t, v, sub)
            container.add(k, t)
        for k, items in aots:
            aot = tomlkit.aot()
            for it in items:
                t = tomlkit.table()
                for c in it.get(COMMENTS_KEY, []):
                    t.add(tomlkit.comment(safe_comment(c, limit=400)))
                for ik, iv in it.items():
                    if ik != COMMENTS_KEY:
                        t.add(ik, _item(ik, iv))
                aot.append(t)
            container.add(k, aot)


def _item(key: str, value: Any):
    if isinstance(value, Inline):
        it = tomlkit.inline_table()
        for k, v in value.items():
            it.add(k, _item(k, v))
        return it
    if isinstance(value, list):
        arr = tomlkit.array()
        for v in value:
            arr.append(_item(key, v))
        return arr
    if key == "regex" and isinstance(value, str) and "'" not in value and "\n" not in value:
        return tomlkit.string(value, literal=True)
    return tomlkit.item(value)


# ==================================================================================================
# validation against the documented option names


_THROTTLE = re.compile(
    r"^(local:)?\d[\d,_]*/\d*(s|sec|second|m|min|minute|h|hr|hour|d|day)(,max_burst=\d+)?$"
)
_THROTTLE_KEYS = {
    "max_message_rate",
    "max_connection_rate",
    "source_selection_rate",
    "provider_max_message_rate",
    "provider_source_selection_rate",
    "overall_max_message_rate",
}


def _check_value(where: str, key: str, value: Any, errors: list[str]) -> None:
    if key in _THROTTLE_KEYS and not (isinstance(value, str) and _THROTTLE.match(value)):
        errors.append(f"{where}.{key}: {value!r} is not a throttle spec")
    if key in ("connection_limit", "provider_connection_limit", "max_deliveries_per_connection") and not (
        (isinstance(value, int) and value > 0) or isinstance(value, str)
    ):
        errors.append(f"{where}.{key}: {value!r} must be a positive integer")


def _check_keys(where: str, table: Any, allowed: set[str], errors: list[str]) -> None:
    if not isinstance(table, dict):
        errors.append(f"{where}: expected a table")
        return
    for k, v in table.items():
        if k not in allowed:
            errors.append(f"{where}: {k!r} is not a documented option here")
        else:
            _check_value(where, k, v, errors)


def _check_automation(where: str, rules: Any, errors: list[str]) -> None:
    so = kumo_options()["shaping_toml"]
    if not isinstance(rules, list):
        errors.append(f"{where}: automation must be an array of tables")
        return
    for i, r in enumerate(rules):
        w = f"{where}[{i}]"
        _check_keys(w, r, set(so["automation_rule"]), errors)
        if not isinstance(r, dict):
            continue
        for req in ("regex", "action", "duration"):
            if req not in r:
                errors.append(f"{w}: {req!r} is required")
        actions = r.get("action")
        for a in actions if isinstance(actions, list) else [actions]:
            if isinstance(a, str):
                if a not in so["automation_actions"]:
                    errors.append(f"{w}: action {a!r} is not documented")
            elif isinstance(a, dict) and len(a) == 1:
                ((name, body),) = a.items()
                if name not in so["automation_table_actions"]:
                    errors.append(f"{w}: action {name!r} is not documented")
                elif not isinstance(body, dict) or set(body) != set(so["automation_set_config_keys"]):
                    errors.append(f"{w}: {name} needs name and value")
                elif body["name"] not in kumo_options()["egress_path"]:
                    errors.append(f"{w}: {name} sets undocumented option {body['name']!r}")
            elif a is not None:
                errors.append(f"{w}: bad action {a!r}")
        trig = r.get("trigger")
        if trig is not None and not (
            (isinstance(trig, str) and trig in so["automation_triggers"])
            or (
                isinstance(trig, dict)
                and set(trig) <= set(so["automation_table_triggers"])
                and len(trig) == 1
            )
        ):
            errors.append(f"{w}: bad trigger {trig!r}")


def validate_kumo_file(kind: str, data: dict) -> list[str]:
    """Errors for every key of a parsed KumoMTA helper file that the documentation does not name."""
    ko = kumo_options()
    errors: list[str] = []
    egress_path = set(ko["egress_path"])
    if kind == "sources.toml":
        st = ko["sources_toml"]
        _check_keys("top", {k: None for k in data}, set(st["top_level"]), errors)
        for name, src in (data.get("source") or {}).items():
            _check_keys(f"source.{name}", src, set(ko["egress_source"]), errors)
        for pool, members in (data.get("pool") or {}).items():
            if not isinstance(members, dict):
                errors.append(f"pool.{pool}: expected a table")
                continue
            for member, opts in members.items():
                _check_keys(f"pool.{pool}.{member}", opts, set(st["pool_member"]), errors)
                if member not in (data.get("source") or {}):
                    errors.append(f"pool.{pool}.{member}: member is not a defined source")
    elif kind == "shaping.toml":
        so = ko["shaping_toml"]
        for scope, block in data.items():
            if scope == "provider":
                for pname, pblock in (block or {}).items():
                    w = f"provider.{pname}"
                    allowed = egress_path | set(so["provider_block"])
                    _check_keys(
                        w,
                        {k: v for k, v in pblock.items() if k not in ("sources", "automation")},
                        allowed,
                        errors,
                    )
                    for mi, m in enumerate(pblock.get("match") or []):
                        if not (
                            isinstance(m, dict)
                            and len(m) == 1
                            and next(iter(m)) in so["provider_match_kinds"]
                        ):
                            errors.append(f"{w}.match[{mi}]: {m!r} is not a documented match")
                    for sname, sblock in (pblock.get("sources") or {}).items():
                        _check_keys(
                            f"{w}.sources.{sname}",
                            sblock,
                            egress_path | set(so["provider_source_block"]),
                            errors,
                        )
                    if "automation" in pblock:
                        _check_automation(f"{w}.automation", pblock["automation"], errors)
                continue
            w = f"[{scope}]"
            allowed = egress_path | set(so["domain_block"])
            _check_keys(
                w, {k: v for k, v in block.items() if k not in ("sources", "automation")}, allowed, errors
            )
            for sname, sblock in (block.get("sources") or {}).items():
                _check_keys(f"{w}.sources.{sname}", sblock, egress_path, errors)
            if "automation" in block:
                _check_automation(f"{w}.automation", block["automation"], errors)
    elif kind == "queue.toml":
        qt = ko["queue_toml"]
        qc = set(ko["queue_config"])
        _check_keys("top", {k: None for k in data}, set(qt["top_level"]), errors)
        for dom, block in (data.get("queue") or {}).items():
            _check_keys(
                f"queue.{dom}",
                {k: v for k, v in block.items() if not isinstance(v, dict)},
                qc | set(qt["queue_block"]),
                errors,
            )
        for tenant, block in (data.get("tenant") or {}).items():
            _check_keys(f"tenant.{tenant}", block, qc | set(qt["tenant_block"]), errors)
    elif kind == "dkim_data.toml":
        dt_ = ko["dkim_data_toml"]
        _check_keys("top", {k: None for k in data}, set(dt_["top_level"]), errors)
        if "base" in data:
            _check_keys("base", data["base"], set(dt_["base"]), errors)
        for dom, block in (data.get("domain") or {}).items():
            _check_keys(f"domain.{dom}", block, set(dt_["domain"]), errors)
        for sig, block in (data.get("signature") or {}).items():
            _check_keys(f"signature.{sig}", block, set(dt_["signature"]), errors)
    else:
        errors.append(f"unknown KumoMTA file kind {kind!r}")
    return errors


def validate_kumo_text(kind: str, text: str) -> list[str]:
    """Parse (tomllib, independent of the writer) and validate one generated file."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [f"{kind}: not valid TOML: {exc}"]
    return validate_kumo_file(kind, data)


# ==================================================================================================
# translation report


@dataclass
class Report:
    rows: dict[tuple[str, str, int, str], dict] = field(default_factory=dict)

    def add_config(self, cfg: PmtaConfig) -> None:
        voc = vocabulary()["translation"]
        known_tags = set(vocabulary()["known_tags"])
        for scope, block, d, parent in iter_all_directives(cfg):
            if d.name.startswith("<"):
                tag = d.name.strip("<>")
                default = voc["tags"].get(tag) or (
                    voc["default"]
                    if tag in known_tags
                    else {"status": "not_translated", "note": "unknown PowerMTA block"}
                )
            else:
                default = _default_outcome(d.name)
            target = default.get("target") or ""
            self.rows[(cfg.node, d.loc.file, d.loc.line, d.name)] = {
                "node": cfg.node,
                "scope": scope,
                "block": block,
                "directive": d.name,
                "value": d.value,
                "file": d.loc.file,
                "line": d.loc.line,
                "status": default["status"],
                "target_file": target.partition(":")[0] or None,
                "target_key": target.partition(":")[2] or None,
                "note": default.get("note"),
                "_marked": False,
                "_parent": (cfg.node, parent) if parent else None,
            }

    def mark(
        self,
        node: str,
        loc: Loc,
        directive: str,
        status: str,
        target: str | None = None,
        note: str | None = None,
    ) -> None:
        row = self.rows.get((node, loc.file, loc.line, directive))
        if row is None:
            return
        tfile, _, tkey = (target or "").partition(":")
        if not row["_marked"]:
            row.update(
                status=status, target_file=tfile or None, target_key=tkey or None, note=note, _marked=True
            )
            return
        if STATUSES.index(status) < STATUSES.index(row["status"]):
            row["status"] = status
        if tfile:
            files = set(filter(None, (row["target_file"] or "").split(", "))) | {tfile}
            row["target_file"] = ", ".join(sorted(files))
        if tkey:
            keys = [k for k in (row["target_key"] or "").split("; ") if k]
            if tkey not in keys and len(keys) < 12:
                keys.append(tkey)
            row["target_key"] = "; ".join(keys)
        if note:
            notes = [n for n in (row["note"] or "").split("; ") if n]
            if note not in notes and len(notes) < 6:
                notes.append(note)
            row["note"] = "; ".join(notes)

    def frame(self) -> pl.DataFrame:
        self._domain_containers()
        rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in self.rows.values()]
        rows.sort(key=lambda r: (r["node"], r["file"], r["line"], r["directive"]))
        return (
            pl.DataFrame(rows, schema=TRANSLATION_REPORT_SCHEMA)
            if rows
            else pl.DataFrame(schema=TRANSLATION_REPORT_SCHEMA)
        )

    def _domain_containers(self) -> None:
        """A <domain> block's own row summarises what became of the directives inside it."""
        children: dict[tuple[str, Loc], list[str]] = defaultdict(list)
        for r in self.rows.values():
            if r["_parent"] is not None:
                children[r["_parent"]].append(r["status"])
        for r in self.rows.values():
            if r["directive"] != "<domain>" or r["_marked"]:
                continue
            kids = children.get((r["node"], Loc(r["file"], r["line"])), [])
            counts = {s: kids.count(s) for s in STATUSES}
            r["status"] = next((s for s in STATUSES if counts[s]), "unnecessary")
            r["note"] = (
                "container: " + ", ".join(f"{counts[s]} {s.replace('_', ' ')}" for s in STATUSES if counts[s])
                if kids
                else "empty block"
            )


def _default_outcome(name: str) -> dict:
    voc = vocabulary()["translation"]
    if name in voc["directives"]:
        return voc["directives"][name]
    best = None
    for prefix, outcome in voc["prefixes"].items():
        if name.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, outcome)
    if best:
        return best[1]
    if name not in vocabulary()["known_directives"] and name != "(pattern)":
        return {"status": "not_translated", "note": "unknown PowerMTA directive (see pmta_config_issues)"}
    return voc["default"]


# ==================================================================================================
# per-directive mapping to egress-path / queue options


# PowerMTA domain directive -> (KumoMTA egress-path option, conversion)
SHAPING_MAP: dict[str, tuple[str, str]] = {
    "max-smtp-out": ("connection_limit", "count"),
    "max-msg-rate": ("max_message_rate", "rate"),
    "max-msg-per-hour": ("max_message_rate", "per_hour"),
    "max-connect-rate": ("max_connection_rate", "rate"),
    "max-msg-per-connection": ("max_deliveries_per_connection", "count0"),
    "max-rcpt-per-transaction": ("max_recipients_per_batch", "count"),
    "use-dane": ("enable_dane", "bool"),
    "connect-timeout": ("connect_timeout", "duration"),
    "smtp-greeting-timeout": ("banner_timeout", "duration"),
    "connection-idle-timeout": ("idle_timeout", "duration"),
    "default-smtp-port": ("smtp_port", "count"),
}
# per-source-IP variants: "CIDR value"
SOURCE_IP_MAP: dict[str, tuple[str, str]] = {
    "source-ip-max-msg-rate": ("max_message_rate", "rate"),
    "source-ip-max-smtp-out": ("connection_limit", "count"),
    "source-ip-max-connect-rate": ("max_connection_rate", "rate"),
}
TLS_DIRECTIVES = ("use-starttls", "require-starttls")
QUEUE_DIRECTIVES = ("retry-after", "bounce-after", "route")
BACKOFF_MAP = {
    "backoff-max-msg-rate": ("max_message_rate", "rate"),
    "backoff-max-smtp-out": ("connection_limit", "count"),
    "backoff-max-connect-rate": ("max_connection_rate", "rate"),
}


@dataclass(frozen=True)
class Converted:
    value: Any  # None: omit
    ok: bool  # False: the value could not be translated
    note: str = ""
    per_hour: float | None = None


def convert_value(kind: str, raw: str) -> Converted:
    v = unquote(raw)
    if kind in ("rate", "per_hour"):
        if kind == "per_hour":
            n = _int(v)
            if n is None:
                return Converted(None, False, f"not a count: {raw!r}")
            if n == 0:
                return Converted(None, True, "unlimited: nothing to set")
            return Converted(f"{n}/h", True, "", float(n))
        rc = convert_rate(v)
        return Converted(rc.kumo, rc.valid, rc.note, rc.per_hour)
    if kind in ("count", "count0"):
        n = _int(v)
        if n is None:
            return Converted(None, False, f"not a count: {raw!r}")
        if n == 0:
            if kind == "count0":
                return Converted(None, True, "0 = unlimited: nothing to set")
            return Converted(None, False, "0 has no KumoMTA equivalent (a limit must be positive)")
        return Converted(n, True)
    if kind == "bool":
        b = parse_bool(v)
        return Converted(b, b is not None, "" if b is not None else f"not a boolean: {raw!r}")
    if kind == "duration":
        secs = parse_interval(v)
        if secs is None:
            return Converted(None, False, f"not an interval: {raw!r}")
        return Converted(kumo_duration(secs), True)
    raise ValueError(kind)


@dataclass
class PathSettings:
    """Egress-path options derived from one effective settings view, with their PowerMTA origins."""

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, list[EffectiveSetting]] = field(default_factory=dict)
    unlimited: dict[str, EffectiveSetting] = field(
        default_factory=dict
    )  # option -> setting saying "unlimited"
    failed: list[tuple[EffectiveSetting, str]] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    per_hour: dict[str, float] = field(default_factory=dict)


def path_settings(eff: dict[tuple[str, str], EffectiveSetting], *, skip_star: bool) -> PathSettings:
    """Egress-path options of an effective view. ``skip_star``: leave out what ``*`` supplies (``["default"]`` has it)."""
    ps = PathSettings()

    def keep(s: EffectiveSetting) -> bool:
        return not (skip_star and s.source_pattern.kind == "all" and s.scope == "global")

    for (name, qual), s in sorted(eff.items()):
        if qual or not keep(s):
            continue
        if name in SHAPING_MAP:
            opt, kind = SHAPING_MAP[name]
            c = convert_value(kind, s.value)
            if not c.ok:
                ps.failed.append((s, c.note))
            elif c.value is None:
                ps.unlimited[opt] = s
            elif name == "max-msg-per-hour" and "max-msg-rate" in {k for k, _ in eff}:
                ps.failed.append((s, "superseded by max-msg-rate"))
            else:
                ps.values[opt] = c.value
                ps.origins[opt] = [s]
                if c.note:
                    ps.notes[opt] = c.note
                if c.per_hour is not None:
                    ps.per_hour[opt] = c.per_hour
    tls = {n: eff.get((n, "")) for n in TLS_DIRECTIVES}
    tls = {n: s for n, s in tls.items() if s is not None and keep(s)}
    if tls:
        use = parse_bool(tls["use-starttls"].value) if "use-starttls" in tls else None
        req = parse_bool(tls["require-starttls"].value) if "require-starttls" in tls else None
        mode = (
            "Required"
            if req
            else ("Disabled" if use is False else ("Opportunistic" if use or req is False else None))
        )
        if mode:
            ps.values["enable_tls"] = mode
            ps.origins["enable_tls"] = list(tls.values())
        else:
            for s in tls.values():
                ps.failed.append((s, f"not a boolean: {s.value!r}"))
    mx = eff.get(("disable-mx-rollup", ""))
    if mx is not None and keep(mx) and parse_bool(mx.value):
        ps.values["mx_rollup"] = False
        ps.origins["mx_rollup"] = [mx]
    return ps


def queue_settings(eff: dict[tuple[str, str], EffectiveSetting], *, skip_star: bool) -> PathSettings:
    """queue.toml options: retry-after -> retry_interval (+ max_retry_interval), bounce-after -> max_age, route -> routing_domain."""
    ps = PathSettings()
    for name in QUEUE_DIRECTIVES:
        s = eff.get((name, ""))
        if s is None or (skip_star and s.source_pattern.kind == "all" and s.scope == "global"):
            continue
        v = unquote(s.value)
        if name == "retry-after":
            steps = [parse_interval(x) for x in re.split(r"[,\s]+", v) if x]
            if not steps or any(x is None for x in steps):
                ps.failed.append((s, f"not an interval list: {s.value!r}"))
                continue
            ps.values["retry_interval"] = kumo_duration(steps[0])
            ps.origins["retry_interval"] = [s]
            if len(steps) > 1 and steps[-1] != steps[0]:
                ps.values["max_retry_interval"] = kumo_duration(max(steps))
                ps.origins["max_retry_interval"] = [s]
                ps.notes["retry_interval"] = (
                    "PowerMTA's explicit retry list becomes exponential backoff from the first to the longest step"
                )
        elif name == "bounce-after":
            secs = parse_interval(v)
            if secs is None:
                ps.failed.append((s, f"not an interval: {s.value!r}"))
                continue
            ps.values["max_age"] = kumo_duration(secs)
            ps.origins["max_age"] = [s]
        elif name == "route":
            target = v.split(":")[0].strip("[]")
            if not target:
                ps.failed.append((s, "empty route"))
                continue
            ps.values["routing_domain"] = target
            ps.origins["routing_domain"] = [s]
    return ps


# ==================================================================================================
# KumoMTA placement of a PowerMTA pattern


def pmta_provider_name(p: DomainPattern) -> str:
    return f"pmta {p.text}"


def shaping_targets(p: DomainPattern, configured: frozenset[str] = frozenset()) -> list[tuple[str, ...]]:
    """Shaping paths that carry a pattern's settings: ("default",), (DOMAIN,), ("provider", NAME).

    ``[*.]x`` needs a DomainSuffix provider for the subdomains, unless ``*.x`` is configured too (that
    block inherits everything ``[*.]x`` says and is more specific, so it covers them).
    """
    if p.kind == "all":
        return [("default",)]
    if p.kind == "exact":
        return [(p.suffix,)]
    if p.kind == "domain_and_subdomains":
        if f"*.{p.suffix}" in configured:
            return [(p.suffix,)]
        return [(p.suffix,), ("provider", pmta_provider_name(p))]
    if p.kind == "subdomains":
        return [("provider", pmta_provider_name(p))]
    return []


def queue_targets(p: DomainPattern) -> list[str]:
    """queue.toml ``[queue.X]`` keys (kumo.domain_map keys: exact names and ``*.suffix`` wildcards)."""
    if p.kind == "all":
        return ["default"]
    if p.kind == "exact":
        return [p.suffix]
    if p.kind == "domain_and_subdomains":
        return [p.suffix, f"*.{p.suffix}"]
    if p.kind == "subdomains":
        return [f"*.{p.suffix}"]
    return []


def _path_label(path: tuple[str, ...]) -> str:
    if path[0] == "provider":
        return f'provider."{path[1]}"' + "".join(
            f".{x}" if x in ("sources", "automation") else f'."{x}"' for x in path[2:]
        )
    return f'["{path[0]}"]' + "".join(
        f".{x}" if x in ("sources", "automation") else f'."{x}"' for x in path[1:]
    )


# ==================================================================================================
# evidence tables (all optional; columns detected defensively)


def _col(frame: pl.DataFrame, *names: str) -> str | None:
    return next((n for n in names if n in frame.columns), None)


def observed_peaks(rates: pl.DataFrame | None) -> dict[str, tuple[float, str]]:
    """provider -> (peak delivered per hour, basis) from ``provider_rates_hourly``.

    With a source column the peak is the busiest single source in one hour (comparable with a
    per-queue PowerMTA limit); otherwise the whole provider in one hour.
    """
    if rates is None or rates.is_empty():
        return {}
    if "mta" in rates.columns:
        # the PowerMTA period is the evidence for PowerMTA's configured limits
        rates = rates.filter(pl.col("mta") == "pmta")
    prov = _col(rates, "provider")
    cnt = _col(rates, "delivered", "delivered_count", "deliveries", "messages", "count")
    if prov is None or cnt is None:
        return {}
    hour = _col(rates, "hour", "hour_start", "event_hour", "ts_hour", "bucket", "window_start")
    src = _col(rates, "source", "source_ip", "vmta")
    keys = [prov] + ([hour] if hour else []) + ([src] if src else [])
    per = (
        rates.group_by(keys).agg(pl.col(cnt).sum().alias("_n"))
        if hour
        else rates.select(*keys, pl.col(cnt).alias("_n"))
    )
    peaks = per.group_by(prov).agg(pl.col("_n").max().alias("_peak")).sort(prov)
    basis = "busiest source in one hour" if src else "all sources together in one hour"
    return {
        r[prov]: (float(r["_peak"]), basis) for r in peaks.iter_rows(named=True) if r["_peak"] is not None
    }


def rate_verdict(configured_per_hour: float, observed: float, *, far_factor: float = 10.0) -> str:
    if observed > configured_per_hour * 1.1:
        return "observed ABOVE configured: the logs show more than this limit allows (not in force, or counted per queue)"
    if observed >= configured_per_hour * 0.8:
        return "observed at the configured limit: it was binding"
    if configured_per_hour > observed * far_factor:
        return "configured FAR ABOVE observed: the limit never bound; consider a tighter start"
    return "observed within the configured limit"


@dataclass(frozen=True)
class WarmupRow:
    source_ip: str
    provider: str
    level: int  # sustained delivered/day
    first_seen: date | None
    trend: str


def warmup_rows(warmup: pl.DataFrame | None) -> list[WarmupRow]:
    if warmup is None or warmup.is_empty():
        return []
    ip = _col(warmup, "source_ip", "ip")
    prov = _col(warmup, "provider")
    lvl = _col(warmup, "sustained_level", "sustained_per_day", "level", "max_delivered_per_day")
    first = _col(warmup, "first_seen", "first_seen_day", "first_day")
    trend = _col(warmup, "trend")
    if ip is None or lvl is None:
        return []
    out = []
    for r in warmup.iter_rows(named=True):
        if r[ip] is None or r[lvl] is None:
            continue
        fs = r[first] if first else None
        if isinstance(fs, datetime):
            fs = fs.date()
        elif isinstance(fs, str):
            try:
                fs = date.fromisoformat(fs[:10])
            except ValueError:
                fs = None
        out.append(
            WarmupRow(
                str(r[ip]),
                str(r[prov]) if prov and r[prov] else "other",
                int(r[lvl]),
                fs,
                str(r[trend] or "") if trend else _trend_label(r.get("trend_ratio"), r.get("trend_slope")),
            )
        )
    return sorted(out, key=lambda w: (w.source_ip, w.provider))


def _trend_label(ratio: float | None, slope: float | None) -> str:
    """warmup_state has numbers, not words: rising = last 3 days >= 10% above the 4 before (or, when
    that ratio is undefined because the earlier days were empty, a positive 7-day slope)."""
    if ratio is not None:
        return "rising" if ratio >= 1.10 else ("falling" if ratio <= 0.90 else "flat")
    if slope is not None:
        return "rising" if slope > 0 else ("falling" if slope < 0 else "flat")
    return ""


def warmup_as_of(warmup: pl.DataFrame | None) -> date | None:
    """The day the warm-up state describes: its as-of/last-day column if it has one, else None."""
    if warmup is None or warmup.is_empty():
        return None
    col = _col(warmup, "as_of", "as_of_day", "last_day", "last_seen", "day", "date")
    if col is None:
        return None
    v = warmup.get_column(col).max()
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    try:
        return date.fromisoformat(str(v)[:10])
    except ValueError:
        return None


RISING_TRENDS = frozenset({"rising", "up", "increasing", "ramping", "growing"})


@dataclass(frozen=True)
class WarmupPolicy:
    """IP warm-up carried across (see schemas/docs/translation.md, "Warm-up")."""

    young_days: int = 30  # an IP first seen less than this many days ago is still warming
    step: float = 1.5  # tomorrow's per-provider allowance = sustained level x step
    max_burst: int = 1


def is_warming(w: WarmupRow, *, as_of: date, policy: WarmupPolicy) -> bool:
    young = w.first_seen is not None and (as_of - w.first_seen).days < policy.young_days
    return young or w.trend.strip().lower() in RISING_TRENDS


def signature_rules(signatures: pl.DataFrame | None) -> list[tuple[dict, str, int, list[tuple[str, int]]]]:
    """(catalogue entry, provider, total count, top templates) for each entry matched by the signatures seen."""
    if signatures is None or signatures.is_empty():
        return []
    tmpl = _col(signatures, "template", "signature", "pattern")
    prov = _col(signatures, "provider")
    cnt = _col(signatures, "count", "events", "n")
    if tmpl is None:
        return []
    catalogue = vocabulary().get("automation_signatures") or []
    hits: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for r in signatures.iter_rows(named=True):
        text = str(r[tmpl] or "")
        provider = str(r[prov]) if prov and r[prov] else "other"
        n = int(r[cnt]) if cnt and r[cnt] is not None else 1
        for entry in catalogue:
            if entry["provider"] not in ("any", provider):
                continue
            if re.search(entry["detect"], text, flags=re.IGNORECASE):
                hits[(entry["id"], provider)].append((text, n))
                break
    by_id = {e["id"]: e for e in catalogue}
    out = []
    for (eid, provider), rows in sorted(hits.items()):
        rows.sort(key=lambda t: (-t[1], t[0]))
        out.append((by_id[eid], provider, sum(n for _, n in rows), rows[:3]))
    return out


def tenant_pool_hints(
    events: pl.LazyFrame | None, *, min_share: float = 0.95, min_events: int = 1
) -> pl.DataFrame:
    """tenant -> pool where one pool carries at least ``min_share`` of the tenant's sending events.

    The pool of a PowerMTA row is ``pool`` (vmtaPool), else its VMTA (a VMTA selected directly acts as
    a pool of one, and the translation defines such pools).
    """
    schema = {
        "tenant": pl.String(),
        "pool": pl.String(),
        "events": pl.Int64(),
        "total": pl.Int64(),
        "share": pl.Float64(),
    }
    if events is None:
        return pl.DataFrame(schema=schema)
    ev = events.select("tenant", "pool", "source", "event_type").filter(
        pl.col("tenant").is_not_null()
        & (pl.col("tenant") != "")
        & pl.col("event_type").is_in(["delivered", "deferred", "bounced", "expired"])
    )
    per = (
        ev.with_columns(
            pl.coalesce(pl.when(pl.col("pool") != "").then(pl.col("pool")), pl.col("source")).alias("pool")
        )
        .filter(pl.col("pool").is_not_null())
        .group_by("tenant", "pool")
        .agg(pl.len().cast(pl.Int64).alias("events"))
        .with_columns(pl.col("events").sum().over("tenant").alias("total"))
        .with_columns((pl.col("events") / pl.col("total")).alias("share"))
        .filter((pl.col("share") >= min_share) & (pl.col("total") >= min_events))
        .sort("tenant", "pool")
        .collect()
    )
    return per.select(list(schema)).cast(schema)


def direct_vmta_use(events: pl.LazyFrame | None) -> set[tuple[str, str]]:
    """(node, vmta) pairs seen sending with no pool: selected directly, so they need a pool of their own."""
    if events is None:
        return set()
    df = (
        events.filter(
            (pl.col("mta") == "pmta")
            & pl.col("source").is_not_null()
            & (pl.col("pool").is_null() | (pl.col("pool") == ""))
        )
        .select("node", "source")
        .unique()
        .collect()
    )
    return {(r[0], r[1]) for r in df.iter_rows()}


# ==================================================================================================
# translation


@dataclass
class KumoTranslation:
    files: dict[str, str]  # file name -> TOML text
    report: pl.DataFrame
    report_md: str
    report_json: str
    errors: dict[str, list[str]]  # file name -> validation errors (empty when all documented)


@dataclass
class _Source:
    name: str
    node: str
    vmta: str | None
    ip: str | None
    ehlo: str | None
    loc: Loc


def _lcm(values: list[int]) -> int:
    out = 1
    for v in values:
        out = out * v // math.gcd(out, v)
    return out


class _Translator:
    def __init__(
        self,
        *,
        configs: list[PmtaConfig],
        pmap: ProviderMap,
        warmup: list[WarmupRow],
        peaks: dict[str, tuple[float, str]],
        signatures: list,
        tenant_hints: pl.DataFrame,
        direct: set[tuple[str, str]],
        as_of: date | None,
        policy: WarmupPolicy,
    ) -> None:
        self.configs = configs
        self.pmap = pmap
        self.warmup = warmup
        self.peaks = peaks
        self.signatures = signatures
        self.tenant_hints = tenant_hints
        self.direct = direct
        self.as_of = as_of
        self.policy = policy
        self.report = Report()
        self.sources = TomlPlan()
        self.shaping = TomlPlan()
        self.queue = TomlPlan()
        self.dkim = TomlPlan()
        self.src_by_vmta: dict[tuple[str, str], list[_Source]] = {}
        self.src_defs: dict[str, _Source] = {}
        self.provider_paths: list[tuple[str, ...]] = []  # every provider block, in emission order
        self.map_provider_paths: list[tuple[str, ...]] = []  # provider blocks from schemas/providers.yaml
        self.pool_names: set[str] = set()
        self.owners: dict[int, dict[tuple[tuple[str, ...], str], str]] = {}
        self.node = ""
        self.configured: frozenset[str] = frozenset()

    # -------------------------------------------------------------------------------- sources
    def _source_name(self, node: str, base: str) -> str:
        if len(self.configs) > 1 and any(
            base in c.vmtas or base in c.pools for c in self.configs if c.node != node
        ):
            return f"{node}.{base}"
        return base

    def build_sources(self) -> None:
        for cfg in self.configs:
            self.report.add_config(cfg)
        for cfg in self.configs:
            for vname, v in cfg.vmtas.items():
                hosts = v.source_hosts or cfg.global_source_hosts
                inherited = not v.source_hosts and bool(cfg.global_source_hosts)
                usable = [h for h in hosts if h.ip]
                for h in hosts:
                    if h.ip is None:
                        self.report.mark(
                            cfg.node,
                            h.loc,
                            "smtp-source-host",
                            "not_translated",
                            note=f"range {h.spec} too large to expand; list its addresses",
                        )
                base = self._source_name(cfg.node, vname)
                srcs = []
                if not usable:
                    srcs.append(_Source(base, cfg.node, vname, None, cfg.host_name, v.loc))
                for h in usable:
                    name = base if len(usable) == 1 else f"{base}-{h.ip}"
                    srcs.append(_Source(name, cfg.node, vname, h.ip, h.hostname or cfg.host_name, h.loc))
                    if not inherited:
                        self.report.mark(
                            cfg.node, h.loc, "smtp-source-host", "translated", f'sources.toml:source."{name}"'
                        )
                self.src_by_vmta[(cfg.node, vname)] = srcs
                self.report.mark(
                    cfg.node,
                    v.loc,
                    "<virtual-mta>",
                    "translated",
                    "sources.toml:" + ", ".join(f'source."{s.name}"' for s in srcs),
                )
                for s in srcs:
                    self.src_defs[s.name] = s
                    path = ("source", s.name)
                    if s.ip:
                        self.sources.set(path, "source_address", s.ip)
                    if s.ehlo:
                        self.sources.set(path, "ehlo_domain", s.ehlo)
                    self.sources.table(*path)
                    origin = f"PowerMTA node {cfg.node}, virtual-mta {vname} ({s.loc})"
                    if inherited:
                        origin += ", address from the global smtp-source-host"
                    self.sources.note(path, origin)
                    if not s.ip:
                        self.sources.note(path, "no smtp-source-host: sends from the host's default address")
            if cfg.global_source_hosts:
                for h in cfg.global_source_hosts:
                    if h.ip:
                        self.report.mark(
                            cfg.node,
                            h.loc,
                            "smtp-source-host",
                            "translated",
                            f'sources.toml:pool."{self._source_name(cfg.node, "pmta-global")}"',
                        )
                gsrcs = [
                    _Source(
                        self._source_name(cfg.node, f"global-{h.ip}"),
                        cfg.node,
                        None,
                        h.ip,
                        h.hostname or cfg.host_name,
                        h.loc,
                    )
                    for h in cfg.global_source_hosts
                    if h.ip
                ]
                pool = self._source_name(cfg.node, "pmta-global")
                for s in gsrcs:
                    self.src_defs[s.name] = s
                    self.sources.set(("source", s.name), "source_address", s.ip)
                    if s.ehlo:
                        self.sources.set(("source", s.name), "ehlo_domain", s.ehlo)
                    self.sources.note(
                        ("source", s.name), f"PowerMTA node {cfg.node}, global smtp-source-host ({s.loc})"
                    )
                    self.sources.set(("pool", pool, s.name), "weight", 1)
                if gsrcs:
                    self.pool_names.add(pool)
                    self.sources.note(
                        ("pool", pool),
                        "traffic sent without a VirtualMTA (global smtp-source-host, round robin)",
                    )
                    self.node = cfg.node
                    self._put(self.queue, ("queue", "default"), "egress_pool", pool)
                    self.queue.note(
                        ("queue", "default"),
                        f"PowerMTA sends mail without a VirtualMTA from the global smtp-source-host addresses (pool {pool})",
                    )
            if cfg.host_name:
                for d in cfg.global_directives:
                    if d.name == "host-name":
                        self.report.mark(
                            cfg.node,
                            d.loc,
                            "host-name",
                            "translated",
                            "sources.toml:ehlo_domain",
                            "default EHLO of sources without their own host name",
                        )
        for cfg in self.configs:
            self._pools(cfg)

    def _pools(self, cfg: PmtaConfig) -> None:
        for p in cfg.pools.values():
            pname = self._source_name(cfg.node, p.name)
            members = [(m, loc) for m, loc in p.members if (cfg.node, m) in self.src_by_vmta]
            for m, loc in p.members:
                if (cfg.node, m) not in self.src_by_vmta:
                    self.report.mark(
                        cfg.node,
                        loc,
                        "virtual-mta",
                        "not_translated",
                        note=f"{m} is not a defined virtual-mta",
                    )
            if not members:
                self.report.mark(
                    cfg.node, p.loc, "<virtual-mta-pool>", "not_translated", note="no defined members"
                )
                continue
            # PowerMTA round-robins over member VMTAs, then over each VMTA's addresses: a VMTA with k
            # addresses gives each address 1/k of its turn, so weights are lcm/k (whole numbers).
            counts = [len(self.src_by_vmta[(cfg.node, m)]) for m, _ in members]
            lcm = _lcm(counts)
            self.pool_names.add(pname)
            self.sources.note(
                ("pool", pname), f"PowerMTA virtual-mta-pool {p.name} on node {cfg.node} ({p.loc})"
            )
            for (m, loc), k in zip(members, counts, strict=True):
                for s in self.src_by_vmta[(cfg.node, m)]:
                    w = self.sources.get(("pool", pname, s.name), "weight") or 0
                    self.sources.set(("pool", pname, s.name), "weight", w + lcm // k)
                self.report.mark(cfg.node, loc, "virtual-mta", "translated", f'sources.toml:pool."{pname}"')
            self.report.mark(
                cfg.node, p.loc, "<virtual-mta-pool>", "translated", f'sources.toml:pool."{pname}"'
            )
        for vname in cfg.vmtas:
            in_pool = bool(cfg.pools_of(vname))
            if in_pool and (cfg.node, vname) not in self.direct:
                continue
            pname = self._source_name(cfg.node, vname)
            if vname in cfg.pools:
                continue
            self.pool_names.add(pname)
            why = "selected directly in the logs" if in_pool else "in no virtual-mta-pool"
            self.sources.note(
                ("pool", pname),
                f"pool of one VirtualMTA ({vname}, {why}): PowerMTA can select a VMTA by name",
            )
            for s in self.src_by_vmta[(cfg.node, vname)]:
                self.sources.set(("pool", pname, s.name), "weight", 1)

    # -------------------------------------------------------------------------------- shaping
    def build_shaping(self) -> None:
        self.shaping.header = [
            "mtashift: KumoMTA traffic shaping translated from the PowerMTA configuration.",
            "Load after the shipped defaults, e.g. shaping:setup_with_automation { extra_files = {",
            "  '/opt/kumomta/share/policy-extras/shaping.toml', '/opt/kumomta/etc/policy/shaping.toml' } }.",
            "Values come from PowerMTA's configured intent; comments carry the evidence from the logs.",
            "Rules: schemas/docs/translation.md in the mtashift repository.",
        ]
        self.shaping.table("default")
        self._provider_blocks()
        for cfg in self.configs:
            self._node_domains(cfg)
        self._observed_rates()
        self._signature_automation()
        self._warmup()

    def _provider_blocks(self) -> None:
        by_provider: dict[str, list[str]] = defaultdict(list)
        for suffix, provider in self.pmap.mx_suffixes:
            by_provider[provider].append(suffix)
        for provider in PROVIDERS:
            if provider not in by_provider:
                continue
            path = ("provider", provider)
            self.shaping.set(path, "match", [Inline(MXSuffix=s) for s in sorted(by_provider[provider])])
            self.shaping.note(path, f"provider '{provider}' from schemas/providers.yaml (MX suffix match)")
            self.provider_paths.append(path)
            self.map_provider_paths.append(path)

    def _put(self, plan: TomlPlan, path: tuple[str, ...], key: str, value: Any) -> bool:
        """Set a value; across nodes the first (by node name) wins and a disagreement is noted in the file."""
        owners = self.owners.setdefault(id(plan), {})
        prev = owners.get((path, key))
        if prev is not None and prev != self.node and plan.get(path, key) != value:
            plan.note(
                path,
                f"node {self.node} configures {key} = {value!r}; kept {plan.get(path, key)!r} from node {prev}",
            )
            return False
        plan.set(path, key, value)
        owners[(path, key)] = self.node
        return True

    def _sources_for_view(self, node: str, vmta: str | None) -> list[str]:
        if vmta is None:
            return []
        return [s.name for s in self.src_by_vmta.get((node, vmta), [])]

    def _emit_path(
        self,
        cfg: PmtaConfig,
        path: tuple[str, ...],
        ps: PathSettings,
        *,
        allow_mx_rollup: bool,
    ) -> None:
        for opt, value in ps.values.items():
            if opt == "mx_rollup" and not allow_mx_rollup:
                for s in ps.origins[opt]:
                    self.report.mark(
                        cfg.node,
                        s.loc,
                        s.directive,
                        "not_translated",
                        note="mx_rollup applies to named domain blocks only",
                    )
                continue
            self._put(self.shaping, path, opt, value)
            for s in ps.origins[opt]:
                self.report.mark(
                    cfg.node,
                    s.loc,
                    s.directive,
                    "translated",
                    f"shaping.toml:{_path_label(path)}.{opt}",
                    ps.notes.get(opt),
                )
            if opt in ps.notes:
                self.shaping.note(
                    path, f"{opt}: {ps.notes[opt]} ({', '.join(str(s.loc) for s in ps.origins[opt])})"
                )
        for s, why in ps.failed:
            self.report.mark(cfg.node, s.loc, s.directive, "not_translated", note=why)
        default_vals = self.shaping.data.get("default", {})
        for opt, s in ps.unlimited.items():
            if path != ("default",) and opt in default_vals:
                self.report.mark(
                    cfg.node,
                    s.loc,
                    s.directive,
                    "not_translated",
                    note=f"'{s.value}' lifts an inherited limit; KumoMTA cannot unset {opt} from [default]",
                )
                self.shaping.note(
                    path,
                    f"PowerMTA sets {s.directive} {s.value} here ({s.loc}); the [default] {opt} still applies",
                )
            else:
                self.report.mark(
                    cfg.node, s.loc, s.directive, "unnecessary", note="unlimited: nothing to set"
                )

    def _node_domains(self, cfg: PmtaConfig) -> None:
        self.node = cfg.node
        self.configured = frozenset(b.text for blk in cfg.all_domain_blocks() for b in blk.patterns)
        patterns = sorted(
            {p.text: p for v in [None, *cfg.vmtas] for p in view_patterns(cfg, v)}.values(),
            key=lambda p: (p.specificity, p.text),
        )
        # global view first: ["default"], domain blocks, pattern providers, queue.toml
        for p in patterns:
            if p.kind == "other":
                for s in effective_settings(cfg, None, p).values():
                    self.report.mark(
                        cfg.node,
                        s.loc,
                        s.directive,
                        "not_translated",
                        note=f"pattern {p.text!r} has no KumoMTA form",
                    )
                continue
            eff = effective_settings(cfg, None, p)
            star = p.kind == "all"
            ps = path_settings(eff, skip_star=not star)
            for path in shaping_targets(p, self.configured):
                if path[0] == "provider":
                    self._pattern_provider(path, p)
                self._emit_path(cfg, path, ps, allow_mx_rollup=path[0] not in ("default", "provider"))
            qs = queue_settings(eff, skip_star=not star)
            for qkey in queue_targets(p):
                for opt, value in qs.values.items():
                    self._put(self.queue, ("queue", qkey), opt, value)
                    for s in qs.origins[opt]:
                        self.report.mark(
                            cfg.node,
                            s.loc,
                            s.directive,
                            "translated",
                            f'queue.toml:queue."{qkey}".{opt}',
                            qs.notes.get(opt),
                        )
            for s, why in qs.failed:
                self.report.mark(cfg.node, s.loc, s.directive, "not_translated", note=why)
            self._pattern_lists(cfg, p, eff, None)
            self._source_ip_rules(cfg, p, eff, None)
        # VMTA views: per-source overrides where the VMTA's effective value differs from the global one
        cache: dict[str, tuple[PathSettings, PathSettings]] = {}

        def global_view(p: DomainPattern) -> tuple[PathSettings, PathSettings]:
            if p.text not in cache:
                eff = effective_settings(cfg, None, p)
                cache[p.text] = (path_settings(eff, skip_star=False), queue_settings(eff, skip_star=False))
            return cache[p.text]

        for vname in cfg.vmtas:
            srcs = self._sources_for_view(cfg.node, vname)
            for p in view_patterns(cfg, vname):
                if p.kind == "other":
                    continue
                base, qbase = global_view(p)
                veff = effective_settings(cfg, vname, p)
                mine = path_settings(veff, skip_star=False)
                diff = {k: v for k, v in mine.values.items() if base.values.get(k) != v and k != "mx_rollup"}
                for opt, s in mine.unlimited.items():
                    if opt in base.values and s.scope != "global":
                        self.report.mark(
                            cfg.node,
                            s.loc,
                            s.directive,
                            "not_translated",
                            note=f"'{s.value}' lifts an inherited limit for {vname}; not expressible per source",
                        )
                for s, why in mine.failed:
                    if s.scope != "global":
                        self.report.mark(cfg.node, s.loc, s.directive, "not_translated", note=why)
                targets = (
                    list(self.map_provider_paths) if p.kind == "all" else shaping_targets(p, self.configured)
                )
                for opt, value in sorted(diff.items()):
                    for path in targets:
                        if path == ("default",):
                            continue
                        for src in srcs:
                            self._put(self.shaping, (*path, "sources", src), opt, value)
                    label = ", ".join(_path_label(t) for t in targets if t != ("default",))
                    for s in mine.origins[opt]:
                        self.report.mark(
                            cfg.node,
                            s.loc,
                            s.directive,
                            "translated",
                            f"shaping.toml:{label}.sources.<{vname} sources>.{opt}",
                            "per-source override"
                            + (
                                "; KumoMTA applies per-source settings only under domain/provider blocks, "
                                "so destinations outside the provider map keep [default]"
                                if p.kind == "all"
                                else ""
                            ),
                        )
                qmine = queue_settings(veff, skip_star=False)
                for opt, value in qmine.values.items():
                    if qbase.values.get(opt) != value:
                        for s in qmine.origins[opt]:
                            self.report.mark(
                                cfg.node,
                                s.loc,
                                s.directive,
                                "not_translated",
                                note=f"per-VirtualMTA {s.directive}: KumoMTA queues are per domain/tenant/campaign, not per source",
                            )
                self._pattern_lists(cfg, p, veff, vname)
                self._source_ip_rules(cfg, p, veff, vname)

    def _pattern_provider(self, path: tuple[str, ...], p: DomainPattern) -> None:
        if self.shaping.get(path, "match") is None:
            self.shaping.set(path, "match", [Inline(DomainSuffix=f".{p.suffix}")])
            what = "subdomains of" if p.kind == "subdomains" else "subdomains (the apex has its own block) of"
            self.shaping.note(path, f"PowerMTA <domain {p.text}>: {what} {p.suffix}")
            self.provider_paths.append(path)

    def _source_ip_rules(self, cfg: PmtaConfig, p: DomainPattern, eff: dict, vmta: str | None) -> None:
        for (name, qual), s in eff.items():
            if name not in SOURCE_IP_MAP or not qual:
                continue
            if vmta is not None and s.scope == "global":
                continue
            opt, kind = SOURCE_IP_MAP[name]
            c = convert_value(kind, s.value)
            try:
                net = ipaddress.ip_network(normalise_cidr(qual), strict=False)
            except ValueError:
                self.report.mark(cfg.node, s.loc, name, "not_translated", note=f"not a CIDR: {qual!r}")
                continue
            if not c.ok or c.value is None:
                self.report.mark(
                    cfg.node, s.loc, name, "not_translated" if not c.ok else "unnecessary", note=c.note
                )
                continue
            cands = [
                x
                for x in self.src_defs.values()
                if x.node == cfg.node
                and x.ip
                and ipaddress.ip_address(x.ip) in net
                and (vmta is None or x.vmta == vmta)
            ]
            if not cands:
                self.report.mark(cfg.node, s.loc, name, "not_translated", note=f"no source address in {qual}")
                continue
            targets = (
                shaping_targets(p, self.configured) if p.kind != "all" else list(self.map_provider_paths)
            )
            for path in targets:
                if path == ("default",):
                    continue
                for x in cands:
                    self._put(self.shaping, (*path, "sources", x.name), opt, c.value)
            self.report.mark(
                cfg.node,
                s.loc,
                name,
                "translated",
                f"shaping.toml:<{p.text} blocks>.sources.<sources in {qual}>.{opt}",
                "per-source override" + ("; only under provider blocks for '*'" if p.kind == "all" else ""),
            )

    # -------------------------------------------------------------------------------- automation
    def _automation_path(self, p: DomainPattern) -> tuple[str, ...] | None:
        targets = shaping_targets(p, self.configured)
        return targets[0] if targets else None

    def _pattern_lists(self, cfg: PmtaConfig, p: DomainPattern, eff: dict, vmta: str | None) -> None:
        ref = eff.get(("smtp-pattern-list", ""))
        # rules go where the list is attached: blocks that merely inherit it are covered by that block
        # (["default"] automation applies to every destination)
        if ref is None or ref.source_pattern.text != p.text or (vmta is not None and ref.scope == "global"):
            return
        name = unquote(ref.value)
        plist = cfg.pattern_lists.get(name)
        if plist is None:
            self.report.mark(
                cfg.node,
                ref.loc,
                "smtp-pattern-list",
                "not_translated",
                note=f"no <smtp-pattern-list {name}>",
            )
            return
        path = self._automation_path(p)
        if path is None:
            return
        emitted = 0
        for rule in plist.rules:
            auto, why, used = self._reply_rule(rule, eff)
            if auto is None:
                self.report.mark(cfg.node, rule.loc, "reply", "not_translated", note=why)
                continue
            auto[COMMENTS_KEY] = [
                f"PowerMTA {plist.name} ({rule.loc}): reply /{rule.regex}/ {','.join(rule.actions)}"
            ]
            if vmta is not None:
                auto[COMMENTS_KEY].append(
                    f"attached to {vmta} in PowerMTA; KumoMTA rules apply to every source (actions act on the triggering source)"
                )
            if why:
                auto[COMMENTS_KEY].append(why)
            self.shaping.append(path, "automation", auto)
            emitted += 1
            self.report.mark(
                cfg.node,
                rule.loc,
                "reply",
                "translated",
                f"shaping.toml:{_path_label(path)}.automation",
                why or None,
            )
            for s in used:
                self.report.mark(
                    cfg.node,
                    s.loc,
                    s.directive,
                    "translated",
                    f"shaping.toml:{_path_label(path)}.automation",
                    "SetConfig value of a backoff rule",
                )
        self.report.mark(
            cfg.node,
            ref.loc,
            "smtp-pattern-list",
            "translated" if emitted else "not_translated",
            f"shaping.toml:{_path_label(path)}.automation" if emitted else None,
            None if emitted else "none of its rules has a KumoMTA action",
        )
        if plist.loc:
            self.report.mark(
                cfg.node,
                plist.loc,
                "<smtp-pattern-list>",
                "translated" if emitted else "not_translated",
                f"shaping.toml:{_path_label(path)}.automation" if emitted else None,
            )

    def _reply_rule(self, rule, eff) -> tuple[dict | None, str, list[EffectiveSetting]]:
        acts = {a.split("=")[0].lower(): (a.split("=", 1)[1] if "=" in a else "") for a in rule.actions}
        regex = rule.regex if "(?-i)" in rule.regex else f"(?i){rule.regex}"
        try:
            re.compile(regex)
            note = ""
        except re.error:
            note = "regex not checked (PCRE syntax outside Python's re)"

        def dur(*names: str) -> int | None:
            for n in names:
                if n == "reenable-after" and acts.get("reenable-after"):
                    v = parse_interval(acts["reenable-after"])
                else:
                    s = eff.get((n, ""))
                    v = parse_interval(s.value.split(",")[0]) if s is not None else None
                if v:
                    return v
            return None

        used: list[EffectiveSetting] = []
        if "disable-source-ip" in acts or "defer-queue" in acts:
            secs = (
                dur("reenable-after", "reenable-source-ip-after", "backoff-retry-after", "retry-after")
                or 3600
            )
            return {"regex": regex, "action": "Suspend", "duration": kumo_duration(secs)}, note, used
        if "bounce-queue" in acts:
            n = "bounces the queued mail for the destination: review before enabling"
            return (
                {"regex": regex, "action": "Bounce", "duration": "5 minutes"},
                "; ".join(x for x in (note, n) if x),
                used,
            )
        if acts.get("mode") == "backoff":
            actions = []
            for d, (opt, kind) in BACKOFF_MAP.items():
                s = eff.get((d, ""))
                if s is None:
                    continue
                c = convert_value(kind, s.value)
                if c.ok and c.value is not None:
                    actions.append(Inline(SetConfig=Inline(name=opt, value=c.value)))
                    used.append(s)
            secs = dur("backoff-to-normal-after") or 3600
            if actions:
                return (
                    {
                        "regex": regex,
                        "action": actions if len(actions) > 1 else actions[0],
                        "duration": kumo_duration(secs),
                    },
                    note,
                    used,
                )
            secs = dur("backoff-retry-after") or 3600
            n = "backoff without backoff-* limits: suspended for the backoff retry interval"
            return (
                {"regex": regex, "action": "Suspend", "duration": kumo_duration(secs)},
                "; ".join(x for x in (note, n) if x),
                used,
            )
        if "bounce-rcpt" in acts:
            return None, "bounce-rcpt: KumoMTA has no per-recipient bounce action for transient replies", used
        if "skip-mx" in acts:
            return None, "skip-mx: KumoMTA moves to the next MX on connection-level failures by itself", used
        return None, f"actions {','.join(rule.actions) or '(none)'} have no KumoMTA equivalent", used

    def _signature_automation(self) -> None:
        for entry, provider, total, top in self.signatures:
            path = ("provider", provider) if ("provider", provider) in self.provider_paths else ("default",)
            rule: dict[str, Any] = {"regex": entry["regex"]}
            act = entry["action"]
            if isinstance(act, dict):
                ((k, v),) = act.items()
                rule["action"] = Inline({k: Inline(v)})
            else:
                rule["action"] = act
            rule["duration"] = entry["duration"]
            if entry.get("trigger"):
                trig = entry["trigger"]
                rule["trigger"] = Inline(trig) if isinstance(trig, dict) else trig
            comments = [
                f"{entry['id']}: {entry.get('note', '')}",
                f"evidence: {total:,} deferrals at {provider} matching this signature in the logs",
            ]
            comments += [f"  e.g. ({n:,}x) {safe_comment(t, 140)}" for t, n in top]
            rule[COMMENTS_KEY] = comments
            self.shaping.append(path, "automation", rule)

    # -------------------------------------------------------------------------------- evidence
    def _observed_rates(self) -> None:
        if not self.peaks:
            return
        for key, block in list(self.shaping.data.items()):
            if key in ("default",):
                continue
            if key == "provider":
                for pname, pblock in block.items():
                    provider = pname if pname in self.peaks else self._provider_of_pattern_provider(pname)
                    self._rate_comment(("provider", pname), pblock, provider)
                continue
            self._rate_comment((key,), block, provider_for_domain(key, pmap=self.pmap))

    def _provider_of_pattern_provider(self, pname: str) -> str | None:
        if not pname.startswith("pmta "):
            return None
        suffix = pname.split(".", 1)[-1] if pname.startswith("pmta *.") else pname.removeprefix("pmta [*.]")
        return provider_for_domain(suffix, pmap=self.pmap)

    def _rate_comment(self, path: tuple[str, ...], block: dict, provider: str | None) -> None:
        if not provider or provider not in self.peaks:
            return
        observed, basis = self.peaks[provider]
        rate = block.get("max_message_rate")
        if not isinstance(rate, str):
            self.shaping.note(
                path,
                f"observed peak at {provider}: {observed:,.0f} delivered/hour ({basis}); no max_message_rate configured",
            )
            return
        rc = convert_rate(rate)
        if rc.per_hour is None:
            return
        self.shaping.note(
            path,
            f"evidence: configured max_message_rate {rate} = {rc.per_hour:,.0f}/hour per queue; observed peak at "
            f"{provider} {observed:,.0f} delivered/hour ({basis}): {rate_verdict(rc.per_hour, observed)}",
        )

    def _warmup(self) -> None:
        if not self.warmup:
            return
        as_of = self.as_of or max((w.first_seen for w in self.warmup if w.first_seen), default=None)
        by_ip: dict[str, list[_Source]] = defaultdict(list)
        for s in self.src_defs.values():
            if s.ip:
                by_ip[s.ip].append(s)
        per_ip: dict[str, list[WarmupRow]] = defaultdict(list)
        for w in self.warmup:
            per_ip[w.source_ip].append(w)
        for ip, rows in sorted(per_ip.items()):
            srcs = sorted(by_ip.get(ip, []), key=lambda s: s.name)
            warming = as_of is not None and any(is_warming(w, as_of=as_of, policy=self.policy) for w in rows)
            if as_of is None:
                warming = any(w.trend.strip().lower() in RISING_TRENDS for w in rows)
            summary = ", ".join(f"{w.provider} {w.level:,}/day" for w in rows)
            first = min((w.first_seen for w in rows if w.first_seen), default=None)
            for s in srcs:
                state = "WARMING" if warming else "warmed"
                self.sources.note(
                    ("source", s.name),
                    f"warm-up: {state}; sustained (max delivered/day, last 7 days): {summary}; first seen {first}",
                )
            if not srcs:
                continue
            if not warming:
                continue
            for w in rows:
                if w.level <= 0:
                    continue
                cap = math.ceil(w.level * self.policy.step / len(srcs))
                path_p = ("provider", w.provider)
                if path_p not in self.provider_paths:
                    for s in srcs:
                        self.sources.note(
                            ("source", s.name),
                            f"warm-up: {w.provider} traffic cannot be capped per source in shaping.toml (no provider block)",
                        )
                    continue
                for s in srcs:
                    self.shaping.set(
                        (*path_p, "sources", s.name),
                        "provider_source_selection_rate",
                        f"{cap}/d,max_burst={self.policy.max_burst}",
                    )
                self.shaping.note(
                    path_p,
                    f"warm-up caps: per-source provider_source_selection_rate = sustained level x {self.policy.step} (IPs first seen < {self.policy.young_days} days ago or with a rising trend)",
                )

    # -------------------------------------------------------------------------------- queue / dkim
    def build_queue(self) -> None:
        self.queue.header = [
            "mtashift: KumoMTA queue.toml (policy-extras.queue) translated from PowerMTA.",
            "[queue.X]: retry-after / bounce-after / route of <domain X>; [tenant.X]: egress pools the logs show per tenant.",
        ]
        for r in self.tenant_hints.iter_rows(named=True):
            pool = r["pool"]
            if pool not in self.pool_names:
                self.queue.header.append(
                    f"tenant {r['tenant']} sends through {pool}, which is not a translated pool"
                )
                continue
            path = ("tenant", r["tenant"])
            self.queue.set(path, "egress_pool", pool)
            self.queue.note(
                path,
                f"evidence: {r['events']:,} of {r['total']:,} sending events of this tenant went through {pool} ({r['share']:.1%})",
            )

    def build_dkim(self) -> None:
        self.dkim.header = [
            "mtashift: KumoMTA dkim_data.toml (policy-extras.dkim_sign) from PowerMTA domain-key lines.",
            "Key files are referenced by the PowerMTA path; copy them to the KumoMTA host (mtashift never reads key material).",
        ]
        for cfg in self.configs:
            for k in cfg.domain_keys:
                if k.domain == "*":
                    self.report.mark(
                        cfg.node,
                        k.loc,
                        "domain-key",
                        "not_translated",
                        note="a '*' key signs every sender domain; dkim_data.toml needs one [domain] block per signing domain",
                    )
                    continue
                path = ("domain", k.domain)
                existing = self.dkim.get(path, "selector")
                if existing is None:
                    self.dkim.set(path, "selector", k.selector)
                    self.dkim.set(path, "filename", k.path)
                    self.dkim.note(
                        path,
                        f"PowerMTA node {cfg.node}, {k.scope}{' ' + k.scope_name if k.scope_name else ''} ({k.loc})",
                    )
                    note = (
                        None
                        if k.scope == "global"
                        else f"scoped to {k.scope} {k.scope_name} in PowerMTA; KumoMTA signs by sender domain for every source"
                    )
                    self.report.mark(
                        cfg.node,
                        k.loc,
                        "domain-key",
                        "translated",
                        f'dkim_data.toml:domain."{k.domain}"',
                        note,
                    )
                elif existing == k.selector and self.dkim.get(path, "filename") == k.path:
                    self.report.mark(
                        cfg.node,
                        k.loc,
                        "domain-key",
                        "translated",
                        f'dkim_data.toml:domain."{k.domain}"',
                        "same key as another scope/node",
                    )
                else:
                    self.dkim.note(
                        path, f"also configured: selector {k.selector} ({k.loc}, node {cfg.node}) — not used"
                    )
                    self.report.mark(
                        cfg.node,
                        k.loc,
                        "domain-key",
                        "not_translated",
                        note="a second selector for the domain: dkim_data.toml holds one per [domain] block; add a [signature] block to double-sign",
                    )

    def render(self) -> KumoTranslation:
        self.sources.header = [
            "mtashift: KumoMTA sources.toml (policy-extras.sources) translated from PowerMTA VirtualMTAs and pools.",
            "One source per VirtualMTA address; a VirtualMTA with several addresses becomes several sources.",
        ]
        files = {
            "sources.toml": self.sources.to_toml(),
            "shaping.toml": self.shaping.to_toml(),
            "queue.toml": self.queue.to_toml(),
            "dkim_data.toml": self.dkim.to_toml(),
        }
        errors = {name: validate_kumo_text(name, text) for name, text in files.items()}
        report = self.report.frame()
        return KumoTranslation(
            files=files,
            report=report,
            report_md=report_markdown(report, errors),
            report_json=report_json(report, errors),
            errors=errors,
        )


def translate_estate(
    *,
    configs: list[PmtaConfig],
    warmup: pl.DataFrame | None = None,
    provider_rates: pl.DataFrame | None = None,
    deferral_signatures: pl.DataFrame | None = None,
    events: pl.LazyFrame | None = None,
    pmap: ProviderMap | None = None,
    as_of: date | None = None,
    warmup_policy: WarmupPolicy | None = None,
    tenant_min_share: float = 0.95,
) -> KumoTranslation:
    """Translate a parsed PowerMTA estate into the four KumoMTA helper files and the report."""
    configs = sorted(configs, key=lambda c: c.node)
    t = _Translator(
        configs=configs,
        pmap=pmap or load_provider_map(),
        warmup=warmup_rows(warmup),
        peaks=observed_peaks(provider_rates),
        signatures=signature_rules(deferral_signatures),
        tenant_hints=tenant_pool_hints(events, min_share=tenant_min_share),
        direct=direct_vmta_use(events),
        as_of=as_of or warmup_as_of(warmup),
        policy=warmup_policy or WarmupPolicy(),
    )
    t.build_sources()
    t.build_shaping()
    t.build_queue()
    t.build_dkim()
    return t.render()


# ==================================================================================================
# report rendering


def _md_cell(value: Any) -> str:
    text = "" if value is None else safe_comment(str(value), limit=200)
    return (
        text.replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("`", "'")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )


def report_markdown(report: pl.DataFrame, errors: dict[str, list[str]]) -> str:
    lines = ["# PowerMTA -> KumoMTA translation report", ""]
    counts = {s: report.filter(pl.col("status") == s).height for s in STATUSES}
    lines += [
        f"{report.height} PowerMTA directives and blocks read: "
        + ", ".join(f"{counts[s]} {s.replace('_', ' ')}" for s in STATUSES)
        + ".",
        "",
    ]
    bad = {k: v for k, v in errors.items() if v}
    lines += ["## Generated files", ""]
    for name in KUMO_FILES:
        lines.append(
            f"- `{name}`: "
            + ("uses documented option names only" if name not in bad else f"{len(bad[name])} problems")
        )
        lines += [f"  - {_md_cell(e)}" for e in bad.get(name, [])[:20]]
    lines.append("")
    titles = {
        "not_translated": "Not translated (needs a decision)",
        "translated": "Translated",
        "unnecessary": "Unnecessary in KumoMTA",
    }
    for status in ("not_translated", "translated", "unnecessary"):
        part = report.filter(pl.col("status") == status)
        lines += [f"## {titles[status]} ({part.height})", ""]
        if part.is_empty():
            lines += ["(none)", ""]
            continue
        lines += [
            "| node | where | scope | directive | value | target | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in part.iter_rows(named=True):
            target = " ".join(x for x in (r["target_file"], r["target_key"]) if x)
            lines.append(
                f"| {_md_cell(r['node'])} | {_md_cell(r['file'])}:{r['line']} | {_md_cell(r['scope'])} | "
                f"{_md_cell(r['directive'])} | {_md_cell(r['value'])} | {_md_cell(target)} | {_md_cell(r['note'])} |"
            )
        lines.append("")
    return "\n".join(lines)


def report_json(report: pl.DataFrame, errors: dict[str, list[str]]) -> str:
    doc = {
        "summary": {s: report.filter(pl.col("status") == s).height for s in STATUSES},
        "validation_errors": errors,
        "rows": report.to_dicts(),
    }
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
