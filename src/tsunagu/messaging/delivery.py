"""The delivery engine: workers claim due deliveries, hand them to their channel, record what happened.

Exactly once, as far as a provider lets us. A delivery is claimed with a lease (a conditional UPDATE; ``FOR
UPDATE SKIP LOCKED`` on PostgreSQL), marked ``sending`` in its own commit right before the provider is
called, and marked with the outcome in another. A worker that dies leaves its claim to expire:

- a delivery still ``queued`` under the dead claim was never handed over: it is simply sent;
- a delivery left ``sending`` may or may not have reached the provider. Channels whose providers recognise
  a retry (LINE's ``X-Line-Retry-Key``, a webhook's ``webhook-id``, the in-app inbox) send it again with the
  same key; the others (SMTP, Twilio, Web Push) cannot take it back, so it is failed as *interrupted* rather
  than risk a second copy in the customer's hands. docs/communications.md says so.

Every state change is a ``DeliveryEvent`` row written in the same commit; ``delivery_events_publish``
appends them to the ingest log afterwards (an outbox), and they reach the customer's timeline as
``Message Sent``, ``Message Delivered``, ``Message Failed``… through the same applier as every other event.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from tsunagu.core import clock
from tsunagu.core.jobs import backoff
from tsunagu.core.models import Workspace
from tsunagu.messaging.channels import channel_class
from tsunagu.messaging.channels.base import ChannelBase, DeliveryError, Message
from tsunagu.messaging.links import links_for, public_base
from tsunagu.messaging.models import Delivery, DeliveryEvent, PushSubscription, Suppression
from tsunagu.messaging.selectors import channel_config
from tsunagu.messaging.sql import delivery_update, events_insert, send_wake

log = logging.getLogger(__name__)

# Providers that recognise a resent message by its key, so an interrupted send may be retried.
IDEMPOTENT = frozenset({"line", "webhook", "in_app"})
# The order of the main states: a report never moves a delivery backwards (a late "sent" after "delivered").
RANK = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "failed": 4, "bounced": 4}
ENGAGEMENT = frozenset({"opened", "clicked", "replied", "unsubscribed"})


@contextlib.contextmanager
def _relaxed_sqlite() -> Iterator[None]:
    """Messaging's state commits on SQLite with synchronous=NORMAL (reset to FULL after): a commit survives
    the worker's crash — what "never twice" is about — but not a power failure, which may lose the last
    moments of state (the docs say so). An fsync a message would cap one worker near 250 messages/s."""
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        # Inside a caller's transaction (tests) the level cannot change, and the caller decides anyway.
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA synchronous=NORMAL")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous=FULL")


@contextlib.contextmanager
def _txn() -> Iterator[None]:
    """A transaction of the engine; on PostgreSQL with ``synchronous_commit`` off, the same trade as
    ``_relaxed_sqlite`` (a crashed worker loses nothing; a crashed server may lose the last commits)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield


def _links(delivery: Delivery) -> dict[str, str]:
    """The delivery's links, made once: rendering and sending both need them (signing is not free)."""
    cached = getattr(delivery, "_links", None)
    if cached is None:
        cached = links_for(
            key=delivery.key, topic=delivery.topic, base_url=public_base(), customer_id=delivery.customer_id
        )
        delivery._links = cached  # type: ignore[attr-defined]
    return cached


@functools.cache
def _archive_index() -> Any:
    try:
        from tsunagu.messaging.archive import archive_index
    except ImportError:
        return None
    return archive_index


def _index(deliveries: list[Delivery]) -> None:
    index = _archive_index()
    if index is not None:
        index(deliveries=deliveries)


def delivery_render(delivery: Delivery) -> dict[str, Any]:
    """The fields of a delivery once its variant is rendered for its customer (``content``, ``subject``,
    ``body_text``): from the send's version, data and event, the customer as they are now, and — for email —
    links tracked. Raises ``ValueError`` naming the variant when it cannot be rendered or sent."""
    from tsunagu.messaging.context import customer_context
    from tsunagu.messaging.render import pick_variant, render_variant
    from tsunagu.messaging.tracking import html_with_tracking

    send = delivery.send
    variant = pick_variant(
        list(delivery.version.variants),
        channel=delivery.channel_type,
        locale=delivery.locale,
        default_locale=delivery.workspace.default_locale,
    )
    if variant is None:
        raise ValueError(f"version {delivery.version.number} has no {delivery.channel_type} variant")
    base = public_base()
    links = _links(delivery)
    context = {
        "customer": customer_context(delivery.customer),
        "event": send.event or {},
        "data": send.data or {},
        **links,
    }
    rendered = render_variant(variant, context)
    content = rendered.content
    if delivery.channel_type == "email" and content.get("html"):
        # The archived HTML is the tracked HTML: exactly what the customer got.
        content["html"] = html_with_tracking(
            content["html"], base_url=base, key=delivery.key, unsubscribe_url=links["unsubscribe_url"]
        )
    return {"content": content, "subject": rendered.subject[:500], "body_text": rendered.text}


def _claim(*, worker_id: str, limit: int) -> list[Delivery]:
    now = clock.now()
    lease = now + dt.timedelta(seconds=float(settings.TSUNAGU_DELIVERY_LEASE))
    due = (Q(status=Delivery.Status.QUEUED) & (Q(lease_until__isnull=True) | Q(lease_until__lt=now))) | Q(
        status=Delivery.Status.SENDING, lease_until__lt=now
    )
    with transaction.atomic():
        rows = Delivery.objects.filter(due, due_at__lte=now).order_by("due_at", "id")
        if connection.vendor == "postgresql":
            ids = list(rows.select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit])
        else:
            # SQLite transactions take the write lock at BEGIN (IMMEDIATE), so nobody claims between the
            # read and the update.
            ids = list(rows.values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        Delivery.objects.filter(pk__in=ids).update(locked_by=worker_id, lease_until=lease)
    return _load_claimed(ids, worker_id)


def _load_claimed(ids: list[int], worker_id: str) -> list[Delivery]:
    """The claimed deliveries with what sending needs. The rows of a batch share a few workspaces,
    versions and communications: each is read and decoded once, not once a row (a version's variants
    decoded 200 times was most of a claim's cost); customers come without what only profiles need."""
    from tsunagu.customers.models import Customer
    from tsunagu.messaging.models import Communication, CommunicationVersion

    rows = list(
        Delivery.objects.filter(pk__in=ids, locked_by=worker_id)
        .select_related("send", "channel")
        .defer("raw")
        .order_by("id")
    )
    workspaces = {w.pk: w for w in Workspace.objects.filter(pk__in={d.workspace_id for d in rows})}
    versions = CommunicationVersion.objects.in_bulk({d.version_id for d in rows})
    communications = Communication.objects.in_bulk({d.communication_id for d in rows})
    customers = Customer.objects.defer("trait_times", "channels", "search_text").prefetch_related("identities")
    people = customers.in_bulk({d.customer_id for d in rows if d.customer_id})
    for d in rows:
        d.workspace = workspaces[d.workspace_id]
        d.version = versions[d.version_id]
        d.communication = communications[d.communication_id]
        d.customer = people.get(d.customer_id) if d.customer_id else None
        if d.channel is not None:
            d.channel.workspace = d.workspace
    return rows


def _event(delivery: Delivery, status: str, *, reason: str = "", at: dt.datetime | None = None, **data: Any) -> None:
    DeliveryEvent.objects.create(
        delivery=delivery,
        workspace_id=delivery.workspace_id,
        status=status,
        at=at or clock.now(),
        reason=reason[:1000],
        data=data,
    )


# What about a delivery its send's policy waits on: an ending, a delivery, a read (``messaging.failover``).
_WAKES = frozenset({Delivery.Status.FAILED, Delivery.Status.BOUNCED, Delivery.Status.DELIVERED})
_READS = frozenset({"opened_at", "clicked_at", "read_at"})


def _set(delivery: Delivery, **changes: Any) -> None:
    # A send's status is its latest delivery's (``selectors.send_status``): one row to write, not two —
    # the send itself is touched only when its policy has something to decide (not on the hot "sent").
    now = changes["updated_at"] = clock.now()
    for name, value in changes.items():
        setattr(delivery, name, value)
    delivery_update(delivery.pk, changes)
    if changes.get("status") in _WAKES or not _READS.isdisjoint(changes):
        send_wake(delivery.send_id, now)


class Runner:
    """Executes claimed deliveries; keeps one configured channel instance per channel row so connections
    (SMTP) are reused across messages, until ``close``."""

    def __init__(self, *, worker_id: str) -> None:
        self.worker_id = worker_id
        self._channels: dict[tuple[int, Any], ChannelBase] = {}
        self._writes: list[Any] = []
        self._events: list[tuple[int, int, str, dt.datetime, str, dict[str, Any]]] = []

    def close(self) -> None:
        for impl in self._channels.values():
            try:
                impl.close()
            except Exception:  # noqa: BLE001 - closing a dead connection must not stop the worker
                log.debug("closing a channel failed", exc_info=True)
        self._channels.clear()

    def _impl(self, delivery: Delivery) -> ChannelBase:
        row = delivery.channel
        cls = channel_class(delivery.channel_type)
        if row is None:
            return cls({}, allow_private=delivery.workspace.allow_private_webhooks)
        cache_key = (row.pk, row.updated_at)
        impl = self._channels.get(cache_key)
        if impl is None:
            for stale in [k for k in self._channels if k[0] == row.pk]:
                self._channels.pop(stale).close()
            impl = cls(channel_config(row), allow_private=delivery.workspace.allow_private_webhooks)
            self._channels[cache_key] = impl
        return impl

    def run_due(self, *, limit: int = 100) -> int:
        """Claim and execute up to ``limit`` due deliveries; returns how many were handled."""
        claimed = _claim(worker_id=self.worker_id, limit=limit)
        if not claimed:
            return 0
        with _relaxed_sqlite():
            from tsunagu.messaging.multicast import multicast_run  # imports this module

            # LINE deliveries of broadcasts go as multicasts (``messaging.multicast``); the others, one by one.
            for delivery in multicast_run(self, claimed):
                try:
                    self._execute(delivery)
                except Exception:  # noqa: BLE001 - one broken delivery must not stop the others
                    log.exception("delivery %s failed unexpectedly", delivery.pk)
                    self._later(self._retry_or_fail, delivery, "internal error (see the worker log)", retry_after=None)
            self._flush()
        return len(claimed)

    # Each delivery's outcome is written in the same commit as the next delivery's "sending" mark: one
    # commit a message instead of two, and still at most one delivery of this worker is "sending" with
    # its outcome unknown at any moment — the one on the wire.
    def _later(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        self._writes.append(functools.partial(fn, *args, **kwargs))

    def _apply_writes(self) -> None:
        writes, self._writes = self._writes, []
        for write in writes:
            write()
        events, self._events = self._events, []
        events_insert(events)

    def _event(
        self, delivery: Delivery, status: str, *, reason: str = "", at: dt.datetime | None = None, **data: Any
    ) -> None:
        self._events.append((delivery.pk, delivery.workspace_id, status, at or clock.now(), reason, data))

    def _flush(self) -> None:
        if self._writes:
            with _txn():
                self._apply_writes()

    def _execute(self, delivery: Delivery) -> None:
        if delivery.status == Delivery.Status.SENDING and delivery.channel_type not in IDEMPOTENT:
            reason = "interrupted: the worker stopped during the send; not retried, so as not to send twice"
            self._later(self._final, delivery, Delivery.Status.FAILED, reason)
            return
        rendered: dict[str, Any] = {}
        if not delivery.content:
            try:
                rendered = delivery_render(delivery)
            except ValueError as exc:
                self._later(self._final, delivery, Delivery.Status.FAILED, str(exc))
                return
        with _txn():
            self._apply_writes()
            # The lease is renewed for the call itself: deliveries claimed together are sent one after
            # another, and a slow provider must not let another worker take this one over mid-call.
            lease = clock.now() + dt.timedelta(seconds=float(settings.TSUNAGU_DELIVERY_LEASE))
            moved = delivery_update(
                delivery.pk,
                {
                    "status": Delivery.Status.SENDING,
                    "attempts": delivery.attempts + 1,
                    "updated_at": clock.now(),
                    "lease_until": lease,
                    **rendered,
                },
                locked_by=self.worker_id,
            )
            if not moved:
                return  # the lease was lost to another worker meanwhile
            delivery.attempts += 1
            for name, value in rendered.items():
                setattr(delivery, name, value)
            if rendered:
                _index([delivery])
        links = _links(delivery)
        message = Message(
            key=delivery.key,
            channel_type=delivery.channel_type,
            topic=delivery.topic,
            address=delivery.address,
            content=delivery.content,
            unsubscribe_url=links["unsubscribe_url"],
            extra=self._extra(delivery),
        )
        try:
            outcome = self._impl(delivery).send(message)
        except DeliveryError as exc:
            self._later(self._failed, delivery, exc)
            return
        self._later(self._succeeded, delivery, outcome, clock.now())

    def _succeeded(self, delivery: Delivery, outcome: Any, at: dt.datetime) -> None:
        status = Delivery.Status.DELIVERED if outcome.status == "delivered" else Delivery.Status.SENT
        headers = {**(delivery.headers or {}), **({"sent": outcome.headers} if outcome.headers else {})}
        _set(
            delivery,
            status=status,
            provider_id=outcome.provider_id[:255],
            headers=headers,
            raw=outcome.raw,
            sent_at=at,
            lease_until=None,
            reason="",
        )
        self._event(delivery, "sent", at=at, detail=outcome.detail)
        if status == Delivery.Status.DELIVERED:
            self._event(delivery, "delivered", at=at)

    def _final(self, delivery: Delivery, status: str, reason: str) -> None:
        _set(delivery, status=status, reason=reason[:1000], lease_until=None)
        self._event(delivery, status, reason=reason)

    def _extra(self, delivery: Delivery) -> dict[str, Any]:
        extra = dict((delivery.headers or {}).get("extra") or {})
        if delivery.channel_type == "sms":
            base = public_base()
            if delivery.channel is not None:
                extra["status_callback"] = f"{base}/m/in/{delivery.channel.webhook_token}/status"
        if delivery.channel_type == "webhook":
            extra.update(
                delivery_id=delivery.pk,
                customer_id=delivery.customer_id,
                workspace=delivery.workspace.slug,
                communication=delivery.communication.key if delivery.communication_id else "",
            )
        return extra

    def _failed(self, delivery: Delivery, exc: DeliveryError) -> None:
        if not exc.permanent:
            self._retry_or_fail(delivery, exc.reason, retry_after=exc.retry_after)
            return
        status = Delivery.Status.BOUNCED if exc.bounced else Delivery.Status.FAILED
        _set(delivery, status=status, reason=exc.reason[:1000], lease_until=None)
        self._event(delivery, status, reason=exc.reason, permanent=True)
        if exc.bounced:
            Suppression.objects.get_or_create(
                workspace_id=delivery.workspace_id,
                channel_type=delivery.channel_type,
                address=delivery.address,
                topic="",
                defaults={"reason": Suppression.Reason.BOUNCE, "detail": exc.reason[:1000]},
            )
        if getattr(exc, "expired", False) and delivery.channel_type == "webpush":
            PushSubscription.objects.filter(workspace_id=delivery.workspace_id, endpoint=delivery.address).update(
                expired_at=clock.now()
            )

    def _retry_or_fail(self, delivery: Delivery, reason: str, *, retry_after: float | None) -> None:
        if delivery.attempts >= int(settings.TSUNAGU_DELIVERY_MAX_ATTEMPTS):
            final = f"gave up after {delivery.attempts} attempts: {reason}"
            _set(delivery, status=Delivery.Status.FAILED, reason=final[:1000], lease_until=None)
            self._event(delivery, "failed", reason=final)
            return
        wait = backoff(delivery.attempts)
        if retry_after:
            wait = max(wait, dt.timedelta(seconds=min(retry_after, 3600)))
        # Back to queued: this attempt ended with the provider's answer, so a retry cannot send twice.
        _set(
            delivery,
            status=Delivery.Status.QUEUED,
            reason=f"retrying: {reason}"[:1000],
            lease_until=None,
            due_at=clock.now() + wait,
        )


@dataclass(slots=True)
class Report:
    """What a provider, a tracking pixel or the customer said about a delivery."""

    status: str
    reason: str = ""
    at: dt.datetime | None = None
    machine: bool = False
    data: dict[str, Any] | None = None


def delivery_report(*, delivery: Delivery, report: Report) -> bool:
    """Record a report on a delivery in one transaction: a main state moves the delivery forward only
    (never from delivered back to sent); ``opened``/``clicked``/``replied``/``unsubscribed`` are recorded as
    events beside the state (machine opens and clicks flagged, not counted). A bounce suppresses the
    address. Returns whether anything changed."""
    now = clock.now()
    at = report.at or now
    with transaction.atomic():
        current = (
            Delivery.objects.select_for_update().get(pk=delivery.pk)
            if connection.vendor == "postgresql"
            else (Delivery.objects.get(pk=delivery.pk))
        )
        if report.status in ENGAGEMENT:
            changes: dict[str, Any] = {}
            if not report.machine:
                if report.status == "opened" and current.opened_at is None:
                    changes["opened_at"] = at
                if report.status == "clicked" and current.clicked_at is None:
                    changes["clicked_at"] = at
                    if current.opened_at is None:  # a click implies the message was opened
                        changes["opened_at"] = at
            if changes:
                _set(current, **changes)
            DeliveryEvent.objects.create(
                delivery=current,
                workspace_id=current.workspace_id,
                status=report.status,
                at=at,
                reason=report.reason[:1000],
                data=report.data or {},
                machine=report.machine,
                # Machine opens are kept for the record but are not the customer's doing: not on the timeline.
                logged=report.machine,
            )
            return True
        if report.status not in RANK or RANK[report.status] <= RANK.get(current.status, 0):
            return False
        if current.status in ("failed", "bounced"):
            return False
        changes = {"status": report.status, "reason": report.reason[:1000]}
        if report.status == "sent" and current.sent_at is None:
            changes["sent_at"] = at
        _set(current, **changes)
        _event(current, report.status, reason=report.reason, at=at, **(report.data or {}))
        if report.status == "bounced":
            complaint = report.reason.lower().startswith("complaint")
            Suppression.objects.get_or_create(
                workspace_id=current.workspace_id,
                channel_type=current.channel_type,
                address=current.address,
                topic="",
                defaults={
                    "reason": Suppression.Reason.COMPLAINT if complaint else Suppression.Reason.BOUNCE,
                    "detail": report.reason[:1000],
                },
            )
        return True
