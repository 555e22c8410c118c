"""End to end on a real server (`tsunagu up`): a send through the API is executed by the worker, and its
outcome reaches the customer's timeline through the ingest log — no test code runs the engine."""

from __future__ import annotations

import time

import pytest
import requests

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _poll(fn, *, timeout=60.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting; last answer {last!r}")


def test_a_send_through_the_api_is_delivered_by_the_worker_and_on_the_timeline(live_workspace):
    server, write_key, token, _slug = live_workspace
    auth = {"Authorization": f"Bearer {token}"}
    r = requests.post(f"{server.url}/v1/identify", auth=(write_key, ""), timeout=10,
                      json={"userId": "u-live", "traits": {"name": "花子", "locale": "ja"}})
    assert r.status_code == 200, r.text
    server.wait_applied(token)
    r = requests.post(f"{server.url}/api/v1/communications", headers=auth, timeout=10, json={
        "key": "hello", "name": "Hello", "topic": "service",
        "variants": [{"channel": "in_app", "locale": "ja", "title": "{{ customer.traits.name }}さん", "body": "b"}],
    })
    assert r.status_code == 201, r.text
    r = requests.post(f"{server.url}/api/v1/sends", headers=auth, timeout=10,
                      json={"communication": "hello", "user_id": "u-live"})
    assert r.status_code == 201, r.text
    send_id = r.json()["id"]

    def delivered():
        body = requests.get(f"{server.url}/api/v1/sends/{send_id}", headers=auth, timeout=10).json()
        return body if body["deliveries"][0]["status"] == "delivered" else None

    body = _poll(delivered)
    assert body["deliveries"][0]["subject"] == "花子さん"
    customer_id = body["customer_id"]

    def on_timeline():
        events = requests.get(f"{server.url}/api/v1/customers/{customer_id}/events", headers=auth, timeout=10).json()
        names = [e["event"] for e in events["items"]]
        return names if "Message Delivered" in names else None

    names = _poll(on_timeline)
    assert "Message Sent" in names
