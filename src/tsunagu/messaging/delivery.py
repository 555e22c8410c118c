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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from tsunagu.core import clock
from tsunagu.core.jobs import backoff
from tsunagu.core.models import Workspace
from tsunagu.messaging.channels import channel_class
from tsunagu.messaging.channels.base import ChannelBase, DeliveryError, Message, Outcome
from tsunagu.messaging.links import links_for, public_base
from tsunagu.messaging.models import Delivery, DeliveryEvent, PushSubscription, Suppression
from tsunagu.messaging.selectors import channel_config
from tsunagu.messaging.sql import claimed_load, customer_contexts, delivery_update, events_insert, send_wake

log = logging.getLogger(__name__)

# Providers that recognise a resent message by its key, so an interrupted send may be retried.
IDEMPOTENT = frozenset({"line", "webhook", "in_app"})
# The order of the main states: a report never moves a delivery backwards (a late "sent" after "delivered").
RANK = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "failed": 4, "bounced": 4}
ENGAGEMENT = frozenset({"opened", "clicked", "replied", "unsubscribed"})
_UNSET = object()
# At most this many sends of one worker on the wire at once (a channel's ``lanes`` is capped to it).
MAX_LANES = 20


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


def _send(impl: ChannelBase, message: Message) -> tuple[Outcome | DeliveryError, dt.datetime]:
    """(the provider's outcome or refusal, when it came): on a hand-over thread or the worker's own."""
    try:
        outcome: Outcome | DeliveryError = impl.send(message)
    except DeliveryError as exc:
        outcome = exc
    return outcome, clock.now()


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
    customer = getattr(delivery, "_customer_context", _UNSET)
    if customer is _UNSET:  # not a delivery of the claim (``_load_claimed`` reads the contexts together)
        customer = customer_context(delivery.customer)
    elif customer is None:
        customer = customer_context(None)
    context = {
        "customer": customer,
        "event": send.event or {},
        "data": send.data or {},
        # A journey's send carries the run's context (docs/journeys.md): ``{{ journey.steps.x.outcome }}``.
        "journey": (send.data or {}).get("journey") or {},
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
    versions, communications and channels: each is read and decoded once, not once a row (a version's
    variants decoded 200 times was most of a claim's cost). The deliveries, their sends and their
    customers' template context come as rows (``sql.claimed_load``, ``sql.customer_contexts``), not
    through the ORM's instances and prefetches, which cost more than sending."""
    from tsunagu.messaging.models import Channel, Communication, CommunicationVersion

    rows = claimed_load(ids, worker_id)
    workspaces = {w.pk: w for w in Workspace.objects.filter(pk__in={d.workspace_id for d in rows})}
    versions = CommunicationVersion.objects.in_bulk({d.version_id for d in rows})
    communications = Communication.objects.in_bulk({d.communication_id for d in rows})
    channels = Channel.objects.in_bulk({d.channel_id for d in rows if d.channel_id})
    contexts = customer_contexts({d.customer_id for d in rows if d.customer_id})
    for d in rows:
        d.workspace = workspaces[d.workspace_id]
        d.version = versions[d.version_id]
        d.communication = communications[d.communication_id]
        d.channel = channels.get(d.channel_id) if d.channel_id else None
        if d.channel is not None:
            d.channel.workspace = d.workspace
        # What ``customer_context`` would make of ``d.customer`` (not loaded: read on access).
        d._customer_context = contexts.get(d.customer_id) if d.customer_id else None
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
    """Executes claimed deliveries; keeps configured channel instances per channel row so connections
    (SMTP) are reused across messages, until ``close``.

    Deliveries go out in *waves*: consecutive deliveries of one channel, as many as it has ``lanes``
    (email: its ``connections``), each wave's ``sending`` marks committed together, then handed over at
    once, one per lane (an instance, a connection, a thread of the hand-over pool). The outcomes of a
    wave are written in the commit that marks the next one ``sending``, and the next wave is rendered
    while this one is on the wire. So a worker has at most one delivery per connection ``sending`` with
    its outcome unknown (what a crash can leave), a commit costs a wave rather than a message, and the
    round trips of several messages overlap (docs/performance.md)."""

    def __init__(self, *, worker_id: str) -> None:
        self.worker_id = worker_id
        self._channels: dict[tuple[int, Any], list[ChannelBase]] = {}
        self._writes: list[Any] = []
        self._events: list[tuple[int, int, str, dt.datetime, str, dict[str, Any]]] = []
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        for lanes in self._channels.values():
            for impl in lanes:
                try:
                    impl.close()
                except Exception:  # noqa: BLE001 - closing a dead connection must not stop the worker
                    log.debug("closing a channel failed", exc_info=True)
        self._channels.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _impl(self, delivery: Delivery, lane: int = 0) -> ChannelBase:
        row = delivery.channel
        cls = channel_class(delivery.channel_type)
        if row is None:
            return cls({}, allow_private=delivery.workspace.allow_private_webhooks)
        cache_key = (row.pk, row.updated_at)
        lanes = self._channels.get(cache_key)
        if lanes is None:
            for stale in [k for k in self._channels if k[0] == row.pk]:
                for impl in self._channels.pop(stale):
                    impl.close()
            lanes = self._channels[cache_key] = []
        while len(lanes) <= lane:
            lanes.append(cls(channel_config(row), allow_private=delivery.workspace.allow_private_webhooks))
        return lanes[lane]

    def _lanes(self, delivery: Delivery) -> int:
        if delivery.channel is None:
            return 1
        try:
            return max(1, min(int(self._impl(delivery).lanes), MAX_LANES))
        except Exception:  # noqa: BLE001 - a channel that cannot be configured fails at its send, one at a time
            return 1

    def _waves(self, claimed: list[Delivery]) -> Iterator[list[Delivery]]:
        wave: list[Delivery] = []
        key: Any = None
        room = 1
        for delivery in claimed:
            row = delivery.channel
            this = (row.pk, row.updated_at) if row is not None else None
            if wave and (this is None or this != key or len(wave) >= room):
                yield wave
                wave = []
            if not wave:
                key, room = this, self._lanes(delivery)
            wave.append(delivery)
        if wave:
            yield wave

    def run_due(self, *, limit: int = 100) -> int:
        """Claim and execute up to ``limit`` due deliveries; returns how many were handled."""
        claimed = _claim(worker_id=self.worker_id, limit=limit)
        if not claimed:
            return 0
        with _relaxed_sqlite():
            from tsunagu.messaging.multicast import multicast_run  # imports this module

            # LINE deliveries of broadcasts go as multicasts (``messaging.multicast``); the others in waves.
            rest = multicast_run(self, claimed)
            on_wire: list[tuple[Delivery, Future[Any]]] = []
            try:
                for wave in self._waves(rest):
                    ready = [p for p in map(self._prepare, wave) if p is not None]
                    self._collect(on_wire)
                    on_wire = self._hand_over(self._start(ready))
            finally:
                self._collect(on_wire)
                self._flush()
        return len(claimed)

    def _broken(self, delivery: Delivery) -> None:
        log.exception("delivery %s failed unexpectedly", delivery.pk)
        self._later(self._retry_or_fail, delivery, "internal error (see the worker log)", retry_after=None)

    # Each wave's outcomes are written in the same commit as the next wave's "sending" marks: one commit a
    # wave, and still at most one delivery a lane "sending" with its outcome unknown at any moment.
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

    def _prepare(self, delivery: Delivery) -> tuple[Delivery, dict[str, Any]] | None:
        """(the delivery, its rendered fields) when it is to be sent; None when its end is already known."""
        try:
            if delivery.status == Delivery.Status.SENDING and delivery.channel_type not in IDEMPOTENT:
                reason = "interrupted: the worker stopped during the send; not retried, so as not to send twice"
                self._later(self._final, delivery, Delivery.Status.FAILED, reason)
                return None
            if delivery.content:
                return delivery, {}
            try:
                return delivery, delivery_render(delivery)
            except ValueError as exc:
                self._later(self._final, delivery, Delivery.Status.FAILED, str(exc))
                return None
        except Exception:  # noqa: BLE001 - one broken delivery must not stop the others
            self._broken(delivery)
            return None

    def _start(self, ready: list[tuple[Delivery, dict[str, Any]]]) -> list[Delivery]:
        """One commit: the writes waiting (the last wave's outcomes) and ``ready``'s ``sending`` marks;
        returns the deliveries marked (not those whose lease was lost to another worker meanwhile)."""
        if not ready:
            return []
        started: list[Delivery] = []
        rendered_now: list[Delivery] = []
        try:
            with _txn():
                self._apply_writes()
                # The lease is renewed for the call itself: deliveries claimed together are sent one wave
                # after another, and a slow provider must not let another worker take one over mid-call.
                now = clock.now()
                lease = now + dt.timedelta(seconds=float(settings.TSUNAGU_DELIVERY_LEASE))
                for delivery, rendered in ready:
                    changes = {"status": Delivery.Status.SENDING, "attempts": delivery.attempts + 1,
                               "updated_at": now, "lease_until": lease, **rendered}
                    if delivery_update(delivery.pk, changes, locked_by=self.worker_id):
                        started.append(delivery)
                        delivery.attempts += 1
                        for name, value in rendered.items():
                            setattr(delivery, name, value)
                        if rendered:
                            rendered_now.append(delivery)
                # The archive's search index of what was just rendered, in the same commit.
                _index(rendered_now)
        except Exception:  # noqa: BLE001 - the wave is retried later, the worker goes on
            for delivery, _ in ready:
                self._broken(delivery)
            return []
        return started

    def _message(self, delivery: Delivery) -> Message:
        return Message(
            key=delivery.key,
            channel_type=delivery.channel_type,
            topic=delivery.topic,
            address=delivery.address,
            content=delivery.content,
            unsubscribe_url=_links(delivery)["unsubscribe_url"],
            extra=self._extra(delivery),
        )

    def _hand_over(self, started: list[Delivery]) -> list[tuple[Delivery, Future[Any]]]:
        """Hand ``started`` (one wave) to their provider. A channel of one lane is called here, its outcome
        queued at once; the lanes of one with more are called from the pool, collected by ``_collect``."""
        if not started:
            return []
        if self._lanes(started[0]) == 1:
            for delivery in started:
                try:
                    self._queue_outcome(delivery, _send(self._impl(delivery), self._message(delivery)))
                except Exception:  # noqa: BLE001 - one broken delivery must not stop the others
                    self._broken(delivery)
            return []
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=MAX_LANES, thread_name_prefix="tsunagu-send")
        on_wire = []
        for lane, delivery in enumerate(started):
            try:
                impl, message = self._impl(delivery, lane), self._message(delivery)
                on_wire.append((delivery, self._pool.submit(_send, impl, message)))
            except Exception:  # noqa: BLE001 - one broken delivery must not stop the others
                self._broken(delivery)
        return on_wire

    def _collect(self, on_wire: list[tuple[Delivery, Future[Any]]]) -> None:
        # Taken off the list one by one: if the wait is interrupted (KeyboardInterrupt), run_due's
        # ``finally`` collects the rest, and none twice.
        while on_wire:
            delivery, future = on_wire.pop(0)
            try:
                self._queue_outcome(delivery, future.result())
            except Exception:  # noqa: BLE001 - one broken delivery must not stop the others
                self._broken(delivery)

    def _queue_outcome(self, delivery: Delivery, result: tuple[Any, dt.datetime]) -> None:
        outcome, at = result
        if isinstance(outcome, DeliveryError):
            self._later(self._failed, delivery, outcome)
        else:
            self._later(self._succeeded, delivery, outcome, at)

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
