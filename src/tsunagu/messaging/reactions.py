"""Messaging's reaction to applied events: follow merges, so a customer's archive stays whole."""

from __future__ import annotations

from tsunagu.events.reactions import Applied, reaction
from tsunagu.messaging.consent import identify_consents
from tsunagu.messaging.models import Consent, Delivery, PushSubscription, Send


@reaction("messaging")
def follow_merges(applied: Applied) -> None:
    # Sends and deliveries of a profile merged away belong to the profile it was merged into. Selectors
    # also follow merged_into, so this is for the direct lookups (and cheap: merges are rare).
    for into, other in applied.merges:
        Send.objects.filter(customer_id=other).update(customer_id=into)
        Delivery.objects.filter(customer_id=other).update(customer_id=into)
        PushSubscription.objects.filter(customer_id=other).update(customer_id=into)
        Consent.objects.filter(customer_id=other).update(customer_id=into)


@reaction("messaging.consent")
def consents_from_identify(applied: Applied) -> None:
    # ``identify`` traits such as ``consent_email_marketing: true`` are consent decisions with the event as
    # their proof (docs/consent.md); recorded in the applier's transaction, at the event's time.
    rows = []
    for event in applied.events:
        if event.type != "identify" or event.customer_id is None or not event.traits:
            continue
        for channel, topic, status in identify_consents(event.traits):
            rows.append(Consent(
                workspace_id=applied.workspace.pk, customer_id=event.customer_id, channel=channel, topic=topic,
                status=status, source="identify", text=f"identify {event.message_id}"[:5000], at=event.timestamp,
            ))
    if rows:
        Consent.objects.bulk_create(rows)
