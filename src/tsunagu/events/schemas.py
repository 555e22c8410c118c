"""API shapes of sources and events."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Field, Schema


class SourceOut(Schema):
    id: int
    name: str
    channel: str
    write_key: str
    created_at: dt.datetime
    rotated_at: dt.datetime | None


class SourceIn(Schema):
    name: str = Field(..., min_length=1, max_length=200)
    channel: str = "web"


class SourcePage(Schema):
    items: list[SourceOut]
    next: str | None


class EventOut(Schema):
    id: int
    message_id: str
    type: str
    event: str | None
    name: str | None
    channel: str
    timestamp: dt.datetime
    received_at: dt.datetime
    source_id: int
    properties: dict[str, Any] | None
    traits: dict[str, Any] | None
    context: dict[str, Any]


class EventPage(Schema):
    items: list[EventOut]
    next: str | None


class IngestionOut(Schema):
    pending: int = Field(..., description="events acknowledged (durably appended) but not yet applied")
    applied: int = Field(..., description="events applied to profiles and the timeline, all time")
    duplicates: int = Field(..., description="events the applier dropped as repeated messageIds, all time")
    oldest_pending_ms: float | None = Field(..., description="how long the oldest pending event has waited")
