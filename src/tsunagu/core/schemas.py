"""API shapes of members and API keys."""

from __future__ import annotations

import datetime as dt

from ninja import Field, Schema

from tsunagu.core.models import Role


class MemberOut(Schema):
    username: str
    role: Role
    created_at: dt.datetime


class MemberIn(Schema):
    username: str = Field(..., min_length=1, max_length=150)
    role: Role


class MemberRoleIn(Schema):
    role: Role


class MemberList(Schema):
    items: list[MemberOut]


class ApiKeyOut(Schema):
    id: int
    name: str
    prefix: str
    role: Role
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyOut):
    token: str = Field(..., description="The clear token: shown once, never stored.")


class ApiKeyIn(Schema):
    name: str = Field("default", max_length=100)
    role: Role = Role.ADMIN


class ApiKeyPage(Schema):
    items: list[ApiKeyOut]
    next: str | None
