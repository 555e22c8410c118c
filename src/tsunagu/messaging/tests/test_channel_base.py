"""The channel interface's defaults: a channel must implement ``send``; one without webhooks refuses every
inbound request as unsigned and reports nothing."""

from __future__ import annotations

import pytest

from tsunagu.core.errors import AuthenticationError
from tsunagu.messaging.channels import channel_class
from tsunagu.messaging.channels.base import ChannelBase, InboundRequest


def test_a_channel_without_send_cannot_be_configured():
    class Incomplete(ChannelBase):
        type = "in_app"

    with pytest.raises(TypeError):
        Incomplete({})


def test_a_channel_without_webhooks_refuses_inbound_requests():
    impl = channel_class("in_app")({})
    request = InboundRequest(url="http://testserver/m/in/x/events", headers={}, body=b"{}")
    with pytest.raises(AuthenticationError):
        impl.verify(webhook="events", request=request)
    assert impl.parse(webhook="events", request=request) == []
