"""Twilio's webhooks: the signature (the SDK's own algorithm), status callbacks and incoming messages."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest

from tsunagu.core.errors import AuthenticationError, ValidationError
from tsunagu.messaging.channels.base import CustomerEvent, InboundRequest, Message, StatusReport
from tsunagu.messaging.channels.sms import Channel
from tsunagu.testing.standins.twilio import TwilioStandIn, twilio_signature

STATUS_URL = "https://cx.example.jp/hooks/sms/7/status"
INBOUND_URL = "https://cx.example.jp/hooks/sms/7/inbound"


@pytest.fixture
def twilio() -> TwilioStandIn:
    return TwilioStandIn()  # not started: only its account and form builders are used here


@pytest.fixture
def channel(twilio: TwilioStandIn) -> Channel:
    return Channel(Channel.clean_config({**twilio.channel_config_offline()}))


def signed(twilio: TwilioStandIn, url: str, form: dict[str, str], signature: str | None = None) -> InboundRequest:
    sig = twilio_signature(twilio.auth_token, url, form) if signature is None else signature
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if sig:
        headers["x-twilio-signature"] = sig
    return InboundRequest(url=url, headers=headers, body=b"", form=form)


def test_a_signed_callback_is_accepted(twilio: TwilioStandIn, channel: Channel) -> None:
    form = twilio.status_params("SM" + "1" * 32, "delivered")
    channel.verify(webhook="status", request=signed(twilio, STATUS_URL, form))
    channel.verify(webhook="status", request=signed(twilio, STATUS_URL + "?x=1", form))


def test_forged_and_unsigned_callbacks_are_refused(twilio: TwilioStandIn, channel: Channel) -> None:
    form = twilio.status_params("SM" + "1" * 32, "delivered")
    with pytest.raises(AuthenticationError, match="missing"):
        channel.verify(webhook="status", request=signed(twilio, STATUS_URL, form, signature=""))
    other_token = twilio_signature("another-token", STATUS_URL, form)
    with pytest.raises(AuthenticationError, match="does not match"):
        channel.verify(webhook="status", request=signed(twilio, STATUS_URL, form, signature=other_token))
    # A genuine signature on changed fields, or for another URL, does not carry over.
    genuine = twilio_signature(twilio.auth_token, STATUS_URL, form)
    with pytest.raises(AuthenticationError):
        channel.verify(webhook="status", request=signed(
            twilio, STATUS_URL, {**form, "MessageStatus": "failed"}, signature=genuine))
    with pytest.raises(AuthenticationError):
        channel.verify(webhook="status", request=signed(twilio, INBOUND_URL, form, signature=genuine))


def test_delivered(twilio: TwilioStandIn, channel: Channel) -> None:
    sid = "SM" + "2" * 32
    form = twilio.status_params(sid, "delivered")
    [report] = channel.parse(webhook="status", request=signed(twilio, STATUS_URL, form))
    assert report == StatusReport(receipt=f"{sid}:delivered", provider_id=sid, status="delivered", reason="",
                                  permanent=True)


@pytest.mark.parametrize(
    ("twilio_status", "code", "status", "permanent"),
    [
        ("undelivered", 30003, "failed", True),  # unreachable handset
        ("undelivered", 30005, "bounced", True),  # unknown handset: the number is suppressed
        ("failed", 21610, "bounced", True),  # the customer replied STOP
        ("undelivered", 30001, "failed", False),  # queue overflow: worth another try
        ("failed", None, "failed", True),
    ],
)
def test_failures(twilio: TwilioStandIn, channel: Channel, twilio_status: str, code: int | None, status: str,
                  permanent: bool) -> None:
    sid = "SM" + "3" * 32
    form = twilio.status_params(sid, twilio_status, error_code=code)
    [report] = channel.parse(webhook="status", request=signed(twilio, STATUS_URL, form))
    assert isinstance(report, StatusReport)
    assert (report.receipt, report.provider_id) == (f"{sid}:{twilio_status}", sid)
    assert (report.status, report.permanent) == (status, permanent)
    assert report.reason == f"Twilio {twilio_status}" + (f" error {code}" if code else "")


@pytest.mark.parametrize("twilio_status", ["queued", "sending", "sent", "accepted"])
def test_intermediate_states_report_nothing(twilio: TwilioStandIn, channel: Channel, twilio_status: str) -> None:
    form = twilio.status_params("SM" + "4" * 32, twilio_status)
    assert channel.parse(webhook="status", request=signed(twilio, STATUS_URL, form)) == []


def test_an_unreadable_callback_names_the_field(twilio: TwilioStandIn, channel: Channel) -> None:
    with pytest.raises(ValidationError) as caught:
        channel.parse(webhook="status", request=signed(twilio, STATUS_URL, {"MessageStatus": "delivered"}))
    assert caught.value.field == "MessageSid"
    with pytest.raises(ValidationError) as caught:
        channel.parse(webhook="status", request=signed(twilio, STATUS_URL, {"MessageSid": "SM1"}))
    assert caught.value.field == "MessageStatus"


def test_an_incoming_sms_is_a_customer_event(twilio: TwilioStandIn, channel: Channel) -> None:
    form = twilio.inbound_params("+819012345678", "明日の配送は何時ですか")
    [event] = channel.parse(webhook="inbound", request=signed(twilio, INBOUND_URL, form))
    assert event == CustomerEvent(
        receipt=form["MessageSid"], identity=("phone", "+819012345678"), event="SMS Received",
        properties={"text": "明日の配送は何時ですか", "message_sid": form["MessageSid"], "to": "+815012345678"})


@pytest.mark.parametrize(
    ("body", "keyword"),
    [("STOP", "STOP"), ("stop", "STOP"), (" Stop. ", "STOP"), ("ＳＴＯＰ", "STOP"), ("停止", "STOP"),
     ("配信停止", "STOP"), ("UNSUBSCRIBE", "STOP"), ("START", "START"), ("help", "HELP"),
     ("please stop sending", None), ("停止してください?", None)],
)
def test_keywords(twilio: TwilioStandIn, channel: Channel, body: str, keyword: str | None) -> None:
    form = twilio.inbound_params("09012345678", body)
    [event] = channel.parse(webhook="inbound", request=signed(twilio, INBOUND_URL, form))
    assert isinstance(event, CustomerEvent)
    assert event.identity == ("phone", "+819012345678")
    assert event.properties.get("keyword") == keyword
    assert event.properties["text"] == body


def test_an_inbound_sms_from_no_number_is_refused(twilio: TwilioStandIn, channel: Channel) -> None:
    form = twilio.inbound_params("anonymous", "hi")
    with pytest.raises(ValidationError) as caught:
        channel.parse(webhook="inbound", request=signed(twilio, INBOUND_URL, form))
    assert caught.value.field == "From"


class Receiver:
    """A loopback endpoint that checks each webhook with the channel, as the lead's inbound view will."""

    def __init__(self, channel: Channel) -> None:
        receiver = self
        self.channel = channel
        self.results: list[tuple[int, list[StatusReport | CustomerEvent]]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = InboundRequest(
                    url=f"{receiver.url}{self.path}", headers={k.lower(): v for k, v in self.headers.items()},
                    body=body, form=dict(parse_qsl(body.decode(), keep_blank_values=True)))
                webhook = self.path.rsplit("/", 1)[-1]
                try:
                    receiver.channel.verify(webhook=webhook, request=request)
                except AuthenticationError:
                    status, parsed = 401, []
                else:
                    status, parsed = 200, receiver.channel.parse(webhook=webhook, request=request)
                receiver.results.append((status, parsed))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_stand_in_calls_back_signed_over_http() -> None:
    with TwilioStandIn() as twilio:
        channel = Channel(Channel.clean_config(twilio.channel_config()))
        receiver = Receiver(channel)
        try:
            outcome = channel.send(Message(key="d-9", channel_type="sms", topic="service", address="+819012345678",
                                           content={"text": "hi"},
                                           extra={"status_callback": f"{receiver.url}/hooks/sms/7/status"}))
            assert twilio.status_callback(outcome.provider_id, "delivered")[0] == 200
            assert twilio.status_callback(outcome.provider_id, "delivered", signature="forged")[0] == 401
            assert twilio.send_inbound(f"{receiver.url}/hooks/sms/7/inbound", "+819012345678", "停止")[0] == 200
        finally:
            receiver.close()
            channel.close()
    [(_, [delivered]), (forged, _), (_, [stop])] = receiver.results
    assert isinstance(delivered, StatusReport)
    assert (delivered.provider_id, delivered.status) == (outcome.provider_id, "delivered")
    assert forged == 401
    assert isinstance(stop, CustomerEvent)
    assert stop.properties["keyword"] == "STOP"
