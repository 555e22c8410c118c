"""Waiting for the applier in tests, instead of sleeping a fixed time.

In-process tests have no worker thread: ``apply_all`` runs the applier's own chunks in the test's thread
until nothing is pending (the same code, transactions and reactions as ``tsunagu worker``). Live-server
tests poll ``GET /api/v1/ingestion`` until ``pending`` is 0 (``wait_applied``)."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any


def apply_all(workspace: Any = None) -> int:
    """Apply everything pending in ``workspace`` (every workspace with pending events when None); returns
    the events stored."""
    from tsunagu.events.applier import events_apply_pending
    from tsunagu.events.log import get_log

    ids = [workspace.pk] if workspace is not None else get_log().workspaces()
    return sum(events_apply_pending(workspace_id=ws).stored for ws in ids)


def ingestion(base_url: str, token: str) -> dict[str, Any]:
    url = f"{base_url}/api/v1/ingestion"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback test server
        return dict(json.loads(response.read()))


def wait_applied(
    base_url: str, token: str, *, timeout: float = 60.0, expect_applied: int | None = None
) -> dict[str, Any]:
    """Poll until the workspace of ``token`` has nothing pending (and, if given, ``expect_applied`` events
    applied); returns the last status. Raises AssertionError with the status at the deadline."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = ingestion(base_url, token)
        if status["pending"] == 0 and (expect_applied is None or status["applied"] >= expect_applied):
            return status
        time.sleep(0.02)
    raise AssertionError(f"the applier did not catch up within {timeout}s: {status}")


def poll(fn: Any, *, timeout: float = 60.0, every: float = 0.05) -> Any:
    """Call ``fn`` until it answers something truthy, and return that; AssertionError with its last answer
    at the deadline. What live tests wait with instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"gave up waiting after {timeout}s; last answer {last!r}")
