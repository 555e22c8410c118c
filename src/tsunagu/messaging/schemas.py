"""Request and response shapes of the messaging API (docs/api.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Field, Schema


class ChannelIn(Schema):
    type: str = Field(..., max_length=16)
    name: str = Field(..., max_length=200)
    config: dict[str, Any] = Field(default_factory=dict)


class ChannelPatch(Schema):
    name: str | None = Field(None, max_length=200)
    config: dict[str, Any] | None = None
    enabled: bool | None = None


class ChannelOut(Schema):
    id: int
    type: str
    name: str
    enabled: bool
    config: dict[str, Any]  # without secrets
    secrets_set: list[str]  # which secret keys hold a value (never the values)
    webhook_urls: dict[str, str]
    created_at: dt.datetime
    updated_at: dt.datetime
    # Only in the answer that creates a webhook channel without a secret: the generated signing secret,
    # shown once (like an API key's token).
    secret: str | None = None


class ChannelList(Schema):
    items: list[ChannelOut]


class CommunicationIn(Schema):
    key: str = Field(..., max_length=100)
    name: str = Field(..., max_length=200)
    topic: str = Field("transactional", max_length=16)
    variants: list[dict[str, Any]]
    policy: dict[str, Any] | None = None


class CommunicationPut(Schema):
    name: str | None = Field(None, max_length=200)
    topic: str | None = Field(None, max_length=16)
    variants: list[dict[str, Any]]
    # Left out: the current policy stays; null: back to the variants' order.
    policy: dict[str, Any] | None = None


class CommunicationOut(Schema):
    key: str
    name: str
    topic: str
    version: int
    variants: list[dict[str, Any]]
    policy: dict[str, Any] | None = None  # null: the variants' channels in order
    warnings: list[str] = []
    created_at: dt.datetime
    updated_at: dt.datetime


class CommunicationList(Schema):
    items: list[CommunicationOut]


class VersionOut(Schema):
    number: int
    name: str
    topic: str
    variants: list[dict[str, Any]]
    created_by: str
    created_at: dt.datetime


class VersionList(Schema):
    items: list[VersionOut]


class PreviewOut(Schema):
    channel: str
    locale: str
    subject: str
    text: str
    content: dict[str, Any]
    customer_id: int | None


class SendIn(Schema):
    communication: str = Field(..., max_length=100)
    customer_id: int | None = None
    user_id: str | None = Field(None, max_length=255)
    email: str | None = Field(None, max_length=254)
    phone: str | None = Field(None, max_length=40)
    channel: str | None = Field(None, max_length=16)
    policy: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    idempotency_key: str | None = Field(None, max_length=200)


class SendCreated(Schema):
    id: int
    status: str
    due_at: dt.datetime | None = None


class AttemptOut(Schema):
    channel: str
    status: str  # skipped, queued, sending, sent, delivered, failed, bounced, timed_out
    reason: str | None  # the code: no_address, no_consent, …, not_read
    detail: str | None
    started_at: dt.datetime
    ended_at: dt.datetime | None
    delivery_id: int | None
    delivery_status: str | None  # the delivery's status now (a late report moves it, not the attempt)


class DeliveryEventOut(Schema):
    status: str
    at: dt.datetime
    reason: str = ""
    machine: bool = False


class DeliveryOut(Schema):
    id: int
    channel: str
    status: str
    reason: str
    address: str
    locale: str
    subject: str
    created_at: dt.datetime
    sent_at: dt.datetime | None
    events: list[DeliveryEventOut]


class SendOut(Schema):
    id: int
    status: str
    communication: str
    version: int
    customer_id: int | None
    channel: str
    policy: dict[str, Any]
    due_at: dt.datetime | None
    created_at: dt.datetime
    ended_at: dt.datetime | None
    attempts: list[AttemptOut]
    deliveries: list[DeliveryOut]


class MessageOut(Schema):
    id: int
    send_id: int
    customer_id: int | None
    channel: str
    communication: str
    version: int
    topic: str
    locale: str
    status: str
    reason: str
    address: str
    subject: str
    text: str
    content: dict[str, Any]
    created_at: dt.datetime
    sent_at: dt.datetime | None
    opened_at: dt.datetime | None
    clicked_at: dt.datetime | None
    events: list[DeliveryEventOut]


class MessagePage(Schema):
    items: list[MessageOut]
    next: str | None


class InboxItem(Schema):
    id: int
    title: str
    body: str
    url: str
    button: Any = None
    created_at: dt.datetime
    read_at: dt.datetime | None


class InboxPage(Schema):
    items: list[InboxItem]
    unread: int
    next: str | None


class ConsentIn(Schema):
    channel: str | None = Field(None, max_length=16)  # a channel type, or "all" / null: every channel
    topic: str = Field(..., max_length=16)
    status: str = Field(..., max_length=16)
    source: str = Field(..., max_length=100)
    text: str | None = Field(None, max_length=5000)


class ConsentDecision(Schema):
    channel: str
    topic: str
    status: str
    source: str
    text: str
    actor: str
    at: dt.datetime


class ConsentOut(ConsentDecision):
    history: list[ConsentDecision]


class ConsentList(Schema):
    items: list[ConsentOut]
