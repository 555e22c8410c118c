"""Sources (one per touchpoint or SDK install) and the event store."""

from __future__ import annotations

from typing import Any

from django.db import models

from tsunagu.core import clock
from tsunagu.core.models import Workspace
from tsunagu.customers.models import Customer


class Channel(models.TextChoices):
    WEB = "web", "Web"
    APP = "app", "App"
    EMAIL = "email", "Email"
    LINE = "line", "LINE"
    SMS = "sms", "SMS"
    STORE = "store", "Store"
    CALL_CENTER = "call_center", "Call centre"
    SOCIAL = "social", "Social"
    BACKOFFICE = "backoffice", "Back office"


class Source(models.Model):
    """Where events come from. The write key is the credential SDKs send (Segment's model)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="sources")
    name = models.CharField(max_length=200)
    channel = models.CharField(max_length=20, choices=Channel.choices, default=Channel.WEB)
    write_key = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=clock.now)
    rotated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.channel})"


class Event(models.Model):
    """One Segment-spec event, as received, with the timestamp normalised and the customer it resolved to."""

    # No index of their own on workspace and customer: event_received_idx starts with workspace and
    # event_timeline_idx with customer, and every index is paid on each insert (the customer one at a random
    # page of the B-tree: ~4 KB more written to the WAL per event). No unique index on messageId either:
    # dedup has a structure of its own over a look-back window (``DedupKey``, ``tsunagu.events.dedup``).
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+", db_index=False)
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    message_id = models.CharField(max_length=100)
    type = models.CharField(max_length=16)
    event = models.CharField(max_length=200, blank=True)
    name = models.CharField(max_length=200, blank=True)
    user_id = models.CharField(max_length=255, blank=True)
    anonymous_id = models.CharField(max_length=255, blank=True)
    group_id = models.CharField(max_length=255, blank=True)
    previous_id = models.CharField(max_length=255, blank=True)
    customer = models.ForeignKey(
        Customer, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    channel = models.CharField(max_length=20)
    timestamp = models.DateTimeField()
    original_timestamp = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField()
    properties = models.JSONField(default=dict, blank=True)
    traits = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["customer", "-timestamp", "-id"], name="event_timeline_idx"),
            models.Index(fields=["workspace", "received_at"], name="event_received_idx"),
            # The rule language's event conditions over a whole workspace ("Order Completed at least twice
            # in 90 days"): a range of one name's events in time, the customer read from the index alone.
            # New rows land at the end of their name's range, so it costs inserts little.
            models.Index(fields=["workspace", "event", "timestamp", "customer"], name="event_name_time_idx"),
        ]


class Int64KeyField(models.BigIntegerField):
    """A signed 64-bit primary key that SQLite stores as the rowid (its type must be spelled ``integer``
    for that; ``bigint`` would add a second B-tree), ``bigint`` elsewhere."""

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "sqlite":
            return "integer"
        return super().db_type(connection)


class DedupKey(models.Model):
    """The messageIds applied within the dedup window (``tsunagu.events.dedup``), as a 16-byte hash of
    (workspace, messageId): its first 8 bytes are the key, the other 8 (``checksum``) tell a collision of
    keys from a duplicate. ``seen`` is the receive time, in whole seconds since 1970, of the event that
    holds the key: what the window is measured from. Small integer rows only, so that the table stays a
    dense B-tree however many messageIds the window holds."""

    digest = Int64KeyField(primary_key=True)
    # Plain integers, not a foreign key: the table is the window's cache that the applier trims, and a
    # foreign key would cost a lookup of the workspace on every insert.
    workspace_id = models.BigIntegerField()
    checksum = models.BigIntegerField()
    seen = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["workspace_id", "seen"], name="dedupkey_seen_idx")]


class LogEntry(models.Model):
    """One acknowledged request's events in the ingest log, waiting for the applier (PostgreSQL).

    On SQLite the log lives in a file of its own (``tsunagu.events.log``), so appends never wait behind the
    applier's long transactions; this table stays empty there. ``body`` is the validated events, encoded
    once by the web process (``tsunagu.events.codec``)."""

    id = models.BigAutoField(primary_key=True)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+", db_index=False)
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+", db_index=False)
    received_at = models.DateTimeField()
    count = models.PositiveIntegerField()
    body = models.BinaryField()

    class Meta:
        indexes = [models.Index(fields=["workspace", "id"], name="logentry_ws_idx")]


class ApplierState(models.Model):
    """Where the applier of one workspace stands in the log, and who holds the right to apply it.

    ``position`` is the last log id applied; it is updated in the transaction that applied the events, so a
    crash re-applies nothing and loses nothing. The lease makes one applier per workspace at a time: a dead
    worker's workspaces are taken over once ``lease_until`` has passed."""

    workspace = models.OneToOneField(Workspace, on_delete=models.CASCADE, primary_key=True, related_name="+")
    position = models.BigIntegerField(default=0)
    applied = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(default=0)
    owner = models.CharField(max_length=100, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_applied_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
