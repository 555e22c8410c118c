"""How validated events are written into the ingest log and read back by the applier.

The web process validates once (``tsunagu.events.validation``) and stores the result, not the raw body: the
applier then never re-parses Segment payloads, and what it applies is exactly what was acknowledged.
orjson encodes the ``ParsedEvent`` dataclasses natively (datetimes as RFC 3339), which keeps the append
path at a few microseconds per event.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from tsunagu.events.validation import ParsedEvent

_TIME_FIELDS = ("original_timestamp", "sent_at")


def encode(events: list[ParsedEvent]) -> bytes:
    return orjson.dumps(events, option=orjson.OPT_NON_STR_KEYS)


def decode(body: bytes | memoryview) -> list[ParsedEvent]:
    items: list[dict[str, Any]] = orjson.loads(bytes(body))
    out = []
    for item in items:
        for name in _TIME_FIELDS:
            value = item.get(name)
            if value is not None:
                item[name] = dt.datetime.fromisoformat(value)
        out.append(ParsedEvent(**item))
    return out
