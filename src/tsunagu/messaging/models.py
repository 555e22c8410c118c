"""Channels, communications and their versions, sends, deliveries and what happened to them.

A *send* is one request to reach one customer with one communication; a *delivery* is one attempt on one
channel (failover in the next issue adds further deliveries to the same send). A delivery holds the message
exactly as rendered and sent — that row *is* the archive: it is never edited after it is sent, only its
status moves and ``DeliveryEvent`` rows are added.
"""

from __future__ import annotations

import secrets

from django.db import models

from tsunagu.core import clock
from tsunagu.core.models import Workspace
from tsunagu.customers.models import Customer
from tsunagu.segments.models import Segment


def _webhook_token() -> str:
    return secrets.token_urlsafe(24)


def _delivery_key() -> str:
    return secrets.token_hex(16)


class ChannelType(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    LINE = "line", "LINE"
    WEBPUSH = "webpush", "Web push"
    WEBHOOK = "webhook", "Webhook"
    IN_APP = "in_app", "In-app"


class Topic(models.TextChoices):
    TRANSACTIONAL = "transactional", "Transactional"
    SERVICE = "service", "Service"
    MARKETING = "marketing", "Marketing"


class Channel(models.Model):
    """A configured provider account of a workspace. ``config`` holds what may be shown; the secret keys of
    the channel type (``secret_fields``) live only in ``secrets``, encrypted (``messaging.secrets``)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="messaging_channels")
    type = models.CharField(max_length=16, choices=ChannelType.choices)
    name = models.CharField(max_length=200)
    config = models.JSONField(default=dict, blank=True)
    secrets = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    # Unguessable part of inbound webhook URLs, so a URL names its channel without exposing the row id.
    webhook_token = models.CharField(max_length=40, unique=True, default=_webhook_token)
    created_at = models.DateTimeField(default=clock.now)
    updated_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "name"], name="messaging_channel_name_unique")]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}"


class Communication(models.Model):
    """A message designed once: its variants per channel and locale live in immutable versions."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="communications")
    key = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    topic = models.CharField(max_length=16, choices=Topic.choices, default=Topic.TRANSACTIONAL)
    current_version = models.PositiveIntegerField(default=1)
    # The ordered channel policy (``messaging.policy``); null: the variants' channels in their order.
    policy = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    updated_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "key"], name="communication_key_unique")]

    def __str__(self) -> str:
        return self.key


class CommunicationVersion(models.Model):
    """One saved state of a communication, never changed afterwards; a delivery records the one it used."""

    communication = models.ForeignKey(Communication, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    topic = models.CharField(max_length=16, choices=Topic.choices)
    # [{"channel": "email", "locale": "ja", "subject": …, "html": …}, …]
    variants = models.JSONField(default=list)
    created_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["communication", "number"], name="communication_version_unique")]


class Broadcast(models.Model):
    """One communication to a list of customers, expanded into sends a chunk at a time (``broadcasts``)."""

    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        RUNNING = "running"
        PAUSED = "paused"
        CANCELLED = "cancelled"
        DONE = "done"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="broadcasts")
    communication = models.ForeignKey(Communication, on_delete=models.PROTECT, related_name="broadcasts")
    # The version every recipient gets: the communication's current one when the broadcast was made.
    version = models.ForeignKey(
        CommunicationVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="broadcasts"
    )
    name = models.CharField(max_length=200, blank=True)
    policy = models.JSONField(null=True, blank=True)  # overrides the communication's, when given
    data = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    send_at = models.DateTimeField(default=clock.now)
    total = models.PositiveIntegerField(default=0)  # recipients listed
    cursor = models.PositiveIntegerField(default=0)  # recipients expanded into sends so far (by position)
    # Listed recipients that became no send, by reason (unknown_recipient, duplicate), counted as expanded.
    unmatched = models.JSONField(default=dict, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    locked_by = models.CharField(max_length=100, blank=True)
    actor = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=clock.now)
    # A ``{"segment": KEY}`` audience: its members are listed as recipients when expansion starts
    # (``snapshot_at``), not when the broadcast is made.
    audience_segment = models.CharField(max_length=100, blank=True, default="", db_default="")
    snapshot_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "send_at"], name="broadcast_due_idx"),
            models.Index(fields=["workspace", "-created_at"], name="broadcast_recent_idx"),
        ]


class ChannelThrottle(models.Model):
    """The next free moment of a rate-limited channel (``messaging.throttle``): deliveries made on it are
    given due times ``1 / rate_per_second`` apart, from this row, in the transaction that makes them."""

    channel = models.OneToOneField(Channel, on_delete=models.CASCADE, related_name="throttle")
    next_at = models.DateTimeField(default=clock.now)


class BroadcastRecipient(models.Model):
    """One listed recipient, as given (a customer id or a user id); expanded in ``position`` order, so a
    crashed expansion resumes at the broadcast's ``cursor`` and memory stays flat with the audience."""

    broadcast = models.ForeignKey(Broadcast, on_delete=models.CASCADE, related_name="recipients")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=16)  # customer_id | user_id | email | phone
    ref = models.CharField(max_length=255)
    data = models.JSONField(null=True, blank=True)  # the CSV row's other columns, for templates

    class Meta:
        constraints = [models.UniqueConstraint(fields=["broadcast", "position"], name="broadcast_recipient_unique")]


class Send(models.Model):
    """One request to reach one customer with one communication (the API's ``/sends``), through the steps
    of its channel policy: each step tried is an ``Attempt`` (skipped, or made as a ``Delivery``).

    A send is also a row of work (``messaging.failover``): ``due_at`` is when the engine looks at it next —
    a delayed send's window opening, a step's "delivered/read within T" running out, or now, when its
    current delivery failed; null while it waits on nothing."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        SCHEDULED = "scheduled"  # delayed (quiet hours, holiday, or a broadcast's send_at)
        SENDING = "sending"
        SENT = "sent"
        DELIVERED = "delivered"
        FAILED = "failed"
        BOUNCED = "bounced"
        SKIPPED = "skipped"  # every step unusable: nothing was sent
        UNDELIVERABLE = "undeliverable"  # the policy ran out after at least one attempt was made
        CANCELLED = "cancelled"

    # The states in which the engine has nothing left to do.
    ENDED = frozenset({Status.SKIPPED, Status.UNDELIVERABLE, Status.CANCELLED})

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="sends")
    communication = models.ForeignKey(Communication, on_delete=models.PROTECT, related_name="sends")
    version = models.ForeignKey(CommunicationVersion, on_delete=models.PROTECT, related_name="sends")
    customer = models.ForeignKey(Customer, on_delete=models.SET_NULL, null=True, related_name="sends")
    channel = models.CharField(max_length=16, blank=True)  # asked for by the caller; blank = first usable
    data = models.JSONField(default=dict, blank=True)
    event = models.JSONField(null=True, blank=True)  # the triggering event, when there is one
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    actor = models.CharField(max_length=200, blank=True)
    # The policy in force for this send (the send's own, else its communication's, else the variants'
    # channels in order), resolved when the send is recorded: later edits do not change a chain under way.
    policy = models.JSONField(default=dict, blank=True)
    step = models.PositiveIntegerField(default=0)  # the index of the step being tried
    due_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    locked_by = models.CharField(max_length=100, blank=True)
    broadcast = models.ForeignKey(Broadcast, on_delete=models.SET_NULL, null=True, blank=True, related_name="sends")
    created_at = models.DateTimeField(default=clock.now)
    updated_at = models.DateTimeField(default=clock.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "idempotency_key"], name="send_idempotency_unique")]
        indexes = [
            models.Index(fields=["workspace", "-created_at"], name="send_recent_idx"),
            models.Index(fields=["due_at"], name="send_due_idx", condition=models.Q(due_at__isnull=False)),
            models.Index(fields=["broadcast", "status"], name="send_broadcast_idx"),
            # A broadcast's expansion asks which of a chunk's customers already have a send of it.
            models.Index(fields=["broadcast", "customer"], name="send_broadcast_customer_idx"),
        ]


class Delivery(models.Model):
    """One message on one channel to one address: the unit a worker executes and the archive keeps.

    ``key`` is the idempotency key handed to providers (SMTP Message-ID, LINE ``X-Line-Retry-Key``, the
    webhook-id) so a retry after a crash is recognised as the same message by whoever receives it."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        SENDING = "sending"
        SENT = "sent"
        DELIVERED = "delivered"
        FAILED = "failed"
        BOUNCED = "bounced"

    FINAL = frozenset({Status.DELIVERED, Status.FAILED, Status.BOUNCED})

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="deliveries")
    send = models.ForeignKey(Send, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(Channel, on_delete=models.SET_NULL, null=True, related_name="deliveries")
    channel_type = models.CharField(max_length=16, choices=ChannelType.choices)
    customer = models.ForeignKey(Customer, on_delete=models.SET_NULL, null=True, related_name="deliveries")
    communication = models.ForeignKey(Communication, on_delete=models.PROTECT, related_name="deliveries")
    version = models.ForeignKey(CommunicationVersion, on_delete=models.PROTECT, related_name="deliveries")
    topic = models.CharField(max_length=16, choices=Topic.choices)
    locale = models.CharField(max_length=16, blank=True)
    address = models.CharField(max_length=2000)
    key = models.CharField(max_length=64, unique=True, default=_delivery_key)

    # The message as rendered and sent. ``content`` has the channel's fields (subject/html/text, text,
    # messages, title/body/url, payload); ``headers`` what went on the wire beside it; ``raw`` the exact
    # bytes where the channel has them (the .eml of an email).
    content = models.JSONField(default=dict)
    headers = models.JSONField(default=dict, blank=True)
    raw = models.BinaryField(null=True, blank=True)
    subject = models.CharField(max_length=500, blank=True)  # subject or title, for lists
    body_text = models.TextField(blank=True)  # plain text of the message, for search and lists

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    reason = models.CharField(max_length=1000, blank=True)
    provider_id = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    due_at = models.DateTimeField(default=clock.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    locked_by = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=clock.now)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)  # in-app: the customer read it

    class Meta:
        indexes = [
            models.Index(fields=["status", "due_at"], name="delivery_due_idx"),
            models.Index(fields=["workspace", "-created_at"], name="delivery_recent_idx"),
            models.Index(fields=["customer", "-created_at"], name="delivery_customer_idx"),
            models.Index(fields=["channel", "provider_id"], name="delivery_provider_idx"),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.channel_type} {self.status})"


class DeliveryEvent(models.Model):
    """A state change of a delivery (queued, sending, sent, delivered, failed, bounced, opened, clicked,
    replied, unsubscribed). Each becomes an event on the customer's timeline: ``logged`` turns true once it
    is in the ingest log — an outbox, so a crash between the commit and the append loses nothing (the
    append is retried, and its messageId makes a second append a duplicate the applier drops)."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="events")
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16)
    at = models.DateTimeField(default=clock.now)
    reason = models.CharField(max_length=1000, blank=True)
    data = models.JSONField(default=dict, blank=True)
    machine = models.BooleanField(default=False)  # an open or click by a proxy or scanner, not a person
    logged = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(fields=["delivery", "at"], name="delivery_event_idx"),
            models.Index(fields=["logged"], name="delivery_event_outbox_idx", condition=models.Q(logged=False)),
        ]


class InboundReceipt(models.Model):
    """An inbound webhook item already handled (LINE ``webhookEventId``, a Twilio status of a message…):
    providers redeliver, and a replay must change nothing."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="receipts")
    key = models.CharField(max_length=255)
    received_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "key"], name="inbound_receipt_unique")]


class Suppression(models.Model):
    """An address that must not be sent to: a hard bounce, a complaint, a one-click unsubscribe (``topic``
    set: only that topic), or an address a provider called invalid."""

    class Reason(models.TextChoices):
        BOUNCE = "bounce"
        COMPLAINT = "complaint"
        UNSUBSCRIBE = "unsubscribe"
        INVALID = "invalid"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="suppressions")
    channel_type = models.CharField(max_length=16, choices=ChannelType.choices)
    address = models.CharField(max_length=2000)
    topic = models.CharField(max_length=16, blank=True)  # blank: every topic
    reason = models.CharField(max_length=16, choices=Reason.choices)
    detail = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "channel_type", "address", "topic"], name="suppression_unique")
        ]


class PushSubscription(models.Model):
    """A browser's Web Push subscription (endpoint and keys), registered by the served snippet."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="push_subscriptions")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="push_subscriptions")
    endpoint = models.CharField(max_length=2000)
    p256dh = models.CharField(max_length=200)
    auth = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=clock.now)
    expired_at = models.DateTimeField(null=True, blank=True)  # the push service answered 404/410

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "endpoint"], name="push_endpoint_unique")]


class Attempt(models.Model):
    """One step of a send's policy tried: skipped (with why), or made — then its ``delivery`` says how it
    went, until the engine ends it (``timed_out`` when "delivered/read within T" ran out)."""

    class Status(models.TextChoices):
        SKIPPED = "skipped"
        MADE = "made"  # the delivery's status is the attempt's
        TIMED_OUT = "timed_out"

    send = models.ForeignKey(Send, on_delete=models.CASCADE, related_name="attempts")
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    step = models.PositiveIntegerField()
    channel = models.CharField(max_length=16, choices=ChannelType.choices)
    status = models.CharField(max_length=16, choices=Status.choices)
    reason = models.CharField(max_length=32, blank=True)  # a code: no_address, no_consent, …, not_read
    detail = models.CharField(max_length=1000, blank=True)
    delivery = models.OneToOneField(Delivery, on_delete=models.SET_NULL, null=True, blank=True, related_name="attempt")
    started_at = models.DateTimeField(default=clock.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["send", "step"], name="attempt_send_idx"),
            # The console's counts of skipped and moved-on sends by reason over recent days.
            models.Index(fields=["workspace", "started_at"], name="attempt_recent_idx"),
        ]


class SendEvent(models.Model):
    """What the policy engine did with a send — a step skipped, a failover, a delay, the policy run out —
    waiting (an outbox, as ``DeliveryEvent``) to reach the customer's timeline as ``Message Skipped``,
    ``Message Failed Over``, ``Message Delayed``, ``Message Undeliverable``."""

    send = models.ForeignKey(Send, on_delete=models.CASCADE, related_name="events")
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16)  # skipped | failed_over | delayed | undeliverable | cancelled
    at = models.DateTimeField(default=clock.now)
    data = models.JSONField(default=dict, blank=True)  # channel, reason, due_at, next_channel…
    logged = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(fields=["logged", "id"], name="sendevent_outbox_idx", condition=models.Q(logged=False)),
            models.Index(fields=["workspace", "kind", "at"], name="sendevent_recent_idx"),  # the console's counts
        ]


class Consent(models.Model):
    """One consent decision of a customer, kept for ever (the proof of consent): the latest for a
    (channel, topic) is in force. ``channel`` blank means every channel."""

    class Status(models.TextChoices):
        GRANTED = "granted"
        REVOKED = "revoked"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="consents")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="consents")
    channel = models.CharField(max_length=16, blank=True)
    topic = models.CharField(max_length=16, choices=Topic.choices)
    status = models.CharField(max_length=16, choices=Status.choices)
    source = models.CharField(max_length=100)  # api, console, identify, preference_page, unsubscribe, import…
    text = models.TextField(blank=True)  # the wording the customer agreed to or the request they made
    actor = models.CharField(max_length=200, blank=True)
    at = models.DateTimeField(default=clock.now)

    class Meta:
        indexes = [models.Index(fields=["customer", "topic", "channel", "-at"], name="consent_current_idx")]


class SegmentWebhook(models.Model):
    """The signing secret of a segment's membership webhook (``Segment.webhook_url``): a Standard Webhooks
    ``whsec_`` secret, encrypted at rest like channel credentials (``messaging.secrets``)."""

    segment = models.OneToOneField(Segment, on_delete=models.CASCADE, related_name="webhook")
    secret = models.TextField()
    created_at = models.DateTimeField(default=clock.now)
    rotated_at = models.DateTimeField(null=True, blank=True)


class SegmentWebhookBatch(models.Model):
    """Membership changes of one segment POSTed together (``messaging.segment_webhooks``). ``body`` is
    fixed when the batch is made and ``webhook_id`` is its Standard Webhooks id, so every retry is the same
    message to the receiver."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+", db_index=False)
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="webhook_batches", db_index=False)
    webhook_id = models.CharField(max_length=64, unique=True)
    body = models.TextField()
    changes = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_at = models.DateTimeField(default=clock.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    locked_by = models.CharField(max_length=100, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["next_at", "id"], name="segwebhook_due_idx",
                         condition=models.Q(status="pending")),
            models.Index(fields=["segment", "id"], name="segwebhook_segment_idx"),
        ]
