"""Headless Chromium for the dashboard tests: Debian's `chromium` package (installed by
`tests/chromium.sh`) driven by Playwright, which then downloads no browser of its own."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    """The browser: `GATEWAY_TEST_CHROMIUM`, else the first of CANDIDATES on the PATH."""
    given = os.environ.get("GATEWAY_TEST_CHROMIUM")
    found = given or next((p for p in map(shutil.which, CANDIDATES) if p), None)
    if not found or not Path(found).exists():
        raise AssertionError(
            "no Chromium for the dashboard tests: run tests/chromium.sh (as root it installs "
            "Debian's chromium) or set GATEWAY_TEST_CHROMIUM"
        )
    return found


@contextmanager
def chromium() -> Iterator[Browser]:
    # Chromium's sandbox refuses to run as root (CI runs as root); a container's small
    # /dev/shm would crash its renderer.
    args = ["--disable-dev-shm-usage", *(["--no-sandbox"] if os.geteuid() == 0 else [])]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=args)
        try:
            yield browser
        finally:
            browser.close()


def screenshots_dir(fallback: Path) -> Path:
    """Where the screenshots go: `GATEWAY_SCREENSHOTS`, else under bench/results/ in CI (an
    artifact of the run), else `fallback` (the test's temporary directory)."""
    given = os.environ.get("GATEWAY_SCREENSHOTS")
    if given:
        path = Path(given)
    elif os.environ.get("CI"):
        path = Path(__file__).resolve().parents[2] / "bench" / "results" / "dashboard"
    else:
        path = fallback
    path.mkdir(parents=True, exist_ok=True)
    return path
