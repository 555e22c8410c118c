"""How validated events are written into the ingest log and read back by the applier.

The web process validates once and stores the result, not the raw body: the applier then never re-parses
Segment payloads, and what it applies is exactly what was acknowledged.

A record's body is a JSON array with one array per event, in ``ParsedEvent``'s field order::

    [type, message_id, user_id, anonymous_id, event, name, group_id, previous_id,
     original_timestamp, sent_at, properties, traits, context(, category)]

Positional rather than keyed so that the tracking API's fast path (``tsunagu.events.fastpath``) can write
an event without re-encoding it: the scalar fields are one small ``orjson.dumps`` and ``properties``,
``traits`` and ``context`` are the request's own JSON bytes of those objects, validated but never turned
into Python objects in the web process. The optional 14th element is a page's top-level ``category``,
which ``decode`` copies into ``properties.category`` when that key is absent (what validation does for
the ``ParsedEvent`` path) — deciding it needs the properties' keys, which the fast path does not read.

Records written before this layout (one JSON object per event, keyed by field name) still decode.
Either way ``decode`` returns the same ``ParsedEvent`` list, so the applier does not depend on the layout.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson

from tsunagu.events.validation import ParsedEvent

_TIME_FIELDS = ("original_timestamp", "sent_at")
_fromiso = dt.datetime.fromisoformat


@dataclass(frozen=True, slots=True)
class Encoded:
    """Events already encoded as a record body (by the fast path): ``count`` events in ``body``."""

    count: int
    body: bytes


def encode(events: list[ParsedEvent]) -> bytes:
    return orjson.dumps(
        [
            (
                e.type, e.message_id, e.user_id, e.anonymous_id, e.event, e.name, e.group_id, e.previous_id,
                e.original_timestamp, e.sent_at, e.properties, e.traits, e.context,
            )
            for e in events
        ],
        option=orjson.OPT_NON_STR_KEYS,
    )


def join(events: list[bytes]) -> bytes:
    """A record body from events encoded one by one (each a JSON array in the layout above)."""
    return b"[" + b",".join(events) + b"]"


def decode(body: bytes | memoryview) -> list[ParsedEvent]:
    items: list[Any] = orjson.loads(bytes(body))
    out = []
    for item in items:
        if type(item) is dict:  # a record of the keyed layout, written before the positional one
            for name in _TIME_FIELDS:
                value = item.get(name)
                if value is not None:
                    item[name] = _fromiso(value)
            out.append(ParsedEvent(**item))
            continue
        original, sent_at, properties = item[8], item[9], item[10]
        if len(item) > 13:
            category = item[13]
            if "category" not in properties:
                properties = {**properties, "category": category}
        out.append(
            ParsedEvent(
                item[0], item[1], item[2], item[3], item[4], item[5], item[6], item[7],
                None if original is None else _fromiso(original),
                None if sent_at is None else _fromiso(sent_at),
                properties, item[11], item[12],
            )
        )
    return out
