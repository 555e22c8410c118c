"""Web push end to end through pywebpush to a loopback push service that checks the VAPID header and
decrypts the payload with the subscription's keys."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tsunagu.messaging.channels.base import DeliveryError, Message
from tsunagu.messaging.channels.webpush import Channel, SubscriptionExpired, vapid_keys_generate
from tsunagu.testing.standins.push import PushService

SUBJECT = "mailto:ops@shop.example.jp"


@pytest.fixture
def push() -> Iterator[PushService]:
    with PushService() as service:
        yield service


@pytest.fixture
def keys() -> tuple[str, str]:
    return vapid_keys_generate()


def _channel(keys: tuple[str, str], *, allow_private: bool = True) -> Channel:
    private, public = keys
    config = Channel.clean_config({"vapid_private_key": private, "vapid_public_key": public, "subject": SUBJECT})
    return Channel(config, allow_private=allow_private)


def _message(subscription: dict[str, Any], *, topic: str = "transactional", key: str = "dlv_push_1") -> Message:
    content = Channel.finish(
        {"title": "発送しました", "body": "ご注文 #42 を発送しました。", "url": "https://shop.example.jp/orders/42",
         "icon": "/static/icon.png"}
    )
    return Message(
        key=key, channel_type="webpush", topic=topic, address=subscription["endpoint"], content=content,
        extra={"subscription": subscription},
    )


def test_the_push_service_decrypts_the_notification(push: PushService, keys: tuple[str, str]) -> None:
    sub = push.subscribe(application_server_key=keys[1])
    outcome = _channel(keys).send(_message(sub.info))
    [got] = push.wait_for(1)
    assert push.rejected == []
    assert got.notification == {
        "title": "発送しました",
        "body": "ご注文 #42 を発送しました。",
        "url": "https://shop.example.jp/orders/42",
        "icon": "/static/icon.png",
        "key": "dlv_push_1",
    }
    assert got.headers["content-encoding"] == "aes128gcm"
    assert got.body != got.plaintext
    assert outcome.status == "sent"
    assert outcome.provider_id.startswith(f"{push.origin}/message/")
    assert outcome.raw == got.plaintext


def test_the_vapid_header_names_the_key_the_audience_and_the_contact(push: PushService, keys: tuple[str, str]) -> None:
    sub = push.subscribe(application_server_key=keys[1])
    _channel(keys).send(_message(sub.info))
    [got] = push.wait_for(1)
    assert got.headers["authorization"].startswith("vapid t=")
    assert got.vapid_key == keys[1]
    assert got.claims["aud"] == push.origin
    assert got.claims["sub"] == SUBJECT
    assert time.time() < got.claims["exp"] <= time.time() + 24 * 3600


def test_a_push_signed_with_another_vapid_key_is_refused(push: PushService, keys: tuple[str, str]) -> None:
    sub = push.subscribe(application_server_key=keys[1])
    with pytest.raises(DeliveryError) as failed:
        _channel(vapid_keys_generate()).send(_message(sub.info))
    assert failed.value.permanent
    assert not isinstance(failed.value, SubscriptionExpired)
    assert failed.value.reason.startswith("HTTP 403")
    assert push.received == []
    assert push.rejected[0].reason == "VAPID key is not the one the subscription was made with"


@pytest.mark.parametrize(("topic", "urgency"), [("transactional", "high"), ("service", "normal"), ("marketing", "low")])
def test_ttl_and_urgency(push: PushService, keys: tuple[str, str], topic: str, urgency: str) -> None:
    sub = push.subscribe(application_server_key=keys[1])
    outcome = _channel(keys).send(_message(sub.info, topic=topic))
    [got] = push.wait_for(1)
    assert (got.ttl, got.urgency) == (86400, urgency)
    assert outcome.headers == {"Urgency": urgency, "TTL": "86400", "Content-Encoding": "aes128gcm"}


@pytest.mark.parametrize("status", [404, 410])
def test_an_expired_subscription_is_permanent_and_recognisable(
    push: PushService, keys: tuple[str, str], status: int
) -> None:
    sub = push.subscribe(application_server_key=keys[1])
    if status == 410:
        push.expire(sub)
        info = sub.info
    else:
        info = {**sub.info, "endpoint": f"{push.origin}/push/{'0' * 32}"}  # a subscription it never had
    with pytest.raises(SubscriptionExpired) as failed:
        _channel(keys).send(_message(info))
    assert failed.value.permanent
    assert failed.value.expired is True
    assert failed.value.reason == "subscription expired"
    assert push.rejected[0].status == status


@pytest.mark.parametrize(("status", "retry_after"), [(500, None), (503, 60), (429, 30)])
def test_server_errors_and_rate_limits_are_temporary(
    push: PushService, keys: tuple[str, str], status: int, retry_after: int | None
) -> None:
    sub = push.subscribe(application_server_key=keys[1])
    push.answer_next(status, retry_after=retry_after)
    channel = _channel(keys)
    with pytest.raises(DeliveryError) as failed:
        channel.send(_message(sub.info))
    assert not failed.value.permanent
    assert not getattr(failed.value, "expired", False)
    assert failed.value.retry_after == (float(retry_after) if retry_after is not None else None)
    assert failed.value.reason.startswith(f"HTTP {status}")
    channel.send(_message(sub.info))  # and the retry gets through
    assert [p.answered for p in push.wait_for(2)] == [status, 201]


def test_a_payload_too_large_is_permanent(push: PushService, keys: tuple[str, str]) -> None:
    sub = push.subscribe(application_server_key=keys[1])
    push.answer_next(413)
    with pytest.raises(DeliveryError) as failed:
        _channel(keys).send(_message(sub.info))
    assert failed.value.permanent


def test_a_push_service_that_is_down_is_temporary(keys: tuple[str, str]) -> None:
    with PushService() as gone:
        info = gone.subscribe().info
    with pytest.raises(DeliveryError) as failed:
        _channel(keys).send(_message(info))
    assert not failed.value.permanent
    assert failed.value.reason.startswith("could not reach the push service")


def test_a_loopback_endpoint_is_refused_unless_private_addresses_are_allowed(
    push: PushService, keys: tuple[str, str]
) -> None:
    """Endpoints come from browsers, i.e. from anyone: they are guarded like outbound webhooks."""
    sub = push.subscribe(application_server_key=keys[1])
    with pytest.raises(DeliveryError) as refused:
        _channel(keys, allow_private=False).send(_message(sub.info))
    assert refused.value.permanent
    assert refused.value.reason == "refused: 127.0.0.1 resolves to a private address (127.0.0.1, loopback)"
    assert push.received == [] and push.rejected == []


@pytest.mark.parametrize(
    "subscription",
    [
        None,
        {"endpoint": "https://push.example.net/x"},
        {"endpoint": "https://push.example.net/x", "keys": {"p256dh": "abc"}},
        {"endpoint": "https://push.example.net/x", "keys": {"p256dh": "!!", "auth": "!!"}},
        {"endpoint": "ftp://push.example.net/x", "keys": {"p256dh": "", "auth": ""}},
    ],
)
def test_an_unusable_subscription_is_permanent(keys: tuple[str, str], subscription: Any) -> None:
    message = _message({"endpoint": "https://push.example.net/x"})
    message.extra["subscription"] = subscription
    with pytest.raises(DeliveryError) as failed:
        _channel(keys).send(message)
    assert failed.value.permanent
    assert "subscription" in failed.value.reason


def test_the_channel_sends_several_messages_and_closes(push: PushService, keys: tuple[str, str]) -> None:
    subs = [push.subscribe(application_server_key=keys[1]) for _ in range(3)]
    channel = _channel(keys)
    for n, sub in enumerate(subs):
        channel.send(_message(sub.info, key=f"dlv_{n}"))
    channel.close()
    channel.send(_message(subs[0].info, key="dlv_after_close"))
    got = push.wait_for(4)
    assert [p.notification["key"] for p in got] == ["dlv_0", "dlv_1", "dlv_2", "dlv_after_close"]
    assert [p.token for p in got] == [s.token for s in subs] + [subs[0].token]


def test_a_push_service_that_redirects_is_not_followed(push: PushService, keys: tuple[str, str]) -> None:
    sub = push.subscribe(application_server_key=keys[1])
    push.answer_next(307, location=sub.info["endpoint"])
    with pytest.raises(DeliveryError) as failed:
        _channel(keys).send(_message(sub.info))
    assert failed.value.permanent
    assert failed.value.reason == "the push service answered with a redirect"
    assert len(push.received) == 1


def test_a_broken_private_key_in_the_config_is_a_permanent_failure(push: PushService, keys: tuple[str, str]) -> None:
    sub = push.subscribe(application_server_key=keys[1])
    channel = Channel({"vapid_private_key": "c2hvcnQ", "vapid_public_key": keys[1], "subject": SUBJECT})
    with pytest.raises(DeliveryError) as failed:
        channel.send(_message(sub.info))
    assert failed.value.permanent
    assert failed.value.reason.startswith("the channel's vapid_private_key must be the 32-byte raw private key")
    assert push.received == [] and push.rejected == []
