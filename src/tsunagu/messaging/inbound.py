"""Inbound webhooks of channels: verified by the provider's signature, deduplicated, then applied.

A provider's report on a message (Twilio's status callback, a bounce) moves its delivery; something the
customer did (a LINE follow, an SMS reply) becomes an event on their timeline through the ingest log. Each
item is recorded once (``InboundReceipt``): a replayed or redelivered webhook changes nothing.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from tsunagu.core.errors import NotFound
from tsunagu.messaging.channels import channel_class
from tsunagu.messaging.channels.base import CustomerEvent, InboundRequest, StatusReport
from tsunagu.messaging.delivery import Report, delivery_report
from tsunagu.messaging.models import Channel, Delivery, InboundReceipt
from tsunagu.messaging.selectors import channel_config
from tsunagu.messaging.timeline import TOUCHPOINT, customer_event_append

log = logging.getLogger(__name__)


def _first_time(channel: Channel, receipt: str) -> bool:
    try:
        with transaction.atomic():
            InboundReceipt.objects.create(channel=channel, key=receipt[:255])
    except IntegrityError:
        return False
    return True


def inbound_handle(*, channel: Channel, webhook: str, request: InboundRequest) -> dict[str, int]:
    """Verify and apply one inbound webhook. Raises ``AuthenticationError`` (401) when the signature does
    not hold — nothing is read or written then — and ``NotFound`` for a webhook the channel does not have.
    Returns counts of what was applied and what was a replay."""
    cls = channel_class(channel.type)
    if webhook not in cls.webhooks:
        raise NotFound(f"a {channel.type} channel has no {webhook!r} webhook", field="webhook")
    impl = cls(channel_config(channel), allow_private=channel.workspace.allow_private_webhooks)
    impl.verify(webhook=webhook, request=request)
    return inbound_apply(channel=channel, kind=webhook, items=impl.parse(webhook=webhook, request=request))


def inbound_apply(
    *, channel: Channel, kind: str, items: list[StatusReport | CustomerEvent]
) -> dict[str, int]:
    """Apply what a provider reported — by webhook, or read from a bounce mailbox (``kind`` "mailbox") —
    each item once: a delivery moves (found by the provider's id of it), a customer's event is appended."""
    counts = {"applied": 0, "replayed": 0, "unmatched": 0}
    for item in items:
        if not _first_time(channel, f"{kind}:{item.receipt}"):
            counts["replayed"] += 1
            continue
        if isinstance(item, StatusReport):
            delivery = (
                Delivery.objects.filter(channel=channel, provider_id=item.provider_id).first()
                if item.provider_id
                else None
            )
            if delivery is None:
                counts["unmatched"] += 1
                continue
            delivery_report(delivery=delivery, report=Report(status=item.status, reason=item.reason, at=item.at))
            counts["applied"] += 1
        elif isinstance(item, CustomerEvent):
            customer_event_append(
                workspace=channel.workspace,
                identity=item.identity,
                event=item.event,
                properties=item.properties,
                message_id=f"tsunagu:inbound:{channel.pk}:{item.receipt}"[:200],
                channel=TOUCHPOINT.get(channel.type, "backoffice"),
                at=item.at,
            )
            counts["applied"] += 1
    return counts


def bounce_mailboxes_poll() -> int:
    """Read the bounce mailbox of every enabled email channel that has one, and apply the reports. A
    mailbox that cannot be read is logged and skipped (the next poll tries again). Returns reports applied."""
    from tsunagu.messaging.bounces import MailboxError, bounces_fetch

    applied = 0
    for channel in Channel.objects.filter(type="email", enabled=True).select_related("workspace"):
        impl = channel_class("email")(channel_config(channel))
        mailbox = impl.bounce_mailbox()  # type: ignore[attr-defined]
        if not mailbox:
            continue
        try:
            reports = bounces_fetch(**mailbox)
        except (MailboxError, OSError) as exc:
            log.warning("bounce mailbox of channel %s: %s", channel.pk, exc)
            continue
        applied += inbound_apply(channel=channel, kind="mailbox", items=list(reports))["applied"]
    return applied
