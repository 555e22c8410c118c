"""Customer profiles, their identities and the record of every merge."""

from __future__ import annotations

from django.db import models
from django.utils import translation
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

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


class MergeReason(models.TextChoices):
    # One event carried an identity of each profile (``into_identity``, ``other_identity``).
    EVENT = "event", "event"
    # Recorded before the facts were stored, as a sentence the migration could not read: ``note`` has it.
    LEGACY = "legacy", "legacy"


# How the console names identity types; an external id ("external:line") is shown with its system.
IDENTITY_LABELS = {
    IdentityType.USER_ID: _("User ID"),
    IdentityType.EMAIL: _("Email"),
    IdentityType.PHONE: _("Phone"),
    IdentityType.ANONYMOUS_ID: _("Anonymous ID"),
}


def identity_label(type_: str) -> str:
    label = IDENTITY_LABELS.get(type_)
    if label is not None:
        return str(label)
    if type_.startswith(IdentityType.EXTERNAL_PREFIX):
        return gettext("External ID (%(system)s)") % {"system": type_.removeprefix(IdentityType.EXTERNAL_PREFIX)}
    return type_


class Merge(models.Model):
    """A merge of ``other`` into ``into``: what moved, why, and from which event — enough to reverse it.

    Why is stored as facts (``reason_code``, the identity of each profile that the event carried, the
    event), not as a sentence, so that each reader gets the sentence in their own language (``describe``)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    into = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="merges_in")
    other = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="merges_out")
    reason_code = models.CharField(max_length=16, choices=MergeReason.choices, default=MergeReason.EVENT)
    # [type, value] of the identity that found ``into`` and of the one that found ``other``.
    into_identity = models.JSONField(default=list, blank=True)
    other_identity = models.JSONField(default=list, blank=True)
    # Free text: a legacy sentence that could not be read into facts.
    note = models.TextField(blank=True)
    message_id = models.CharField(max_length=100, blank=True)
    event_type = models.CharField(max_length=16, blank=True)
    identities = models.JSONField(default=list)
    events_moved = models.PositiveIntegerField(default=0)
    traits_before = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=clock.now)
    reversed_at = models.DateTimeField(null=True, blank=True)

    def describe(self) -> str:
        """Why the profiles were merged, as a sentence in the active language."""
        if self.reason_code != MergeReason.EVENT or len(self.into_identity) != 2 or len(self.other_identity) != 2:
            return self.note
        return gettext(
            "The %(event_type)s event %(message_id)s carried %(into_type)s “%(into_value)s” of profile #%(into)s "
            "and %(other_type)s “%(other_value)s” of profile #%(other)s."
        ) % {
            "event_type": self.event_type,
            "message_id": self.message_id,
            "into_type": identity_label(self.into_identity[0]),
            "into_value": self.into_identity[1],
            "into": self.into_id,
            "other_type": identity_label(self.other_identity[0]),
            "other_value": self.other_identity[1],
            "other": self.other_id,
        }

    @property
    def reason(self) -> str:
        """``describe`` in English: what the REST API and the admin show, the same for every caller."""
        with translation.override("en"):
            return self.describe()
