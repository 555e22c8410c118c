"""The worker's part of broadcasts: expand due broadcasts into sends, a chunk at a time, and see them done.

Exactly once: a chunk's sends are inserted in the same transaction as the broadcast's ``cursor`` moving
past the chunk (and the move is conditional on the cursor the worker read), so a worker killed anywhere
leaves either the whole chunk and the new cursor or neither; the next worker to claim the broadcast —
its lease expired — goes on from the cursor. Each send also carries the idempotency key
``broadcast:<id>:<position>``, unique in the workspace: even a second expansion of a position could not
insert a second send. A customer listed twice (two emails of one profile, a merged profile) gets one send:
the chunk's customers are checked against the broadcast's sends so far.

Memory stays flat: a worker holds one chunk (``CHUNK`` recipients) at a time, whatever the audience size.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from tsunagu.core import clock
from tsunagu.core.worker import worker_task
from tsunagu.customers.models import Customer, Identity
from tsunagu.messaging.broadcast_audience import audience_snapshot
from tsunagu.messaging.broadcasts import CHUNK
from tsunagu.messaging.models import Broadcast, BroadcastRecipient, CommunicationVersion, Delivery, Send

# How often a fully expanded broadcast is looked at to see whether all its sends have ended.
RECHECK = dt.timedelta(seconds=2)
# Sends are taken in due order: a broadcast expanded all at once would put its whole audience in front of
# the order confirmation a customer is waiting for. So a chunk is expanded only while fewer than this many
# sends (of anyone) are due and waiting for the policy engine.
BACKLOG = 2000
_MERGE_HOPS = 5


def _lease(now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=float(settings.TSUNAGU_DELIVERY_LEASE))


def _claim(*, worker_id: str, limit: int, now: dt.datetime) -> list[int]:
    due = Q(status__in=[Broadcast.Status.SCHEDULED, Broadcast.Status.RUNNING], send_at__lte=now)
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    with transaction.atomic():
        rows = Broadcast.objects.filter(due & free).order_by("send_at", "id")
        if connection.vendor == "postgresql":
            ids = list(rows.select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit])
        else:
            ids = list(rows.values_list("pk", flat=True)[:limit])
        if ids:
            Broadcast.objects.filter(pk__in=ids).update(locked_by=worker_id, lease_until=_lease(now))
    return ids


def _live(workspace_id: int, ids: set[int]) -> dict[int, int]:
    """Each customer id of this workspace to the live profile it is now (a merged-away id leads to its
    survivor); ids of no profile are left out."""
    out: dict[int, int] = {}
    at: dict[int, list[int]] = {i: [i] for i in ids}  # where we are -> the ids that led here
    for _ in range(_MERGE_HOPS):
        if not at:
            break
        rows = Customer.objects.filter(workspace_id=workspace_id, pk__in=list(at)).values_list("pk", "merged_into_id")
        nxt: dict[int, list[int]] = {}
        for pk, merged in rows:
            if merged is None:
                out.update(dict.fromkeys(at[pk], pk))
            else:
                nxt.setdefault(merged, []).extend(at[pk])
        at = nxt
    return out


def _resolve(workspace_id: int, rows: list[tuple[int, str, str, Any]]) -> dict[int, int]:
    """position -> live customer id, for the chunk's recipients that are known; in a few bulk queries."""
    by_kind: dict[str, list[tuple[int, str]]] = {}
    for position, kind, ref, _ in rows:
        by_kind.setdefault(kind, []).append((position, ref))
    found: dict[int, int] = {}  # position -> customer id as listed or found
    for kind, items in by_kind.items():
        if kind == "customer_id":
            for position, ref in items:
                found[position] = int(ref)
            continue
        refs = {ref for _, ref in items}
        owners = dict(
            Identity.objects.filter(workspace_id=workspace_id, type=kind, value__in=refs).values_list(
                "value", "customer_id"
            )
        )
        for position, ref in items:
            if ref in owners:
                found[position] = owners[ref]
    live = _live(workspace_id, set(found.values()))
    return {position: live[cid] for position, cid in found.items() if cid in live}


def _count_unmatched(broadcast_id: int, counts: Counter[str]) -> None:
    if not counts:
        return
    row = Broadcast.objects.get(pk=broadcast_id)
    merged = dict(row.unmatched or {})
    for reason, n in counts.items():
        merged[reason] = int(merged.get(reason, 0)) + n
    Broadcast.objects.filter(pk=broadcast_id).update(unmatched=merged)


def broadcast_expand_chunk(*, broadcast_id: int, worker_id: str, now: dt.datetime | None = None) -> int:
    """Expand the next ``CHUNK`` recipients of a broadcast this worker holds into queued sends, due now, in
    one transaction with the cursor's move. Returns how many sends were made (0: nothing to do, or the
    broadcast was paused, cancelled or taken over meanwhile)."""
    now = now or clock.now()
    with transaction.atomic():
        b = (
            Broadcast.objects.filter(
                pk=broadcast_id, locked_by=worker_id,
                status__in=[Broadcast.Status.SCHEDULED, Broadcast.Status.RUNNING],
            )
            .select_related("communication")
            .first()
        )
        if b is not None and b.audience_segment and b.snapshot_at is None and not audience_snapshot(b):
            # An empty segment: nothing to expand; running, so that the finish check ends it as done.
            Broadcast.objects.filter(pk=b.pk).update(status=Broadcast.Status.RUNNING, started_at=now)
            return 0
        if b is None or b.cursor >= b.total:
            return 0
        waiting = Send.objects.filter(due_at__isnull=False, due_at__lte=now).values_list("pk", flat=True)
        if len(waiting[:BACKLOG]) >= BACKLOG:
            return 0  # the next pass, once the engine has caught up
        rows = list(
            BroadcastRecipient.objects.filter(broadcast=b, position__gt=b.cursor)
            .order_by("position")
            .values_list("position", "kind", "ref", "data")[:CHUNK]
        )
        end = rows[-1][0] if rows else b.total
        moved = Broadcast.objects.filter(pk=b.pk, cursor=b.cursor, locked_by=worker_id).update(
            cursor=end,
            status=Broadcast.Status.RUNNING,
            started_at=b.started_at or now,
            lease_until=_lease(now),
            updated_at=now,
        )
        if not moved:
            return 0
        customers = _resolve(b.workspace_id, rows)
        already = set(
            Send.objects.filter(broadcast=b, customer_id__in=set(customers.values())).values_list(
                "customer_id", flat=True
            )
        )
        version = b.version or CommunicationVersion.objects.get(
            communication_id=b.communication_id, number=b.communication.current_version
        )
        unmatched: Counter[str] = Counter()
        sends: list[Send] = []
        for position, _kind, _ref, data in rows:
            customer_id = customers.get(position)
            if customer_id is None:
                unmatched["unknown_recipient"] += 1
                continue
            if customer_id in already:
                unmatched["duplicate"] += 1
                continue
            already.add(customer_id)
            sends.append(
                Send(
                    workspace_id=b.workspace_id,
                    communication_id=b.communication_id,
                    version=version,
                    customer_id=customer_id,
                    data={**(b.data or {}), **(data or {})},
                    idempotency_key=f"broadcast:{b.pk}:{position}",
                    status=Send.Status.QUEUED,
                    actor=b.actor,
                    policy=b.policy or {},
                    due_at=now,
                    broadcast_id=b.pk,
                    created_at=now,
                    updated_at=now,
                )
            )
        Send.objects.bulk_create(sends, batch_size=500)
        _count_unmatched(b.pk, unmatched)
    return len(sends)


def broadcast_finish_if_done(*, broadcast_id: int, worker_id: str, now: dt.datetime | None = None) -> bool:
    """Mark a fully expanded broadcast ``done`` once none of its sends has work left (none due, no
    delivery queued or being sent). Returns whether it is done; if not, it is looked at again after
    ``RECHECK``."""
    now = now or clock.now()
    with transaction.atomic():
        b = Broadcast.objects.filter(pk=broadcast_id, locked_by=worker_id, status=Broadcast.Status.RUNNING).first()
        if b is None or b.cursor < b.total or (b.audience_segment and b.snapshot_at is None):
            return False
        busy = (
            Send.objects.filter(broadcast=b, ended_at__isnull=True, due_at__isnull=False).exists()
            or Delivery.objects.filter(
                send__broadcast=b, status__in=[Delivery.Status.QUEUED, Delivery.Status.SENDING]
            ).exists()
        )
        if busy:
            Broadcast.objects.filter(pk=b.pk, locked_by=worker_id).update(lease_until=now + RECHECK, locked_by="")
            return False
        Broadcast.objects.filter(pk=b.pk).update(
            status=Broadcast.Status.DONE, finished_at=now, updated_at=now, lease_until=None, locked_by=""
        )
    return True


def broadcasts_run_due(*, worker_id: str, limit: int = 4) -> int:
    """Claim up to ``limit`` due broadcasts and expand one chunk of each (or see whether an expanded one is
    done). Returns how many sends were made: 0 lets the worker rest."""
    now = clock.now()
    made = 0
    for broadcast_id in _claim(worker_id=worker_id, limit=limit, now=now):
        n = broadcast_expand_chunk(broadcast_id=broadcast_id, worker_id=worker_id, now=now)
        made += n
        if not n:
            broadcast_finish_if_done(broadcast_id=broadcast_id, worker_id=worker_id, now=now)
        # Whatever happened, let the next pass of any worker take it (a finish check left its own lease).
        Broadcast.objects.filter(pk=broadcast_id, locked_by=worker_id).update(lease_until=None, locked_by="")
    return made


@worker_task("messaging.broadcasts")
def expand_broadcasts(worker_id: str) -> int:
    return broadcasts_run_due(worker_id=worker_id)


def broadcast_run_inline(*, broadcast_id: int, worker_id: str, passes: int = 10_000) -> bool:
    """Run one broadcast to its end in this thread — expansion, the policy engine, the deliveries — as
    the worker would, for the demo loader (which has no worker yet). Returns whether it is done."""
    from tsunagu.messaging.delivery import Runner
    from tsunagu.messaging.failover import sends_run_due

    runner = Runner(worker_id=worker_id)
    try:
        for _ in range(passes):
            now = clock.now()
            Broadcast.objects.filter(pk=broadcast_id).update(locked_by=worker_id, lease_until=_lease(now))
            made = broadcast_expand_chunk(broadcast_id=broadcast_id, worker_id=worker_id, now=now)
            busy = made + sends_run_due(worker_id=worker_id) + runner.run_due()
            if not busy and broadcast_finish_if_done(broadcast_id=broadcast_id, worker_id=worker_id):
                return True
    finally:
        runner.close()
        Broadcast.objects.filter(pk=broadcast_id, locked_by=worker_id).update(lease_until=None, locked_by="")
    return False
