"""Broadcasts: one communication to a list of customers, now or at ``send_at``, under one channel policy.

Creating a broadcast stores its recipients as given (``BroadcastRecipient`` rows, in chunks); a worker
expands them into sends a chunk at a time (``messaging.broadcast_expand``) and the policy engine
(``messaging.failover``) takes each send through consent, quiet hours, caps and failover like any other
send. Pause holds what has not gone out yet, resume lets it go on, cancel ends it. See docs/broadcasts.md.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery

from tsunagu.core import clock
from tsunagu.core.errors import NotFound, ValidationError
from tsunagu.core.models import Workspace
from tsunagu.core.permissions import Perm, actor_label, authorize
from tsunagu.core.services import audit_record
from tsunagu.messaging.broadcast_audience import audience_kind, audience_rows
from tsunagu.messaging.models import (
    Attempt,
    Broadcast,
    BroadcastRecipient,
    Communication,
    CommunicationVersion,
    Delivery,
    DeliveryEvent,
    Send,
)

CHUNK = 1000
MAX_AHEAD = dt.timedelta(days=366)
# Work held by a pause is pushed this far ahead (and brought back on resume, minus nothing: the gaps the
# throttle put between deliveries are kept).
HOLD = dt.timedelta(days=365 * 100)
# Who may run campaigns: operators and up (``Perm.COMMUNICATIONS``); agents send one-to-one messages only.
PERM = Perm.COMMUNICATIONS


def _clean_send_at(value: Any, now: dt.datetime) -> dt.datetime:
    if value is None:
        return now
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError("must be an ISO 8601 date and time", field="send_at") from None
    if not isinstance(value, dt.datetime):
        raise ValidationError("must be an ISO 8601 date and time", field="send_at")
    if value.tzinfo is None:
        raise ValidationError("must have a time zone (2026-12-24T10:00:00+09:00)", field="send_at")
    if value > now + MAX_AHEAD:
        raise ValidationError("must be within a year from now", field="send_at")
    return max(value, now)


def broadcast_create(
    *,
    workspace: Workspace,
    communication: str,
    audience: Any,
    actor: Any,
    policy: Any = None,
    send_at: Any = None,
    data: Any = None,
    name: str = "",
) -> Broadcast:
    """Record a broadcast of ``communication`` (its key) to ``audience`` — ``{"customer_ids": [...]}``,
    ``{"user_ids": [...]}`` or ``{"csv": "email,coupon\\n..."}`` (docs/broadcasts.md) — with ``policy`` (else
    the communication's), at ``send_at`` (else now), ``data`` for every recipient's template (a CSV row's
    other columns are added per recipient). Operators and up (``Perm.COMMUNICATIONS``).

    One transaction: the broadcast, its recipients (written in chunks of ``CHUNK``) and the audit entry;
    a bad recipient anywhere rolls it all back with a ``ValidationError`` naming it
    (``audience.user_ids[3]``, ``audience.csv``: "line 7: …"). The policy is resolved once, here, as a send
    would resolve it; the sends themselves are made by the worker. Raises ``NotFound`` (communication)."""
    from tsunagu.messaging.policy import policy_resolve
    from tsunagu.messaging.render import variant_channels
    from tsunagu.messaging.services import _clean_data

    authorize(actor=actor, workspace=workspace, perm=PERM)
    if not isinstance(communication, str) or not communication:
        raise ValidationError("must be a communication key", field="communication")
    comm = Communication.objects.filter(workspace=workspace, key=communication).first()
    if comm is None:
        raise NotFound(f"no communication with key {communication!r}", field="communication")
    version = CommunicationVersion.objects.get(communication=comm, number=comm.current_version)
    resolved = policy_resolve(override=policy, stored=comm.policy, channels=variant_channels(list(version.variants)))
    data = _clean_data(data)
    kind = audience_kind(audience)
    segment_key = ""
    if kind == "segment":
        from tsunagu.segments.selectors import segment_get

        try:
            segment_key = segment_get(workspace=workspace, key=audience["segment"].strip()).key
        except NotFound as exc:
            raise NotFound(exc.message, field="audience.segment") from None
    if not isinstance(name, str) or len(name) > 200:
        raise ValidationError("must be a string of at most 200 characters", field="name")
    now = clock.now()
    when = _clean_send_at(send_at, now)
    with transaction.atomic():
        broadcast = Broadcast.objects.create(
            workspace=workspace,
            communication=comm,
            version=version,
            name=name.strip() or comm.name,
            policy=resolved,
            data=data,
            status=Broadcast.Status.SCHEDULED,
            send_at=when,
            actor=actor_label(actor)[:200],
            created_at=now,
            updated_at=now,
            audience_segment=segment_key,
        )
        total = 0
        chunk: list[BroadcastRecipient] = []
        # A segment's members are listed when expansion starts (broadcast_audience.audience_snapshot).
        for kind, ref, row_data in audience_rows(audience) if not segment_key else ():
            total += 1
            chunk.append(BroadcastRecipient(broadcast=broadcast, position=total, kind=kind, ref=ref, data=row_data))
            if len(chunk) >= CHUNK:
                BroadcastRecipient.objects.bulk_create(chunk)
                chunk = []
        if chunk:
            BroadcastRecipient.objects.bulk_create(chunk)
        broadcast.total = total
        broadcast.save(update_fields=["total"])
        audit_record(
            workspace=workspace, actor=actor, action="broadcast.created", target=f"broadcast {broadcast.pk}",
            data={"communication": comm.key, "recipients": total, "send_at": when.isoformat(),
                  **({"segment": segment_key} if segment_key else {})},
        )
    return broadcast


def _open_sends(broadcast: Broadcast) -> QuerySet[Send]:
    """The broadcast's sends that have not been taken to any channel yet (no attempt made)."""
    made = Attempt.objects.filter(send=OuterRef("pk")).exclude(status=Attempt.Status.SKIPPED)
    return Send.objects.filter(broadcast=broadcast, ended_at__isnull=True).exclude(Exists(made))


def _waiting_deliveries(broadcast: Broadcast, now: dt.datetime) -> QuerySet[Delivery]:
    """The broadcast's deliveries no worker holds and none has handed over (``queued``, lease free)."""
    return Delivery.objects.filter(send__broadcast=broadcast, status=Delivery.Status.QUEUED).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    )


def _locked(broadcast: Broadcast) -> Broadcast:
    return Broadcast.objects.select_for_update().get(pk=broadcast.pk)


def broadcast_pause(*, broadcast: Broadcast, actor: Any) -> Broadcast:
    """Stop expanding the broadcast and hold what has not gone out: sends not yet taken to a channel, and
    queued deliveries no worker holds, are moved out of the workers' reach (their due times are kept, to be
    brought back by ``broadcast_resume``). Messages a worker is handing over at that moment still go — at
    most the worker's current batch. One transaction; a broadcast already done or cancelled raises
    ``ValidationError``; pausing a paused broadcast changes nothing."""
    authorize(actor=actor, workspace=broadcast.workspace, perm=PERM)
    now = clock.now()
    with transaction.atomic():
        current = _locked(broadcast)
        if current.status == Broadcast.Status.PAUSED:
            return current
        if current.status in (Broadcast.Status.DONE, Broadcast.Status.CANCELLED):
            raise ValidationError(f"the broadcast is {current.status}", field="status")
        _open_sends(current).filter(due_at__isnull=False).update(due_at=F("due_at") + HOLD)
        _waiting_deliveries(current, now).update(due_at=F("due_at") + HOLD)
        current.status, current.paused_at, current.updated_at = Broadcast.Status.PAUSED, now, now
        current.save(update_fields=["status", "paused_at", "updated_at"])
        audit_record(workspace=current.workspace, actor=actor, action="broadcast.paused",
                     target=f"broadcast {current.pk}")
    return current


def broadcast_resume(*, broadcast: Broadcast, actor: Any) -> Broadcast:
    """Let a paused broadcast go on where it stopped: the held sends and deliveries are due again, shifted
    by the time the pause lasted (so a throttled channel keeps its pace), and expansion continues. One
    transaction; only a paused broadcast can be resumed (``ValidationError``)."""
    authorize(actor=actor, workspace=broadcast.workspace, perm=PERM)
    now = clock.now()
    with transaction.atomic():
        current = _locked(broadcast)
        if current.status != Broadcast.Status.PAUSED:
            raise ValidationError(f"the broadcast is {current.status}, not paused", field="status")
        paused = now - (current.paused_at or now)
        back = HOLD - paused
        held = Q(due_at__gt=now + HOLD - dt.timedelta(days=365))
        _open_sends(current).filter(held).update(due_at=F("due_at") - back)
        _waiting_deliveries(current, now).filter(held).update(due_at=F("due_at") - back)
        current.status = Broadcast.Status.RUNNING if current.started_at else Broadcast.Status.SCHEDULED
        current.paused_at, current.updated_at, current.lease_until = None, now, None
        current.save(update_fields=["status", "paused_at", "updated_at", "lease_until"])
        audit_record(workspace=current.workspace, actor=actor, action="broadcast.resumed",
                     target=f"broadcast {current.pk}")
    return current


def broadcast_cancel(*, broadcast: Broadcast, actor: Any) -> Broadcast:
    """End the broadcast: no more sends are made, sends not yet taken to a channel end ``cancelled``, and
    queued deliveries no worker holds are taken back (failed ``cancelled: …``, their send ``cancelled``).
    Messages already handed over, or being handed over, are not recalled. One transaction; cancelling a
    done broadcast raises ``ValidationError``, a cancelled one changes nothing."""
    authorize(actor=actor, workspace=broadcast.workspace, perm=PERM)
    now = clock.now()
    why = "cancelled: the broadcast was cancelled"
    with transaction.atomic():
        current = _locked(broadcast)
        if current.status == Broadcast.Status.CANCELLED:
            return current
        if current.status == Broadcast.Status.DONE:
            raise ValidationError("the broadcast is done", field="status")
        waiting = _waiting_deliveries(current, now)
        taken = list(waiting.values_list("pk", "send_id", "workspace_id"))
        for start in range(0, len(taken), CHUNK):
            part = taken[start:start + CHUNK]
            ids = [pk for pk, _, _ in part]
            Delivery.objects.filter(pk__in=ids, status=Delivery.Status.QUEUED).update(
                status=Delivery.Status.FAILED, reason=why, lease_until=None, updated_at=now
            )
            DeliveryEvent.objects.bulk_create(
                # Not the customer's doing: kept for the record, off the timeline.
                [DeliveryEvent(delivery_id=pk, workspace_id=ws, status="failed", at=now, reason=why, logged=True)
                 for pk, _, ws in part]
            )
            Attempt.objects.filter(delivery_id__in=ids).update(reason="cancelled", ended_at=now)
            Send.objects.filter(pk__in=[s for _, s, _ in part], ended_at__isnull=True).update(
                status=Send.Status.CANCELLED, ended_at=now, due_at=None, updated_at=now
            )
        _open_sends(current).update(status=Send.Status.CANCELLED, ended_at=now, due_at=None, updated_at=now)
        current.status, current.updated_at, current.finished_at = Broadcast.Status.CANCELLED, now, now
        current.lease_until = None
        current.save(update_fields=["status", "updated_at", "finished_at", "lease_until"])
        audit_record(workspace=current.workspace, actor=actor, action="broadcast.cancelled",
                     target=f"broadcast {current.pk}", data={"deliveries_taken_back": len(taken)})
    return current


# --- reads --------------------------------------------------------------------------------------------


def broadcast_get(*, workspace: Workspace, broadcast_id: int) -> Broadcast:
    """The broadcast of this workspace; ``NotFound`` for another workspace's or none."""
    found = Broadcast.objects.filter(workspace=workspace, pk=broadcast_id).select_related("communication").first()
    if found is None:
        raise NotFound("no such broadcast", field="id")
    return found


def broadcast_list(*, workspace: Workspace, limit: int = 50, status: str | None = None) -> list[Broadcast]:
    """The workspace's broadcasts, newest first."""
    rows = Broadcast.objects.filter(workspace=workspace).select_related("communication")
    if status:
        rows = rows.filter(status=status)
    return list(rows.order_by("-created_at", "-id")[: max(1, min(limit, 500))])


_REACHED = (Delivery.Status.SENT, Delivery.Status.DELIVERED)
_FAILOVER_REASONS = ("failed", "bounced", "not_delivered", "not_read")


def broadcast_summary(broadcast: Broadcast) -> dict[str, Any]:
    """What the broadcast has done so far, in a few aggregate queries (never a loop over its sends):

    ``total`` recipients listed; ``expanded`` of them looked at; ``sends`` made; ``sent`` sends of which a
    message was handed to a provider (``delivered``: and reported delivered); ``failed_over`` sends that
    moved to a later channel after a message failed, bounced or was not delivered/read in time;
    ``skipped`` {reason: n}: sends that reached no channel, by the reason of their last step, plus listed
    recipients that became no send (``unknown_recipient``: no such customer; ``duplicate``: listed twice);
    ``undeliverable`` sends whose policy ran out after trying; ``cancelled``; ``pending`` recipients not
    yet expanded plus sends with nothing handed over yet and not ended; ``by_channel`` {channel: sends
    handed over on it}."""
    sends = Send.objects.filter(broadcast=broadcast)
    by_status = dict(sends.values_list("status").annotate(n=Count("id")).order_by())
    deliveries = Delivery.objects.filter(send__broadcast=broadcast)
    reached = deliveries.filter(status__in=_REACHED)
    sent = reached.values("send_id").distinct().count()
    delivered = deliveries.filter(status=Delivery.Status.DELIVERED).values("send_id").distinct().count()
    by_channel = dict(
        reached.values_list("channel_type").annotate(n=Count("send_id", distinct=True)).order_by()
    )
    failed_over = (
        Attempt.objects.filter(send__broadcast=broadcast, reason__in=_FAILOVER_REASONS)
        .exclude(status=Attempt.Status.SKIPPED)
        .values("send_id").distinct().count()
    )
    last_reason = Attempt.objects.filter(send=OuterRef("pk")).order_by("-step", "-id").values("reason")[:1]
    skipped: dict[str, int] = dict(
        sends.filter(status=Send.Status.SKIPPED)
        .annotate(why=Subquery(last_reason)).values_list("why").annotate(n=Count("id")).order_by()
    )
    for reason, n in (broadcast.unmatched or {}).items():
        skipped[reason] = skipped.get(reason, 0) + int(n)
    open_total = sends.filter(ended_at__isnull=True).count()
    open_reached = reached.filter(send__ended_at__isnull=True).values("send_id").distinct().count()
    made = sum(by_status.values())
    return {
        "total": broadcast.total,
        "expanded": broadcast.cursor,
        "sends": made,
        "sent": sent,
        "delivered": delivered,
        "failed_over": failed_over,
        "skipped": dict(sorted(skipped.items())),
        "undeliverable": by_status.get(Send.Status.UNDELIVERABLE, 0),
        "cancelled": by_status.get(Send.Status.CANCELLED, 0),
        "pending": (broadcast.total - broadcast.cursor) + max(0, open_total - open_reached),
        "by_channel": dict(sorted(by_channel.items())),
    }
