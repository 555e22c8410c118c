"""Writes of the core: workspaces, members, API keys, the audit log."""

from __future__ import annotations

import re
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from tsunagu.core import clock
from tsunagu.core.errors import Conflict, ValidationError
from tsunagu.core.models import ApiKey, AuditEntry, Membership, Workspace

_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def workspace_create(*, name: str, slug: str | None = None, timezone: str = "Asia/Tokyo") -> Workspace:
    """Create a workspace. The slug is derived from the name when not given (Japanese names fall back to a
    random slug, since slugify drops kanji)."""
    name = (name or "").strip()
    if not name:
        raise ValidationError("workspace name must not be empty", field="name")
    if len(name) > 200:
        raise ValidationError("workspace name is longer than 200 characters", field="name")
    if slug is None:
        slug = slugify(name)[:48] or f"ws-{secrets.token_hex(4)}"
        base, n = slug, 1
        while Workspace.objects.filter(slug=slug).exists():
            n += 1
            slug = f"{base}-{n}"
    if not _SLUG_RE.match(slug):
        raise ValidationError("slug must be lower-case letters, digits and hyphens", field="slug")
    try:
        with transaction.atomic():
            return Workspace.objects.create(name=name, slug=slug, timezone=timezone)
    except IntegrityError as exc:
        raise Conflict(f"workspace {slug!r} already exists", field="slug") from exc


def user_create(*, username: str, password: str, email: str = "", is_superuser: bool = False) -> Any:
    """Create a console user; the password is hashed by Django's configured hasher."""
    username = (username or "").strip()
    if not username:
        raise ValidationError("username must not be empty", field="username")
    if not password or len(password) < 8:
        raise ValidationError("password must be at least 8 characters", field="password")
    User = get_user_model()
    if User.objects.filter(username=username).exists():
        raise Conflict(f"user {username!r} already exists", field="username")
    if is_superuser:
        return User.objects.create_superuser(username=username, email=email, password=password)
    return User.objects.create_user(username=username, email=email, password=password)


def membership_add(*, workspace: Workspace, user: Any, role: str = Membership.Role.OWNER) -> Membership:
    """Give a user a role in a workspace (idempotent: an existing membership gets the new role)."""
    if role not in Membership.Role.values:
        raise ValidationError(f"unknown role {role!r}", field="role")
    membership, _ = Membership.objects.update_or_create(workspace=workspace, user=user, defaults={"role": role})
    return membership


def apikey_create(*, workspace: Workspace, name: str = "default") -> tuple[ApiKey, str]:
    """Create an API key and return it with the clear token, which is shown once and never stored."""
    prefix = secrets.token_hex(4)
    token = f"tsk_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        workspace=workspace, name=name[:100] or "default", prefix=prefix, token_hash=ApiKey.hash_token(token)
    )
    return key, token


def apikey_revoke(*, workspace: Workspace, key_id: int) -> None:
    """Revoke an API key; later requests with it answer 401."""
    ApiKey.objects.filter(workspace=workspace, pk=key_id, revoked_at__isnull=True).update(revoked_at=clock.now())


def audit_record(
    *, workspace: Workspace, actor: str, action: str, target: str = "", data: dict[str, Any] | None = None
) -> AuditEntry:
    """Append to the workspace's audit log."""
    return AuditEntry.objects.create(
        workspace=workspace, actor=actor[:200], action=action[:100], target=target[:200], data=data or {}
    )
