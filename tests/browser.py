"""Open a report in headless Chromium (Debian's package) and record what a person's browser would see."""

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@dataclass
class PageVisit:
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    text: str = ""
    html: str = ""
    screenshot: Path | None = None


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    raise AssertionError  # unreachable


def visit(report: Path, *, screenshot: Path) -> PageVisit:
    from playwright.sync_api import sync_playwright

    out = PageVisit()
    url = report.resolve().as_uri()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: out.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: out.console_errors.append(str(e)))
        page.on("request", lambda r: out.requests.append(r.url) if r.url != url else None)
        page.goto(url, wait_until="load")
        page.wait_for_timeout(200)
        out.text = page.inner_text("body")
        out.html = page.content()
        page.screenshot(path=str(screenshot), full_page=True)
        out.screenshot = screenshot
        browser.close()
    return out
