"""Segments (a key, a name and a rule), their members and the history of who entered and left, computed traits
and their values per customer, and personas."""

from __future__ import annotations

from django.db import models

from tsunagu.core import clock
from tsunagu.core.models import Workspace
from tsunagu.customers.models import Customer


class Segment(models.Model):
    """A named rule (docs/rules.md) whose members are kept up to date as events are applied."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="segments")
    key = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    rule = models.JSONField()
    # What the rule reads (``tsunagu.segments.rule.deps``), stored so the applier's reaction picks the
    # segments an applied event can affect without parsing every rule for every chunk.
    deps = models.JSONField(default=dict)
    # Whether the rule can change with time alone (a window, a relative date): such segments are also
    # re-evaluated by the scheduled refresh.
    time_dependent = models.BooleanField(default=False)
    member_count = models.PositiveIntegerField(default=0)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    # Optional: membership changes are POSTed here, signed per Standard Webhooks.
    webhook_url = models.URLField(max_length=2000, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    updated_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "key"], name="segment_key_unique")]

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"


class Membership(models.Model):
    """One customer in one segment now."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+", db_index=False)
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    entered_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["segment", "customer"], name="segment_member_unique"),
        ]


class ChangeReason(models.TextChoices):
    EVENT = "event", "event"  # an applied event changed what the rule reads
    REFRESH = "refresh", "refresh"  # time alone: the scheduled refresh
    CREATED = "created", "created"  # the segment's first population
    EDITED = "edited", "edited"  # its rule changed
    MERGE = "merge", "merge"  # the profile was merged into another
    CONSENT = "consent", "consent"  # a consent decision recorded outside the applier


class MembershipChange(models.Model):
    """A customer entering or leaving a segment: the membership history, and the outbox from which
    ``Segment Entered`` / ``Segment Exited`` events reach the customer's timeline (``published_at``)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+", db_index=False)
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="changes", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    entered = models.BooleanField()
    at = models.DateTimeField(default=clock.now)
    reason = models.CharField(max_length=16, choices=ChangeReason.choices)
    # Null while waiting to be published; changes that are not published (a segment's first population,
    # a merged-away profile) are created with it set.
    published_at = models.DateTimeField(null=True, blank=True)
    webhook_pending = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(fields=["segment", "customer", "at"], name="segchange_member_idx"),
            models.Index(
                fields=["workspace", "id"], name="segchange_unpublished_idx",
                condition=models.Q(published_at__isnull=True),
            ),
            # The webhook's outbox (messaging.segment_webhooks), read every worker pass.
            models.Index(fields=["id"], name="segchange_webhook_idx", condition=models.Q(webhook_pending=True)),
        ]


class Aggregate(models.TextChoices):
    COUNT = "count", "count"
    SUM = "sum", "sum"
    MIN = "min", "min"
    MAX = "max", "max"
    AVG = "avg", "avg"
    FIRST = "first", "first"
    LAST = "last", "last"
    DISTINCT_COUNT = "distinct_count", "distinct_count"
    MOST_FREQUENT = "most_frequent", "most_frequent"
    RFM = "rfm", "rfm"


class ComputedTrait(models.Model):
    """A declared aggregate over a customer's events (``orders_90d``: count of Order Completed in 90 days)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="computed_traits")
    key = models.SlugField(max_length=100)
    name = models.CharField(max_length=200, blank=True)
    aggregate = models.CharField(max_length=20, choices=Aggregate.choices)
    event = models.CharField(max_length=200)
    event_type = models.CharField(max_length=16, default="track")
    property = models.CharField(max_length=200, blank=True)
    where = models.JSONField(default=list, blank=True)
    within = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    backfilled_at = models.DateTimeField(null=True, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "key"], name="computed_key_unique")]

    def __str__(self) -> str:
        return self.key


class ComputedValue(models.Model):
    """One customer's value of one computed trait. ``value`` is the JSON value rules and templates see;
    ``num`` the same value when it is a number (indexed, so a rule on it is a range scan); ``state`` what
    the incremental update needs (sum and count for an average, counts per value for most_frequent)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+", db_index=False)
    trait = models.ForeignKey(ComputedTrait, on_delete=models.CASCADE, related_name="values", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    value = models.JSONField(null=True)
    num = models.FloatField(null=True)
    state = models.JSONField(default=dict)
    updated_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["trait", "customer"], name="computed_value_unique")]
        indexes = [models.Index(fields=["trait", "num"], name="computed_value_num_idx")]


class Persona(models.Model):
    """A segment described as a person: who they are, what they want, what hurts, where to reach them."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="personas")
    segment = models.OneToOneField(Segment, on_delete=models.CASCADE, related_name="persona")
    description = models.TextField(blank=True)
    goals = models.JSONField(default=list, blank=True)
    pain_points = models.JSONField(default=list, blank=True)
    preferred_channels = models.JSONField(default=list, blank=True)
    # An image as a data: URL (PNG, JPEG or WebP, size-limited by the service): one row, no file storage.
    picture = models.TextField(blank=True)
    created_at = models.DateTimeField(default=clock.now)
    updated_at = models.DateTimeField(default=clock.now)
