"""SMS through Twilio's Programmable Messaging API, with the official ``twilio`` SDK.

Sending: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (``client.messages.create``), with the
delivery's status callback URL when the engine gives one (``message.extra["status_callback"]``). A
``base_url`` (a regional edge, a proxy, a stand-in) replaces ``https://api.twilio.com`` on the SDK's
``api`` domain, the one object every Messages request is built from.

Twilio has no idempotency key on Messages: a request that times out after Twilio took it cannot be told
apart from one that never arrived, so the engine must not retry a send that may have been accepted
without accepting that risk (a crash between the request and the answer is the only such window).

Inbound: two webhooks, both form-encoded and signed with the account's Auth Token
(``X-Twilio-Signature``, checked with the SDK's ``RequestValidator``): ``status`` (the status callback of
a message we sent) and ``inbound`` (a message a customer sent to ``from_number``).
"""

from __future__ import annotations

import threading
import unicodedata
from typing import Any
from urllib.parse import urlparse

from tsunagu.messaging import smstext
from tsunagu.messaging.channels.base import (
    ChannelBase,
    CustomerEvent,
    DeliveryError,
    InboundRequest,
    Message,
    Outcome,
    StatusReport,
)
from tsunagu.messaging.channels.rate import rate_clean

# Twilio error codes (https://www.twilio.com/docs/api/errors) that say the number cannot receive SMS:
# retrying cannot help and the address is suppressed.
UNDELIVERABLE_CODES = frozenset(
    {
        21211,  # invalid 'To' phone number
        21214,  # 'To' phone number cannot be reached
        21217,  # phone number does not appear to be valid
        21401,  # invalid phone number
        21407,  # this phone number type does not support SMS
        21421,  # phone number is invalid
        21610,  # the recipient replied STOP: Twilio refuses every message to it until START
        21612,  # the 'To' number is not reachable via SMS from this sender
        21614,  # 'To' number is not a valid mobile number
        30004,  # message blocked (the recipient blocked the sender, or is on a carrier block list)
        30005,  # unknown destination handset
        30006,  # landline or unreachable carrier
    }
)
# Codes that mean "not now": queue overflow, carrier congestion, rate limits, a transient outage.
TEMPORARY_CODES = frozenset({20429, 30001, 30009, 30017, 30022, 30500})
# Every other error code (30003 unreachable handset, 30007 carrier filtering, 30008 unknown, 21408 region
# not enabled, 21606 invalid 'From', ...) is permanent for this message: retrying sends the same request.

# The opt-out / opt-in / help keywords Twilio answers itself (Advanced Opt-Out defaults), plus the Japanese
# words customers in Japan write. Matched on the whole message, NFKC-folded (「ＳＴＯＰ」 is STOP).
KEYWORDS = {
    **dict.fromkeys(
        ("STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"), "STOP"
    ),
    **dict.fromkeys(("停止", "配信停止", "解除", "配信解除"), "STOP"),
    **dict.fromkeys(("START", "YES", "UNSTOP", "開始", "再開", "配信再開"), "START"),
    **dict.fromkeys(("HELP", "INFO", "ヘルプ"), "HELP"),
}

# Status callback values (https://www.twilio.com/docs/messaging/guides/track-outbound-message-status). Only
# outcomes are reported: "queued", "sending" and "sent" repeat what the send already recorded, and
# callbacks may arrive out of order, so a late "sent" must not undo a "delivered".
REPORTED_STATUSES = {"delivered": "delivered", "undelivered": "failed", "failed": "failed", "read": "opened"}

DEFAULT_TIMEOUT = 30.0


def _error_code(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def is_permanent(code: int | None) -> bool:
    return code not in TEMPORARY_CODES


def keyword_of(body: str) -> str | None:
    """"STOP", "START" or "HELP" when the whole message is one of those keywords."""
    folded = unicodedata.normalize("NFKC", body).strip().strip(".!。！").upper()
    return KEYWORDS.get(" ".join(folded.split()))


class Channel(ChannelBase):
    type = "sms"
    secret_fields = ("auth_token",)
    required_fields = ("provider", "account_sid", "auth_token", "from_number")
    optional_fields = ("base_url", "rate_per_second")
    webhooks = ("status", "inbound")
    variant_fields = ("text",)
    variant_required = (("text",),)

    def __init__(self, config: dict[str, Any], *, allow_private: bool = False) -> None:
        super().__init__(config, allow_private=allow_private)
        self._client: Any = None
        self._http: Any = None
        # Per thread: the hook runs in the thread that sent, and workers may share a channel instance.
        self._last = threading.local()

    @classmethod
    def clean_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        from tsunagu.core.errors import ValidationError
        from tsunagu.customers.normalize import normalize_phone

        cleaned = super().clean_config(config)
        if cleaned["provider"] != "twilio":
            raise ValidationError('must be "twilio"', field="config.provider")
        for key in ("account_sid", "auth_token", "from_number", "base_url"):
            if key in cleaned and not isinstance(cleaned[key], str):
                raise ValidationError("must be a string", field=f"config.{key}")
        sid = cleaned["account_sid"].strip()
        if not (sid.startswith("AC") and len(sid) == 34):
            raise ValidationError("must be a Twilio Account SID (AC followed by 32 characters)",
                                  field="config.account_sid")
        cleaned["account_sid"] = sid
        sender = cleaned["from_number"].strip()
        if sender.startswith("MG") and len(sender) == 34:
            pass  # a Messaging Service SID is a valid sender
        else:
            number = normalize_phone(sender)
            if number is None:
                raise ValidationError("must be a phone number (E.164, e.g. +815012345678) or a Messaging "
                                      "Service SID", field="config.from_number")
            sender = number
        cleaned["from_number"] = sender
        if cleaned.get("base_url"):
            parsed = urlparse(cleaned["base_url"])
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValidationError("must be an http(s) URL", field="config.base_url")
            cleaned["base_url"] = cleaned["base_url"].rstrip("/")
        else:
            cleaned.pop("base_url", None)
        return rate_clean(cleaned)

    @classmethod
    def finish(cls, content: dict[str, Any]) -> dict[str, Any]:
        text = str(content.get("text") or "")
        if not text.strip():
            raise ValueError("the SMS text is empty")
        return {"text": text, **smstext.measure(text).as_dict()}

    # -- sending ---------------------------------------------------------------------------------------

    def _twilio(self) -> Any:
        if self._client is None:
            from twilio.http.http_client import TwilioHttpClient
            from twilio.rest import Client

            # The SDK's exceptions do not carry the response's headers; a response hook (a documented
            # parameter of its HTTP client) keeps the Retry-After of the last answer.
            self._http = TwilioHttpClient(timeout=DEFAULT_TIMEOUT,
                                          request_hooks={"response": [self._keep_retry_after]})
            # ``environment={}``: TWILIO_EDGE / TWILIO_REGION in the worker's environment would rewrite the
            # host of every request, base_url included.
            self._client = Client(
                self.config["account_sid"], self.config["auth_token"], http_client=self._http, environment={}
            )
            if self.config.get("base_url"):
                self._client.api.base_url = self.config["base_url"]
        return self._client

    def send(self, message: Message) -> Outcome:
        import requests
        from twilio.base.exceptions import TwilioException

        client = self._twilio()
        self._last.retry_after = None
        params: dict[str, Any] = {"to": message.address, "from_": self.config["from_number"],
                                  "body": message.content["text"]}
        if str(self.config["from_number"]).startswith("MG"):
            params["messaging_service_sid"] = params.pop("from_")
        if message.extra.get("status_callback"):
            params["status_callback"] = message.extra["status_callback"]
        try:
            created = client.messages.create(**params)
        except TwilioException as exc:
            raise self._error(exc) from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.ConnectTimeout) as exc:
            raise DeliveryError(f"Twilio unreachable: {exc.__class__.__name__}", permanent=False) from exc
        except requests.exceptions.RequestException as exc:
            # The request went out: Twilio may have taken the message, and a retry may send it again.
            raise DeliveryError(f"Twilio did not answer ({exc.__class__.__name__}); the message may have been sent",
                                permanent=False) from exc
        return Outcome(status="sent", provider_id=created.sid, detail=str(created.status or ""))

    def _error(self, exc: Exception) -> DeliveryError:
        status = int(getattr(exc, "status", 0) or 0)
        code = _error_code(getattr(exc, "code", None))
        text = getattr(exc, "msg", None) or getattr(exc, "detail", None) or getattr(exc, "title", None) or ""
        reason = f"Twilio {status}" + (f" error {code}" if code else "") + (f": {text}" if text else "")
        if status == 429 or status >= 500 or code in TEMPORARY_CODES:
            return DeliveryError(reason, permanent=False, retry_after=self._retry_after())
        return DeliveryError(reason, permanent=True, bounced=code in UNDELIVERABLE_CODES)

    def _keep_retry_after(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self._last.retry_after = response.headers.get("Retry-After")

    def _retry_after(self) -> float | None:
        value = getattr(self._last, "retry_after", None)
        try:
            return max(0.0, float(value)) if value is not None else None
        except ValueError:
            return None  # an HTTP date: the engine's backoff applies

    def close(self) -> None:
        session = getattr(self._http, "session", None)
        if session is not None:
            session.close()
        self._client = self._http = None

    # -- inbound ---------------------------------------------------------------------------------------

    def verify(self, *, webhook: str, request: InboundRequest) -> None:
        from twilio.request_validator import RequestValidator

        from tsunagu.core.errors import AuthenticationError

        signature = request.headers.get("x-twilio-signature", "")
        if not signature:
            raise AuthenticationError("the X-Twilio-Signature header is missing")
        if not RequestValidator(self.config["auth_token"]).validate(request.url, request.form, signature):
            raise AuthenticationError("the X-Twilio-Signature does not match this request")

    def parse(self, *, webhook: str, request: InboundRequest) -> list[StatusReport | CustomerEvent]:
        from tsunagu.core.errors import ValidationError

        form = request.form
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        if not sid:
            raise ValidationError("MessageSid is missing", field="MessageSid")
        if webhook == "status":
            return self._status(sid, form)
        if webhook == "inbound":
            return self._inbound(sid, form)
        raise ValidationError(f"unknown SMS webhook {webhook!r}", field="webhook")

    def _status(self, sid: str, form: dict[str, str]) -> list[StatusReport | CustomerEvent]:
        from tsunagu.core.errors import ValidationError

        twilio_status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
        if not twilio_status:
            raise ValidationError("MessageStatus is missing", field="MessageStatus")
        status = REPORTED_STATUSES.get(twilio_status)
        if status is None:
            return []
        code = _error_code(form.get("ErrorCode"))
        reason, permanent = "", True
        if status == "failed":
            permanent = is_permanent(code)
            if code in UNDELIVERABLE_CODES:
                status = "bounced"
            reason = f"Twilio {twilio_status}" + (f" error {code}" if code else "")
            if form.get("ErrorMessage"):
                reason += f": {form['ErrorMessage']}"
        return [StatusReport(receipt=f"{sid}:{twilio_status}", provider_id=sid, status=status, reason=reason,
                             permanent=permanent)]

    def _inbound(self, sid: str, form: dict[str, str]) -> list[StatusReport | CustomerEvent]:
        from tsunagu.core.errors import ValidationError
        from tsunagu.customers.normalize import normalize_phone

        phone = normalize_phone(form.get("From", ""))
        if phone is None:
            raise ValidationError("From is not a phone number", field="From")
        body = form.get("Body", "")
        properties: dict[str, Any] = {"text": body, "message_sid": sid}
        if form.get("To"):
            properties["to"] = form["To"]
        media = _error_code(form.get("NumMedia")) or 0
        if media:
            properties["media_urls"] = [form[f"MediaUrl{i}"] for i in range(media) if form.get(f"MediaUrl{i}")]
        keyword = keyword_of(body)
        if keyword:
            properties["keyword"] = keyword
        return [CustomerEvent(receipt=sid, identity=("phone", phone), event="SMS Received", properties=properties)]
