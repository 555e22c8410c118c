"""Reads of sources and the event store."""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, QuerySet

from tsunagu.core.models import Workspace
from tsunagu.customers.models import Customer
from tsunagu.events.models import Event, Source


def source_by_write_key(*, write_key: str) -> Source | None:
    if not write_key or len(write_key) > 64:
        return None
    return Source.objects.select_related("workspace").filter(write_key=write_key).first()


def source_list(*, workspace: Workspace) -> QuerySet[Source]:
    return Source.objects.filter(workspace=workspace).order_by("name", "pk")


def source_get(*, workspace: Workspace, source_id: int) -> Source | None:
    return Source.objects.filter(workspace=workspace, pk=source_id).first()


def customer_timeline(*, customer: Customer) -> QuerySet[Event]:
    """The customer's events across every channel, newest first."""
    return Event.objects.filter(customer_id=customer.pk).order_by("-timestamp", "-id")


def event_counts_since(*, workspace: Workspace, since: dt.datetime) -> dict[str, list[tuple[str, int]]]:
    """Events received since ``since``, by channel and by source name (for the dashboard)."""
    base = Event.objects.filter(workspace=workspace, received_at__gte=since)
    by_channel = [
        (row["channel"], row["n"])
        for row in base.values("channel").annotate(n=Count("id")).order_by("-n", "channel")
    ]
    by_source = [
        (row["source__name"], row["n"])
        for row in base.values("source__name").annotate(n=Count("id")).order_by("-n", "source__name")
    ]
    return {"channel": by_channel, "source": by_source}


def event_count(*, workspace: Workspace) -> int:
    return Event.objects.filter(workspace=workspace).count()


def channel_values() -> list[str]:
    """Every channel a source or an event may carry, in declaration order."""
    from tsunagu.events.models import Channel

    return list(Channel.values)


def customer_timeline_page(
    *, customer: Customer, limit: int = 50, cursor: str | None = None
) -> tuple[list[Event], str | None]:
    """One page of the customer's timeline, newest first, and the cursor of the next (older) page."""
    from tsunagu.core.pagination import page_by_time_desc

    return page_by_time_desc(customer_timeline(customer=customer), limit=limit, cursor=cursor)
