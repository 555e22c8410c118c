"""Throttling per channel: a channel whose config has ``rate_per_second`` gets its deliveries spread out.

Providers limit how fast an account may send (LINE's push and multicast requests a second, an SMS
number's messages a second); a broadcast of 100,000 would otherwise be refused by the thousand with 429s.
Rather than refuse or retry, each delivery made on a throttled channel is given the next free moment of the
channel as its due time, ``1 / rate_per_second`` after the previous one: the delivery workers then pick
them up at that pace, however many workers there are. The channel's next free moment is a row
(``ChannelThrottle``) written in the transaction that makes the delivery, so it is shared by every worker
and survives restarts; a channel without the key costs nothing (no query).

A LINE broadcast's deliveries that fall due together are still sent as one multicast request
(``messaging.multicast``): the rate is in messages, which keeps a LINE plan's monthly count predictable
and bounds the requests a second too.
"""

from __future__ import annotations

import datetime as dt

from django.db import IntegrityError, connection, transaction

from tsunagu.messaging.models import Channel, ChannelThrottle


def channel_rate(row: Channel | None) -> float | None:
    """The channel's ``rate_per_second``, or None when it is not throttled."""
    if row is None:
        return None
    rate = (row.config or {}).get("rate_per_second")
    return float(rate) if isinstance(rate, int | float) and not isinstance(rate, bool) and rate > 0 else None


def throttle_due(row: Channel | None, now: dt.datetime) -> dt.datetime:
    """When a delivery made now on channel ``row`` may be sent: ``now`` for a channel without a rate; else
    the channel's next free moment (never before ``now``), which moves ``1 / rate`` on. Call it inside the
    transaction that creates the delivery: the reservation commits or rolls back with it."""
    rate = channel_rate(row)
    if rate is None or row is None:
        return now
    gap = dt.timedelta(seconds=1 / rate)
    rows = ChannelThrottle.objects.filter(channel=row)
    if connection.vendor == "postgresql":
        rows = rows.select_for_update()
    slot = rows.first()
    if slot is None:
        try:
            with transaction.atomic():
                ChannelThrottle.objects.create(channel=row, next_at=now + gap)
            return now
        except IntegrityError:  # another worker made it first: take a slot from it
            slot = rows.get()
    due = max(slot.next_at, now)
    ChannelThrottle.objects.filter(pk=slot.pk).update(next_at=due + gap)
    return due
