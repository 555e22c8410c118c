"""Reads of the core."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from tsunagu.core.models import ApiKey, AuditEntry, Membership, Workspace
from tsunagu.core.permissions import Perm, may


def workspace_get(*, slug: str) -> Workspace | None:
    return Workspace.objects.filter(slug=slug).first()


def workspace_list() -> QuerySet[Workspace]:
    return Workspace.objects.order_by("slug")


def workspaces_for_user(*, user: Any) -> QuerySet[Workspace]:
    if not getattr(user, "is_authenticated", False):
        return Workspace.objects.none()
    if user.is_superuser:
        return Workspace.objects.order_by("name")
    return Workspace.objects.filter(memberships__user=user).order_by("name")


def membership_get(*, workspace: Workspace, user: Any) -> Membership | None:
    return Membership.objects.filter(workspace=workspace, user=user).first()


def apikey_resolve(*, token: str) -> ApiKey | None:
    """The live API key for a bearer token, with its workspace, or None."""
    if not token or not token.startswith("tsk_") or len(token) > 200:
        return None
    return (
        ApiKey.objects.select_related("workspace")
        .filter(token_hash=ApiKey.hash_token(token), revoked_at__isnull=True)
        .first()
    )


def workspace_for_user(*, user: Any, slug: str) -> Workspace | None:
    """The workspace ``slug`` if ``user`` may see it (a member, or a superuser), else None — callers answer
    404 rather than 403 so that a workspace's existence is not revealed to outsiders."""
    return workspaces_for_user(user=user).filter(slug=slug).first()


def user_can_manage_credentials(*, workspace: Workspace, user: Any) -> bool:
    """Whether the console shows ``user`` the controls to create sources and rotate write keys (the
    services decide; this only keeps the page from offering what would be refused)."""
    return may(actor=user, workspace=workspace, perm=Perm.SOURCES)


def user_can_manage_members(*, workspace: Workspace, user: Any) -> bool:
    return may(actor=user, workspace=workspace, perm=Perm.MEMBERS)


def membership_list(*, workspace: Workspace) -> QuerySet[Membership]:
    """The workspace's members with their users, by user name."""
    return Membership.objects.filter(workspace=workspace).select_related("user").order_by("user__username")


def member_user(*, workspace: Workspace, username: str) -> Any:
    """The user called ``username`` if they are a member of ``workspace``, else None: callers answer 404
    either way, so names of other workspaces' users are never confirmed."""
    membership = membership_list(workspace=workspace).filter(user__username=username).first()
    return membership.user if membership is not None else None


def apikey_list(*, workspace: Workspace) -> QuerySet[ApiKey]:
    """The workspace's API keys, revoked ones included (their rows say when), newest first."""
    return ApiKey.objects.filter(workspace=workspace).order_by("-id")


def audit_list(*, workspace: Workspace) -> QuerySet[AuditEntry]:
    """The workspace's audit log, newest first."""
    return AuditEntry.objects.filter(workspace=workspace).order_by("-at", "-id")


def user_get(*, username: str) -> Any:
    """A console user by name, or None."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(username=username).first()
