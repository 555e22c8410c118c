"""The LINE channel against the LINE stand-in, through the official SDK: push and multicast as LINE
documents them, the retry key, and how LINE's answers become outcomes and delivery errors."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tsunagu.core.errors import ValidationError
from tsunagu.messaging.channels import channel_class
from tsunagu.messaging.channels.base import DeliveryError, Message
from tsunagu.messaging.channels.line import Channel, retry_key
from tsunagu.testing.standins.line import LineStandIn, user_id

BUBBLE = {"type": "bubble", "body": {"type": "box", "layout": "vertical",
                                     "contents": [{"type": "text", "text": "ご注文を発送しました", "weight": "bold"}]}}


@pytest.fixture
def line() -> Iterator[LineStandIn]:
    with LineStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def channel(line: LineStandIn) -> Iterator[Channel]:
    channel = Channel(Channel.clean_config(line.channel_config()))
    yield channel
    channel.close()


def message(to: str, key: str = "delivery-42", **content: Any) -> Message:
    return Message(key=key, channel_type="line", topic="transactional", address=to,
                   content=Channel.finish(content or {"text": "こんにちは"}))


def test_registered_as_line() -> None:
    assert channel_class("line") is Channel
    assert Channel.secret_fields == ("channel_access_token", "channel_secret")


def test_a_push_as_line_documents_it(line: LineStandIn, channel: Channel) -> None:
    user = user_id()
    outcome = channel.send(message(user, text="発送しました", flex=BUBBLE, alt_text="発送のお知らせ"))

    [request] = line.requests
    assert request.path == "/v2/bot/message/push"
    assert request.headers["authorization"] == f"Bearer {line.channel_access_token}"
    assert request.headers["x-line-retry-key"] == str(uuid.uuid5(uuid.UUID("5d0c1c2e-7a55-4f0e-9a57-3b1c6f1d2a10"),
                                                                 "delivery-42"))
    assert request.body["to"] == user
    assert request.body["messages"] == [
        {"type": "text", "text": "発送しました"},
        {"type": "flex", "altText": "発送のお知らせ", "contents": BUBBLE},
    ]
    assert request.status == 200
    [delivery] = line.deliveries
    assert outcome.provider_id == delivery.request_id
    assert outcome.status == "sent"
    assert outcome.headers == {"X-Line-Retry-Key": request.headers["x-line-retry-key"]}
    assert outcome.detail == ""


def test_the_retry_key_is_stable_and_a_uuid() -> None:
    assert retry_key("delivery-42") == retry_key("delivery-42")
    assert retry_key("delivery-42") != retry_key("delivery-43")
    assert uuid.UUID(retry_key("delivery-42")).version == 5
    given = "123e4567-e89b-12d3-a456-426614174000"
    assert retry_key(given) == given
    assert retry_key(given.replace("-", "").upper()) == given


def test_a_retry_after_a_lost_answer_is_not_delivered_twice(line: LineStandIn, channel: Channel) -> None:
    user = user_id()
    line.reply(line.temporary(500, accept=True))  # LINE took it, but the answer is an error
    with pytest.raises(DeliveryError) as caught:
        channel.send(message(user))
    assert caught.value.permanent is False

    outcome = channel.send(message(user))  # the engine's retry, same delivery key

    assert [r.status for r in line.requests] == [500, 409]
    key = retry_key("delivery-42")
    assert line.delivered(key) == 1
    assert outcome.status == "sent"
    assert outcome.detail == "already accepted"
    assert outcome.provider_id == line.deliveries[0].request_id


def test_a_retry_after_a_refused_request_is_delivered(line: LineStandIn, channel: Channel) -> None:
    user = user_id()
    line.reply(line.temporary(500))
    with pytest.raises(DeliveryError):
        channel.send(message(user))
    outcome = channel.send(message(user))
    assert [r.status for r in line.requests] == [500, 200]
    assert line.delivered(retry_key("delivery-42")) == 1
    assert outcome.detail == ""


@pytest.mark.parametrize(("status", "retry_after"), [(500, None), (503, None), (429, 3.0)])
def test_temporary_errors(line: LineStandIn, channel: Channel, status: int, retry_after: float | None) -> None:
    line.reply(line.temporary(status, retry_after=retry_after))
    with pytest.raises(DeliveryError) as caught:
        channel.send(message(user_id()))
    assert (caught.value.permanent, caught.value.bounced) == (False, False)
    assert caught.value.retry_after == retry_after
    assert caught.value.reason.startswith(f"LINE {status}")
    assert line.deliveries == []


def test_a_monthly_limit_is_permanent(line: LineStandIn, channel: Channel) -> None:
    line.reply(line.permanent("You have reached your monthly limit.", status=429))
    with pytest.raises(DeliveryError) as caught:
        channel.send(message(user_id()))
    assert caught.value.permanent is True


def test_a_refused_push_is_permanent(line: LineStandIn, channel: Channel) -> None:
    line.reply(line.permanent("Failed to send messages"))
    with pytest.raises(DeliveryError) as caught:
        channel.send(message(user_id()))
    assert (caught.value.permanent, caught.value.bounced) == (True, False)
    assert caught.value.reason == "LINE 400: Failed to send messages"


def test_an_invalid_user_id_is_permanent_and_bounced(line: LineStandIn, channel: Channel) -> None:
    with pytest.raises(DeliveryError) as caught:
        channel.send(message("not-a-line-user"))
    assert (caught.value.permanent, caught.value.bounced) == (True, True)
    assert "to:" in caught.value.reason
    assert line.requests[0].status == 400


def test_a_wrong_token_is_permanent(line: LineStandIn) -> None:
    channel = Channel(Channel.clean_config({**line.channel_config(), "channel_access_token": "wrong"}))
    with pytest.raises(DeliveryError) as caught:
        channel.send(message(user_id()))
    assert caught.value.permanent is True
    assert caught.value.reason.startswith("LINE 401")


def test_an_unreachable_provider_is_temporary(line: LineStandIn) -> None:
    config = line.channel_config()
    line.stop()
    channel = Channel(Channel.clean_config(config))
    with pytest.raises(DeliveryError) as caught:
        channel.send(message(user_id()))
    assert caught.value.permanent is False


def test_multicast(line: LineStandIn, channel: Channel) -> None:
    users = [user_id() for _ in range(3)]
    messages = Channel.finish({"text": "セールのお知らせ"})["messages"]
    outcome = channel.multicast(users, messages, "broadcast-7:chunk-1")
    again = channel.multicast(users, messages, "broadcast-7:chunk-1")

    first, second = line.requests
    assert first.path == "/v2/bot/message/multicast"
    assert first.body["to"] == users
    assert first.body["messages"] == [{"type": "text", "text": "セールのお知らせ"}]
    assert first.headers["x-line-retry-key"] == retry_key("broadcast-7:chunk-1")
    assert (first.status, second.status) == (200, 409)
    assert line.delivered(retry_key("broadcast-7:chunk-1")) == 1
    assert again.detail == "already accepted"
    assert again.provider_id == outcome.provider_id == line.deliveries[0].request_id
    with pytest.raises(ValueError, match="1 to 500"):
        channel.multicast([user_id() for _ in range(501)], messages, "k")


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"channel_secret": "s"}, "config.channel_access_token"),
        ({"channel_access_token": "t"}, "config.channel_secret"),
        ({"channel_access_token": "t", "channel_secret": "s", "base_url": "api.line.me"}, "config.base_url"),
        ({"channel_access_token": "t", "channel_secret": "s", "webhook": "x"}, "config.webhook"),
    ],
)
def test_config_is_checked(config: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Channel.clean_config(config)
    assert caught.value.field == field


def test_hold_keeps_the_answer_back_after_the_delivery(line: LineStandIn, channel: Channel) -> None:
    # What crash tests rely on: the delivery is counted while the sender still waits for the answer.
    outcomes: list[Any] = []
    line.hold()
    sender = threading.Thread(target=lambda: outcomes.append(channel.send(message(user_id()))))
    sender.start()
    line.wait_for_deliveries(1)
    assert sender.is_alive()
    assert outcomes == []
    line.release()
    sender.join(timeout=10)
    assert outcomes[0].provider_id == line.deliveries[0].request_id
