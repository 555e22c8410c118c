"""Customer profiles, their identities and the record of every merge."""

from __future__ import annotations

from django.db import models

from tsunagu.core import clock
from tsunagu.core.models import Workspace


class IdentityType:
    """Identity types, in priority order: when one event points at several profiles, the profile found by
    the highest-priority identity is the one that survives."""

    USER_ID = "user_id"
    EMAIL = "email"
    PHONE = "phone"
    ANONYMOUS_ID = "anonymous_id"
    EXTERNAL_PREFIX = "external:"

    PRIORITY = {USER_ID: 0, EMAIL: 1, PHONE: 2, ANONYMOUS_ID: 9}
    # How many values of a type one profile may hold (None: unlimited). One userId a profile is the
    # guard that stops two known customers being merged through a shared device or mailbox.
    LIMITS: dict[str, int | None] = {USER_ID: 1, EMAIL: 5, PHONE: 5, ANONYMOUS_ID: None}
    EXTERNAL_LIMIT = 5

    @classmethod
    def priority(cls, type_: str) -> int:
        return cls.PRIORITY.get(type_, 5)

    @classmethod
    def limit(cls, type_: str) -> int | None:
        if type_ in cls.LIMITS:
            return cls.LIMITS[type_]
        return cls.EXTERNAL_LIMIT


class Customer(models.Model):
    """One person, as the company knows them across every channel (the 360° profile)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="customers")
    # Denormalised from identities and traits for listing and search.
    user_id = models.CharField(max_length=255, blank=True)
    email = models.CharField(max_length=254, blank=True)
    phone = models.CharField(max_length=40, blank=True)
    family_name = models.CharField(max_length=100, blank=True)
    given_name = models.CharField(max_length=100, blank=True)
    family_kana = models.CharField(max_length=100, blank=True)
    given_kana = models.CharField(max_length=100, blank=True)
    display_name = models.CharField(max_length=200, blank=True)
    search_text = models.TextField(blank=True)

    traits = models.JSONField(default=dict, blank=True)
    # Per-trait event time (epoch milliseconds) so traits are last-write-wins by event time, not arrival.
    trait_times = models.JSONField(default=dict, blank=True)
    # Last activity per channel (epoch milliseconds).
    channels = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    event_count = models.PositiveIntegerField(default=0)

    merged_into = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="merged_from"
    )
    created_at = models.DateTimeField(default=clock.now)
    updated_at = models.DateTimeField(default=clock.now)

    class Meta:
        indexes = [
            models.Index(fields=["workspace", "-last_seen"], name="customer_recent_idx"),
            models.Index(fields=["workspace", "merged_into"], name="customer_live_idx"),
        ]

    def __str__(self) -> str:
        return self.display_name or self.email or self.user_id or f"customer {self.pk}"


class Identity(models.Model):
    """One identifier of a customer in one system: userId, anonymousId, email, phone or an external id."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="identities")
    type = models.CharField(max_length=64)
    value = models.CharField(max_length=255)
    first_seen = models.DateTimeField(default=clock.now)
    source_message_id = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "value", "type"], name="identity_unique"),
        ]
        indexes = [models.Index(fields=["customer", "type"], name="identity_customer_idx")]


class Merge(models.Model):
    """A merge of ``other`` into ``into``: what moved, why, and from which event — enough to reverse it."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    into = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="merges_in")
    other = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="merges_out")
    reason = models.TextField()
    message_id = models.CharField(max_length=100, blank=True)
    event_type = models.CharField(max_length=16, blank=True)
    identities = models.JSONField(default=list)
    events_moved = models.PositiveIntegerField(default=0)
    traits_before = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=clock.now)
    reversed_at = models.DateTimeField(null=True, blank=True)
