"""Where and when an event happened: its channel (touchpoint) and its corrected timestamp."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from tsunagu.events.models import Channel, Source
from tsunagu.events.timestamps import event_time
from tsunagu.events.validation import ParsedEvent

# Segment's context.channel values and SDK library names, mapped to tsunagu channels.
_CONTEXT_CHANNELS = {"browser": Channel.WEB, "mobile": Channel.APP, "client": Channel.WEB}
_LIBRARY_CHANNELS = (
    ("analytics.js", Channel.WEB),
    ("analytics-next", Channel.WEB),
    ("rudder-js", Channel.WEB),
    ("analytics-ios", Channel.APP),
    ("analytics-android", Channel.APP),
    ("analytics-react-native", Channel.APP),
    ("analytics-flutter", Channel.APP),
    ("analytics-swift", Channel.APP),
    ("analytics-kotlin", Channel.APP),
)
CHANNELS = frozenset(Channel.values)



def event_channel(*, source: Source, context: dict[str, Any]) -> str:
    """The touchpoint of an event: ``context.channel`` when it names one, else what the SDK library
    implies, else the source's channel."""
    declared = context.get("channel")
    if isinstance(declared, str):
        folded = declared.strip().lower()
        if folded in CHANNELS:
            return folded
        if folded in _CONTEXT_CHANNELS:
            return _CONTEXT_CHANNELS[folded]
    library = context.get("library")
    if isinstance(library, dict):
        name = library.get("name")
        if isinstance(name, str):
            channel = _library_channel(name)
            if channel is not None:
                return channel
    return source.channel


@functools.lru_cache(maxsize=1024)
def _library_channel(name: str) -> str | None:
    # Cached: a workspace's events come from a handful of SDK names, and this runs for every event.
    lib = name.lower()
    for prefix, channel in _LIBRARY_CHANNELS:
        if lib.startswith(prefix):
            return channel
    return None


def event_timestamp(*, event: ParsedEvent, received_at: dt.datetime) -> dt.datetime:
    """Segment's clock-skew correction within the event-time window (``tsunagu.events.timestamps``)."""
    return event_time(original=event.original_timestamp, sent_at=event.sent_at, received_at=received_at)
