"""Messaging's reaction to applied events: follow merges, so a customer's archive stays whole."""

from __future__ import annotations

from tsunagu.events.reactions import Applied, reaction
from tsunagu.messaging.models import Delivery, PushSubscription, Send


@reaction("messaging")
def follow_merges(applied: Applied) -> None:
    # Sends and deliveries of a profile merged away belong to the profile it was merged into. Selectors
    # also follow merged_into, so this is for the direct lookups (and cheap: merges are rare).
    for into, other in applied.merges:
        Send.objects.filter(customer_id=other).update(customer_id=into)
        Delivery.objects.filter(customer_id=other).update(customer_id=into)
        PushSubscription.objects.filter(customer_id=other).update(customer_id=into)
