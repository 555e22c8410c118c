"""Request and response shapes of the journeys API (docs/api.md, "Journeys")."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Field, Schema


class JourneyIn(Schema):
    key: str = Field(..., max_length=100)
    name: str = Field(..., max_length=200)
    definition: Any


class JourneyPut(Schema):
    definition: Any
    name: str | None = Field(None, max_length=200)


class VersionOut(Schema):
    number: int
    published_at: dt.datetime
    published_by: str


class JourneyOut(Schema):
    key: str
    name: str
    status: str
    version: int  # the current published version; 0 before the first publish
    draft: Any
    definition: Any  # the current version's definition (null before the first publish)
    versions: list[VersionOut]
    created_at: dt.datetime
    updated_at: dt.datetime


class JourneySummary(Schema):
    key: str
    name: str
    status: str
    version: int
    updated_at: dt.datetime


class JourneyList(Schema):
    items: list[JourneySummary]


class Published(Schema):
    version: int


class DryRunIn(Schema):
    days: Any = 7
    definition: Any = None  # a definition to try instead of the draft


class RunIn(Schema):
    customer_id: int | None = None
    user_id: str | None = Field(None, max_length=255)
    data: Any = None


class HistoryOut(Schema):
    step: str
    action: str
    at: dt.datetime
    outcome: Any
    actor: str


class EvaluationOut(Schema):
    name: str
    value: Any
    step: str
    at: dt.datetime
    actor: str


class RunOut(Schema):
    id: int
    journey: str
    customer_id: int
    status: str
    step: str
    version: int
    entry_key: str
    due_at: dt.datetime | None
    entered_at: dt.datetime
    ended_at: dt.datetime | None
    goal_at: dt.datetime | None
    context: Any
    history: list[HistoryOut]
    evaluations: list[EvaluationOut] = []


class RunPage(Schema):
    items: list[RunOut]
    next: str | None


class EvaluationIn(Schema):
    name: Any
    value: Any
    step: Any = None


class MigrateIn(Schema):
    from_version: Any
    to_version: Any


class Refused(Schema):
    run_id: int
    step: str
    reason: str


class Migrated(Schema):
    moved: int
    refused: list[Refused]


class Secret(Schema):
    secret: str
