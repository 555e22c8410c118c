"""Outbound webhooks to a loopback receiver that verifies them with the standardwebhooks SDK: signing, the
retry key, and how each answer maps to delivered / permanent / temporary."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tsunagu.messaging.channels.base import DeliveryError, Message
from tsunagu.messaging.channels.webhook import Channel
from tsunagu.testing.standins.webhook import WebhookReceiver


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def _message(url: str, payload: str = '{"order": {"id": 42, "item": "配送ボックス"}}', key: str = "dlv_1") -> Message:
    return Message(
        key=key, channel_type="webhook", topic="transactional", address=url,
        content=Channel.finish({"payload": payload}),
    )


def _channel(hook: WebhookReceiver, **config: str) -> Channel:
    return Channel(Channel.clean_config({"url": hook.url(), "secret": hook.secret, **config}), allow_private=True)


def test_the_body_is_signed_and_verifies_with_the_sdk(hook: WebhookReceiver) -> None:
    outcome = _channel(hook).send(_message(hook.url("/orders")))
    [got] = hook.wait_for(1)
    assert hook.rejected == []
    assert got.path == "/orders"
    assert got.payload == {"order": {"id": 42, "item": "配送ボックス"}}
    assert got.body == json.dumps(got.payload, ensure_ascii=False, separators=(",", ":")).encode()
    assert got.webhook_id == "dlv_1"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("tsunagu/")
    assert got.headers["webhook-signature"].startswith("v1,")
    assert outcome.status == "delivered"
    assert outcome.raw == got.body
    assert outcome.headers["webhook-signature"] == got.headers["webhook-signature"]


def test_a_receiver_with_another_secret_refuses_it(hook: WebhookReceiver) -> None:
    other = Channel(Channel.clean_config({"url": hook.url()}), allow_private=True)  # a generated secret
    with pytest.raises(DeliveryError) as failed:
        other.send(_message(hook.url()))
    assert failed.value.permanent
    assert failed.value.reason.startswith("HTTP 401")
    assert hook.received == []
    assert "No matching signature" in hook.rejected[0].reason


def test_a_retry_carries_the_same_webhook_id(hook: WebhookReceiver) -> None:
    channel = _channel(hook)
    hook.answer_next(500)
    with pytest.raises(DeliveryError) as failed:
        channel.send(_message(hook.url(), key="dlv_retry"))
    assert not failed.value.permanent
    channel.send(_message(hook.url(), key="dlv_retry"))
    first, second = hook.wait_for(2)
    assert (first.answered, second.answered) == (500, 200)
    assert first.webhook_id == second.webhook_id == "dlv_retry"
    assert first.body == second.body


def test_the_address_falls_back_to_the_channel_url(hook: WebhookReceiver) -> None:
    channel = _channel(hook, url=hook.url("/configured"))
    channel.send(_message(""))
    assert hook.wait_for(1)[0].path == "/configured"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413, 422])
def test_client_errors_are_permanent(hook: WebhookReceiver, status: int) -> None:
    hook.answer_next(status, body=b"no such hook")
    with pytest.raises(DeliveryError) as failed:
        _channel(hook).send(_message(hook.url()))
    assert failed.value.permanent
    assert failed.value.reason.startswith(f"HTTP {status}")
    assert failed.value.reason.endswith(": no such hook")


def test_gone_is_permanent_and_says_so(hook: WebhookReceiver) -> None:
    hook.answer_next(410)
    with pytest.raises(DeliveryError) as failed:
        _channel(hook).send(_message(hook.url()))
    assert failed.value.permanent
    assert "gone" in failed.value.reason


@pytest.mark.parametrize(("status", "retry_after"), [(408, None), (429, 30), (500, None), (502, None), (503, 120)])
def test_timeouts_rate_limits_and_server_errors_are_temporary(
    hook: WebhookReceiver, status: int, retry_after: int | None
) -> None:
    hook.answer_next(status, retry_after=retry_after)
    with pytest.raises(DeliveryError) as failed:
        _channel(hook).send(_message(hook.url()))
    assert not failed.value.permanent
    assert failed.value.retry_after == (float(retry_after) if retry_after is not None else None)


def test_a_receiver_that_is_down_is_temporary(hook: WebhookReceiver) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    with pytest.raises(DeliveryError) as failed:
        _channel(hook).send(_message(f"http://127.0.0.1:{port}/hook"))
    assert not failed.value.permanent
    assert failed.value.reason.startswith(f"could not reach http://127.0.0.1:{port}/hook")


def test_a_redirect_is_followed_with_the_same_signed_request(hook: WebhookReceiver) -> None:
    with WebhookReceiver(hook.secret, host="127.0.0.2") as moved:
        hook.answer_next(308, location=moved.url("/new"))
        outcome = _channel(hook).send(_message(hook.url("/old"), key="dlv_moved"))
        [there] = moved.wait_for(1)
    [here] = hook.wait_for(1)
    assert here.answered == 308
    assert there.path == "/new"
    assert there.webhook_id == "dlv_moved"
    assert there.body == here.body
    assert outcome.status == "delivered"
    assert outcome.detail == f"HTTP 200 from {moved.url('/new')}"


def test_redirects_are_followed_a_few_times_only(hook: WebhookReceiver) -> None:
    for _ in range(4):
        hook.answer_next(302, location=hook.url("/again"))
    with pytest.raises(DeliveryError) as failed:
        _channel(hook).send(_message(hook.url()))
    assert failed.value.permanent
    assert "more than 3 redirects" in failed.value.reason
    assert len(hook.received) == 4


def test_a_redirect_to_another_scheme_is_refused(hook: WebhookReceiver) -> None:
    hook.answer_next(302, location="file:///etc/passwd")
    with pytest.raises(DeliveryError) as failed:
        _channel(hook).send(_message(hook.url()))
    assert failed.value.permanent
    assert failed.value.reason == "refused: not an http(s) URL: file:///etc/passwd"
