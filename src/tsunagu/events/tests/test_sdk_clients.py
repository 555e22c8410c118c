"""The official Segment and RudderStack Python SDKs, unmodified, against a real tsunagu server on loopback:
two devices browse anonymously, the customer identifies on one and is aliased on the other, and the REST API
then shows one customer with the whole timeline, found by every identity.

What the SDKs send (read from their installed source): both POST ``{host}/v1/batch`` with the write key as
the Basic auth user name; Segment also puts ``writeKey`` in the body and gzips only when asked, RudderStack
gzips by default and adds a top-level ``channel: "server"`` and ``integrations: {"All": true}``; both set
``sentAt`` on the batch and ``context.library.name = "analytics-python"`` on each message.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
import requests
import rudderstack.analytics as rudder_analytics
from rudderstack.analytics.request import APIError as RudderAPIError
from segment.analytics import Client as SegmentClient
from segment.analytics.request import APIError as SegmentAPIError

pytestmark = pytest.mark.live


class Rest:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **params: Any) -> Any:
        response = self.session.get(f"{self.base}/api/v1{path}", params=params, timeout=10)
        assert response.status_code == 200, (path, params, response.status_code, response.text)
        return response.json()

    def create(self, path: str, body: dict[str, Any]) -> Any:
        response = self.session.post(f"{self.base}/api/v1{path}", json=body, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()

    def timeline(self, customer_id: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.get(f"/customers/{customer_id}/events", limit=3, **({"cursor": cursor} if cursor else {}))
            items.extend(page["items"])
            cursor = page["next"]
            if not cursor:
                return items


@pytest.fixture
def rudder(monkeypatch: pytest.MonkeyPatch) -> Any:
    """RudderStack's module-level client, configured the documented way; reset after the test."""
    monkeypatch.setattr(rudder_analytics, "default_client", None)
    yield rudder_analytics
    if rudder_analytics.default_client is not None:
        rudder_analytics.default_client.join()
    rudder_analytics.default_client = None


@pytest.fixture
def logged_workspace(live_server_factory: Any) -> Any:
    """``live_workspace`` with the server's access log on, to see what the SDKs put on the wire."""
    server = live_server_factory("sdk")
    server.env["TSUNAGU_ACCESS_LOG"] = str(server.data_dir / "access.log")
    write_key, token, slug = server.provision(name="SDK Shop", slug="sdk-shop")
    server.start()
    return server, write_key, token, slug


def sdk_requests(server: Any) -> list[str]:
    """Access-log lines of requests made by the SDKs (both send ``User-Agent: analytics-python/<version>``)."""
    log = (server.data_dir / "access.log").read_text()
    return [line for line in log.splitlines() if "analytics-python/" in line]


def test_two_devices_two_sdks_one_customer(logged_workspace, rudder, monkeypatch):
    server, write_key, token, _slug = logged_workspace
    rest = Rest(server.url, token)
    app_source = rest.create("/sources", {"name": "Mobile app (RudderStack)", "channel": "app"})

    errors: list[Any] = []

    def on_error(error: Exception, batch: Any) -> None:
        errors.append((repr(error), batch))

    run = uuid.uuid4().hex[:8]
    device_a, device_b, user_id = f"device-a-{run}", f"device-b-{run}", f"member-{run}"
    base = dt.datetime.now(tz=dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    sent: list[tuple[str, str]] = []  # (messageId, which SDK), in event-time order

    def at(step: int) -> dt.datetime:
        return base + dt.timedelta(minutes=step)

    def mid(step: int, sdk: str) -> str:
        message_id = f"{run}-{step:02d}-{sdk}"
        sent.append((message_id, sdk))
        return message_id

    # Segment, synchronous: every call is one POST and raises on any non-2xx answer.
    segment_sync = SegmentClient(write_key, host=server.url, sync_mode=True, on_error=on_error, max_retries=0)
    # Segment, queued and gzipped: the consumer thread batches; errors go to on_error.
    segment_async = SegmentClient(
        write_key, host=server.url, gzip=True, on_error=on_error, max_retries=0, upload_interval=0.05
    )
    monkeypatch.setattr(rudder, "write_key", app_source["write_key"])
    monkeypatch.setattr(rudder, "dataPlaneUrl", server.url)
    monkeypatch.setattr(rudder, "on_error", on_error)
    monkeypatch.setattr(rudder, "max_retries", 0)

    # 1. Anonymous browsing on two devices.
    segment_sync.page(
        anonymous_id=device_a, name="Home", properties={"path": "/"}, timestamp=at(0), message_id=mid(0, "segment")
    )
    segment_sync.track(
        anonymous_id=device_a,
        event="Product Viewed",
        properties={"sku": "TEA-01", "price": 1200},
        timestamp=at(1),
        message_id=mid(1, "segment"),
    )
    rudder.page(
        anonymous_id=device_b,
        name="Campaign LP",
        properties={"utm_source": "line"},
        timestamp=at(2),
        message_id=mid(2, "rudder"),
    )
    segment_async.track(
        anonymous_id=device_b,
        event="Added to Cart",
        properties={"sku": "TEA-01"},
        timestamp=at(3),
        message_id=mid(3, "segment"),
    )
    rudder.screen(anonymous_id=device_b, name="Cart", timestamp=at(4), message_id=mid(4, "rudder"))
    segment_async.flush()
    rudder.flush()
    assert errors == []
    server.wait_applied(token)
    assert len(rest.get("/customers")["items"]) == 2, "two anonymous devices are two profiles until identified"

    # 2. The customer logs in on device A; device B is aliased to the same user.
    segment_sync.identify(
        user_id=user_id,
        anonymous_id=device_a,
        traits={
            "email": "Hanako.Sato@Example.JP",
            "phone": "090-1234-5678",
            "name": "佐藤 花子",
            "lastNameKana": "サトウ",
        },
        timestamp=at(5),
        message_id=mid(5, "segment"),
    )
    segment_async.alias(previous_id=device_b, user_id=user_id, timestamp=at(6), message_id=mid(6, "segment"))
    segment_async.flush()

    # 3. The app (RudderStack) identifies the member on device B and reports a purchase.
    rudder.identify(
        user_id=user_id, anonymous_id=device_b, traits={"plan": "gold"}, timestamp=at(7), message_id=mid(7, "rudder")
    )
    rudder.track(
        user_id=user_id,
        event="Order Completed",
        properties={"total": 4200, "currency": "JPY"},
        timestamp=at(8),
        message_id=mid(8, "rudder"),
    )
    segment_async.track(
        user_id=user_id, event="Review Written", properties={"stars": 5}, timestamp=at(9), message_id=mid(9, "segment")
    )
    rudder.flush()
    rudder.shutdown()
    segment_async.shutdown()
    assert errors == [], errors
    server.wait_applied(token)

    # Exactly one live customer in the workspace.
    everyone = rest.get("/customers")["items"]
    assert len(everyone) == 1, everyone
    customer_id = everyone[0]["id"]

    # Found by every identity, in the forms people type them.
    lookups = [
        {"email": "hanako.sato@example.jp"},
        {"email": "  HANAKO.SATO@example.jp "},
        {"phone": "+819012345678"},
        {"phone": "090-1234-5678"},
        {"phone": "０９０１２３４５６７８"},
        {"user_id": user_id},
        {"anonymous_id": device_a},
        {"anonymous_id": device_b},
        {"q": "さとう"},
    ]
    for params in lookups:
        found = rest.get("/customers", **params)["items"]
        assert [c["id"] for c in found] == [customer_id], params
    assert rest.get("/customers", phone="+819099999999")["items"] == []

    profile = rest.get(f"/customers/{customer_id}")
    assert profile["user_id"] == user_id
    assert profile["email"] == "hanako.sato@example.jp"
    assert profile["phone"] == "+819012345678"
    assert profile["display_name"] == "佐藤 花子"
    # RudderStack sends identify traits in context.traits only; they count as the identify's traits.
    assert profile["traits"]["plan"] == "gold"
    assert profile["event_count"] == len(sent)
    assert {(i["type"], i["value"]) for i in profile["identities"]} == {
        ("user_id", user_id),
        ("email", "hanako.sato@example.jp"),
        ("phone", "+819012345678"),
        ("anonymous_id", device_a),
        ("anonymous_id", device_b),
    }
    assert profile["merged_ids"], "device B's anonymous profile was merged into the customer"
    assert set(profile["channels"]) == {"web", "app"}
    merges = rest.get(f"/customers/{customer_id}/merges")["items"]
    assert merges and all(m["into_id"] == customer_id for m in merges)

    # The whole timeline, both SDKs, newest first, each event once.
    timeline = rest.timeline(customer_id)
    assert [e["message_id"] for e in timeline] == [m for m, _ in reversed(sent)]
    stamps = [dt.datetime.fromisoformat(e["timestamp"]) for e in timeline]
    assert stamps == sorted(stamps, reverse=True)
    by_id = {e["message_id"]: e for e in timeline}
    for step, (message_id, sdk) in enumerate(sent):
        event = by_id[message_id]
        # The SDKs' own clocks are right here, so skew correction keeps the time they stamped (±latency).
        assert abs(dt.datetime.fromisoformat(event["timestamp"]) - at(step)) < dt.timedelta(seconds=5), event
        assert event["context"]["library"]["name"] == "analytics-python"
        if sdk == "rudder":
            assert event["source_id"] == app_source["id"]
            assert event["channel"] == "app"
        else:
            assert event["source_id"] != app_source["id"]
            assert event["channel"] == "web"
    assert by_id[sent[8][0]]["event"] == "Order Completed"
    assert by_id[sent[8][0]]["properties"] == {"total": 4200, "currency": "JPY"}
    assert by_id[sent[2][0]]["name"] == "Campaign LP"
    assert by_id[sent[5][0]]["traits"]["email"] == "Hanako.Sato@Example.JP"
    assert {e["type"] for e in timeline} == {"page", "track", "screen", "identify", "alias"}

    # On the wire: every SDK call was a POST to /v1/batch, answered 200, from both libraries (each event's
    # source above shows which write key authenticated it; the access log deliberately omits the key).
    wire = sdk_requests(server)
    assert wire, "no SDK request in the access log"
    assert all('"POST /v1/batch HTTP/1.1" 200' in line for line in wire), wire
    assert not any(write_key in line or app_source["write_key"] in line for line in wire), "write key logged"
    assert len({line.rsplit("analytics-python/", 1)[1] for line in wire}) == 2, "both SDKs' versions"


def test_sdks_see_refusals_as_api_errors(live_workspace, rudder, monkeypatch):
    """A wrong write key is a 401 the SDKs recognise (APIError with the status), so they report it instead of
    retrying it like a network failure."""
    server, write_key, token, _slug = live_workspace

    segment_sync = SegmentClient("not-a-write-key", host=server.url, sync_mode=True, max_retries=0)
    with pytest.raises(SegmentAPIError) as refused:
        segment_sync.track(user_id="u1", event="X")
    assert refused.value.status == 401
    assert "write key" in refused.value.message

    errors: list[Exception] = []
    monkeypatch.setattr(rudder, "write_key", "not-a-write-key")
    monkeypatch.setattr(rudder, "dataPlaneUrl", server.url)
    monkeypatch.setattr(rudder, "on_error", lambda error, batch: errors.append(error))
    monkeypatch.setattr(rudder, "max_retries", 0)
    rudder.track(user_id="u1", event="X")
    rudder.flush()
    assert len(errors) == 1, errors
    assert isinstance(errors[0], RudderAPIError), repr(errors[0])
    assert errors[0].status == 401
    assert "write key" in errors[0].message

    # And the right key through the same clients works: only that event is stored, the refused ones are not.
    SegmentClient(write_key, host=server.url, sync_mode=True, max_retries=0).track(user_id="u1", event="OK")
    server.wait_applied(token)
    rest = Rest(server.url, token)
    (customer,) = rest.get("/customers", user_id="u1")["items"]
    assert [e["event"] for e in rest.timeline(customer["id"])] == ["OK"]
