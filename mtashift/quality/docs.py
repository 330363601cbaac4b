"""Validation results in the lake, and the GX Data Docs site built from them (``LAKE/quality/``).

The asset checks store each validation's GX result document under
``LAKE/quality/results/<suite>/<batch>/<part>.json`` (batch: the day, the quarantine kind or
``all``; part: ``ERROR``, ``WARN`` or ``all`` — the blocking and the drift checks run separate
halves of a suite). :func:`build_data_docs` merges the halves of each (suite, batch), loads them
into a throw-away file-backed GX context in a temporary folder, has GX render its Data Docs site
there, and publishes the site into ``LAKE/quality/`` (entry point ``LAKE/quality/index.html``).
:func:`results_table` flattens the same results into one row per expectation for the catalog.

GX renders unexpected values into the HTML without escaping them, and they are untrusted text
(SMTP replies, addresses). Every string of a result's ``result`` and ``exception_info`` is
HTML-escaped before rendering, which displays them literally. GX's pages also load a logo from a
GX web server with a per-context id in the URL; it is pointed at the site's own copy instead.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from mtashift.lake import Lake, replace_dir, write_bytes, write_text
from mtashift.quality.suites import SUITE_NAMES, load_suite
from mtashift.quality.validate import ValidationOutcome

RESULTS = "results"
SITE_ENTRIES = ("index.html", "static", "expectations", "validations")

QUALITY_RESULTS_SCHEMA = pl.Schema(
    {
        "suite": pl.String(),
        "batch": pl.String(),  # day, quarantine kind or `all`
        "day": pl.Date(),  # the batch as a date when it is one
        "expectation": pl.String(),
        "columns": pl.String(),  # comma-separated
        "description": pl.String(),
        "severity": pl.String(),  # ERROR | WARN
        "success": pl.Boolean(),
        "unexpected_count": pl.Int64(),
        "unexpected_percent": pl.Float64(),
        "element_count": pl.Int64(),
    }
)


def results_dir(lake: Lake) -> Path:
    return lake.quality / RESULTS


def save_result(outcome: ValidationOutcome, *, lake: Lake) -> Path:
    """Store one validation's GX result document (atomic; replaces the same suite/batch/part)."""
    part = outcome.severity_filter or "all"
    target = results_dir(lake) / outcome.suite / outcome.batch / f"{part}.json"
    return write_text(json.dumps(outcome.result, indent=1, sort_keys=True) + "\n", target)


def _merged_results(lake: Lake) -> list[tuple[str, str, dict[str, Any]]]:
    """(suite, batch, merged result document) for every stored (suite, batch), sorted."""
    root = results_dir(lake)
    out: list[tuple[str, str, dict[str, Any]]] = []
    if not root.exists():
        return out
    for suite_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name in SUITE_NAMES):
        for batch_dir in sorted(p for p in suite_dir.iterdir() if p.is_dir()):
            parts = sorted(batch_dir.glob("*.json"), key=lambda p: (p.stem != "ERROR", p.stem))
            docs = [json.loads(p.read_text(encoding="utf-8")) for p in parts]
            if docs:
                out.append((suite_dir.name, batch_dir.name, _merge(docs)))
    return out


def _merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    results = [r for d in docs for r in d.get("results", [])]
    ok = sum(bool(r.get("success")) for r in results)
    merged = dict(docs[0])
    merged["results"] = results
    merged["success"] = ok == len(results)
    merged["statistics"] = {
        "evaluated_expectations": len(results),
        "successful_expectations": ok,
        "unsuccessful_expectations": len(results) - ok,
        "success_percent": 100.0 * ok / len(results) if results else 100.0,
    }
    merged["meta"] = {**docs[0].get("meta", {}), "severity_filter": None}
    return merged


def _as_day(batch: str) -> date | None:
    try:
        return date.fromisoformat(batch)
    except ValueError:
        return None


def results_table(lake: Lake) -> pl.DataFrame:
    """One row per (suite, batch, expectation) of the stored results (QUALITY_RESULTS_SCHEMA)."""
    rows = []
    for suite, batch, doc in _merged_results(lake):
        for r in doc["results"]:
            cfg = r.get("expectation_config", {})
            kw = cfg.get("kwargs", {})
            cols = [kw[k] for k in ("column", "column_A", "column_B") if k in kw] + list(
                kw.get("column_list") or []
            )
            res = r.get("result") or {}
            rows.append(
                {
                    "suite": suite,
                    "batch": batch,
                    "day": _as_day(batch),
                    "expectation": cfg.get("type"),
                    "columns": ", ".join(cols),
                    "description": cfg.get("description"),
                    "severity": (cfg.get("meta") or {}).get("severity"),
                    "success": bool(r.get("success")),
                    "unexpected_count": res.get("unexpected_count"),
                    "unexpected_percent": res.get("unexpected_percent"),
                    "element_count": res.get("element_count"),
                }
            )
    return pl.DataFrame(rows, schema=QUALITY_RESULTS_SCHEMA)


def _escape(value: Any) -> Any:
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value


def _escaped(doc: dict[str, Any]) -> dict[str, Any]:
    doc = dict(doc)
    doc["results"] = [
        {**r, "result": _escape(r.get("result")), "exception_info": _escape(r.get("exception_info"))}
        for r in doc["results"]
    ]
    return doc


_REMOTE_ASSET = re.compile(
    r"(https://great-expectations-web-assets\.s3\.[^\"'()?]*?/([\w.-]+))(\?[^\"'()]*)?"
)


def _localise(site: Path) -> None:
    """Use the site's own copy of GX's images; drop the tracking query from the others."""
    local = {p.name for p in (site / "static" / "images").glob("*")}
    for page in site.rglob("*.html"):
        up = "../" * (len(page.relative_to(site).parts) - 1)

        def swap(m: re.Match[str], up: str = up) -> str:
            return f"{up}static/images/{m.group(2)}" if m.group(2) in local else m.group(1)

        text = page.read_text(encoding="utf-8")
        fixed = _REMOTE_ASSET.sub(swap, text)
        if fixed != text:
            page.write_text(fixed, encoding="utf-8")


def _run_time(batch: str, stored: Path) -> datetime:
    day = _as_day(batch)
    if day is not None:
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    return datetime.fromtimestamp(int(stored.stat().st_mtime), tz=UTC)


def build_data_docs(lake: Lake, *, last_days: int | None = None) -> Path:
    """Render GX Data Docs of the stored results into ``LAKE/quality/``; returns its index.html.

    ``last_days`` keeps only the newest N days of daily results in the site (all by default);
    non-daily batches are always kept.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    merged = _merged_results(lake)
    if last_days is not None:
        days = sorted({b for _s, b, _d in merged if _as_day(b)}, reverse=True)[:last_days]
        merged = [m for m in merged if not _as_day(m[1]) or m[1] in days]

    lake.tmp.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quality-docs-", dir=lake.tmp) as tmp:
        work = Path(tmp)
        site = work / "site"
        context = gx.get_context(mode="file", project_root_dir=str(work / "project"))
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        for name in SUITE_NAMES:
            context.suites.add(gx.ExpectationSuite(**load_suite(name)))
        store = context.validation_results_store
        for suite, batch, doc in merged:
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite),
                run_id=RunIdentifier(
                    run_name=batch, run_time=_run_time(batch, results_dir(lake) / suite / batch)
                ),
                batch_identifier=f"{suite}-{batch}",
            )
            store.set(key, store.deserialize(json.dumps(_escaped(doc))))
        context.add_data_docs_site(
            site_name="lake",
            site_config={
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        context.build_data_docs(site_names=["lake"])
        _localise(site)
        _publish(site, lake.quality)
    return lake.quality / "index.html"


def _publish(site: Path, target: Path) -> None:
    """Swap each top-level entry of the built site into ``target`` (stored results stay)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in SITE_ENTRIES:
        src = site / name
        if src.is_dir():
            replace_dir(target / name, lambda tmp, src=src: shutil.copytree(src, tmp, dirs_exist_ok=True))
        elif src.is_file() and name != "index.html":
            write_bytes(src.read_bytes(), target / name)
    # the index last, so it never links pages that are not there yet
    write_bytes((site / "index.html").read_bytes(), target / "index.html")
