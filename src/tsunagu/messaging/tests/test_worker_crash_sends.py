"""A worker SIGKILLed in the middle of a provider call never makes the customer get a message twice.

A web server records the sends; workers execute them against loopback stand-ins of LINE and Twilio that
hold their answer back, so the kill lands while the provider has the request but the worker has not its
answer — the worst moment. Three workers die that way; a fourth finishes. Then, at the stand-ins: every
LINE message was delivered once per retry key (LINE drops a resent retry key), every customer got at most
one SMS (Twilio has no retry key: the interrupted one is failed, not resent), and every delivery ended."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
import requests

from tsunagu.testing.standins.line import LineStandIn, user_id
from tsunagu.testing.standins.twilio import TwilioStandIn

pytestmark = pytest.mark.live

CUSTOMERS = 6


def _poll(fn: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def test_killed_workers_never_send_twice(live_server_factory):
    server = live_server_factory()
    write_key, token, _slug = server.provision(name="Crash Sends", slug="crash-sends")
    server.env["TSUNAGU_DELIVERY_LEASE"] = "2"
    server.start(command="web")
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    with LineStandIn() as line, TwilioStandIn() as twilio:
        assert (
            api.post(
                f"{server.url}/api/v1/channels",
                timeout=10,
                json={"type": "line", "name": "LINE", "config": line.channel_config()},
            ).status_code
            == 201
        )
        assert (
            api.post(
                f"{server.url}/api/v1/channels",
                timeout=10,
                json={"type": "sms", "name": "SMS", "config": twilio.channel_config()},
            ).status_code
            == 201
        )
        variants = [
            {"channel": "line", "locale": "ja", "text": "こんにちは {{ customer.traits.name }}"},
            {"channel": "sms", "locale": "ja", "text": "SMS {{ customer.traits.name }}"},
        ]
        r = api.post(
            f"{server.url}/api/v1/communications",
            timeout=10,
            json={"key": "notice", "name": "N", "topic": "service", "variants": variants},
        )
        assert r.status_code == 201, r.text
        lines = [user_id() for _ in range(CUSTOMERS)]
        batch = [
            {
                "type": "identify",
                "userId": f"u{i}",
                "traits": {"name": f"客{i}", "phone": f"+8190000000{i:02d}"},
                "context": {"externalIds": [{"type": "line_user_id", "id": lines[i]}]},
            }
            for i in range(CUSTOMERS)
        ]
        assert requests.post(f"{server.url}/v1/batch", auth=(write_key, ""), json={"batch": batch}, timeout=10).ok
        worker = server.spawn("worker")  # applies the identifies
        server.wait_applied(token)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        sends = []
        for channel in ("line", "sms"):
            for i in range(CUSTOMERS):
                r = api.post(
                    f"{server.url}/api/v1/sends",
                    timeout=10,
                    json={"communication": "notice", "user_id": f"u{i}", "channel": channel},
                )
                assert r.status_code == 201, r.text
                sends.append(r.json()["id"])

        # Kill 1 and 2 while LINE holds its answer; kill 3 while Twilio holds its answer.
        for standin, seen in ((line, 1), (line, 2), (twilio, 1)):
            standin.hold()
            worker = server.spawn("worker")
            _poll(lambda s=standin, n=seen: len(s.requests) >= n, "a request in flight at the stand-in")
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            standin.release()
        final = server.spawn("worker")
        try:

            def all_final() -> list[dict[str, Any]] | None:
                out = [api.get(f"{server.url}/api/v1/sends/{s}", timeout=10).json()["deliveries"][0] for s in sends]
                return out if all(d["status"] in ("sent", "delivered", "failed", "bounced") for d in out) else None

            deliveries = _poll(all_final, "every delivery to end", timeout=120)
        finally:
            final.send_signal(signal.SIGTERM)
            final.wait(timeout=30)

    line_deliveries = [d for d in deliveries if d["channel"] == "line"]
    sms_deliveries = [d for d in deliveries if d["channel"] == "sms"]
    # LINE: each customer received the message exactly once, though some pushes were sent twice.
    received = sorted(to for got in line.deliveries for to in got.to)
    assert received == sorted(lines)
    assert all(d["status"] == "sent" for d in line_deliveries)
    assert len(line.requests) > CUSTOMERS  # the interrupted pushes were resent — and dropped by LINE
    # SMS: nobody got two; the interrupted one is failed as such, and every other one was sent once.
    to_numbers = [m["To"] for m in twilio.messages]
    assert len(to_numbers) == len(set(to_numbers)) == CUSTOMERS
    interrupted = [d for d in sms_deliveries if d["status"] == "failed"]
    assert len(interrupted) == 1 and interrupted[0]["reason"].startswith("interrupted")
    assert sum(d["status"] == "sent" for d in sms_deliveries) == CUSTOMERS - 1
