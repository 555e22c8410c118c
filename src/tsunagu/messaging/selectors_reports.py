"""Reads for the console and the preference page: a customer's sends, the channel types
a workspace can send on, a preference link's customer, and counts of sends skipped, delayed or moved on by
reason.

The counts read ``Attempt`` and ``SendEvent`` rows of a bounded period (the console asks for seven days);
they are what docs/consent.md calls "never silent" in numbers.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Count

from tsunagu.customers.models import Customer
from tsunagu.messaging.channels import TYPES
from tsunagu.messaging.models import Attempt, Channel, Send, SendEvent
from tsunagu.messaging.selectors import customer_ids

# The reasons an attempt carries when the send moved past it after it was made.
MOVED_ON = ("failed", "bounced", "not_delivered", "not_read")


def preference_customer(customer_id: int) -> Customer | None:
    """The live profile a preference link names (following merges), or None (unknown id, or a profile
    erased since the link was sent)."""
    customer = Customer.objects.select_related("workspace").filter(pk=customer_id).first()
    hops = 0
    while customer is not None and customer.merged_into_id is not None and hops < 50:
        customer = Customer.objects.select_related("workspace").filter(pk=customer.merged_into_id).first()
        hops += 1
    return customer


def workspace_channel_types(*, workspace: Any) -> list[str]:
    """The channel types the workspace has an enabled channel for, in the order of ``TYPES``."""
    types = set(Channel.objects.filter(workspace=workspace, enabled=True).values_list("type", flat=True))
    return [t for t in TYPES if t in types]


def customer_sends(*, customer: Customer, limit: int = 20) -> list[Send]:
    """The customer's latest sends (and those of the profiles merged into it), newest first."""
    return list(
        Send.objects.filter(workspace_id=customer.workspace_id, customer_id__in=customer_ids(customer))
        .select_related("communication", "version")
        .order_by("-id")[:limit]
    )


def reason_counts(*, workspace: Any, since: dt.datetime) -> dict[str, dict[str, int]]:
    """{reason: {"skipped": sends, "delayed": sends, "moved_on": sends}} since ``since``: how many sends
    had a step skipped for that reason, were delayed for it, or moved on from a made attempt for it. A
    send counts once per reason and kind, however many steps it had."""
    out: dict[str, dict[str, int]] = {}

    def add(reason: Any, kind: str, n: int) -> None:
        if reason:
            out.setdefault(str(reason), {"skipped": 0, "delayed": 0, "moved_on": 0})[kind] += n

    attempts = Attempt.objects.filter(workspace=workspace, started_at__gte=since)
    per_send = Count("send_id", distinct=True)
    for row in attempts.filter(status=Attempt.Status.SKIPPED).values("reason").annotate(n=per_send):
        add(row["reason"], "skipped", row["n"])
    for row in attempts.filter(reason__in=MOVED_ON).values("reason").annotate(n=per_send):
        add(row["reason"], "moved_on", row["n"])
    delayed = (
        SendEvent.objects.filter(workspace=workspace, kind="delayed", at__gte=since)
        .values("data__reason")
        .annotate(n=Count("send_id", distinct=True))
    )
    for row in delayed:
        add(row["data__reason"], "delayed", row["n"])
    return out


def scheduled_count(*, workspace: Any) -> int:
    """Sends waiting now (quiet hours, a holiday, a broadcast's start)."""
    return Send.objects.filter(workspace=workspace, status=Send.Status.SCHEDULED, ended_at__isnull=True).count()
