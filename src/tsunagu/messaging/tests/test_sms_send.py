"""The SMS channel against the Twilio stand-in, through the official SDK: what is sent, and how Twilio's
answers become outcomes and delivery errors."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tsunagu.core.errors import ValidationError
from tsunagu.messaging.channels import channel_class
from tsunagu.messaging.channels.base import DeliveryError, Message
from tsunagu.messaging.channels.sms import Channel
from tsunagu.testing.standins.twilio import TwilioStandIn


@pytest.fixture
def twilio() -> Iterator[TwilioStandIn]:
    with TwilioStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def channel(twilio: TwilioStandIn) -> Iterator[Channel]:
    channel = Channel(Channel.clean_config(twilio.channel_config()))
    yield channel
    channel.close()


def message(text: str = "ご注文の商品を発送しました", to: str = "+819012345678", **extra: Any) -> Message:
    return Message(key="d-1", channel_type="sms", topic="transactional", address=to,
                   content=Channel.finish({"text": text}), extra=extra)


def test_registered_as_sms() -> None:
    assert channel_class("sms") is Channel


def test_a_message_is_posted_as_twilio_documents(twilio: TwilioStandIn, channel: Channel) -> None:
    outcome = channel.send(message(status_callback="https://cx.example.jp/hooks/sms/1/status"))

    [request] = twilio.requests
    assert request.path == f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(
        f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode()
    assert request.form == {"To": "+819012345678", "From": "+815012345678", "Body": "ご注文の商品を発送しました",
                            "StatusCallback": "https://cx.example.jp/hooks/sms/1/status"}
    assert request.status == 201
    [accepted] = twilio.messages
    assert outcome.provider_id == accepted["sid"]
    assert outcome.provider_id.startswith("SM")
    assert outcome.status == "sent"


def test_no_status_callback_unless_given(twilio: TwilioStandIn, channel: Channel) -> None:
    channel.send(message())
    assert "StatusCallback" not in twilio.requests[0].form


def test_connections_are_reused_across_sends(twilio: TwilioStandIn, channel: Channel) -> None:
    first = channel.send(message(to="+819011111111"))
    second = channel.send(message(to="+819022222222"))
    assert first.provider_id != second.provider_id
    assert [m["To"] for m in twilio.messages] == ["+819011111111", "+819022222222"]


@pytest.mark.parametrize(("code", "bounced"), [(21211, True), (21614, True), (21610, True), (30007, False)])
def test_a_refused_number_is_a_permanent_error(twilio: TwilioStandIn, channel: Channel, code: int,
                                              bounced: bool) -> None:
    twilio.reply(twilio.permanent(code, "refused"))
    with pytest.raises(DeliveryError) as caught:
        channel.send(message())
    assert caught.value.permanent is True
    assert caught.value.bounced is bounced
    assert f"error {code}" in caught.value.reason
    assert twilio.messages == []


def test_an_invalid_number_checked_by_the_stand_in(twilio: TwilioStandIn, channel: Channel) -> None:
    with pytest.raises(DeliveryError) as caught:
        channel.send(message(to="090-1234-5678"))
    assert (caught.value.permanent, caught.value.bounced) == (True, True)
    assert "21211" in caught.value.reason


@pytest.mark.parametrize(("status", "retry_after"), [(503, 7.0), (429, 30.0), (500, None)])
def test_an_outage_or_rate_limit_is_temporary(twilio: TwilioStandIn, channel: Channel, status: int,
                                             retry_after: float | None) -> None:
    twilio.reply(twilio.temporary(status, retry_after=retry_after))
    with pytest.raises(DeliveryError) as caught:
        channel.send(message())
    assert caught.value.permanent is False
    assert caught.value.bounced is False
    assert caught.value.retry_after == retry_after
    # The next attempt goes through.
    assert channel.send(message()).provider_id == twilio.messages[0]["sid"]


def test_a_wrong_auth_token_is_permanent(twilio: TwilioStandIn) -> None:
    channel = Channel(Channel.clean_config({**twilio.channel_config(), "auth_token": "wrong"}))
    with pytest.raises(DeliveryError) as caught:
        channel.send(message())
    assert caught.value.permanent is True
    assert "401" in caught.value.reason
    assert twilio.requests[0].status == 401


def test_an_unreachable_provider_is_temporary(twilio: TwilioStandIn) -> None:
    config = twilio.channel_config()
    twilio.stop()
    channel = Channel(Channel.clean_config(config))
    with pytest.raises(DeliveryError) as caught:
        channel.send(message())
    assert caught.value.permanent is False


def test_a_messaging_service_sends_without_from(twilio: TwilioStandIn) -> None:
    service = "MG" + "a" * 32
    channel = Channel(Channel.clean_config({**twilio.channel_config(), "from_number": service}))
    channel.send(message())
    assert twilio.requests[0].form["MessagingServiceSid"] == service
    assert "From" not in twilio.requests[0].form


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"provider": "vonage"}, "config.provider"),
        ({"account_sid": "12345"}, "config.account_sid"),
        ({"from_number": "not a number"}, "config.from_number"),
        ({"base_url": "ftp://example.com"}, "config.base_url"),
        ({"auth_token": ""}, "config.auth_token"),
        ({"region": "jp1"}, "config.region"),
    ],
)
def test_config_is_checked(change: dict[str, str], field: str) -> None:
    config = {"provider": "twilio", "account_sid": "AC" + "0" * 32, "auth_token": "t", "from_number": "050-1234-5678",
              **change}
    with pytest.raises(ValidationError) as caught:
        Channel.clean_config(config)
    assert caught.value.field == field


def test_config_is_normalised() -> None:
    cleaned = Channel.clean_config({"provider": "twilio", "account_sid": "AC" + "0" * 32, "auth_token": "t",
                                    "from_number": "050-1234-5678", "base_url": "http://127.0.0.1:9/"})
    assert cleaned["from_number"] == "+815012345678"
    assert cleaned["base_url"] == "http://127.0.0.1:9"
    assert Channel.secret_fields == ("auth_token",)


def test_hold_keeps_the_answer_back_after_the_message_was_taken(twilio: TwilioStandIn, channel: Channel) -> None:
    # What crash tests rely on: the message is counted while the sender still waits for the answer.
    outcomes: list[Any] = []
    twilio.hold()
    sender = threading.Thread(target=lambda: outcomes.append(channel.send(message())))
    sender.start()
    twilio.wait_for_messages(1)
    assert sender.is_alive()
    assert outcomes == []
    twilio.release()
    sender.join(timeout=10)
    assert outcomes[0].provider_id == twilio.messages[0]["sid"]


def test_no_answer_in_time_is_temporary_and_says_it_may_have_been_sent(twilio: TwilioStandIn,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tsunagu.messaging.channels.sms.DEFAULT_TIMEOUT", 0.2)
    channel = Channel(Channel.clean_config(twilio.channel_config()))
    twilio.hold()
    try:
        with pytest.raises(DeliveryError) as caught:
            channel.send(message())
    finally:
        twilio.release()
    assert caught.value.permanent is False
    assert "may have been sent" in caught.value.reason
    assert len(twilio.messages) == 1
