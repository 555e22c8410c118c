"""Reads of personas: the list, one persona, and its figures — live size, share of customers, average
spend, top channels and the members' trend.

Average spend is the sum of ``properties.revenue`` of the members' ``Order Completed`` track events (the
event and property of docs/events.md's e-commerce spec), divided by the number of members (a member without
orders counts as 0). Top channels count the members who have been active on each channel
(``Customer.channels``)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from django.db.models import QuerySet

from tsunagu.core import clock
from tsunagu.core.errors import NotFound
from tsunagu.customers.models import Customer
from tsunagu.events.models import Event
from tsunagu.segments.models import Membership, MembershipChange, Persona, Segment

SPEND_EVENT = "Order Completed"
SPEND_PROPERTY = "revenue"
TREND_DAYS = 30


def persona_list(*, workspace: Any) -> QuerySet[Persona]:
    return Persona.objects.filter(workspace=workspace).select_related("segment").order_by("segment__name")


def persona_get(*, workspace: Any, key: str) -> Persona:
    """The persona of the segment ``key``; NotFound when the segment has none (or is another workspace's)."""
    persona = Persona.objects.filter(workspace=workspace, segment__key=key).select_related("segment").first()
    if persona is None:
        raise NotFound(f"no persona for segment “{key}”", field="key")
    return persona


def segments_without_persona(*, workspace: Any) -> QuerySet[Segment]:
    return Segment.objects.filter(workspace=workspace, persona__isnull=True).order_by("name")


def _member_ids(segment: Segment) -> Any:
    return Membership.objects.filter(segment=segment).values("customer_id")


def persona_size(*, segment: Segment) -> int:
    """Members now (counted, not the segment's stored ``member_count``)."""
    return Membership.objects.filter(segment=segment).count()


def persona_share(*, segment: Segment, size: int | None = None) -> float:
    """Members as a share (0..1) of the workspace's live customers."""
    total = Customer.objects.filter(workspace_id=segment.workspace_id, merged_into__isnull=True).count()
    size = persona_size(segment=segment) if size is None else size
    return size / total if total else 0.0


def persona_average_spend(*, segment: Segment, size: int | None = None) -> float:
    """Revenue of the members' Order Completed events, per member (see the module's docstring)."""
    size = persona_size(segment=segment) if size is None else size
    if not size:
        return 0.0
    total = 0.0
    values = (Event.objects.filter(workspace_id=segment.workspace_id, type="track", event=SPEND_EVENT,
                                   customer_id__in=_member_ids(segment))
              .values_list(f"properties__{SPEND_PROPERTY}", flat=True))
    for value in values.iterator(chunk_size=2000):
        if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
            total += value
    return total / size


def persona_top_channels(*, segment: Segment, limit: int = 5) -> list[tuple[str, int]]:
    """(channel, members active on it), most members first."""
    counts: Counter[str] = Counter()
    channels = Customer.objects.filter(pk__in=_member_ids(segment)).values_list("channels", flat=True)
    for seen in channels.iterator(chunk_size=2000):
        if isinstance(seen, dict):
            counts.update(seen.keys())
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def persona_trend(*, segment: Segment, tz: dt.tzinfo, days: int = TREND_DAYS,
                  now: dt.datetime | None = None) -> list[tuple[dt.date, int]]:
    """Members at the end of each of the last ``days`` days (in ``tz``), worked back from today's count
    through the membership history (an entry adds one, an exit takes one away)."""
    now = now or clock.now()
    today = now.astimezone(tz).date()
    first = today - dt.timedelta(days=days - 1)
    start = dt.datetime.combine(first, dt.time(), tzinfo=tz)
    net: Counter[dt.date] = Counter()
    for entered, at in (MembershipChange.objects.filter(segment=segment, at__gte=start)
                        .values_list("entered", "at").iterator(chunk_size=2000)):
        net[at.astimezone(tz).date()] += 1 if entered else -1
    count = persona_size(segment=segment)
    out: list[tuple[dt.date, int]] = []
    day = today
    while day >= first:
        out.append((day, max(count, 0)))
        count -= net.get(day, 0)
        day -= dt.timedelta(days=1)
    return list(reversed(out))


def persona_stats(*, persona: Persona, tz: dt.tzinfo, now: dt.datetime | None = None) -> dict[str, Any]:
    """Every figure of the persona page in one dict."""
    segment = persona.segment
    size = persona_size(segment=segment)
    trend = persona_trend(segment=segment, tz=tz, now=now)
    return {
        "size": size,
        "share": persona_share(segment=segment, size=size),
        "average_spend": persona_average_spend(segment=segment, size=size),
        "top_channels": persona_top_channels(segment=segment),
        "trend": trend,
    }
