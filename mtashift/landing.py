"""The landing-folder contract: which files belong to which ingest, and what is unknown."""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path

import polars as pl

KUMO_SEGMENT_RE = re.compile(r"^\d{8}-\d{6}(\.\d+)?(_[A-Za-z0-9_-]+)?$")

# kind -> (description, predicate over the path relative to the kind's folder)
LANDING_KINDS: dict[str, str] = {
    "pmta": "PowerMTA accounting files: pmta/<node>/acct-*.csv[.gz]",
    "pmta-config": "PowerMTA configuration: pmta-config/<node>/config and its include files",
    "kumo": "KumoMTA logs: kumo/<node>/<segment>, *.jsonl, *.jsonl.zst, webhook captures *.json",
    "fbl": "ARF feedback reports: fbl/*.eml",
    "suppression": "legacy suppression lists: suppression/*.csv, *.txt",
    "seedlist": "seed-list placement results: seedlist/*.csv",
    "plan": "cutover plan and TCO inputs: plan.yaml",
}


def classify(rel: str) -> str | None:
    """Landing kind of a path relative to the landing root, or None when it is not ours."""
    parts = rel.split("/")
    name = parts[-1]
    if name.startswith("."):
        return None
    top = parts[0]
    if len(parts) == 1:
        return "plan" if name in {"plan.yaml", "plan.yml"} else None
    if top == "pmta":
        return "pmta" if name.endswith((".csv", ".csv.gz")) else None
    if top == "pmta-config":
        return "pmta-config"
    if top == "kumo":
        if KUMO_SEGMENT_RE.match(name) or name.endswith((".jsonl", ".jsonl.zst", ".json", ".json.zst")):
            return "kumo"
        return None
    if top == "fbl":
        return "fbl" if name.endswith((".eml", ".msg", ".txt")) else None
    if top == "suppression":
        return "suppression" if name.endswith((".csv", ".txt", ".yaml", ".yml")) else None
    if top == "seedlist":
        return "seedlist" if name.endswith(".csv") else None
    return None


@dataclass(frozen=True)
class LandingFile:
    kind: str | None
    rel: str
    path: Path
    size: int
    mtime_ns: int
    writable: bool


def scan(root: Path) -> list[LandingFile]:
    """Every regular file under the landing root, sorted by relative path."""
    out: list[LandingFile] = []
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        st = p.stat()
        rel = p.relative_to(root).as_posix()
        out.append(
            LandingFile(
                kind=classify(rel),
                rel=rel,
                path=p,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                writable=bool(st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)),
            )
        )
    return out


def unknown_files(files: list[LandingFile]) -> list[str]:
    return [f.rel for f in files if f.kind is None]


def as_frame(files: list[LandingFile]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "kind": [f.kind for f in files],
            "path": [f.rel for f in files],
            "size": [f.size for f in files],
            "mtime_ns": [f.mtime_ns for f in files],
            "writable": [f.writable for f in files],
        },
        schema={
            "kind": pl.String,
            "path": pl.String,
            "size": pl.Int64,
            "mtime_ns": pl.Int64,
            "writable": pl.Boolean,
        },
    )
