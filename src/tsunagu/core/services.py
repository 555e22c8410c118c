"""Writes of the core: workspaces, users, members, API keys, the audit log.

Services that change configuration or credentials take ``actor=`` (a user, an API key or
``permissions.System``), check it against ``core.permissions`` before writing, and write one audit entry in
the same transaction: a change that fails leaves neither the change nor an entry behind.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.core import validators as django_validators
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from tsunagu.core import clock
from tsunagu.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from tsunagu.core.models import ApiKey, AuditEntry, Membership, Role, Workspace
from tsunagu.core.permissions import Perm, System, actor_label, authorize, authorize_grant, authorize_system

_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def _role(role: str) -> Role:
    if role not in Role.values:
        raise ValidationError(f"unknown role {role!r}: one of {', '.join(Role.values)}", field="role")
    return Role(role)


def workspace_create(
    *, name: str, slug: str | None = None, timezone: str = "Asia/Tokyo", actor: Any
) -> Workspace:
    """Create a workspace (the CLI and superusers only), audited in the new workspace's log. The slug is
    derived from the name when not given (Japanese names fall back to a random slug, since slugify drops
    kanji). One transaction; a taken slug is :class:`Conflict`."""
    authorize_system(actor=actor, what="create workspaces")
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
            workspace = Workspace.objects.create(name=name, slug=slug, timezone=timezone)
            audit_record(workspace=workspace, actor=actor, action="workspace.created", target=slug)
            return workspace
    except IntegrityError as exc:
        raise Conflict(f"workspace {slug!r} already exists", field="slug") from exc


def _first_message(exc: DjangoValidationError) -> str:
    return " ".join(str(m) for m in exc.messages)


def user_create(*, username: str, password: str, email: str = "", is_superuser: bool = False) -> Any:
    """Create a console user. The user name must pass Django's user-name validator, the e-mail address its
    EmailValidator, and the password every validator in ``AUTH_PASSWORD_VALIDATORS`` (with the validator's
    own message); the password is hashed by Django's configured hasher."""
    User = get_user_model()
    username = (username or "").strip()
    if not username:
        raise ValidationError("username must not be empty", field="username")
    try:
        # The user model's own user-name validators (Django's UnicodeUsernameValidator, the length limit).
        User._meta.get_field(User.USERNAME_FIELD).run_validators(username)  # type: ignore[union-attr]
    except DjangoValidationError as exc:
        raise ValidationError(_first_message(exc), field="username") from exc
    email = (email or "").strip()
    if email:
        try:
            django_validators.validate_email(email)
        except DjangoValidationError as exc:
            raise ValidationError(_first_message(exc), field="email") from exc
    if not password:
        raise ValidationError("password must not be empty", field="password")
    try:
        password_validation.validate_password(password, User(username=username, email=email))
    except DjangoValidationError as exc:
        raise ValidationError(_first_message(exc), field="password") from exc
    if User.objects.filter(username=username).exists():
        raise Conflict(f"user {username!r} already exists", field="username")
    if is_superuser:
        return User.objects.create_superuser(username=username, email=email, password=password)
    return User.objects.create_user(username=username, email=email, password=password)


def _owners_left(workspace: Workspace, *, without: Any) -> int:
    return Membership.objects.filter(workspace=workspace, role=Role.OWNER).exclude(user=without).count()


def membership_add(*, workspace: Workspace, user: Any, role: str, actor: Any) -> Membership:
    """Give an existing user a role in a workspace (owners only). An existing member is :class:`Conflict`
    (change a role with :func:`membership_change_role`). One transaction with its audit entry."""
    role = _role(role)
    authorize(actor=actor, workspace=workspace, perm=Perm.MEMBERS)
    try:
        with transaction.atomic():
            membership = Membership.objects.create(workspace=workspace, user=user, role=role)
            audit_record(
                workspace=workspace, actor=actor, action="member.added", target=user.get_username(),
                data={"role": role},
            )
    except IntegrityError as exc:
        raise Conflict(f"{user.get_username()} is already a member of {workspace.slug}", field="username") from exc
    return membership


def _membership(workspace: Workspace, user: Any) -> Membership:
    membership = Membership.objects.select_for_update().filter(workspace=workspace, user=user).first()
    if membership is None:
        raise NotFound(f"{user.get_username()} is not a member of {workspace.slug}", field="username")
    return membership


def membership_change_role(*, workspace: Workspace, user: Any, role: str, actor: Any) -> Membership:
    """Change a member's role (owners only). The last owner cannot step down: a workspace without an owner
    could never gain members again. One transaction with its audit entry; an unchanged role writes none."""
    role = _role(role)
    authorize(actor=actor, workspace=workspace, perm=Perm.MEMBERS)
    with transaction.atomic():
        membership = _membership(workspace, user)
        before = membership.role
        if before == role:
            return membership
        if before == Role.OWNER and not _owners_left(workspace, without=user):
            raise Conflict(f"{user.get_username()} is the last owner of {workspace.slug}", field="role")
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(
            workspace=workspace, actor=actor, action="member.role_changed", target=user.get_username(),
            data={"from": before, "to": role},
        )
    return membership


def membership_remove(*, workspace: Workspace, user: Any, actor: Any) -> None:
    """Remove a member (owners only); the last owner cannot be removed. One transaction with its entry."""
    authorize(actor=actor, workspace=workspace, perm=Perm.MEMBERS)
    with transaction.atomic():
        membership = _membership(workspace, user)
        if membership.role == Role.OWNER and not _owners_left(workspace, without=user):
            raise Conflict(f"{user.get_username()} is the last owner of {workspace.slug}", field="username")
        membership.delete()
        audit_record(
            workspace=workspace, actor=actor, action="member.removed", target=user.get_username(),
            data={"role": membership.role},
        )


def apikey_create(
    *, workspace: Workspace, name: str = "default", role: str = Role.ADMIN, actor: Any
) -> tuple[ApiKey, str]:
    """Create an API key with ``role`` (owners and admins; an admin may give any role up to admin) and return
    it with the clear token, which is shown once and never stored. One transaction with its audit entry."""
    role = _role(role)
    authorize_grant(actor=actor, workspace=workspace, perm=Perm.API_KEYS, role=role)
    name = (name or "").strip()
    if len(name) > 100:
        raise ValidationError("API key name is longer than 100 characters", field="name")
    if "\x00" in name:
        raise ValidationError("name: must not contain the NUL character (U+0000)", field="name")
    prefix = secrets.token_hex(4)
    token = f"tsk_{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        key = ApiKey.objects.create(
            workspace=workspace, name=name or "default", role=role, prefix=prefix,
            token_hash=ApiKey.hash_token(token),
        )
        audit_record(
            workspace=workspace, actor=actor, action="api_key.created", target=f"{prefix} ({key.name})",
            data={"id": key.pk, "role": role},
        )
    return key, token


def apikey_revoke(*, workspace: Workspace, key_id: int, actor: Any) -> ApiKey:
    """Revoke an API key of ``workspace`` (owners and admins; nobody revokes a key that outranks them);
    later requests with it answer 401. A key of another workspace is :class:`NotFound`; revoking a revoked
    key changes nothing and writes no entry."""
    own = authorize(actor=actor, workspace=workspace, perm=Perm.API_KEYS)
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().filter(workspace=workspace, pk=key_id).first()
        if key is None:
            raise NotFound(f"API key {key_id} not found", field="key_id")
        if own != Role.OWNER and key.role == Role.OWNER:
            raise PermissionDenied(f"{actor_label(actor)} (role {own}) may not revoke an owner's key")
        if key.revoked_at is not None:
            return key
        key.revoked_at = clock.now()
        key.save(update_fields=["revoked_at"])
        audit_record(
            workspace=workspace, actor=actor, action="api_key.revoked", target=f"{key.prefix} ({key.name})",
            data={"id": key.pk},
        )
    return key


def audit_record(
    *, workspace: Workspace, actor: Any, action: str, target: str = "", data: dict[str, Any] | None = None
) -> AuditEntry:
    """Append to the workspace's audit log; call it inside the transaction of the change it records."""
    if isinstance(actor, System):
        kind, user, key = AuditEntry.ActorKind.SYSTEM, None, None
    elif isinstance(actor, ApiKey):
        kind, user, key = AuditEntry.ActorKind.API_KEY, None, actor
    else:
        kind, user, key = AuditEntry.ActorKind.USER, actor, None
    return AuditEntry.objects.create(
        workspace=workspace,
        actor=actor_label(actor)[:200],
        actor_kind=kind,
        actor_user=user,
        actor_api_key=key,
        action=action[:100],
        target=target[:200],
        data=data or {},
    )


SETTINGS_FIELDS = ("default_locale", "timezone", "allow_private_webhooks", "message_retention_days")
# Settings whose rules belong to a capability (messaging's quiet hours, caps, holidays): the capability
# registers a check that returns the clean value or raises ``ValidationError`` (``setting_register``).
SETTING_CHECKS: dict[str, Any] = {}


def setting_register(name: str, check: Any, *, show: Any = None) -> None:
    """Make the workspace column ``name`` a setting, checked by ``check(value) -> clean value`` and shown
    as ``show(stored)`` (as stored, by default)."""
    SETTING_CHECKS[name] = (check, show or (lambda v: v))


def _settings_fields() -> tuple[str, ...]:
    return SETTINGS_FIELDS + tuple(n for n in SETTING_CHECKS if n not in SETTINGS_FIELDS)
_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def workspace_settings(workspace: Workspace) -> dict[str, Any]:
    """The workspace's settings as one object (what ``GET /api/v1/workspace/settings`` answers)."""
    shown = {name: show for name, (_check, show) in SETTING_CHECKS.items()}
    return {name: shown.get(name, _as_is)(getattr(workspace, name)) for name in _settings_fields()}


def _as_is(value: Any) -> Any:
    return value


def workspace_settings_update(*, workspace: Workspace, changes: dict[str, Any], actor: Any) -> dict[str, Any]:
    """Change some settings (admins and owners). Every value is checked before anything is written; the
    change and its old values are audited in the same transaction. Raises ``ValidationError`` naming the
    first bad field."""
    import zoneinfo

    authorize(actor=actor, workspace=workspace, perm=Perm.SETTINGS)
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in _settings_fields():
            raise ValidationError(f"unknown setting (known: {', '.join(_settings_fields())})", field=name)
        if name in SETTING_CHECKS:
            value = SETTING_CHECKS[name][0](value)
        elif name == "default_locale":
            if not isinstance(value, str) or not _LOCALE.match(value) or len(value) > 16:
                raise ValidationError("must be a language tag such as 'ja' or 'en'", field=name)
        elif name == "timezone":
            try:
                if not isinstance(value, str) or "\x00" in value:
                    raise ValueError(value)
                zoneinfo.ZoneInfo(value)
            except (ValueError, zoneinfo.ZoneInfoNotFoundError):
                raise ValidationError("must be an IANA time zone such as 'Asia/Tokyo'", field=name) from None
        elif name == "allow_private_webhooks":
            if not isinstance(value, bool):
                raise ValidationError("must be true or false", field=name)
        elif name == "message_retention_days" and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 36500
        ):
            raise ValidationError("must be a whole number of days from 0 (keep for ever) to 36500", field=name)
        clean[name] = value
    if not clean:
        return workspace_settings(workspace)
    with transaction.atomic():
        before = {name: getattr(workspace, name) for name in clean}
        for name, value in clean.items():
            setattr(workspace, name, value)
        workspace.save(update_fields=list(clean))
        audit_record(
            workspace=workspace, actor=actor, action="workspace.settings_changed", target=workspace.slug,
            data={"before": before, "after": clean},
        )
    return workspace_settings(workspace)
