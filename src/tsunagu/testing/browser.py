"""Headless Chromium for the browser tests: Debian's chromium driven by Playwright, with the flags this
machine's closed network needs. A missing browser skips the test — or fails it under
``TSUNAGU_REQUIRE_BROWSER=1`` (CI), so that no browser test passes by not running."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def unavailable(reason: str) -> None:
    if os.environ.get("TSUNAGU_REQUIRE_BROWSER") == "1":
        pytest.fail(f"TSUNAGU_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def launched() -> Iterator[Any]:
    """A launched Chromium (Playwright's ``Browser``), closed on exit."""
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
