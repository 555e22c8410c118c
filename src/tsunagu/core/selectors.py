"""Reads of the core."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from tsunagu.core.models import ApiKey, Membership, Workspace


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


# Who may change a workspace's credentials (create sources, rotate write keys): a rotated key breaks a live
# integration, so it is an owner's or admin's act.
CREDENTIAL_ROLES = frozenset({Membership.Role.OWNER, Membership.Role.ADMIN})


def user_can_manage_credentials(*, workspace: Workspace, user: Any) -> bool:
    """Superusers, and the workspace's owners and admins."""
    if getattr(user, "is_superuser", False):
        return True
    membership = membership_get(workspace=workspace, user=user)
    return membership is not None and membership.role in CREDENTIAL_ROLES


def user_get(*, username: str) -> Any:
    """A console user by name, or None."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(username=username).first()
