"""The one interface every channel implements (``messaging/channels/<type>.py``).

The delivery engine (``messaging.delivery``) renders a communication's variant with Liquid, lets the
channel class finish the content (``finish``: MJML to HTML, a LINE message object, an SMS segment count),
stores it on the delivery row, and later, in a worker, hands it to ``send``. A channel knows its provider's
wire format and nothing about the database: everything it needs arrives in ``Message``; everything the
engine needs back leaves in ``Outcome`` or ``DeliveryError``. That keeps "try the next channel" an ordinary
step of the engine, and each provider testable against a loopback stand-in on its own.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Message:
    """One rendered message for one recipient, exactly as it is to be sent and archived."""

    key: str  # the delivery's idempotency key, the same on every retry (Message-ID, X-Line-Retry-Key, webhook-id)
    channel_type: str
    topic: str  # transactional | service | marketing
    # email address, E.164 phone, LINE user id, push endpoint, webhook URL, or the customer id (in-app)
    address: str
    content: dict[str, Any]  # the variant's fields after rendering and ``finish``
    unsubscribe_url: str = ""  # one-click unsubscribe (RFC 8058) for this recipient and topic
    # Push: {"endpoint", "keys": {"p256dh", "auth"}}; webhook: extra facts for the body.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Outcome:
    """A message the provider accepted."""

    status: str = "sent"  # "sent", or "delivered" when acceptance is delivery (in-app, a webhook's 2xx)
    provider_id: str = ""  # SMTP Message-ID, Twilio SID, LINE request id, push service Location
    headers: dict[str, str] = field(default_factory=dict)  # as sent, for the archive
    raw: bytes | None = None  # the exact bytes sent, where the channel has them (email: the .eml)
    detail: str = ""


class DeliveryError(Exception):
    """The provider did not take the message. ``permanent``: retrying cannot help (an invalid address, a
    blocked user, a 4xx that is not a rate limit); ``bounced``: the address is undeliverable and is
    suppressed; ``retry_after``: seconds the provider asked us to wait (429/503)."""

    def __init__(
        self, reason: str, *, permanent: bool, bounced: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.bounced = bounced
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class InboundRequest:
    """An inbound webhook as received, for signature checks and parsing."""

    url: str  # the absolute URL the provider called (what Twilio signs)
    headers: dict[str, str]  # lower-cased names
    body: bytes
    form: dict[str, str] = field(default_factory=dict)  # application/x-www-form-urlencoded fields


@dataclass(slots=True)
class StatusReport:
    """A provider's report on a message it was given (Twilio status callback, a bounce, a DSN)."""

    receipt: str  # dedup key of this report (replays are ignored)
    provider_id: str  # how the delivery is found: Twilio SID, the email's Message-ID
    status: str  # delivered | failed | bounced | opened | clicked | replied | unsubscribed
    reason: str = ""
    permanent: bool = True
    at: Any = None  # datetime, when the provider says


@dataclass(slots=True)
class CustomerEvent:
    """Something a customer did on the channel, to become an event on their timeline (LINE follow, an
    inbound SMS). ``identity`` is how the customer is found: ("external:line_user_id", "U…") or
    ("phone", "+81…"); the event is Segment-shaped (``event``, ``properties``)."""

    receipt: str  # dedup key (LINE webhookEventId)
    identity: tuple[str, str]
    event: str
    properties: dict[str, Any] = field(default_factory=dict)
    at: Any = None  # datetime


class ChannelBase(abc.ABC):
    """Subclass per provider. Class attributes describe it; an instance is configured for one channel row
    and may keep connections open across ``send`` calls until ``close``."""

    type: ClassVar[str]
    # Config keys kept encrypted and never returned by the API.
    secret_fields: ClassVar[tuple[str, ...]] = ()
    # Config keys that must be present (a 400 naming ``config.<key>`` otherwise).
    required_fields: ClassVar[tuple[str, ...]] = ()
    # Config keys accepted beside the required ones.
    optional_fields: ClassVar[tuple[str, ...]] = ()
    # Names of the inbound webhooks this channel receives ("events" for LINE; "status", "inbound" for SMS).
    webhooks: ClassVar[tuple[str, ...]] = ()
    # The variant fields a communication may give for this channel, and those it must.
    variant_fields: ClassVar[tuple[str, ...]] = ()
    variant_required: ClassVar[tuple[tuple[str, ...], ...]] = ()  # each tuple: at least one of these
    # ``finish`` may run on the templates, once a version, instead of on every rendered message: what it
    # does (MJML compiling, CSS inlining, text from HTML) keeps Liquid's tags as they are. Email's is
    # costly, and then a worker renders only Liquid per recipient.
    finish_first: ClassVar[bool] = False
    # How many of this channel's sends one worker may have on the wire at once, each on an instance (a
    # connection) of its own, from the worker's hand-over threads. 1: one send at a time, on the worker's
    # own thread. A channel with more sets it from its config (email: ``connections``).
    lanes: int = 1

    def __init__(self, config: dict[str, Any], *, allow_private: bool = False) -> None:
        self.config = config  # secrets included, decrypted
        self.allow_private = allow_private

    @classmethod
    def clean_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Check and normalise a complete config; raise ``ValidationError(field="config.<key>")``. The
        default checks required and unknown keys; override to check values (and call super)."""
        from tsunagu.core.errors import ValidationError

        if not isinstance(config, dict):
            raise ValidationError("config must be an object", field="config")
        known = set(cls.required_fields) | set(cls.optional_fields)
        for key in config:
            if key not in known:
                raise ValidationError(f"unknown key for a {cls.type} channel", field=f"config.{key}")
        for key in cls.required_fields:
            if config.get(key) in (None, ""):
                raise ValidationError(f"is required for a {cls.type} channel", field=f"config.{key}")
        return dict(config)

    @classmethod
    def finish(cls, content: dict[str, Any]) -> dict[str, Any]:
        """Turn rendered variant fields into what ``send`` sends (and the archive keeps). Raise
        ``ValueError`` with a message for content that cannot be sent (invalid Flex JSON)."""
        return content

    @classmethod
    def summary(cls, content: dict[str, Any]) -> tuple[str, str]:
        """(subject or title, plain text) of finished content, for the archive's lists and search."""
        return str(content.get("subject") or content.get("title") or ""), str(
            content.get("text") or content.get("body") or ""
        )

    @abc.abstractmethod
    def send(self, message: Message) -> Outcome:
        """Hand the message to the provider. Raise ``DeliveryError`` when it is not taken."""

    def close(self) -> None:  # noqa: B027 - a default: most channels keep no connection open
        """Release connections kept across sends."""

    # Inbound webhooks: channels with ``webhooks`` override both. A channel without any refuses every
    # request as unsigned, so nothing unverified is ever parsed.
    def verify(self, *, webhook: str, request: InboundRequest) -> None:
        """Raise ``tsunagu.core.errors.AuthenticationError`` unless the request is signed by the provider."""
        from tsunagu.core.errors import AuthenticationError

        raise AuthenticationError(f"a {self.type} channel receives no webhooks", field="webhook")

    def parse(self, *, webhook: str, request: InboundRequest) -> list[StatusReport | CustomerEvent]:
        """What a verified webhook reports. Raise ``ValidationError`` for a body that cannot be read."""
        return []
