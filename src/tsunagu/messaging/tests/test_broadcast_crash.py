"""A broadcast survives SIGKILLed workers without reaching anyone twice (checked at the LINE stand-in).

A web server records a LINE broadcast to 2,500 customers; workers run it against the LINE stand-in. The
first is killed while LINE holds the answer to its first multicast (the group is ``sending`` under its
retry key, LINE has it); the second is killed in the middle of the run, wherever it is (expanding,
advancing sends, sending); a third finishes. Then every customer has received the message exactly once,
the broadcast is ``done`` and its summary counts every recipient as sent."""

from __future__ import annotations

import signal
import time
from collections import Counter
from typing import Any

import pytest
import requests

from tsunagu.testing.standins.line import LineStandIn, user_id

pytestmark = pytest.mark.live

CUSTOMERS = 2500


def _poll(fn: Any, what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def test_killed_workers_never_send_a_broadcast_twice(live_server_factory):
    server = live_server_factory()
    write_key, token, _slug = server.provision(name="Crash Broadcast", slug="crash-broadcast")
    server.env["TSUNAGU_DELIVERY_LEASE"] = "2"
    server.start(command="web")
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    with LineStandIn() as line:
        r = api.post(f"{server.url}/api/v1/channels", timeout=10,
                     json={"type": "line", "name": "LINE", "config": line.channel_config()})
        assert r.status_code == 201, r.text
        r = api.post(f"{server.url}/api/v1/communications", timeout=10, json={
            "key": "sale", "name": "Sale", "topic": "service",
            "variants": [{"channel": "line", "locale": "ja", "text": "冬のセール {{ data.coupon }}"}]})
        assert r.status_code == 201, r.text
        users = [user_id() for _ in range(CUSTOMERS)]
        for start in range(0, CUSTOMERS, 500):
            batch = [{"type": "identify", "userId": f"u{i}", "traits": {"name": f"客{i}"},
                      "context": {"externalIds": [{"type": "line_user_id", "id": users[i]}]}}
                     for i in range(start, min(start + 500, CUSTOMERS))]
            assert requests.post(f"{server.url}/v1/batch", auth=(write_key, ""), json={"batch": batch},
                                 timeout=30).ok
        worker = server.spawn("worker")  # applies the identifies
        server.wait_applied(token, timeout=120)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)

        r = api.post(f"{server.url}/api/v1/broadcasts", timeout=30, json={
            "communication": "sale", "data": {"coupon": "W10"},
            "audience": {"user_ids": [f"u{i}" for i in range(CUSTOMERS)]}})
        assert r.status_code == 201, r.text
        bid = r.json()["id"]

        def summary() -> dict[str, Any]:
            return api.get(f"{server.url}/api/v1/broadcasts/{bid}", timeout=30).json()

        # 1: killed while LINE holds the answer to the first multicast.
        line.hold()
        worker = server.spawn("worker")
        _poll(lambda: len(line.requests) >= 1, "a multicast in flight")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        line.release()
        # 2: killed midway, wherever it is.
        worker = server.spawn("worker")
        _poll(lambda: len(line.deliveries) >= 3, "the run to be under way")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        assert summary()["status"] == "running"
        # 3: finishes.
        final = server.spawn("worker")
        try:
            done = _poll(lambda: (s := summary())["status"] == "done" and s, "the broadcast to be done", 300)
        finally:
            final.send_signal(signal.SIGTERM)
            final.wait(timeout=30)

    received = Counter(to for d in line.deliveries for to in d.to)
    assert received == Counter(users)  # everyone, once
    assert all(d.endpoint == "multicast" and len(d.to) <= 500 for d in line.deliveries)
    keys = [r.headers["x-line-retry-key"] for r in line.requests]
    assert len(keys) > len(set(keys))  # the interrupted multicast was sent again, under its key ...
    assert any(r.status == 409 for r in line.requests)  # ... and LINE dropped it as already accepted
    s = done["summary"]
    assert (s["total"], s["expanded"], s["sends"], s["sent"], s["pending"], s["skipped"]) == (
        CUSTOMERS, CUSTOMERS, CUSTOMERS, CUSTOMERS, 0, {})
    rows = server.query("SELECT COUNT(*), COUNT(DISTINCT customer_id) FROM messaging_send WHERE broadcast_id = %s",
                        (bid,))
    assert rows == [(CUSTOMERS, CUSTOMERS)]
