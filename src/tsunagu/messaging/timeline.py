"""Messaging's events on the customer's timeline, through the one way in (the ingest log).

Delivery state changes wait in ``DeliveryEvent`` rows (an outbox) until ``delivery_events_publish`` appends
them; inbound channel events (LINE follows, SMS replies) are appended as they arrive. Each has a messageId
derived from what it records, so appending it twice — after a crash between the append and the mark — is
a duplicate the applier drops.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import transaction

from tsunagu.core.models import Workspace
from tsunagu.customers.selectors import customer_event_identity
from tsunagu.events.services import events_append, system_events_append, system_source
from tsunagu.events.validation import Invalid, ParsedEvent, parse_event
from tsunagu.messaging.models import Delivery, DeliveryEvent, SendEvent

log = logging.getLogger(__name__)
SOURCE_NAME = "tsunagu messaging"
MAX_EVENT_BYTES = 32 * 1024

SEND_EVENT_NAMES = {
    "skipped": "Message Skipped",
    "delayed": "Message Delayed",
    "failed_over": "Message Failed Over",
    "undeliverable": "Message Undeliverable",
    "cancelled": "Message Steps Cancelled",
}
EVENT_NAMES = {
    "sent": "Message Sent",
    "delivered": "Message Delivered",
    "failed": "Message Failed",
    "bounced": "Message Bounced",
    "opened": "Message Opened",
    "clicked": "Message Clicked",
    "replied": "Message Replied",
    "unsubscribed": "Message Unsubscribed",
}
# The touchpoint (events.Channel) of each messaging channel type.
TOUCHPOINT = {
    "email": "email",
    "sms": "sms",
    "line": "line",
    "webpush": "web",
    "in_app": "app",
    "webhook": "backoffice",
}


def messaging_source(workspace: Workspace) -> Any:
    """The workspace's source for messaging's own events, created on first use."""
    return system_source(workspace=workspace, name=SOURCE_NAME)


def _identity(delivery: Delivery) -> dict[str, Any]:
    return customer_event_identity(delivery.customer)


def _delivery_event_payload(row: DeliveryEvent) -> dict[str, Any] | None:
    delivery = row.delivery
    who = _identity(delivery)
    if not who:
        return None
    context = {"channel": TOUCHPOINT.get(delivery.channel_type, "backoffice"), **who.pop("context", {})}
    properties: dict[str, Any] = {
        "delivery_id": delivery.pk,
        "send_id": delivery.send_id,
        "communication": delivery.communication.key,
        "version": delivery.version.number,
        "channel": delivery.channel_type,
        "topic": delivery.topic,
        "status": row.status,
    }
    if delivery.subject:
        properties["subject"] = delivery.subject[:200]
    if row.reason:
        properties["reason"] = row.reason
    if row.data.get("url"):
        properties["url"] = str(row.data["url"])[:2000]
    return {
        "type": "track",
        "event": EVENT_NAMES.get(row.status, f"Message {row.status.title()}"),
        "messageId": f"tsunagu:delivery-event:{row.pk}",
        "timestamp": row.at.isoformat(),
        "properties": properties,
        "context": context,
        **who,
    }


def _parse(payload: dict[str, Any]) -> ParsedEvent | None:
    try:
        return parse_event(payload, type_=None, where="", max_bytes=MAX_EVENT_BYTES)
    except Invalid as exc:
        # Built by us from stored rows: a refusal is a bug to see in the log, not a reason to stop the outbox.
        log.warning("messaging event %s not appended: %s", payload.get("messageId"), exc.errors[:1])
        return None


def delivery_events_publish(*, limit: int = 500) -> int:
    """Append up to ``limit`` unpublished delivery events to the ingest log, per workspace, then mark them.
    Not inside a transaction (the log is its own store on SQLite). Returns how many were marked."""
    rows = list(
        DeliveryEvent.objects.filter(logged=False)
        .select_related("delivery__customer", "delivery__communication", "delivery__version", "workspace")
        .order_by("id")[:limit]
    )
    return _publish(DeliveryEvent, rows, _delivery_event_payload)


def _publish(model: Any, rows: list[Any], payload: Any) -> int:
    """The outbox's step for ``rows`` of ``model`` (delivery or send events): their events appended under
    each workspace's messaging source (``system_events_append``: a payload that fails validation is logged
    and skipped), then the rows marked. A crash between the two appends them again on the next pass, and
    their fixed messageIds make the applier drop the second copy."""
    payloads: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        built = payload(row)
        if built:
            payloads.setdefault(row.workspace_id, []).append(built)
    system_events_append(name=SOURCE_NAME, payloads=payloads)
    with transaction.atomic():
        return int(model.objects.filter(pk__in=[r.pk for r in rows]).update(logged=True))


def customer_event_append(
    *,
    workspace: Workspace,
    identity: tuple[str, str],
    event: str,
    properties: dict[str, Any],
    message_id: str,
    channel: str,
    at: dt.datetime | None = None,
) -> bool:
    """Append one event a customer did on a channel (a LINE follow, an SMS reply), the customer found (or
    created) by ``identity`` — ("external:line_user_id", "U…"), ("phone", "+81…"), ("email", …)."""
    kind, value = identity
    external = {"type": kind.removeprefix("external:"), "id": value}
    payload: dict[str, Any] = {
        "type": "track",
        # Segment requires an id: the channel's own (the LINE user id, the phone number), as the demo's
        # LINE friends carry theirs before they link their account.
        "anonymousId": value,
        "event": event,
        "messageId": message_id,
        "properties": properties,
        "context": {"channel": channel, "externalIds": [external]},
    }
    if at is not None:
        payload["timestamp"] = at.isoformat()
    parsed = _parse(payload)
    if parsed is None:
        return False
    events_append(source=messaging_source(workspace), events=[parsed])
    return True


def _send_event_payload(row: SendEvent) -> dict[str, Any] | None:
    send = row.send
    who = customer_event_identity(send.customer)
    if not who:
        return None
    channel = str(row.data.get("channel", ""))
    context = {"channel": TOUCHPOINT.get(channel, "backoffice"), **who.pop("context", {})}
    properties: dict[str, Any] = {
        "send_id": send.pk,
        "communication": send.communication.key,
        "topic": send.version.topic,
        **{k: v for k, v in row.data.items() if v not in (None, "")},
    }
    return {
        "type": "track",
        "event": SEND_EVENT_NAMES.get(row.kind, f"Message {row.kind.title()}"),
        "messageId": f"tsunagu:send-event:{row.pk}",
        "timestamp": row.at.isoformat(),
        "properties": properties,
        "context": context,
        **who,
    }


def send_events_publish(*, limit: int = 500) -> int:
    """Append up to ``limit`` unpublished policy events (skipped, delayed, failed over, undeliverable) to
    the ingest log, per workspace, then mark them — as ``delivery_events_publish`` does."""
    rows = list(
        SendEvent.objects.filter(logged=False)
        .select_related("send__customer", "send__communication", "send__version", "workspace")
        .order_by("id")[:limit]
    )
    return _publish(SendEvent, rows, _send_event_payload)


def customer_timeline_append(
    *, customer: Any, event: str, properties: dict[str, Any], message_id: str, at: dt.datetime | None = None
) -> bool:
    """Append one event about a customer that tsunagu itself recorded (a consent decision)."""
    who = customer_event_identity(customer)
    if not who:
        return False
    payload: dict[str, Any] = {
        "type": "track",
        "event": event,
        "messageId": message_id,
        "properties": properties,
        "context": {"channel": "backoffice", **who.pop("context", {})},
        **who,
    }
    if at is not None:
        payload["timestamp"] = at.isoformat()
    parsed = _parse(payload)
    if parsed is None:
        return False
    events_append(source=messaging_source(customer.workspace), events=[parsed])
    return True
