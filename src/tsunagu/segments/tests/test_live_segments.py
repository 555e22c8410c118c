"""End to end on a real server (`tsunagu up`, web + worker): an event that qualifies a customer puts
``Segment Entered`` on their timeline within a second — no test code runs the applier or the outbox."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import requests

from tsunagu.testing.pipeline import poll

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_segment_entered_is_on_the_timeline_within_a_second_of_its_cause(live_workspace: Any) -> None:
    server, write_key, token, _slug = live_workspace
    auth = {"Authorization": f"Bearer {token}"}
    r = requests.post(f"{server.url}/api/v1/segments", headers=auth, timeout=10, json={
        "key": "repeat", "name": "Repeat buyers", "rule": {"event": "Order Completed",
                                                            "count": {"op": "gte", "value": 2}}})
    assert r.status_code == 201, r.text
    for n in (1, 2):
        r = requests.post(f"{server.url}/v1/track", auth=(write_key, ""), timeout=10, json={
            "userId": "u-live", "event": "Order Completed", "messageId": f"order-{n}", "properties": {"n": n}})
        assert r.status_code == 200, r.text
        if n == 1:
            server.wait_applied(token)

    def entered() -> Any:
        customers = requests.get(f"{server.url}/api/v1/customers", headers=auth, timeout=10,
                                 params={"q": "u-live"}).json()["items"]
        if not customers:
            return None
        events = requests.get(f"{server.url}/api/v1/customers/{customers[0]['id']}/events", headers=auth,
                              timeout=10).json()["items"]
        return events if any(e["event"] == "Segment Entered" for e in events) else None

    events = poll(entered)
    by_id = {e["message_id"]: e for e in events}
    (segment_entered,) = [e for e in events if e["event"] == "Segment Entered"]
    assert segment_entered["properties"]["segment"] == "repeat"
    # Accepted by the log within a second of the second order (both times are the server's own clock).
    lag = _at(segment_entered["received_at"]) - _at(by_id["order-2"]["received_at"])
    assert dt.timedelta(0) <= lag < dt.timedelta(seconds=1), lag
    members = requests.get(f"{server.url}/api/v1/segments/repeat/members", headers=auth, timeout=10).json()
    assert len(members["items"]) == 1
