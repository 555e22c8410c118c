"""API shapes of customer profiles."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Schema


class IdentityOut(Schema):
    type: str
    value: str
    first_seen: dt.datetime
    source_message_id: str


class CustomerSummaryOut(Schema):
    id: int
    display_name: str
    family_name: str
    given_name: str
    family_kana: str
    given_kana: str
    email: str
    phone: str
    user_id: str
    first_seen: dt.datetime | None
    last_seen: dt.datetime | None
    event_count: int


class CustomerOut(CustomerSummaryOut):
    traits: dict[str, Any]
    identities: list[IdentityOut]
    channels: dict[str, dt.datetime]
    merged_ids: list[int]
    # Computed traits by key (registered by segments: ``selectors.profile_extra_register``).
    computed: dict[str, Any] = {}


class MergeOut(Schema):
    id: int
    into_id: int
    other_id: int
    reason: str
    reason_code: str
    into_identity: list[str]
    other_identity: list[str]
    message_id: str
    event_type: str
    identities: list[list[str]]
    events_moved: int
    created_at: dt.datetime


class CustomerPage(Schema):
    items: list[CustomerSummaryOut]
    next: str | None


class MergePage(Schema):
    items: list[MergeOut]
    next: str | None
