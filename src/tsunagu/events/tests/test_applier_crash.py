"""The applier killed mid-transaction, again and again: every acknowledged event is applied exactly once.

A web server acknowledges a stream of batches with no worker running, so the whole stream waits in the
ingest log. Then a worker starts applying it and is SIGKILLed while it applies — with thousands of events
per transaction it is inside one nearly all the time — three times over. A last worker finishes the work:
each event is stored once, and the profiles count each once."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
import requests

from tsunagu.testing.pipeline import ingestion

pytestmark = pytest.mark.live

BATCHES = 120
BATCH = 100
USERS = 400


def batch(seq: int) -> list[dict[str, Any]]:
    out = []
    for i in range(BATCH):
        n = seq * BATCH + i
        user = n % USERS
        out.append(
            {
                "type": "identify" if n < USERS else "track",
                "messageId": f"crash-{n}",
                "userId": f"user-{user}",
                "anonymousId": f"device-{user}-{n % 3}",
                "event": "Streamed",
                "traits": {"email": f"user-{user}@example.jp"},
                "properties": {"n": n},
            }
        )
    return out


def test_killing_the_applier_mid_transaction_applies_everything_exactly_once(live_server_factory):
    server = live_server_factory()
    write_key, token, _slug = server.provision(name="Crash Shop", slug="crash-shop")
    # Small chunks are still ~1,000 events: the kill lands inside a transaction with high probability.
    server.env["TSUNAGU_APPLY_CHUNK"] = "1000"
    server.env["TSUNAGU_APPLIER_LEASE"] = "2"
    server.start(command="web")
    session = requests.Session()
    session.auth = (write_key, "")
    for seq in range(BATCHES):
        response = session.post(f"{server.url}/v1/batch", json={"batch": batch(seq)}, timeout=30)
        assert response.status_code == 200, response.text
    total = BATCHES * BATCH
    waiting = ingestion(server.url, token)
    assert (waiting["pending"], waiting["applied"]) == (total, 0)  # no applier runs in ``tsunagu web``

    kills = 0
    for _ in range(3):
        worker = server.spawn("worker")
        deadline = time.monotonic() + 60
        start_applied = ingestion(server.url, token)["applied"]
        # Wait for the applier to be under way, then kill it without warning.
        while time.monotonic() < deadline and ingestion(server.url, token)["applied"] == start_applied:
            time.sleep(0.01)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        kills += 1
        if ingestion(server.url, token)["pending"] == 0:
            break
    status = ingestion(server.url, token)
    assert kills >= 1 and 0 < status["applied"] < total, f"the kills did not land while applying: {status}"

    final = server.spawn("worker")
    try:
        status = server.wait_applied(token, timeout=120)
    finally:
        final.send_signal(signal.SIGTERM)
        final.wait(timeout=30)
    assert status["applied"] == total and status["duplicates"] == 0
    rows = server.query("SELECT message_id, COUNT(*) FROM events_event GROUP BY message_id HAVING COUNT(*) > 1")
    assert rows == []
    ((events,),) = server.query("SELECT COUNT(*) FROM events_event")
    ((counted,),) = server.query("SELECT SUM(event_count) FROM customers_customer WHERE merged_into_id IS NULL")
    ((people,),) = server.query("SELECT COUNT(*) FROM customers_customer WHERE merged_into_id IS NULL")
    assert events == counted == total
    assert people == USERS
