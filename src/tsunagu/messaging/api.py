"""REST endpoints of messaging: channels, communications, sends, the archive and the in-app inbox.

Thin: the services check roles and input; every endpoint is scoped to the token's workspace.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from typing import Any

from django.db.models import prefetch_related_objects
from django.http import FileResponse, HttpRequest, HttpResponse
from ninja import Field, Query, Router, Schema, Status

from tsunagu.core.errors import NotFound, ValidationError
from tsunagu.core.pagination import page_by_id_desc
from tsunagu.customers.models import Customer
from tsunagu.customers.normalize import normalize_email, normalize_id, normalize_phone
from tsunagu.customers.selectors import customer_find_by_identity, customer_get
from tsunagu.messaging.archive_export import archive_eml, archive_export_jsonl
from tsunagu.messaging.channels import channel_class
from tsunagu.messaging.context import customer_locale
from tsunagu.messaging.links import public_base
from tsunagu.messaging.models import Channel, Communication, Delivery
from tsunagu.messaging.preview import preview_variant
from tsunagu.messaging.render import pick_variant, variant_channels
from tsunagu.messaging.schemas import (
    ChannelIn,
    ChannelList,
    ChannelOut,
    ChannelPatch,
    CommunicationIn,
    CommunicationList,
    CommunicationOut,
    CommunicationPut,
    InboxPage,
    MessagePage,
    PreviewOut,
    SendCreated,
    SendIn,
    SendOut,
    VersionList,
)
from tsunagu.messaging.selectors import (
    channel_config,
    channel_get,
    channel_list,
    channel_webhook_urls,
    communication_get,
    communication_list,
    communication_version,
    communication_versions,
    customer_inbox,
    customer_sample,
    delivery_get,
    message_page,
    send_attempts,
    send_deliveries,
    send_get,
    send_status,
)
from tsunagu.messaging.services import (
    KEEP,
    channel_create,
    channel_delete,
    channel_update,
    communication_create,
    communication_update,
    inbox_mark_read,
    send_create,
)

router = Router(tags=["messaging"])


def _ws(request: HttpRequest) -> Any:
    return request.auth  # type: ignore[attr-defined]


def _actor(request: HttpRequest) -> Any:
    return request.api_key  # type: ignore[attr-defined]


# --- channels -----------------------------------------------------------------------------------------


def _channel_out(request: HttpRequest, channel: Channel) -> dict[str, Any]:
    cls = channel_class(channel.type)
    from tsunagu.messaging.secrets import secrets_decrypt

    held = secrets_decrypt(channel.secrets)
    return {
        "id": channel.pk,
        "type": channel.type,
        "name": channel.name,
        "enabled": channel.enabled,
        "config": channel.config,
        "secrets_set": sorted(k for k in cls.secret_fields if held.get(k)),
        "webhook_urls": channel_webhook_urls(channel, request=request),
        "created_at": channel.created_at,
        "updated_at": channel.updated_at,
    }


def _channel_or_404(request: HttpRequest, channel_id: int) -> Channel:
    channel = channel_get(workspace=_ws(request), channel_id=channel_id)
    if channel is None:
        raise NotFound(f"channel {channel_id} not found", field="channel_id")
    return channel


@router.get("/channels", response=ChannelList, summary="The workspace's channels (never their secrets)")
def list_channels(request: HttpRequest) -> dict[str, Any]:
    return {"items": [_channel_out(request, c) for c in channel_list(workspace=_ws(request))]}


@router.post("/channels", response={201: ChannelOut}, summary="Configure a channel (admin keys)")
def create_channel(request: HttpRequest, payload: ChannelIn) -> Status[Any]:
    channel = channel_create(
        workspace=_ws(request), type=payload.type, name=payload.name, config=payload.config, actor=_actor(request)
    )
    out = _channel_out(request, channel)
    if channel.type == "webhook" and not payload.config.get("secret"):
        out["secret"] = channel_config(channel).get("secret")
    return Status(201, out)


@router.get("/channels/{channel_id}", response=ChannelOut, summary="One channel")
def get_channel(request: HttpRequest, channel_id: int) -> dict[str, Any]:
    return _channel_out(request, _channel_or_404(request, channel_id))


@router.patch("/channels/{channel_id}", response=ChannelOut, summary="Change a channel (admin keys)")
def patch_channel(request: HttpRequest, channel_id: int, payload: ChannelPatch) -> dict[str, Any]:
    channel = channel_update(
        channel=_channel_or_404(request, channel_id),
        actor=_actor(request),
        name=payload.name,
        config=payload.config,
        enabled=payload.enabled,
    )
    return _channel_out(request, channel)


@router.delete("/channels/{channel_id}", response={204: None}, summary="Remove a channel (admin keys)")
def delete_channel(request: HttpRequest, channel_id: int) -> Status[None]:
    channel_delete(channel=_channel_or_404(request, channel_id), actor=_actor(request))
    return Status(204, None)


# --- communications -----------------------------------------------------------------------------------


def _communication_out(comm: Communication, warnings: list[str] | None = None) -> dict[str, Any]:
    version = communication_version(communication=comm)
    return {
        "key": comm.key,
        "name": comm.name,
        "topic": comm.topic,
        "version": comm.current_version,
        "variants": version.variants,
        "policy": comm.policy,
        "warnings": warnings or [],
        "created_at": comm.created_at,
        "updated_at": comm.updated_at,
    }


def _communication_or_404(request: HttpRequest, key: str) -> Communication:
    comm = communication_get(workspace=_ws(request), key=key)
    if comm is None:
        raise NotFound(f"no communication with key {key!r}", field="key")
    return comm


@router.get("/communications", response=CommunicationList, summary="The workspace's communications")
def list_communications(request: HttpRequest) -> dict[str, Any]:
    return {"items": [_communication_out(c) for c in communication_list(workspace=_ws(request))]}


@router.post("/communications", response={201: CommunicationOut}, summary="Create a communication (version 1)")
def create_communication(request: HttpRequest, payload: CommunicationIn) -> Status[Any]:
    comm, warnings = communication_create(
        workspace=_ws(request),
        key=payload.key,
        name=payload.name,
        topic=payload.topic,
        variants=payload.variants,
        actor=_actor(request),
        policy=payload.policy,
    )
    return Status(201, _communication_out(comm, warnings))


@router.get("/communications/{key}", response=CommunicationOut, summary="A communication, at its current version")
def get_communication(request: HttpRequest, key: str) -> dict[str, Any]:
    return _communication_out(_communication_or_404(request, key))


@router.put("/communications/{key}", response=CommunicationOut, summary="Save a new version")
def put_communication(request: HttpRequest, key: str, payload: CommunicationPut) -> dict[str, Any]:
    comm = _communication_or_404(request, key)
    _version, warnings = communication_update(
        communication=comm, actor=_actor(request), variants=payload.variants, name=payload.name, topic=payload.topic,
        policy=payload.policy if "policy" in payload.model_fields_set else KEEP,
    )
    return _communication_out(comm, warnings)


@router.get("/communications/{key}/versions", response=VersionList, summary="Every saved version, newest first")
def list_versions(request: HttpRequest, key: str) -> dict[str, Any]:
    return {"items": list(communication_versions(communication=_communication_or_404(request, key)))}


def preview(
    *,
    workspace: Any,
    comm: Communication,
    customer: Customer | None,
    channel: str | None,
    locale: str | None,
    version: int | None = None,
    base_url: str = "",
) -> dict[str, Any]:
    """A variant rendered for a customer exactly as a send would render it (nothing is recorded)."""
    v = communication_version(communication=comm, number=version)
    channels = variant_channels(v.variants)
    chosen = channel or (channels[0] if channels else None)
    if chosen is None or chosen not in channels:
        raise ValidationError(f"communication {comm.key!r} has no {chosen} variant", field="channel")
    wanted = locale or customer_locale(customer)
    variant = pick_variant(v.variants, channel=chosen, locale=wanted, default_locale=workspace.default_locale)
    assert variant is not None
    try:
        out = preview_variant(variant=variant, topic=v.topic, customer=customer, base_url=base_url)
    except ValueError as exc:
        raise ValidationError(str(exc), field="channel") from None
    return {**out, "customer_id": customer.pk if customer else None}


class PreviewQuery(Schema):
    customer_id: int | None = None
    channel: str | None = Field(None, max_length=16)
    locale: str | None = Field(None, max_length=16)
    version: int | None = None


@router.get("/communications/{key}/preview", response=PreviewOut, summary="Render a variant for a customer")
def preview_communication(request: HttpRequest, key: str, query: Query[PreviewQuery]) -> dict[str, Any]:
    comm = _communication_or_404(request, key)
    if query.customer_id is not None:
        customer = customer_get(workspace=_ws(request), customer_id=query.customer_id)
        if customer is None:
            raise NotFound(f"customer {query.customer_id} not found", field="customer_id")
    else:
        customer = customer_sample(workspace=_ws(request))
    return preview(
        workspace=_ws(request),
        comm=comm,
        customer=customer,
        channel=query.channel,
        locale=query.locale,
        version=query.version,
        base_url=public_base(request),
    )


# --- sends --------------------------------------------------------------------------------------------


def _find_customer(request: HttpRequest, payload: SendIn) -> Customer:
    ws = _ws(request)
    given = [(f, getattr(payload, f)) for f in ("customer_id", "user_id", "email", "phone") if getattr(payload, f)]
    if len(given) != 1:
        raise ValidationError("give exactly one of customer_id, user_id, email, phone", field="customer_id")
    field, value = given[0]
    customer: Customer | None
    if field == "customer_id":
        customer = customer_get(workspace=ws, customer_id=int(value))
    else:
        normalizers: dict[str, Any] = {"user_id": normalize_id, "email": normalize_email, "phone": normalize_phone}
        normal = normalizers[field](value)
        found = customer_find_by_identity(workspace=ws, type_=field, value=normal) if normal else None
        customer = customer_get(workspace=ws, customer_id=found.pk) if found else None
    if customer is None:
        raise NotFound(f"no customer with {field} {value!r}", field=field)
    return customer


@router.post("/sends", response={201: SendCreated}, summary="Send a communication to a customer")
def create_send(request: HttpRequest, payload: SendIn) -> Status[Any]:
    customer = _find_customer(request, payload)
    send = send_create(
        workspace=_ws(request),
        communication=payload.communication,
        customer=customer,
        actor=_actor(request),
        channel=payload.channel,
        policy=payload.policy,
        data=payload.data,
        idempotency_key=payload.idempotency_key,
        base_url=public_base(request),
    )
    return Status(201, {"id": send.pk, "status": send_status(send), "due_at": send.due_at})


def _events(delivery: Delivery) -> list[dict[str, Any]]:
    return [
        {"status": e.status, "at": e.at, "reason": e.reason, "machine": e.machine}
        for e in sorted(delivery.events.all(), key=lambda e: (e.at, e.pk))
    ]


@router.get("/sends/{send_id}", response=SendOut, summary="A send with its deliveries and their states")
def get_send(request: HttpRequest, send_id: int) -> dict[str, Any]:
    send = send_get(workspace=_ws(request), send_id=send_id)
    if send is None:
        raise NotFound(f"send {send_id} not found", field="send_id")
    return {
        "id": send.pk,
        "status": send_status(send),
        "communication": send.communication.key,
        "version": send.version.number,
        "customer_id": send.customer_id,
        "channel": send.channel,
        "policy": send.policy,
        "due_at": send.due_at,
        "created_at": send.created_at,
        "ended_at": send.ended_at,
        "attempts": send_attempts(send),
        "deliveries": [
            {
                "id": d.pk,
                "channel": d.channel_type,
                "status": d.status,
                "reason": d.reason,
                "address": d.address,
                "locale": d.locale,
                "subject": d.subject,
                "created_at": d.created_at,
                "sent_at": d.sent_at,
                "events": _events(d),
            }
            for d in send_deliveries(send=send)
        ],
    }


# --- the archive --------------------------------------------------------------------------------------


def message_out(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.pk,
        "send_id": d.send_id,
        "customer_id": d.customer_id,
        "channel": d.channel_type,
        "communication": d.communication.key,
        "version": d.version.number,
        "topic": d.topic,
        "locale": d.locale,
        "status": d.status,
        "reason": d.reason,
        "address": d.address,
        "subject": d.subject,
        "text": d.body_text,
        "content": d.content,
        "created_at": d.created_at,
        "sent_at": d.sent_at,
        "opened_at": d.opened_at,
        "clicked_at": d.clicked_at,
        "events": _events(d),
    }


class MessageFilters(Schema):
    q: str | None = Field(None, max_length=1000)
    channel: str | None = Field(None, max_length=16)
    status: str | None = Field(None, max_length=16)
    communication: str | None = Field(None, max_length=100)
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    limit: int = 50
    cursor: str | None = Field(None, max_length=1000)


def _message_page(request: HttpRequest, filters: MessageFilters, customer: Customer | None) -> dict[str, Any]:
    rows, next_cursor = message_page(
        workspace=_ws(request),
        q=filters.q,
        channel=filters.channel,
        status=filters.status,
        communication=filters.communication,
        customer=customer,
        since=filters.since,
        until=filters.until,
        limit=filters.limit,
        cursor=filters.cursor,
    )
    prefetch_related_objects(rows, "events", "communication", "version")
    return {"items": [message_out(d) for d in rows], "next": next_cursor}


def _customer_or_404(request: HttpRequest, customer_id: int) -> Customer:
    customer = customer_get(workspace=_ws(request), customer_id=customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} not found", field="customer_id")
    return customer


@router.get("/messages", response=MessagePage, summary="The message archive: search and filter")
def list_messages(request: HttpRequest, filters: Query[MessageFilters]) -> dict[str, Any]:
    return _message_page(request, filters, None)


@router.get("/customers/{customer_id}/messages", response=MessagePage, summary="A customer's archived messages")
def list_customer_messages(request: HttpRequest, customer_id: int, filters: Query[MessageFilters]) -> dict[str, Any]:
    return _message_page(request, filters, _customer_or_404(request, customer_id))


@router.get("/messages/export", summary="The archive as JSON Lines (the same filters as the search)")
def export_messages(request: HttpRequest, filters: Query[MessageFilters]) -> FileResponse:
    """Every message the filters find, newest first, one JSON object a line with its events; streamed from
    a spooled file so that a large export holds little memory."""
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 - FileResponse closes it
    try:
        archive_export_jsonl(
            workspace=_ws(request),
            out=spool,  # type: ignore[arg-type]  # a binary file, as BinaryIO means
            q=filters.q,
            channel=filters.channel,
            status=filters.status,
            communication_key=filters.communication,
            since=filters.since,
            until=filters.until,
        )
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    response = FileResponse(spool, content_type="application/x-ndjson; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="messages.jsonl"'
    return response


@router.get("/messages/{email_id}/eml", summary="An archived email exactly as sent (.eml)")
def get_eml(request: HttpRequest, email_id: int) -> HttpResponse:
    d = delivery_get(workspace=_ws(request), delivery_id=email_id)
    if d is None:
        raise NotFound(f"message {email_id} not found", field="email_id")
    response = HttpResponse(archive_eml(delivery=d), content_type="message/rfc822")
    response["Content-Disposition"] = f'attachment; filename="message-{d.pk}.eml"'
    return response


@router.get("/messages/{message_id}", summary="One archived message")
def get_message(request: HttpRequest, message_id: int) -> dict[str, Any]:
    d = delivery_get(workspace=_ws(request), delivery_id=message_id)
    if d is None:
        raise NotFound(f"message {message_id} not found", field="message_id")
    return message_out(d)


# --- the in-app inbox ---------------------------------------------------------------------------------


def _inbox_item(d: Delivery) -> dict[str, Any]:
    c = d.content or {}
    return {
        "id": d.pk,
        "title": str(c.get("title", "")),
        "body": str(c.get("body", "")),
        "url": str(c.get("url", "")),
        "button": c.get("button"),
        "created_at": d.created_at,
        "read_at": d.read_at,
    }


@router.get("/customers/{customer_id}/inbox", response=InboxPage, summary="A customer's in-app messages")
def get_inbox(request: HttpRequest, customer_id: int, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
    rows = customer_inbox(customer=_customer_or_404(request, customer_id))
    items, next_cursor = page_by_id_desc(rows, limit=limit, cursor=cursor)
    return {
        "items": [_inbox_item(d) for d in items],
        "unread": rows.filter(read_at__isnull=True).count(),
        "next": next_cursor,
    }


@router.post("/customers/{customer_id}/inbox/{message_id}/read", summary="Mark an in-app message read")
def read_inbox(request: HttpRequest, customer_id: int, message_id: int) -> dict[str, Any]:
    customer = _customer_or_404(request, customer_id)
    d = customer_inbox(customer=customer).filter(pk=message_id).first()
    if d is None:
        raise NotFound(f"message {message_id} is not in this customer's inbox", field="message_id")
    return _inbox_item(inbox_mark_read(customer=customer, delivery=d, actor=_actor(request)))
