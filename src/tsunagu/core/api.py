"""REST endpoints of members and API keys, scoped to the token's workspace; services check the token's role."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Body, Router, Status

from tsunagu.core.errors import NotFound, ValidationError
from tsunagu.core.models import Membership
from tsunagu.core.pagination import page_by_id_desc
from tsunagu.core.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    ApiKeyPage,
    MemberIn,
    MemberList,
    MemberOut,
    MemberRoleIn,
)
from tsunagu.core.selectors import apikey_list, member_user, membership_list, user_get
from tsunagu.core.services import apikey_create as apikey_create_service
from tsunagu.core.services import (
    apikey_revoke,
    membership_add,
    membership_change_role,
    membership_remove,
    workspace_settings,
    workspace_settings_update,
)

router = Router(tags=["access"])


def _member(m: Membership) -> dict[str, Any]:
    return {"username": m.user.get_username(), "role": m.role, "created_at": m.created_at}


def _user(username: str) -> Any:
    if "\x00" in username:
        raise ValidationError("username: must not contain the NUL character (U+0000)", field="username")
    user = user_get(username=username)
    if user is None:
        raise NotFound(f"user {username!r} not found", field="username")
    return user


@router.get("/members", response=MemberList, summary="The workspace's members")
def list_members(request: HttpRequest) -> dict[str, Any]:
    return {"items": [_member(m) for m in membership_list(workspace=request.auth)]}  # type: ignore[attr-defined]


@router.post("/members", response={201: MemberOut}, summary="Add an existing user to the workspace (owner keys)")
def add_member(request: HttpRequest, payload: MemberIn) -> Status[Any]:
    membership = membership_add(
        workspace=request.auth,  # type: ignore[attr-defined]
        user=_user(payload.username),
        role=payload.role,
        actor=request.api_key,  # type: ignore[attr-defined]
    )
    return Status(201, _member(membership))


@router.patch("/members/{username}", response=MemberOut, summary="Change a member's role (owner keys)")
def change_member(request: HttpRequest, username: str, payload: MemberRoleIn) -> dict[str, Any]:
    membership = membership_change_role(
        workspace=request.auth,  # type: ignore[attr-defined]
        user=_member_user(request, username),
        role=payload.role,
        actor=request.api_key,  # type: ignore[attr-defined]
    )
    return _member(membership)


@router.delete("/members/{username}", response={204: None}, summary="Remove a member (owner keys)")
def remove_member(request: HttpRequest, username: str) -> Status[None]:
    membership_remove(workspace=request.auth, user=_member_user(request, username), actor=request.api_key)  # type: ignore[attr-defined]
    return Status(204, None)


def _member_user(request: HttpRequest, username: str) -> Any:
    user = member_user(workspace=request.auth, username=username)  # type: ignore[attr-defined]
    if user is None:
        raise NotFound("no member of this workspace has that user name", field="username")
    return user


@router.get("/api-keys", response=ApiKeyPage, summary="The workspace's API keys (never their tokens)")
def list_api_keys(request: HttpRequest, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
    items, next_cursor = page_by_id_desc(apikey_list(workspace=request.auth), limit=limit, cursor=cursor)  # type: ignore[attr-defined]
    return {"items": items, "next": next_cursor}


@router.post("/api-keys", response={201: ApiKeyCreated}, summary="Create an API key; the token is shown once")
def create_api_key(request: HttpRequest, payload: ApiKeyIn) -> Status[Any]:
    key, token = apikey_create_service(
        workspace=request.auth,  # type: ignore[attr-defined]
        name=payload.name,
        role=payload.role,
        actor=request.api_key,  # type: ignore[attr-defined]
    )
    return Status(201, {**ApiKeyOut.model_validate(key).model_dump(), "token": token})


@router.post("/api-keys/{key_id}/revoke", response=ApiKeyOut, summary="Revoke an API key")
def revoke_api_key(request: HttpRequest, key_id: int) -> Any:
    return apikey_revoke(workspace=request.auth, key_id=key_id, actor=request.api_key)  # type: ignore[attr-defined]


@router.get("/workspace/settings", summary="The workspace's settings, as one object", tags=["workspace"])
def get_settings(request: HttpRequest) -> dict[str, Any]:
    return workspace_settings(request.auth)  # type: ignore[attr-defined]


@router.patch("/workspace/settings", summary="Change some settings (admin keys); audited", tags=["workspace"])
def patch_settings(request: HttpRequest, payload: Body[dict[str, Any]]) -> dict[str, Any]:
    return workspace_settings_update(
        workspace=request.auth,  # type: ignore[attr-defined]
        changes=payload,
        actor=request.api_key,  # type: ignore[attr-defined]
    )
