"""When an event happened: Segment's clock-skew correction, bounded to a plausible window.

Device clocks are wrong in every way: a few minutes or hours off (corrected by ``sentAt``), a wrong time
zone (at most 14 hours), or broken — reset to 1970 or 0001 (a zero value), or set to 9999 by a bad SDK or an
attacker (write keys are public). A broken clock must not decide the event's time: an event of year 9999
would keep its customer first in "recent" for ever. Such events are kept, at the time they were received,
and the device's value stays in ``original_timestamp``.
"""

from __future__ import annotations

import datetime as dt

# A day covers any time-zone mistake (UTC+14 sent as UTC) and an ordinary fast clock; beyond it the clock
# is broken. Nothing legitimately happens in the future.
MAX_AHEAD = dt.timedelta(days=1)
# History is imported with its own timestamps, years back; before 2000 an event's time is a reset clock
# (1970-01-01 is the Unix epoch, 0001-01-01 a zero value) rather than a customer's history.
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def event_time(*, original: dt.datetime | None, sent_at: dt.datetime | None, received_at: dt.datetime) -> dt.datetime:
    """The event's time: ``received_at − (sent_at − original)`` when the device sent both, ``original``
    when it sent no ``sentAt``, and ``received_at`` when it sent no time or when that time falls outside
    [``EARLIEST``, ``received_at + MAX_AHEAD``]."""
    if original is None:
        return received_at
    if sent_at is None:
        corrected = original
    else:
        try:
            corrected = received_at - (sent_at - original)
        except OverflowError:
            # Clocks off by millennia: the correction leaves the calendar.
            return received_at
    if corrected > received_at + MAX_AHEAD or corrected < EARLIEST:
        return received_at
    return corrected
