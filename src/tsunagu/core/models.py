"""Workspaces, members, API keys, the audit log and jobs-as-rows."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models

from tsunagu.core import clock

# Marketing waits out the night unless a workspace says otherwise (the brief's default).
DEFAULT_QUIET_HOURS = {"marketing": {"start": "21:00", "end": "08:00"}}


def default_quiet_hours() -> dict[str, dict[str, str]]:
    return {topic: dict(window) for topic, window in DEFAULT_QUIET_HOURS.items()}


class Workspace(models.Model):
    """One company or brand. Every other row in tsunagu belongs to exactly one workspace."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="Asia/Tokyo")
    # Settings (``GET/PATCH /api/v1/workspace/settings``): the locale of messages when a customer's
    # ``locale`` trait names none; whether outbound webhooks may reach private addresses; how long the
    # message archive keeps a message (0: for ever).
    # db_default too: rows written by code that predates these columns (a migration's historical model)
    # get the same values from the database.
    default_locale = models.CharField(max_length=16, default="ja", db_default="ja")
    allow_private_webhooks = models.BooleanField(default=False, db_default=False)
    message_retention_days = models.PositiveIntegerField(default=0, db_default=0)
    # Messaging's rules (``messaging.rules`` checks them): quiet hours per topic, frequency caps, and
    # whether marketing waits out the public holidays of a country ("jp"; blank: not).
    quiet_hours = models.JSONField(default=default_quiet_hours, db_default=DEFAULT_QUIET_HOURS)
    frequency_caps = models.JSONField(default=list, db_default=[])
    holidays = models.CharField(max_length=8, blank=True, default="", db_default="")
    created_at = models.DateTimeField(default=clock.now)

    def __str__(self) -> str:
        return self.slug


class Role(models.TextChoices):
    """What a member or an API key may do in a workspace (the table is ``core.permissions``)."""

    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    OPERATOR = "operator", "Operator"
    AGENT = "agent", "Agent"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    Role = Role

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.OPERATOR)
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "user"], name="membership_unique")]


class ApiKey(models.Model):
    """A bearer token for the REST API. Only a SHA-256 of the token is stored: tokens carry 256 bits of
    randomness, so a slow password hash would add latency to every request without adding safety."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=16, db_index=True)
    token_hash = models.CharField(max_length=64, unique=True)
    # Existing keys and scripts that pass no role keep working as admins (they could do everything before).
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ADMIN)
    created_at = models.DateTimeField(default=clock.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()


class AuditEntry(models.Model):
    """One change of configuration or credentials, written by the service that made it, in its transaction.
    ``actor`` is a label that outlives the user or key it names (the foreign keys are nulled on deletion)."""

    class ActorKind(models.TextChoices):
        USER = "user"
        API_KEY = "api_key"
        SYSTEM = "system"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="audit_entries")
    actor = models.CharField(max_length=200)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices, default=ActorKind.SYSTEM)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    action = models.CharField(max_length=100)
    target = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=clock.now, db_index=True)


class Job(models.Model):
    """A unit of deferred work. Workers claim due rows with a lease; a crashed worker's lease expires and
    another worker takes the row over. ``idempotency_key`` makes enqueueing the same work twice a no-op."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, null=True, blank=True)
    kind = models.CharField(max_length=100)
    payload = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(max_length=200, unique=True, null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    due_at = models.DateTimeField(default=clock.now)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=8)
    locked_by = models.CharField(max_length=100, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=clock.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "due_at"], name="job_due_idx")]

    def __str__(self) -> str:
        return f"{self.kind}#{self.pk}"
