"""Outbound webhooks stay off private addresses: loopback refused unless the workspace allows private
webhooks, the check made on what the name resolves to, and every redirect hop checked."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tsunagu.messaging import netguard
from tsunagu.messaging.channels.base import DeliveryError, Message
from tsunagu.messaging.channels.webhook import Channel
from tsunagu.testing.standins.webhook import WebhookReceiver


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def _send(hook: WebhookReceiver, url: str, *, allow_private: bool) -> Any:
    channel = Channel(Channel.clean_config({"url": url, "secret": hook.secret}), allow_private=allow_private)
    message = Message(
        key="dlv_guard", channel_type="webhook", topic="transactional", address=url,
        content=Channel.finish({"payload": '{"ok": true}'}),
    )
    return channel.send(message)


def _resolve_to_loopback(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == name:
            asked.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_loopback_is_refused_when_the_workspace_does_not_allow_private_webhooks(hook: WebhookReceiver) -> None:
    with pytest.raises(DeliveryError) as refused:
        _send(hook, hook.url(), allow_private=False)
    assert refused.value.permanent
    assert refused.value.reason == "refused: 127.0.0.1 resolves to a private address (127.0.0.1, loopback)"
    assert hook.received == [] and hook.rejected == []


def test_loopback_is_reached_when_the_workspace_allows_it(hook: WebhookReceiver) -> None:
    assert _send(hook, hook.url(), allow_private=True).status == "delivered"
    assert hook.wait_for(1)[0].payload == {"ok": True}


def test_localhost_and_a_mapped_literal_are_refused(hook: WebhookReceiver) -> None:
    with pytest.raises(DeliveryError, match=r"refused: localhost resolves to a private address \(.*loopback\)"):
        _send(hook, hook.url(host="localhost"), allow_private=False)
    with pytest.raises(DeliveryError, match=r"\(::ffff:127\.0\.0\.1, IPv4-mapped loopback\)"):
        _send(hook, hook.url(host="[::ffff:127.0.0.1]"), allow_private=False)
    assert hook.received == []


def test_a_public_looking_name_that_resolves_to_loopback_is_refused(
    hook: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _resolve_to_loopback(monkeypatch, "hooks.partner.example")
    with pytest.raises(DeliveryError) as refused:
        _send(hook, hook.url(host="hooks.partner.example"), allow_private=False)
    assert refused.value.reason == (
        "refused: hooks.partner.example resolves to a private address (127.0.0.1, loopback)"
    )
    assert asked == ["hooks.partner.example"]
    assert hook.received == []
    # Allowed, the same name reaches the address it resolved to, with its own name in Host.
    assert _send(hook, hook.url(host="hooks.partner.example"), allow_private=True).status == "delivered"
    assert hook.wait_for(1)[0].headers["host"] == f"hooks.partner.example:{hook.port}"


def test_a_redirect_from_a_public_address_to_a_private_one_is_refused(
    hook: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first receiver stands for a public server (127.0.0.1 is treated as public here); it redirects
    to the second, on 127.0.0.2, which the guard sees as the loopback address it is."""
    real_kind = netguard.address_kind

    def kind(address: Any) -> str | None:
        return None if address == ipaddress.ip_address("127.0.0.1") else real_kind(address)

    monkeypatch.setattr(netguard, "address_kind", kind)
    with WebhookReceiver(hook.secret, host="127.0.0.2") as inside:
        hook.answer_next(307, location=inside.url("/admin"))
        with pytest.raises(DeliveryError) as refused:
            _send(hook, hook.url("/public"), allow_private=False)
        assert inside.received == [] and inside.rejected == []
    assert refused.value.permanent
    assert refused.value.reason == "refused: 127.0.0.2 resolves to a private address (127.0.0.2, loopback)"
    [first] = hook.wait_for(1)
    assert first.path == "/public" and first.answered == 307


def test_a_redirect_to_a_name_that_resolves_privately_is_refused(
    hook: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_kind = netguard.address_kind
    monkeypatch.setattr(
        netguard, "address_kind", lambda a: None if a == ipaddress.ip_address("127.0.0.1") else real_kind(a)
    )
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "metadata.internal.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", int(port)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    hook.answer_next(302, location="http://metadata.internal.example/latest/meta-data/")
    with pytest.raises(DeliveryError) as refused:
        _send(hook, hook.url(), allow_private=False)
    assert refused.value.reason == (
        "refused: metadata.internal.example resolves to a private address (169.254.169.254, cloud metadata)"
    )
