"""Segment membership webhooks: entries and exits POSTed to ``Segment.webhook_url``, signed per Standard
Webhooks (docs/segments-out.md).

Two worker stages, each safe with several workers:

1. ``segment_webhook_batches_make`` takes the changes the membership engine marked ``webhook_pending`` and
   turns them, per segment and in id order, into batches of at most ``BATCH`` changes. The body and the
   ``webhook-id`` are fixed in the batch, so every retry is the same message. A change is taken by a
   conditional UPDATE (``webhook_pending`` true → false) in the transaction that writes the batch: if
   another worker took one of them first, the count differs and the whole transaction is rolled back.
2. ``segment_webhooks_deliver`` claims due batches with a lease — one per segment at a time, the oldest
   first, so a receiver sees a segment's batches in order — and POSTs them through ``netguard`` (private,
   loopback and link-local addresses refused unless the workspace allows private webhooks). 2xx is
   delivered; 408, 429, 5xx and network failures are retried with backoff (the receiver's ``Retry-After``
   when longer) up to ``MAX_ATTEMPTS``; anything else fails at once, with the reason kept in ``last_error``.

The signing secret is the segment's own (``SegmentWebhook``, encrypted with ``messaging.secrets``; made
on first use): the workspace has no webhook secret of its own, and a secret per receiver is what Standard
Webhooks recommends — rotating one receiver's does not touch the others.
"""

from __future__ import annotations

import datetime as dt
import http.client
import logging
import secrets as pysecrets
import time
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q
from standardwebhooks import Webhook

import tsunagu
from tsunagu.core import clock
from tsunagu.core.permissions import Perm, authorize
from tsunagu.core.services import audit_record
from tsunagu.core.worker import worker_task
from tsunagu.customers.models import Customer
from tsunagu.messaging import netguard
from tsunagu.messaging.channels.webhook import secret_generate
from tsunagu.messaging.models import SegmentWebhook, SegmentWebhookBatch
from tsunagu.messaging.secrets import secrets_decrypt, secrets_encrypt
from tsunagu.segments.models import MembershipChange, Segment

log = logging.getLogger(__name__)

BATCH = 100  # changes per POST
TAKE = 2000  # pending changes looked at per pass
MAX_ATTEMPTS = 8
# Seconds to wait after the n-th failed attempt (then the last, repeated): about a day in all.
BACKOFF = (5, 30, 120, 600, 1800, 3600, 4 * 3600, 12 * 3600)
MAX_RETRY_AFTER = 24 * 3600
TIMEOUT = 10.0
BUDGET = 5.0  # seconds of POSTing per worker pass (one batch at least)
USER_AGENT = f"tsunagu/{tsunagu.__version__} (segment webhook)"
EVENT_TYPE = "segment.membership"


class _Taken(Exception):
    """Another worker took some of the changes first: roll this batch-making back."""


# -- the secret -------------------------------------------------------------------------------------------

def _secret_of(segment: Segment) -> str:
    """The segment's signing secret, made (and stored encrypted) on first use."""
    row = SegmentWebhook.objects.filter(segment=segment).first()
    if row is None:
        with transaction.atomic():
            row, _ = SegmentWebhook.objects.get_or_create(
                segment=segment, defaults={"secret": secrets_encrypt({"secret": secret_generate()})})
    return str(secrets_decrypt(row.secret)["secret"])


def segment_webhook_secret(*, segment: Segment, actor: Any, rotate: bool = False) -> str:
    """The segment's signing secret (``whsec_…``) for whoever may edit segments (``Perm.SEGMENTS``), made
    when there is none; ``rotate`` replaces it (audited): batches sent from then on, retries included,
    are signed with the new one. Raises PermissionDenied."""
    authorize(actor=actor, workspace=segment.workspace, perm=Perm.SEGMENTS)
    if not rotate:
        return _secret_of(segment)
    secret = secret_generate()
    with transaction.atomic():
        now = clock.now()
        updated = SegmentWebhook.objects.filter(segment=segment).update(
            secret=secrets_encrypt({"secret": secret}), rotated_at=now)
        if not updated:
            SegmentWebhook.objects.create(segment=segment, secret=secrets_encrypt({"secret": secret}), rotated_at=now)
        audit_record(workspace=segment.workspace, actor=actor, action="segment.webhook_secret_rotated",
                     target=segment.key)
    return secret


def segment_webhook_status(*, segment: Segment) -> dict[str, Any]:
    """Batches by status and the latest failure, for the API and the console."""
    counts = dict(SegmentWebhookBatch.objects.filter(segment=segment).values_list("status")
                  .annotate(n=Count("id")).values_list("status", "n"))
    pending_changes = MembershipChange.objects.filter(segment=segment, webhook_pending=True).count()
    failed = (SegmentWebhookBatch.objects.filter(segment=segment).exclude(last_error="")
              .order_by("-id").values("webhook_id", "status", "attempts", "last_error", "next_at").first())
    return {
        "url": segment.webhook_url,
        "batches": {s: int(counts.get(s, 0)) for s in SegmentWebhookBatch.Status.values},
        "changes_waiting": pending_changes,
        "last_error": failed,
    }


# -- batches ----------------------------------------------------------------------------------------------

def _body(segment_key: str, changes: list[MembershipChange], users: dict[int, str]) -> str:
    return orjson.dumps({
        "type": EVENT_TYPE,
        "segment": segment_key,
        "changes": [
            {"customer_id": c.customer_id, "user_id": users.get(c.customer_id) or None, "entered": c.entered,
             "at": c.at.isoformat(), "reason": c.reason}
            for c in changes
        ],
    }).decode()


def _pending(limit: int) -> list[MembershipChange]:
    rows = MembershipChange.objects.filter(webhook_pending=True).order_by("id").select_related("segment")
    if connection.vendor == "postgresql":
        rows = rows.select_for_update(skip_locked=True, of=("self",))
    return list(rows[:limit])


def segment_webhook_batches_make(*, limit: int = TAKE, now: dt.datetime | None = None) -> int:
    """Turn up to ``limit`` pending changes into batches (per segment, in id order, ``BATCH`` a batch);
    returns how many changes were taken. One transaction; 0 when another worker took them first. Changes
    of a segment whose webhook_url has been removed meanwhile are dropped (no longer pending)."""
    # A read first, outside a transaction: on SQLite a transaction takes the write lock up front, and most
    # passes of the worker find nothing to do.
    if not MembershipChange.objects.filter(webhook_pending=True).exists():
        return 0
    try:
        with transaction.atomic():
            taken = _pending(limit)
            if not taken:
                return 0
            ids = [c.pk for c in taken]
            if MembershipChange.objects.filter(pk__in=ids, webhook_pending=True).update(
                    webhook_pending=False) != len(ids):
                raise _Taken
            users = dict(Customer.objects.filter(pk__in={c.customer_id for c in taken})
                         .values_list("pk", "user_id"))
            by_segment: dict[int, list[MembershipChange]] = {}
            for change in taken:
                by_segment.setdefault(change.segment_id, []).append(change)
            now = now or clock.now()
            batches = []
            for changes in by_segment.values():
                segment = changes[0].segment
                if not segment.webhook_url:
                    continue
                for i in range(0, len(changes), BATCH):
                    part = changes[i:i + BATCH]
                    batches.append(SegmentWebhookBatch(
                        workspace_id=segment.workspace_id, segment=segment,
                        webhook_id=f"msg_seg{segment.pk}_{pysecrets.token_hex(12)}",
                        body=_body(segment.key, part, users), changes=len(part), next_at=now, created_at=now,
                    ))
            SegmentWebhookBatch.objects.bulk_create(batches)
            return len(ids)
    except _Taken:
        return 0


# -- delivery ---------------------------------------------------------------------------------------------

def _lease(now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=float(settings.TSUNAGU_DELIVERY_LEASE))


def _claim(*, worker_id: str, now: dt.datetime, limit: int) -> list[int]:
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    older = SegmentWebhookBatch.objects.filter(segment_id=OuterRef("segment_id"), id__lt=OuterRef("id"),
                                               status=SegmentWebhookBatch.Status.PENDING)
    due = (SegmentWebhookBatch.objects.filter(free, status=SegmentWebhookBatch.Status.PENDING, next_at__lte=now)
           .exclude(Exists(older)).order_by("next_at", "id"))
    if not due.exists():  # as above: no write lock for a pass with nothing due
        return []
    with transaction.atomic():
        if connection.vendor == "postgresql":
            due = due.select_for_update(skip_locked=True)
        ids = list(due.values_list("pk", flat=True)[:limit])
        if ids:
            SegmentWebhookBatch.objects.filter(pk__in=ids).filter(free).update(locked_by=worker_id,
                                                                               lease_until=_lease(now))
    return ids


def _post(batch: SegmentWebhookBatch, segment: Segment, now: dt.datetime) -> tuple[bool, bool, str, float | None]:
    """(delivered, retry, reason, retry_after) of one POST."""
    secret = _secret_of(segment)
    stamp = now.replace(microsecond=0)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": batch.webhook_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=batch.webhook_id, timestamp=stamp, data=batch.body),
    }
    url = segment.webhook_url
    try:
        response = netguard.post(url, body=batch.body.encode(), headers=headers,
                                 allow_private=segment.workspace.allow_private_webhooks, timeout=TIMEOUT,
                                 max_redirects=3, max_body=4096)
    except (netguard.AddressRefused, netguard.TooManyRedirects) as exc:
        return False, False, str(exc), None
    except ValueError as exc:  # a redirect to a non-HTTP location
        return False, False, f"refused: {exc}", None
    except (OSError, http.client.HTTPException) as exc:
        return False, True, f"could not reach {url}: {exc or type(exc).__name__}", None
    status = response.status
    if 200 <= status < 300:
        return True, False, "", None
    snippet = response.body[:200].decode("utf-8", "replace").strip()
    reason = f"HTTP {status} {response.reason}".strip() + (f": {snippet}" if snippet else "")
    if status in (408, 429) or status >= 500:
        return False, True, reason, netguard.retry_after_seconds(response.headers.get("retry-after"))
    return False, False, reason, None


def segment_webhook_deliver(*, batch_id: int, worker_id: str, now: dt.datetime | None = None) -> str:
    """POST one batch this worker holds and record the outcome; returns the batch's new status (or
    ``""`` when the lease was lost). The POST is outside any transaction; the outcome is written only if
    the lease is still this worker's."""
    now = now or clock.now()
    batch = (SegmentWebhookBatch.objects.filter(pk=batch_id, locked_by=worker_id,
                                                status=SegmentWebhookBatch.Status.PENDING)
             .select_related("segment__workspace").first())
    if batch is None:
        return ""
    segment = batch.segment
    attempts = batch.attempts + 1
    if not segment.webhook_url:
        delivered, retry, reason, after = False, False, "the segment has no webhook_url any more", None
    else:
        delivered, retry, reason, after = _post(batch, segment, now)
    fields: dict[str, Any] = {"attempts": attempts, "lease_until": None, "locked_by": "", "last_error": reason[:500]}
    if delivered:
        fields.update(status=SegmentWebhookBatch.Status.DELIVERED, delivered_at=now)
    elif retry and attempts < MAX_ATTEMPTS:
        wait = float(BACKOFF[min(attempts, len(BACKOFF)) - 1])
        if after is not None:
            wait = max(wait, min(after, MAX_RETRY_AFTER))
        fields.update(next_at=now + dt.timedelta(seconds=wait))
    else:
        fields.update(status=SegmentWebhookBatch.Status.FAILED)
        log.warning("segment webhook %s of %s failed after %s attempts: %s", batch.webhook_id, segment.key,
                    attempts, reason)
    SegmentWebhookBatch.objects.filter(pk=batch.pk, locked_by=worker_id).update(**fields)
    return str(fields.get("status", SegmentWebhookBatch.Status.PENDING))


def segment_webhooks_run(*, worker_id: str, now: dt.datetime | None = None, limit: int = 10,
                         budget: float = BUDGET) -> int:
    """One worker pass: make batches of pending changes, then deliver due batches — for at most
    ``budget`` seconds, so that slow receivers do not hold up the worker's other tasks (the batches not
    tried are let go for the next pass). Returns the changes taken plus the batches tried (0 lets the
    worker rest)."""
    now = now or clock.now()
    started = time.monotonic()
    done = segment_webhook_batches_make(now=now)
    claimed = _claim(worker_id=worker_id, now=now, limit=limit)
    for i, batch_id in enumerate(claimed):
        if i and time.monotonic() - started > budget:
            SegmentWebhookBatch.objects.filter(pk__in=claimed[i:], locked_by=worker_id).update(
                lease_until=None, locked_by="")
            break
        segment_webhook_deliver(batch_id=batch_id, worker_id=worker_id, now=now)
        done += 1
    return done


@worker_task("messaging.segment_webhooks")
def deliver_segment_webhooks(worker_id: str) -> int:
    return segment_webhooks_run(worker_id=worker_id)
