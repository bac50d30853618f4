"""Headless Chromium for the dashboard's tests and benchmark: Debian's browser driven by Playwright's client.

Playwright's own browser download needs the internet; Debian's ``chromium``
(installed by ``scripts/install.sh --dev``) is driven instead, with the flags
it needs as root on a machine with no network.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

__all__ = ["CHROMIUM_ARGS", "chromium", "screenshot_dir", "wait_ready"]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def chromium_path() -> str:
    """Raises: RuntimeError when no Chromium is installed (CI installs it: the browser tests must run, not skip)."""
    for candidate in (os.environ.get("EVOLVE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise RuntimeError("no Chromium found: run scripts/install.sh --dev (it installs Debian's chromium), or set EVOLVE_CHROMIUM")


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot_dir() -> Path:
    """Where the tests leave their screenshots: $EVOLVE_TEST_OUTPUT/dashboard, else test-output/dashboard in the checkout."""
    root = Path(os.environ.get("EVOLVE_TEST_OUTPUT") or Path(__file__).resolve().parents[2] / "test-output")
    folder = root / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_ready(page: Page, name: str, *, route: str | None = None, timeout_ms: float = 30_000) -> None:
    """Wait until the dashboard has rendered page ``name`` (at hash ``route`` when given), or failed: then say why."""
    at = f'[data-route="{route}"]' if route else ""
    page.wait_for_selector(f"main[data-page={name}][data-state=ready]{at}, main[data-state=error]", timeout=timeout_ms)
    if page.get_attribute("main", "data-state") == "error":
        raise AssertionError(f"the {name} page failed: {page.inner_text('main')}")
