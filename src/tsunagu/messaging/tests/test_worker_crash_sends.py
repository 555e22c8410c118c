"""A worker SIGKILLed in the middle of a provider call never makes the customer get a message twice.

A web server records the sends; workers execute them against loopback stand-ins of LINE, Twilio, an SMTP
relay and a webhook receiver that hold their answer back, so the kill lands while the provider has the
message but the worker has not its answer — the worst moment. Five workers die that way; a sixth finishes.
Then, at the stand-ins: every LINE message was delivered once per retry key (LINE drops a resent retry
key); every customer got at most one SMS and one email (Twilio and SMTP have no retry key: the interrupted
ones — one SMS, one email on each of the worker's SMTP connections — are failed, not resent); every
webhook id arrived (a resend carries the same ``webhook-id``, which Standard Webhooks receivers
deduplicate); and every delivery ended."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
import requests

from tsunagu.testing.standins.line import LineStandIn, user_id
from tsunagu.testing.standins.smtp import SMTPStandin
from tsunagu.testing.standins.twilio import TwilioStandIn
from tsunagu.testing.standins.webhook import WebhookReceiver

pytestmark = pytest.mark.live

CUSTOMERS = 6
EMAIL_CONNECTIONS = 3  # SMTP connections of a worker (the channel's ``connections``)


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
    with LineStandIn() as line, TwilioStandIn() as twilio, SMTPStandin() as smtp, WebhookReceiver() as hook:
        r = api.patch(f"{server.url}/api/v1/workspace/settings", timeout=10, json={"allow_private_webhooks": True})
        assert r.status_code == 200, r.text
        smtp_config = {
            "host": smtp.host, "port": smtp.port, "security": "none", "from_email": "info@shop.example",
            "connections": EMAIL_CONNECTIONS,
        }
        assert (
            api.post(
                f"{server.url}/api/v1/channels",
                timeout=10,
                json={"type": "email", "name": "SMTP", "config": smtp_config},
            ).status_code
            == 201
        )
        assert (
            api.post(
                f"{server.url}/api/v1/channels",
                timeout=10,
                json={"type": "webhook", "name": "ERP", "config": {"url": hook.url("/h"), "secret": hook.secret}},
            ).status_code
            == 201
        )
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
            {"channel": "email", "locale": "ja", "subject": "件名", "html": "<p>{{ customer.traits.name }}</p>"},
            {"channel": "webhook", "locale": "ja", "payload": '{"name": {{ customer.traits.name | json }}}'},
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
                "traits": {"name": f"客{i}", "phone": f"+8190000000{i:02d}", "email": f"c{i}@example.jp"},
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
        for channel in ("line", "sms", "email", "webhook"):
            for i in range(CUSTOMERS):
                r = api.post(
                    f"{server.url}/api/v1/sends",
                    timeout=10,
                    json={"communication": "notice", "user_id": f"u{i}", "channel": channel},
                )
                assert r.status_code == 201, r.text
                sends.append(r.json()["id"])

        # Kill 1 and 2 while LINE holds its answer; then while Twilio, the SMTP relay, the receiver do.
        in_flight = [
            (line, lambda: len(line.requests) >= 1),
            (line, lambda: len(line.requests) >= 2),
            (twilio, lambda: len(twilio.requests) >= 1),
            # A worker hands emails over a wave at a time, one a connection: the kill lands with a whole wave
            # at the relay, each message taken and none answered.
            (smtp, lambda: smtp.held >= EMAIL_CONNECTIONS),
            (hook, lambda: len(hook.received) >= 1),
        ]
        for step, (standin, arrived) in enumerate(in_flight):
            standin.hold()
            worker = server.spawn("worker")
            _poll(arrived, f"a message in flight at the stand-in of step {step}")
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
    # Email: the same, at the SMTP relay (the held messages reached it: their deliveries are the interrupted
    # ones — as many as the worker had connections, one message on each; the others were sent once).
    ids = smtp.message_ids()
    assert len(ids) == len(set(ids)) == CUSTOMERS
    email_deliveries = [d for d in deliveries if d["channel"] == "email"]
    failed = [d["reason"][:11] for d in email_deliveries if d["status"] == "failed"]
    assert failed == ["interrupted"] * EMAIL_CONNECTIONS
    assert sum(d["status"] == "sent" for d in email_deliveries) == CUSTOMERS - EMAIL_CONNECTIONS
    # Webhooks: resent under the same webhook-id, so every delivery arrived and none counts twice.
    webhook_ids = hook.webhook_ids()
    assert len(set(webhook_ids)) == CUSTOMERS < len(webhook_ids)
    assert all(d["status"] == "delivered" for d in deliveries if d["channel"] == "webhook")
