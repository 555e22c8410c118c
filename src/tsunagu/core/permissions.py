"""Who may do what: the one table of roles and permissions, and the actors that services are called by.

Every service that changes configuration or credentials takes ``actor=`` — a console user, an API key, or
:class:`System` (the ``tsunagu`` command and the demo loader: whoever can run them can read the database
file anyway, so they act as owners). The service asks :func:`authorize` before it writes, so the console, the
REST API, the Django admin and the CLI cannot disagree about who may do what.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tsunagu.core.errors import PermissionDenied
from tsunagu.core.models import ApiKey, Membership, Role, Workspace


class Perm(StrEnum):
    READ = "read"
    SOURCES = "manage sources"  # create, rotate write keys
    API_KEYS = "manage API keys"  # create (up to the actor's own role), revoke
    MEMBERS = "manage members"  # add, change role, remove
    SETTINGS = "change workspace settings"
    CHANNELS = "manage channels"  # messaging providers and their credentials
    COMMUNICATIONS = "edit communications"
    SEND = "send messages"
    SEGMENTS = "edit segments"  # segments, computed traits, personas
    JOURNEYS = "manage journeys"  # design, publish, pause and resume journeys, migrate their runs
    JOURNEY_RUNS = "manage journey runs"  # start, pause, resume, cancel one customer's run; attach evaluations


@dataclass(frozen=True, slots=True)
class System:
    """An operator at the machine: the CLI, the demo loader. ``label`` goes into the audit log."""

    label: str


SYSTEM = System("system")

# viewer: read only. agent: sends messages and looks after one customer's journey run (pause, resume,
# cancel, evaluations) — the inbox too, later. operator: communications, segments and journeys too, no
# configuration. admin: sources, API keys, channels and workspace settings. owner: members too, and everything
# an admin may do.
ROLE_PERMISSIONS: dict[str, frozenset[Perm]] = {
    Role.VIEWER: frozenset({Perm.READ}),
    Role.AGENT: frozenset({Perm.READ, Perm.SEND, Perm.JOURNEY_RUNS}),
    Role.OPERATOR: frozenset({Perm.READ, Perm.SEND, Perm.COMMUNICATIONS, Perm.SEGMENTS, Perm.JOURNEYS,
                              Perm.JOURNEY_RUNS}),
    Role.ADMIN: frozenset(
        {Perm.READ, Perm.SOURCES, Perm.API_KEYS, Perm.SETTINGS, Perm.CHANNELS, Perm.COMMUNICATIONS, Perm.SEND,
         Perm.SEGMENTS, Perm.JOURNEYS, Perm.JOURNEY_RUNS}
    ),
    Role.OWNER: frozenset(Perm),
}
# Roles by reach, for "an admin may give an API key any role up to admin": a key never outranks its maker.
ROLE_RANK = {Role.VIEWER: 0, Role.AGENT: 1, Role.OPERATOR: 2, Role.ADMIN: 3, Role.OWNER: 4}


def actor_label(actor: Any) -> str:
    """How the audit log names an actor."""
    if isinstance(actor, System):
        return actor.label
    if isinstance(actor, ApiKey):
        return f"api key {actor.prefix} ({actor.name})"
    return f"user {actor.get_username()}"


def actor_role(*, actor: Any, workspace: Workspace) -> str | None:
    """The actor's role in ``workspace``, or None when it has none there."""
    if isinstance(actor, System):
        return Role.OWNER
    if isinstance(actor, ApiKey):
        live = actor.workspace_id == workspace.pk and actor.revoked_at is None
        return actor.role if live else None
    if not getattr(actor, "is_authenticated", False) or not getattr(actor, "is_active", False):
        return None
    if actor.is_superuser:
        return Role.OWNER
    return Membership.objects.filter(workspace=workspace, user=actor).values_list("role", flat=True).first()


def role_allows(role: str | None, perm: Perm) -> bool:
    return role is not None and perm in ROLE_PERMISSIONS.get(role, frozenset())


def may(*, actor: Any, workspace: Workspace, perm: Perm) -> bool:
    return role_allows(actor_role(actor=actor, workspace=workspace), perm)


def authorize(*, actor: Any, workspace: Workspace, perm: Perm) -> str:
    """The actor's role, if it allows ``perm`` in ``workspace``; else :class:`PermissionDenied`."""
    role = actor_role(actor=actor, workspace=workspace)
    if not role_allows(role, perm):
        held = f"role {role}" if role else "no role"
        raise PermissionDenied(f"{actor_label(actor)} ({held} in {workspace.slug}) may not {perm.value}")
    return role  # type: ignore[return-value]  # role_allows refused None


def authorize_grant(*, actor: Any, workspace: Workspace, perm: Perm, role: str) -> None:
    """``perm`` in ``workspace``, and ``role`` no higher than the actor's own (owners may grant any role)."""
    own = authorize(actor=actor, workspace=workspace, perm=perm)
    if ROLE_RANK[Role(role)] > ROLE_RANK[Role(own)]:
        raise PermissionDenied(f"{actor_label(actor)} (role {own}) may not grant the role {role}", field="role")


def authorize_system(*, actor: Any, what: str) -> None:
    """Acts outside any workspace (creating one): the CLI and superusers only."""
    if isinstance(actor, System) or getattr(actor, "is_superuser", False) and actor.is_active:
        return
    raise PermissionDenied(f"{actor_label(actor)} may not {what}")
