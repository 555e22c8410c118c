"""LINE's webhook: the signature (base64 HMAC-SHA256 of the body with the channel secret) and the events
that become customer events."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tsunagu.core.errors import AuthenticationError, ValidationError
from tsunagu.messaging.channels.base import CustomerEvent, InboundRequest
from tsunagu.messaging.channels.line import Channel
from tsunagu.testing.standins.line import (
    LineStandIn,
    follow_event,
    line_signature,
    postback_event,
    text_message_event,
    unfollow_event,
    user_id,
    webhook_body,
)

URL = "https://cx.example.jp/hooks/line/3/events"
AT_MS = 1_767_225_600_123  # 2026-01-01T00:00:00.123Z


@pytest.fixture
def line() -> LineStandIn:
    return LineStandIn()  # not started: only its secret and signer are used


@pytest.fixture
def channel(line: LineStandIn) -> Channel:
    return Channel(Channel.clean_config(line.channel_config_offline()))


def request(body: bytes, headers: dict[str, str]) -> InboundRequest:
    return InboundRequest(url=URL, headers=headers, body=body)


def parse(channel: Channel, line: LineStandIn, *events: dict[str, object]) -> list[object]:
    body, headers = line.webhook(list(events))
    channel.verify(webhook="events", request=request(body, headers))
    return list(channel.parse(webhook="events", request=request(body, headers)))


def test_the_signature_is_lines_algorithm(line: LineStandIn) -> None:
    # The value from LINE's documentation of signature validation, computed independently of the SDK.
    import base64
    import hashlib
    import hmac

    body = webhook_body([follow_event(user_id())])
    expected = base64.b64encode(hmac.new(line.channel_secret.encode(), body, hashlib.sha256).digest()).decode()
    assert line_signature(line.channel_secret, body) == expected


def test_a_signed_webhook_is_accepted(line: LineStandIn, channel: Channel) -> None:
    body, headers = line.webhook([follow_event(user_id())])
    channel.verify(webhook="events", request=request(body, headers))


def test_forged_and_unsigned_webhooks_are_refused(line: LineStandIn, channel: Channel) -> None:
    body, headers = line.webhook([follow_event(user_id())])
    with pytest.raises(AuthenticationError, match="missing"):
        channel.verify(webhook="events", request=request(body, {"content-type": "application/json"}))
    with pytest.raises(AuthenticationError, match="does not match"):
        channel.verify(webhook="events", request=request(body, {
            "x-line-signature": line_signature("another-secret", body)}))
    with pytest.raises(AuthenticationError, match="does not match"):
        channel.verify(webhook="events", request=request(body.replace(b"follow", b"unfollow"), headers))
    with pytest.raises(AuthenticationError):
        channel.verify(webhook="events", request=request(b"\xff\xfe", {
            "x-line-signature": line_signature(line.channel_secret, b"\xff\xfe")}))


def test_follow(line: LineStandIn, channel: Channel) -> None:
    user = user_id()
    event = follow_event(user, timestamp_ms=AT_MS, event_id="01HZZZZZZZZZZZZZZZZZZZZZZA")
    assert parse(channel, line, event) == [CustomerEvent(
        receipt="01HZZZZZZZZZZZZZZZZZZZZZZA", identity=("external:line_user_id", user), event="LINE Friend Added",
        properties={"unblocked": False}, at=datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC))]
    [unblocked] = parse(channel, line, follow_event(user, unblocked=True))
    assert isinstance(unblocked, CustomerEvent)
    assert unblocked.properties == {"unblocked": True}


def test_unfollow(line: LineStandIn, channel: Channel) -> None:
    user = user_id()
    [event] = parse(channel, line, unfollow_event(user, event_id="01HUNFOLLOW0000000000000000"))
    assert isinstance(event, CustomerEvent)
    assert (event.receipt, event.identity, event.event) == (
        "01HUNFOLLOW0000000000000000", ("external:line_user_id", user), "LINE Blocked")


def test_text_message(line: LineStandIn, channel: Channel) -> None:
    user = user_id()
    [event] = parse(channel, line, text_message_event(user, "返品したいです", message_id="468789577898262530"))
    assert isinstance(event, CustomerEvent)
    assert event.event == "LINE Message Received"
    assert event.properties == {"text": "返品したいです", "message_id": "468789577898262530", "message_type": "text"}


def test_postback(line: LineStandIn, channel: Channel) -> None:
    user = user_id()
    plain, picked = parse(channel, line, postback_event(user, "action=reorder&item=42"),
                          postback_event(user, "pick", params={"date": "2026-01-02"}))
    assert isinstance(plain, CustomerEvent)
    assert isinstance(picked, CustomerEvent)
    assert (plain.event, plain.properties) == ("LINE Postback", {"data": "action=reorder&item=42"})
    assert picked.properties == {"data": "pick", "params": {"date": "2026-01-02"}}


def test_a_redelivery_keeps_its_receipt(line: LineStandIn, channel: Channel) -> None:
    user = user_id()
    first = text_message_event(user, "hi", event_id="01HREDELIVERED00000000000000")
    again = {**first, "deliveryContext": {"isRedelivery": True}}
    [a] = parse(channel, line, first)
    [b] = parse(channel, line, again)
    assert isinstance(a, CustomerEvent)
    assert isinstance(b, CustomerEvent)
    assert a.receipt == b.receipt == "01HREDELIVERED00000000000000"
    assert b.properties["redelivery"] is True


def test_other_events_are_left_out_safely(line: LineStandIn, channel: Channel) -> None:
    user = user_id()
    group = text_message_event(user, "in a group")
    group["source"] = {"type": "group", "groupId": "C" + "1" * 32, "userId": user}
    no_user = text_message_event(user, "no consent")
    no_user["source"] = {"type": "group", "groupId": "C" + "1" * 32}
    events = [
        {"type": "join", "timestamp": AT_MS, "source": {"type": "group", "groupId": "C" + "1" * 32},
         "webhookEventId": "01HJOIN", "deliveryContext": {"isRedelivery": False}, "mode": "active"},
        {"type": "unsend", "source": {"type": "user", "userId": user}, "webhookEventId": "01HUNSEND",
         "unsend": {"messageId": "1"}},
        {"type": "somethingNew", "webhookEventId": "01HNEW"},
        "not an object",
        no_user,
        group,
        {"type": "message", "source": {"type": "user", "userId": user}, "webhookEventId": "01HSTICKER",
         "message": {"type": "sticker", "id": "9", "packageId": "446", "stickerId": "1988"}},
    ]
    parsed = parse(channel, line, *events)  # type: ignore[arg-type]
    assert [e.receipt for e in parsed if isinstance(e, CustomerEvent)] == [group["webhookEventId"], "01HSTICKER"]
    assert parsed[0].properties == {  # type: ignore[union-attr]
        "text": "in a group", "message_id": group["message"]["id"], "message_type": "text",  # type: ignore[index]
        "source": "group", "group_id": "C" + "1" * 32}
    assert parsed[1].properties == {"message_id": "9", "message_type": "sticker",  # type: ignore[union-attr]
                                    "sticker": "446/1988"}


def test_lines_verify_button_sends_no_events(line: LineStandIn, channel: Channel) -> None:
    assert parse(channel, line) == []


@pytest.mark.parametrize(("body", "field"), [(b"not json", "body"), (b'{"destination": "U1"}', "events"),
                                             (b"[]", "events")])
def test_an_unreadable_body_names_the_field(channel: Channel, body: bytes, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        channel.parse(webhook="events", request=request(body, {}))
    assert caught.value.field == field


def test_the_webhook_body_is_lines_shape(line: LineStandIn) -> None:
    body = json.loads(line.webhook([text_message_event(user_id(), "x")])[0])
    [event] = body["events"]
    assert body["destination"].startswith("U")
    assert set(event) >= {"type", "mode", "timestamp", "source", "webhookEventId", "deliveryContext", "replyToken",
                          "message"}


def test_the_stand_in_posts_signed_webhooks_over_http(line: LineStandIn, channel: Channel) -> None:
    received: list[InboundRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(InboundRequest(url=URL, headers={k.lower(): v for k, v in self.headers.items()},
                                           body=body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks/line/3/events"
        assert line.send_webhook(url, [follow_event(user_id())])[0] == 200
        assert line.send_webhook(url, [follow_event(user_id())], signature="forged")[0] == 200
    finally:
        server.shutdown()
        server.server_close()
    genuine, forged = received
    channel.verify(webhook="events", request=genuine)
    with pytest.raises(AuthenticationError):
        channel.verify(webhook="events", request=forged)
