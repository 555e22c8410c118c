"""With real time and a live server (`tsunagu up`: web, applier, engine, jobs): an awaited event sent through
``/v1/track`` resumes its run within a second, and a two-second wait fires within a second of its time. No
test code runs the applier or the engine."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import requests

from tsunagu.testing.pipeline import poll

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _setup(server: Any, write_key: str, token: str, definition: dict[str, Any]) -> tuple[dict[str, str], int]:
    auth = {"Authorization": f"Bearer {token}"}
    for user in ("seed", "u-live"):
        r = requests.post(f"{server.url}/v1/track", auth=(write_key, ""), timeout=10,
                          json={"userId": user, "event": "Order Completed" if user == "seed" else "Visited"})
        assert r.status_code == 200, r.text
    server.wait_applied(token)
    r = requests.post(f"{server.url}/api/v1/journeys", headers=auth, timeout=10,
                      json={"key": "live", "name": "Live", "definition": definition})
    assert r.status_code == 201, r.text
    assert requests.post(f"{server.url}/api/v1/journeys/live/publish", headers=auth, timeout=10).status_code == 200
    r = requests.post(f"{server.url}/api/v1/journeys/live/runs", headers=auth, timeout=10, json={"user_id": "u-live"})
    assert r.status_code == 201, r.text
    return auth, r.json()["id"]


def _history_when(server: Any, auth: dict[str, str], run_id: int, action: str) -> Any:
    def found() -> Any:
        run = requests.get(f"{server.url}/api/v1/journey-runs/{run_id}", headers=auth, timeout=10).json()
        rows = [h for h in run["history"] if h["action"] == action]
        return (run, rows[0]) if rows else None

    return poll(found, timeout=30)


def test_an_awaited_event_sent_through_track_resumes_its_run_within_a_second(live_workspace: Any) -> None:
    server, write_key, token, _slug = live_workspace
    auth, run_id = _setup(server, write_key, token, {"entry": {"api": True}, "steps": [
        {"id": "wait_order", "type": "wait_for_event", "event": "Order Completed", "timeout_seconds": 3600},
        {"id": "thanks", "type": "update_traits", "traits": {"thanked": True}}]})
    _history_when(server, auth, run_id, "wait")
    r = requests.post(f"{server.url}/v1/track", auth=(write_key, ""), timeout=10,
                      json={"userId": "u-live", "event": "Order Completed", "messageId": "the-order"})
    assert r.status_code == 200
    run, done = _history_when(server, auth, run_id, "done")
    assert run["status"] == "completed" and done["outcome"] == {"by": "event"}
    customers = requests.get(f"{server.url}/api/v1/customers", headers=auth, timeout=10,
                             params={"q": "u-live"}).json()["items"]
    events = requests.get(f"{server.url}/api/v1/customers/{customers[0]['id']}/events", headers=auth,
                          timeout=10).json()["items"]
    (order,) = [e for e in events if e["message_id"] == "the-order"]
    # From the server accepting the event to the run going on: both times are the server's clock.
    lag = _at(done["at"]) - _at(order["received_at"])
    assert dt.timedelta(0) <= lag < dt.timedelta(seconds=1), lag


def test_a_two_second_wait_fires_within_a_second_of_its_time(live_workspace: Any) -> None:
    server, write_key, token, _slug = live_workspace
    auth, run_id = _setup(server, write_key, token, {"entry": {"api": True}, "steps": [
        {"id": "pause", "type": "wait", "seconds": 2}, {"id": "after", "type": "exit"}]})
    _run, wait = _history_when(server, auth, run_id, "wait")
    run, done = _history_when(server, auth, run_id, "done")
    late = _at(done["at"]) - _at(wait["outcome"]["until"])
    assert dt.timedelta(0) <= late < dt.timedelta(seconds=1), late
    assert run["status"] == "exited"
