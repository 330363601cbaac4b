"""Configuration files: YAML policies in schemas/ with estate overrides deep-merged over them."""

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any] | None) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in (over or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml(path: str | Path | None) -> dict[str, Any]:
    """A YAML mapping from ``path``; ``{}`` when the file is absent or empty.

    A file that exists but is not a YAML mapping raises ValueError: a plan or policy is
    configuration, and silently ignoring a broken one would change what the pipeline decides.
    """
    if path is None:
        return {}
    p = Path(path)
    if not p.exists():
        return {}
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{p}: not valid YAML: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ValueError(f"{p}: expected a YAML mapping at the top level")
    return doc
