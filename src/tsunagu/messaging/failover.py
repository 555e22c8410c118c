"""The policy engine: takes a send through the steps of its channel policy.

For each step, in order, the checks of docs/failover.md: ``no_address``, ``no_consent``, ``unsubscribed``,
``suppressed``, ``capped`` make the step unusable (an ``Attempt`` skipped with that reason, and on to the
next step); ``quiet_hours`` and ``holiday`` delay the send (status ``scheduled`` until the window opens); a
usable step becomes a ``Delivery`` for the delivery engine. The send then waits for that delivery: a
failure or bounce, or "delivered/read within T" running out, moves it on to the next step — rendered from
the same version and data —; a success ends the chain. Nothing here leaves the process.

Sends are rows of work: ``due_at`` is when to look again; the delivery engine sets it to now when a
send's delivery fails, bounces, is delivered or read (``sql.send_wake``), timers and delays set it ahead.
``sends_run_due`` claims due sends with a lease, like deliveries, so a crashed worker's sends are taken
over and each step is made once: a step's attempt is written in the same transaction as the step moving.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Prefetch, Q

from tsunagu.core import clock
from tsunagu.core.models import Workspace
from tsunagu.customers.models import Customer
from tsunagu.messaging.consent import consent_decision
from tsunagu.messaging.context import customer_address, customer_context, customer_locale
from tsunagu.messaging.models import (
    Attempt,
    Channel,
    Consent,
    Delivery,
    DeliveryEvent,
    PushSubscription,
    Send,
    SendEvent,
    Suppression,
)
from tsunagu.messaging.render import pick_variant
from tsunagu.messaging.rules import PERIODS, caps_for, customer_zone, holiday_until, quiet_until
from tsunagu.messaging.throttle import throttle_due

log = logging.getLogger(__name__)

# Reason codes, in the order the checks run (docs/failover.md).
REASONS = (
    "no_address", "no_consent", "unsubscribed", "suppressed", "capped", "quiet_hours", "holiday",
    "failed", "bounced", "not_delivered", "not_read",
)
_WHAT = {"email": "email address", "sms": "phone number", "line": "LINE user id", "webpush": "web push subscription"}


@dataclass(slots=True)
class Reach:
    """Where a step's channel reaches the customer, or the reason it cannot."""

    reason: str = ""
    detail: str = ""
    row: Channel | None = None
    address: str = ""
    extra: dict[str, Any] | None = None


def _channel_row(workspace: Workspace, channel_type: str) -> Channel | None:
    return Channel.objects.filter(workspace=workspace, type=channel_type, enabled=True).order_by("id").first()


def _address(send: Send, customer: Customer, channel_type: str, context: dict[str, Any], row: Channel | None) -> Reach:
    if channel_type != "in_app" and row is None:
        return Reach("no_address", f"no {channel_type} channel is configured")
    extra: dict[str, Any] = {}
    if channel_type == "webpush":
        sub = (
            PushSubscription.objects.filter(workspace_id=send.workspace_id, customer=customer, expired_at__isnull=True)
            .order_by("-created_at")
            .first()
        )
        address = sub.endpoint if sub else ""
        if sub:
            extra = {"subscription": {"endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}}}
    elif channel_type == "webhook":
        address = str((row.config if row else {}).get("url", ""))
    else:
        address = customer_address(customer, channel_type, context)
    if not address:
        return Reach("no_address", f"the customer has no {_WHAT.get(channel_type, 'address')}")
    return Reach(row=row, address=address, extra=extra)


_SEND_FIELDS = ["status", "step", "due_at", "ended_at", "updated_at"]


class Writes:
    """The rows the sends of a batch make, written together at its end (``flush``): a claim of 500 sends
    is a few multi-row INSERTs rather than ~2,500 single ones. ``mark``/``undo`` drop one send's share
    when it fails, as its savepoint rolls back what it wrote directly."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.sends: dict[int, Send] = {}
        self.attempts: list[Attempt] = []
        self.deliveries: list[Delivery] = []
        self.events: list[SendEvent] = []

    def mark(self) -> tuple[int, int, int, set[int]]:
        return len(self.attempts), len(self.deliveries), len(self.events), set(self.sends)

    def undo(self, mark: tuple[int, int, int, set[int]]) -> None:
        attempts, deliveries, events, sends = mark
        del self.attempts[attempts:], self.deliveries[deliveries:], self.events[events:]
        for pk in set(self.sends) - sends:
            del self.sends[pk]

    def flush(self) -> None:
        """Write what was collected; inside the caller's transaction."""
        if self.deliveries:
            Delivery.objects.bulk_create(self.deliveries, batch_size=500)  # primary keys come back
            DeliveryEvent.objects.bulk_create(
                [DeliveryEvent(delivery=d, workspace_id=d.workspace_id, status="queued", at=d.created_at,
                               logged=True) for d in self.deliveries],  # "queued" is not a timeline event
                batch_size=500,
            )
            _index(self.deliveries)
        if self.attempts:
            Attempt.objects.bulk_create(self.attempts, batch_size=500)
        if self.events:
            SendEvent.objects.bulk_create(self.events, batch_size=500)
        # One UPDATE a send: bulk_update's CASE expressions cost ~10x more on SQLite for these few columns.
        for send in self.sends.values():
            Send.objects.filter(pk=send.pk).update(**{name: getattr(send, name) for name in _SEND_FIELDS})
        self._reset()


class Batch:
    """What the sends of one claim share, read once for all of them rather than once a send and step (a
    claim of 500 sends was ~5 queries a step before): the channel rows, the customers' consents, the
    suppressions of their addresses, their message counts for the caps — counts kept up to date as
    deliveries are made, so two sends to one customer in a batch respect a cap together."""

    def __init__(self, sends: list[Send], *, now: dt.datetime) -> None:
        self.now = now
        self.writes = Writes()
        self.channels: dict[tuple[int, str], Channel | None] = {}
        ids = sorted({s.customer_id for s in sends if s.customer_id is not None})
        self.consents: dict[int, Any] = {pk: {} for pk in ids}
        if ids:
            rows = Consent.objects.filter(customer_id__in=ids).values_list(
                "customer_id", "channel", "topic", "status", "at", "id"
            )
            for customer_id, channel, topic, status, at, pk in rows:
                state = self.consents[customer_id]
                if (channel, topic) not in state or (at, pk) > state[(channel, topic)][:2]:
                    state[(channel, topic)] = (at, pk, status)
        addresses: set[str] = set()
        for s in sends:
            c = s.customer
            if c is not None:
                addresses.update(a for a in (c.email, c.phone, str(c.pk)) if a)
                addresses.update(i.value for i in c.identities.all() if i.type == "external:line_user_id")
        self.suppressions: dict[tuple[int, str, str], list[Suppression]] = {}
        workspaces = {s.workspace_id for s in sends}
        for row in Suppression.objects.filter(workspace_id__in=workspaces, address__in=addresses).order_by("id"):
            self.suppressions.setdefault((row.workspace_id, row.channel_type, row.address), []).append(row)
        self._ids = ids
        self._addresses = addresses
        self._counts: dict[tuple[int, int], dict[int, int]] = {}  # (workspace, cap index) -> customer -> n

    def channel(self, workspace: Workspace, channel_type: str) -> Channel | None:
        key = (workspace.pk, channel_type)
        if key not in self.channels:
            self.channels[key] = _channel_row(workspace, channel_type)
        return self.channels[key]

    def suppression(self, workspace_id: int, channel_type: str, address: str, topic: str) -> Suppression | None:
        key = (workspace_id, channel_type, address)
        if address not in self._addresses:  # not a profile's address (a push endpoint): read it now
            self._addresses.add(address)
            rows_now = Suppression.objects.filter(workspace_id=workspace_id, address=address).order_by("id")
            for row in rows_now:
                self.suppressions.setdefault((row.workspace_id, row.channel_type, row.address), []).append(row)
        rows = self.suppressions.get(key, [])
        return next((r for r in rows if r.topic in ("", topic)), None)

    def _count(self, workspace: Workspace, index: int, cap: dict[str, Any]) -> dict[int, int]:
        key = (workspace.pk, index)
        if key not in self._counts:
            rows = Delivery.objects.filter(
                workspace_id=workspace.pk, customer_id__in=self._ids, topic=cap["topic"],
                created_at__gt=self.now - PERIODS[cap["per"]],
            ).exclude(status__in=("failed", "bounced"))
            if "channel" in cap:
                rows = rows.filter(channel_type=cap["channel"])
            counted = rows.values("customer_id").annotate(n=Count("id")).values_list("customer_id", "n")
            self._counts[key] = dict(counted)
        return self._counts[key]

    def capped(self, workspace: Workspace, customer_id: int, topic: str, channel: str) -> dict[str, Any] | None:
        caps = list(workspace.frequency_caps or [])
        for index, cap in enumerate(caps):
            applies = cap in caps_for(caps, topic=topic, channel=channel)
            if applies and self._count(workspace, index, cap).get(customer_id, 0) >= cap["max"]:
                return cap
        return None

    def counted(self, workspace: Workspace, customer_id: int, topic: str, channel: str) -> None:
        """A delivery was made: it counts against the caps it falls under from now on."""
        caps = list(workspace.frequency_caps or [])
        for index, cap in enumerate(caps):
            if cap in caps_for(caps, topic=topic, channel=channel):
                counts = self._count(workspace, index, cap)
                counts[customer_id] = counts.get(customer_id, 0) + 1


class Evaluation:
    """One send being advanced (inside a transaction): the customer's context, read once for all the
    steps tried, and what its batch shares."""

    def __init__(
        self, send: Send, *, now: dt.datetime, batch: Batch, via: Channel | None = None, timing: bool = True
    ) -> None:
        self.send, self.now, self.via, self.timing, self.batch = send, now, via, timing, batch
        self.workspace: Workspace = send.workspace
        self.customer: Customer | None = send.customer
        self.topic = send.version.topic
        self._context: dict[str, Any] | None = None

    @property
    def context(self) -> dict[str, Any]:
        if self._context is None:
            self._context = customer_context(self.customer)
        return self._context

    def reach(self, channel_type: str) -> Reach:
        """Whether the step on ``channel_type`` can be used now, and where it goes (checks 1–5)."""
        customer = self.customer
        if customer is None:
            return Reach("no_address", "the customer no longer exists")
        row = self.via
        if row is None and channel_type != "in_app":
            row = self.batch.channel(self.workspace, channel_type)
        reach = _address(self.send, customer, channel_type, self.context, row)
        if reach.reason:
            return reach
        why = consent_decision(self.batch.consents.get(customer.pk, {}), channel=channel_type, topic=self.topic)
        if why:
            what = "never opted in" if why == "no_consent" else "revoked"
            return Reach(why, f"{self.topic} on {channel_type}: consent {what}")
        suppression = self.batch.suppression(self.send.workspace_id, channel_type, reach.address, self.topic)
        if suppression is not None and not (
            self.topic == "transactional" and suppression.reason == Suppression.Reason.UNSUBSCRIBE
        ):
            code = "unsubscribed" if suppression.reason == Suppression.Reason.UNSUBSCRIBE else "suppressed"
            return Reach(code, f"{reach.address} is on the suppression list ({suppression.reason})")
        if self.timing:
            cap = self.batch.capped(self.workspace, customer.pk, self.topic, channel_type)
            if cap is not None:
                on = f" on {cap['channel']}" if "channel" in cap else ""
                return Reach("capped", f"at most {cap['max']} {cap['topic']} messages{on} a {cap['per']}")
        return reach

    def delay(self) -> tuple[str, dt.datetime, str] | None:
        """(reason, until, action) when the send must wait now (checks 6–7), else None."""
        if not self.timing or self.topic == "transactional":
            return None
        zone = customer_zone(self.customer.traits if self.customer else None, self.workspace)
        window = (self.workspace.quiet_hours or {}).get(self.topic)
        until = quiet_until(window, now=self.now, zone=zone)
        if until is not None:
            return "quiet_hours", until, str((window or {}).get("action", "delay"))
        if self.topic == "marketing":
            until = holiday_until(self.workspace.holidays, now=self.now, zone=zone)
            if until is not None:
                return "holiday", until, "delay"
        return None


def _event(writes: Writes, send: Send, kind: str, at: dt.datetime, **data: Any) -> None:
    writes.events.append(SendEvent(send=send, workspace_id=send.workspace_id, kind=kind, at=at, data=data))


def _judge(attempt: Attempt, step: dict[str, Any], now: dt.datetime) -> tuple[str, dt.datetime | None]:
    """What the current attempt's delivery means for the send: ("ok", None) satisfied; ("", due) keep
    waiting (until ``due``, or None: until the delivery reports); (reason, None) move on."""
    d = attempt.delivery
    if d is None:
        return "failed", None
    if d.status == Delivery.Status.FAILED and d.reason.startswith("interrupted"):
        # The worker died while handing it over: it may well have arrived. Another channel now could be
        # the second message "never twice" is about, so the chain ends here.
        return "ok", None
    if d.status in (Delivery.Status.FAILED, Delivery.Status.BOUNCED):
        return str(d.status), None
    wait = step.get("wait") or {}
    if "delivered" in wait:
        if d.status == Delivery.Status.DELIVERED or d.read_at or d.opened_at:
            return "ok", None
        due = attempt.started_at + dt.timedelta(seconds=wait["delivered"])
        return ("not_delivered", None) if now >= due else ("", due)
    if "read" in wait:
        if d.read_at or d.opened_at or d.clicked_at:
            return "ok", None
        due = attempt.started_at + dt.timedelta(seconds=wait["read"])
        return ("not_read", None) if now >= due else ("", due)
    return ("ok", None) if d.status in (Delivery.Status.SENT, Delivery.Status.DELIVERED) else ("", None)


def _cancel_queued(delivery: Delivery | None, why: str, now: dt.datetime) -> bool:
    """Take back a delivery that no worker has handed over yet (still ``queued``). Returns whether it was."""
    if delivery is None:
        return False
    taken = Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.QUEUED).update(
        status=Delivery.Status.FAILED, reason=why[:1000], updated_at=now, lease_until=None
    )
    if taken:
        DeliveryEvent.objects.create(delivery=delivery, workspace_id=delivery.workspace_id, status="failed", at=now,
                                     reason=why[:1000], logged=True)  # not the customer's doing: off the timeline
    return bool(taken)


def _late_success(writes: Writes, send: Send, attempts: list[Attempt], now: dt.datetime) -> bool:
    """With ``late_success: cancel``, a timed-out attempt that has since succeeded ends the send: the step
    not yet handed over is taken back. Returns whether the send ended."""
    if (send.policy or {}).get("late_success") != "cancel":
        return False
    for attempt in attempts:
        d = attempt.delivery
        if attempt.status != Attempt.Status.TIMED_OUT or d is None:
            continue
        if d.status == Delivery.Status.DELIVERED or d.read_at or d.opened_at or d.clicked_at:
            current = next((a for a in attempts if a.step == send.step and a.status == Attempt.Status.MADE), None)
            if current is not None:
                if not _cancel_queued(current.delivery, f"cancelled: the {attempt.channel} message arrived late", now):
                    return False  # the next message is already out: nothing left to cancel
                current.status, current.reason, current.ended_at = Attempt.Status.SKIPPED, "cancelled", now
                current.save(update_fields=["status", "reason", "ended_at"])
            send.status, send.ended_at, send.due_at = Send.Status.DELIVERED, now, None
            _event(writes, send, "cancelled", now, channel=attempt.channel, reason="late_success")
            return True
    return False


def send_advance(
    send: Send,
    *,
    now: dt.datetime | None = None,
    via: Channel | None = None,
    timing: bool = True,
    batch: Batch | None = None,
) -> None:
    """Take ``send`` as far along its policy as it can go now, and save it. Must run inside a transaction
    that holds the send (``send_create``'s, or a claim's): the attempt made or skipped and the send's new
    step commit together, so a step is never made twice. ``via`` and ``timing=False`` are
    ``send_create``'s (a test through one channel row; a record of the past, which quiet hours and caps do
    not concern); ``batch``, what the sends of a claim share (``sends_run_due``), whose rows are written
    when the batch is flushed."""
    now = now or clock.now()
    own = batch is None
    batch = batch or Batch([send], now=now)
    _advance(send, now=now, via=via, timing=timing, batch=batch)
    if own:
        batch.writes.flush()


def _advance(send: Send, *, now: dt.datetime, via: Channel | None, timing: bool, batch: Batch) -> None:
    writes = batch.writes
    send.updated_at = now
    writes.sends[send.pk] = send
    if send.ended_at is not None:
        send.due_at = None
        return
    steps: list[dict[str, Any]] = list((send.policy or {}).get("steps") or [])
    attempts = sorted(send.attempts.all(), key=lambda a: (a.step, a.pk))  # prefetched with their deliveries
    if _late_success(writes, send, attempts, now):
        return
    current = next((a for a in attempts if a.step == send.step and a.status == Attempt.Status.MADE), None)
    if current is not None and send.step < len(steps):
        verdict, due = _judge(current, steps[send.step], now)
        if verdict in ("", "ok"):
            send.due_at = due
            return
        timed_out = verdict in ("not_delivered", "not_read")
        if timed_out:
            _cancel_queued(current.delivery, f"cancelled: not {verdict.removeprefix('not_')} in time", now)
        current.status = Attempt.Status.TIMED_OUT if timed_out else Attempt.Status.MADE
        current.reason, current.ended_at = verdict, now
        current.save(update_fields=["status", "reason", "ended_at"])
        nxt = steps[send.step + 1]["channel"] if send.step + 1 < len(steps) else None
        _event(writes, send, "failed_over", now, channel=current.channel, reason=verdict, next_channel=nxt)
        send.step += 1
    evaluation = Evaluation(send, now=now, via=via, timing=timing, batch=batch)
    while send.step < len(steps):
        channel_type = steps[send.step]["channel"]
        reach = evaluation.reach(channel_type)
        if reach.reason:
            _skip(writes, send, channel_type, reach.reason, reach.detail, now)
            send.step += 1
            continue
        delay = evaluation.delay()
        if delay is not None:
            reason, until, action = delay
            if action == "drop":
                _skip(writes, send, channel_type, reason, "dropped: inside quiet hours", now)
                send.status, send.ended_at, send.due_at = Send.Status.SKIPPED, now, None
            else:
                if send.status != Send.Status.SCHEDULED or send.due_at != until:
                    _event(writes, send, "delayed", now, channel=channel_type, reason=reason,
                           due_at=until.isoformat())
                send.status, send.due_at = Send.Status.SCHEDULED, until
            return
        _deliver(writes, send, channel_type, reach, now, wait=steps[send.step].get("wait"))
        if send.customer_id is not None:
            batch.counted(send.workspace, send.customer_id, evaluation.topic, channel_type)
        return
    made = any(a.status != Attempt.Status.SKIPPED for a in attempts)  # those added here were skipped
    send.status = Send.Status.UNDELIVERABLE if made else Send.Status.SKIPPED
    send.ended_at, send.due_at = now, None
    if made:
        _event(writes, send, "undeliverable", now)


def _skip(writes: Writes, send: Send, channel_type: str, reason: str, detail: str, now: dt.datetime) -> None:
    writes.attempts.append(Attempt(
        send=send, workspace_id=send.workspace_id, step=send.step, channel=channel_type,
        status=Attempt.Status.SKIPPED, reason=reason, detail=detail[:1000], started_at=now, ended_at=now,
    ))
    _event(writes, send, "skipped", now, channel=channel_type, reason=reason, detail=detail)


def _deliver(
    writes: Writes, send: Send, channel_type: str, reach: Reach, now: dt.datetime, *, wait: dict[str, int] | None
) -> None:
    variant = pick_variant(
        list(send.version.variants),
        channel=channel_type,
        locale=customer_locale(send.customer),
        default_locale=send.workspace.default_locale,
    )
    if variant is None:  # the policy's channels come from the variants; a version without one is a bug
        raise ValueError(f"version {send.version.number} has no {channel_type} variant")
    delivery = Delivery(
        workspace_id=send.workspace_id,
        send=send,
        customer=send.customer,
        communication_id=send.communication_id,
        version=send.version,
        topic=send.version.topic,
        channel=reach.row,
        channel_type=channel_type,
        address=reach.address,
        locale=str(variant.get("locale", "")),
        # Rendered by the worker that sends it (``delivery_render``), and stored before it is sent.
        headers={"extra": reach.extra} if reach.extra else {},
        created_at=now,
        updated_at=now,
        due_at=throttle_due(reach.row, now),  # a channel with rate_per_second spaces its deliveries
    )
    writes.deliveries.append(delivery)
    writes.attempts.append(Attempt(
        send=send, workspace_id=send.workspace_id, step=send.step, channel=channel_type,
        status=Attempt.Status.MADE, delivery=delivery, started_at=now,
    ))
    send.status = Send.Status.QUEUED
    seconds = next(iter(wait.values())) if wait else None
    send.due_at = now + dt.timedelta(seconds=seconds) if seconds else None


def _index(deliveries: list[Delivery]) -> None:
    try:
        from tsunagu.messaging.archive import archive_index
    except ImportError:
        return
    archive_index(deliveries=deliveries)


# --- the worker's part ----------------------------------------------------------------------------------


def _share(sends: list[Send]) -> None:
    # The sends of a claim share a few workspaces and versions: one object each, so that a version's
    # variants are decoded once, not once a send.
    workspaces: dict[int, Workspace] = {}
    versions: dict[int, Any] = {}
    for send in sends:
        send.workspace = workspaces.setdefault(send.workspace_id, send.workspace)
        send.version = versions.setdefault(send.version_id, send.version)


def _claim(*, worker_id: str, limit: int, now: dt.datetime) -> list[int]:
    lease = now + dt.timedelta(seconds=float(settings.TSUNAGU_DELIVERY_LEASE))
    with transaction.atomic():
        rows = Send.objects.filter(due_at__lte=now).filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        rows = rows.order_by("due_at", "id")
        if connection.vendor == "postgresql":
            ids = list(rows.select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit])
        else:
            ids = list(rows.values_list("pk", flat=True)[:limit])
        if ids:
            Send.objects.filter(pk__in=ids).update(locked_by=worker_id, lease_until=lease)
    return ids


def send_run(*, send_id: int, now: dt.datetime | None = None) -> None:
    """Advance one send at ``now`` in its own transaction, outside the worker's claims: the demo replaying
    its history (a failover at the moment a message failed, years ago)."""
    with transaction.atomic():
        send = (
            Send.objects.select_related("workspace", "version", "customer")
            .prefetch_related("customer__identities", Prefetch("attempts", Attempt.objects.select_related("delivery")))
            .get(pk=send_id)
        )
        send_advance(send, now=now)


def sends_run_due(*, worker_id: str, limit: int = 200) -> int:
    """Claim up to ``limit`` due sends and advance each (``send_advance``), in one transaction for the
    batch with a savepoint a send: one broken send is logged and left for later, the others go on.
    Returns how many were claimed."""
    now = clock.now()
    ids = _claim(worker_id=worker_id, limit=limit, now=now)
    if not ids:
        return 0
    with transaction.atomic():
        sends = list(
            Send.objects.filter(pk__in=ids, locked_by=worker_id)
            .select_related("workspace", "version", "customer")
            .prefetch_related("customer__identities", Prefetch("attempts", Attempt.objects.select_related("delivery")))
            .order_by("id")
        )
        _share(sends)
        batch = Batch(sends, now=now)
        for send in sends:
            mark = batch.writes.mark()
            try:
                with transaction.atomic():
                    send_advance(send, now=now, batch=batch)
            except Exception:  # noqa: BLE001 - one broken send must not stop the batch
                log.exception("send %s could not be advanced", send.pk)
                batch.writes.undo(mark)
                Send.objects.filter(pk=send.pk).update(due_at=now + dt.timedelta(minutes=5))
        batch.writes.flush()
        Send.objects.filter(pk__in=ids, locked_by=worker_id).update(lease_until=None, locked_by="")
    return len(ids)
