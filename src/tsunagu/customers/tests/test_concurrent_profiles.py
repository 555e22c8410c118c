"""One customer, one profile — also when a customer's first events arrive at the same instant on several
connections (an app and a website, a retrying SDK): concurrent requests carrying the same new userId must
end in one profile that holds every identity and every event."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.live

ROUNDS = 4
RACERS = 8


def test_simultaneous_first_events_make_one_profile(live_workspace):
    server, write_key, token, _slug = live_workspace
    failures: list[str] = []

    for round_ in range(ROUNDS):
        barrier = threading.Barrier(RACERS)

        def send(i: int, round_: int = round_, barrier: threading.Barrier = barrier) -> None:
            session = requests.Session()
            body = {
                "userId": f"racer-{round_}",
                "anonymousId": f"device-{round_}-{i}",
                "messageId": f"race-{round_}-{i}",
                "traits": {"email": f"racer-{round_}@example.com", f"seen_by_{i}": True},
            }
            barrier.wait()
            response = session.post(f"{server.url}/v1/identify", json=body, auth=(write_key, ""), timeout=30)
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text[:200]}")

        threads = [threading.Thread(target=send, args=(i,)) for i in range(RACERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert failures == []
    server.wait_applied(token)

    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"

    def get(path: str, **params: Any) -> Any:
        response = api.get(f"{server.url}/api/v1{path}", params=params, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    live = get("/customers", limit=500)["items"]
    by_user = Counter(c["user_id"] for c in live)
    assert by_user == {f"racer-{r}": 1 for r in range(ROUNDS)}, f"duplicate profiles: {by_user}"
    for round_ in range(ROUNDS):
        (customer,) = get("/customers", user_id=f"racer-{round_}")["items"]
        profile = get(f"/customers/{customer['id']}")
        assert profile["event_count"] == RACERS
        assert {i["value"] for i in profile["identities"] if i["type"] == "anonymous_id"} == {
            f"device-{round_}-{i}" for i in range(RACERS)
        }
        assert {f"seen_by_{i}" for i in range(RACERS)} <= set(profile["traits"])
        timeline = get(f"/customers/{customer['id']}/events", limit=100)["items"]
        assert sorted(e["message_id"] for e in timeline) == sorted(f"race-{round_}-{i}" for i in range(RACERS))
    ((events,),) = server.query("SELECT COUNT(*) FROM events_event")
    ((counted,),) = server.query("SELECT SUM(event_count) FROM customers_customer WHERE merged_into_id IS NULL")
    assert events == counted == ROUNDS * RACERS


def test_an_event_racing_its_own_retry_is_counted_once(live_workspace):
    """An SDK that times out and retries can deliver the same messageId twice at once: stored once, and the
    profile counts it once."""
    server, write_key, token, _slug = live_workspace
    statuses: list[int] = []
    for round_ in range(ROUNDS):
        barrier = threading.Barrier(RACERS)
        # The profile exists already; only the event is new.
        requests.post(
            f"{server.url}/v1/identify", json={"userId": f"retrier-{round_}"}, auth=(write_key, ""), timeout=30
        ).raise_for_status()

        def send(round_: int = round_, barrier: threading.Barrier = barrier) -> None:
            body = {"userId": f"retrier-{round_}", "event": "Order Completed", "messageId": f"order-{round_}"}
            session = requests.Session()
            barrier.wait()
            statuses.append(
                session.post(f"{server.url}/v1/track", json=body, auth=(write_key, ""), timeout=30).status_code
            )

        threads = [threading.Thread(target=send) for _ in range(RACERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert statuses == [200] * (ROUNDS * RACERS)
    server.wait_applied(token)
    stored = dict(server.query("SELECT message_id, COUNT(*) FROM events_event GROUP BY message_id"))
    assert all(n == 1 for n in stored.values())
    counts = dict(
        server.query("SELECT user_id, event_count FROM customers_customer WHERE merged_into_id IS NULL ORDER BY id")
    )
    assert counts == {f"retrier-{r}": 2 for r in range(ROUNDS)}, "identify + one order each"
