"""Reads of messaging."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from tsunagu.core.errors import ValidationError
from tsunagu.core.models import Workspace
from tsunagu.customers.models import Customer
from tsunagu.customers.selectors import customer_recent
from tsunagu.messaging.channels import channel_class
from tsunagu.messaging.links import public_base
from tsunagu.messaging.models import (
    Attempt,
    Channel,
    Communication,
    CommunicationVersion,
    Delivery,
    Send,
    Suppression,
)
from tsunagu.messaging.secrets import secrets_decrypt


def channel_config(channel: Channel) -> dict[str, Any]:
    """The channel's whole config, secrets decrypted (for the channel implementation, never for output)."""
    return {**(channel.config or {}), **secrets_decrypt(channel.secrets)}


def channel_list(*, workspace: Workspace) -> QuerySet[Channel]:
    return Channel.objects.filter(workspace=workspace).order_by("id")


def channel_get(*, workspace: Workspace, channel_id: int) -> Channel | None:
    return Channel.objects.filter(workspace=workspace, pk=channel_id).first()


def channel_by_webhook_token(*, token: str) -> Channel | None:
    if not token or len(token) > 40 or "\x00" in token:
        return None
    return Channel.objects.select_related("workspace").filter(webhook_token=token).first()


def channel_webhook_urls(channel: Channel, *, request: Any = None) -> dict[str, str]:
    """The absolute URLs a provider must call for this channel ({} when it receives none)."""
    base = public_base(request)
    urls = {name: f"{base}/m/in/{channel.webhook_token}/{name}" for name in channel_class(channel.type).webhooks}
    if channel.type == "webpush":
        # Not a provider's webhook: where the subscribe snippet posts browsers' subscriptions.
        urls["subscribe"] = f"{base}/m/push/{channel.webhook_token}/subscribe"
    return urls


def communication_list(*, workspace: Workspace) -> QuerySet[Communication]:
    return Communication.objects.filter(workspace=workspace).order_by("key")


def communication_get(*, workspace: Workspace, key: str) -> Communication | None:
    if not key or len(key) > 100 or "\x00" in key:
        return None
    return Communication.objects.filter(workspace=workspace, key=key).first()


def communication_version(*, communication: Communication, number: int | None = None) -> CommunicationVersion:
    return CommunicationVersion.objects.get(communication=communication, number=number or communication.current_version)


def communication_versions(*, communication: Communication) -> QuerySet[CommunicationVersion]:
    return CommunicationVersion.objects.filter(communication=communication).order_by("-number")


def customer_sample(*, workspace: Workspace) -> Customer | None:
    """The customer templates are checked against when saved: the most recently seen one."""
    recent = customer_recent(workspace=workspace, limit=1)
    return recent[0] if recent else None


def suppressed(*, workspace: Workspace, channel_type: str, address: str, topic: str) -> bool:
    """Whether ``address`` must not get a message of ``topic``: suppressed for every topic, or for this one.
    Transactional messages ignore unsubscribes (a receipt is not marketing) but not bounces."""
    rows = Suppression.objects.filter(workspace=workspace, channel_type=channel_type, address=address)
    if topic == "transactional":
        rows = rows.exclude(reason=Suppression.Reason.UNSUBSCRIBE)
    return rows.filter(Q(topic="") | Q(topic=topic)).exists()


def send_get(*, workspace: Workspace, send_id: int) -> Send | None:
    return Send.objects.filter(workspace=workspace, pk=send_id).select_related("communication", "version").first()


def send_deliveries(*, send: Send) -> list[Delivery]:
    return list(send.deliveries.order_by("id").prefetch_related("events"))


def customer_ids(customer: Customer) -> list[int]:
    """The customer and every profile merged into it (its messages were sent to those)."""
    ids, frontier = [customer.pk], [customer.pk]
    while frontier and len(ids) < 1000:
        frontier = list(Customer.objects.filter(merged_into_id__in=frontier).values_list("pk", flat=True))
        ids.extend(frontier)
    return ids


def customer_messages(*, customer: Customer) -> QuerySet[Delivery]:
    """The customer's archived messages, newest first."""
    return (
        Delivery.objects.filter(workspace_id=customer.workspace_id, customer_id__in=customer_ids(customer))
        .select_related("communication", "version")
        .order_by("-id")
    )


def customer_inbox(*, customer: Customer) -> QuerySet[Delivery]:
    """The in-app messages of a customer, newest first."""
    return customer_messages(customer=customer).filter(channel_type="in_app", status=Delivery.Status.DELIVERED)


def delivery_get(*, workspace: Workspace, delivery_id: int) -> Delivery | None:
    return (
        Delivery.objects.filter(workspace=workspace, pk=delivery_id).select_related("communication", "version").first()
    )


def delivery_by_key(*, key: str) -> Delivery | None:
    if not key or len(key) > 64:
        return None
    return Delivery.objects.select_related("workspace").filter(key=key).first()


MESSAGE_STATUSES = ("queued", "sending", "sent", "delivered", "failed", "bounced")


def message_page(
    *,
    workspace: Workspace,
    q: str | None = None,
    channel: str | None = None,
    status: str | None = None,
    communication: str | None = None,
    customer: Customer | None = None,
    since: Any = None,
    until: Any = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Delivery], str | None]:
    """One page of the archive, newest first, through its full-text index (``messaging.archive``), and the
    cursor of the next page (``None`` at the end). Bad filters raise ``ValidationError`` naming the field."""
    from tsunagu.core.pagination import check_limit, decode_cursor, encode_cursor
    from tsunagu.messaging.archive import archive_search

    check_limit(limit)
    before_id = None
    if cursor:
        (before_id,) = decode_cursor(cursor, 1)
        if not isinstance(before_id, int) or isinstance(before_id, bool) or before_id < 1:
            raise ValidationError("cursor is not valid", field="cursor")
    rows = archive_search(
        workspace=workspace, q=q, customer_id=customer.pk if customer is not None else None, channel=channel,
        status=status, communication_key=communication, since=since, until=until, limit=limit + 1,
        before_id=before_id,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor([rows[-1].pk]) if more and rows else None


def send_status(send: Send) -> str:
    """A send's status: its own once it ended or while it is delayed (``scheduled``), else its current
    delivery's — the delivery engine writes only the delivery."""
    if send.ended_at is not None or send.status == Send.Status.SCHEDULED:
        return send.status
    latest = send.deliveries.order_by("-id").values_list("status", flat=True).first()
    return latest or send.status


# An attempt made follows its delivery until the policy engine ends it.
_ATTEMPT_STATUS = {"queued": "queued", "sending": "sending", "sent": "sent", "delivered": "delivered",
                   "failed": "failed", "bounced": "bounced"}


def send_attempts(send: Send) -> list[dict[str, Any]]:
    """The send's attempts in order: each step skipped or made, with its status, reason code and times
    (``GET /api/v1/sends/{id}``). A made attempt's ``delivery_status`` is its delivery's now, which may
    have moved after the send went on (a late delivery report)."""
    out: list[dict[str, Any]] = []
    for a in send.attempts.select_related("delivery").order_by("step", "id"):
        d = a.delivery
        if a.status == Attempt.Status.MADE and d is not None:
            status = _ATTEMPT_STATUS.get(d.status, d.status)
        else:
            status = str(a.status)
        ended = a.ended_at
        if ended is None and d is not None and d.status in Delivery.FINAL:
            ended = d.updated_at
        out.append({
            "channel": a.channel,
            "status": status,
            "reason": a.reason or None,
            "detail": a.detail or (d.reason if d is not None and d.reason else None),
            "started_at": a.started_at,
            "ended_at": ended,
            "delivery_id": d.pk if d is not None else None,
            "delivery_status": d.status if d is not None else None,
        })
    return out
