"""Request and response shapes of the segments API (docs/api.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Field, Schema


class SegmentIn(Schema):
    key: str = Field(..., max_length=100)
    name: str = Field(..., max_length=200)
    rule: Any
    description: str = Field("", max_length=5000)
    webhook_url: str = Field("", max_length=2000)


class SegmentPatch(Schema):
    name: str | None = Field(None, max_length=200)
    rule: Any = None
    description: str | None = Field(None, max_length=5000)
    webhook_url: str | None = Field(None, max_length=2000)


class Warning_(Schema):
    kind: str
    name: str
    message: str
    suggestions: list[str]


class SegmentSaved(Schema):
    key: str
    count: int
    warnings: list[Warning_]


class SegmentOut(Schema):
    key: str
    name: str
    description: str
    rule: Any
    count: int
    time_dependent: bool
    webhook_url: str
    refreshed_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class SegmentList(Schema):
    items: list[SegmentOut]


class MemberOut(Schema):
    customer_id: int
    entered_at: dt.datetime


class MemberPage(Schema):
    items: list[MemberOut]
    next: str | None


class RuleEvaluateIn(Schema):
    rule: Any
    customer_id: int | None = None


class RuleCount(Schema):
    count: int
    warnings: list[Warning_]


class RuleMatch(Schema):
    match: bool
