"""The archive out of tsunagu: JSON Lines of deliveries with their events, the original .eml of an email,
and the workspace's retention (deliveries older than ``Workspace.message_retention_days`` deleted, logged).

Importing this module registers the ``messaging.retention`` job (``archive_retention_job``).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any, BinaryIO

import orjson
from django.db import transaction
from django.db.models import Count

from tsunagu.core import clock
from tsunagu.core.errors import ValidationError
from tsunagu.core.jobs import job_handler
from tsunagu.core.models import Job, Workspace
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import audit_record
from tsunagu.messaging.archive import archive_filters, archive_page, archive_unindex
from tsunagu.messaging.models import ChannelType, Communication, Delivery, DeliveryEvent, Send

log = logging.getLogger(__name__)

EXPORT_PAGE = 200
RETENTION_CHUNK = 2000
# A delivery still on its way is the worker's, not the archive's: retention leaves it alone.
_IN_FLIGHT = (Delivery.Status.QUEUED, Delivery.Status.SENDING)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def delivery_record(delivery: Delivery, events: list[DeliveryEvent], communication_key: str) -> dict[str, Any]:
    """One delivery as exported: everything the archive keeps of it, ``raw`` (the .eml bytes) in base64."""
    raw = bytes(delivery.raw) if delivery.raw is not None else None
    return {
        "id": delivery.pk,
        "key": delivery.key,
        "send_id": delivery.send_id,
        "customer_id": delivery.customer_id,
        "communication": communication_key,
        "version_id": delivery.version_id,
        "channel": delivery.channel_type,
        "channel_id": delivery.channel_id,
        "topic": delivery.topic,
        "locale": delivery.locale,
        "address": delivery.address,
        "status": delivery.status,
        "reason": delivery.reason,
        "provider_id": delivery.provider_id,
        "subject": delivery.subject,
        "body_text": delivery.body_text,
        "content": delivery.content,
        "headers": delivery.headers,
        "raw_base64": base64.b64encode(raw).decode("ascii") if raw is not None else None,
        "created_at": _iso(delivery.created_at),
        "sent_at": _iso(delivery.sent_at),
        "opened_at": _iso(delivery.opened_at),
        "clicked_at": _iso(delivery.clicked_at),
        "read_at": _iso(delivery.read_at),
        "events": [
            {"status": e.status, "at": _iso(e.at), "reason": e.reason, "data": e.data, "machine": e.machine}
            for e in events
        ],
    }


def _pages(f: dict[str, Any]) -> Iterator[list[Delivery]]:
    before = None
    while True:
        page = archive_page({**f, "before_id": before, "limit": EXPORT_PAGE})
        if not page:
            return
        yield page
        if len(page) < EXPORT_PAGE:
            return
        before = page[-1].pk


def archive_export_jsonl(
    *,
    workspace: Workspace,
    out: BinaryIO,
    q: str | None = None,
    customer_id: int | None = None,
    channel: str | None = None,
    status: str | None = None,
    communication_key: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> int:
    """Write the deliveries that ``archive_search`` finds with the same filters — all of them, newest
    first — to ``out``, one JSON object per line (UTF-8) with its events in time order; returns how many.

    Streams page by page (200 deliveries and their events in memory at a time). Read-only; a delivery
    added while the export runs appears only if it is older than the page being written. Bad filters are
    ValidationError before anything is written."""
    f = archive_filters(
        workspace=workspace, q=q, customer_id=customer_id, channel=channel, status=status,
        communication_key=communication_key, since=since, until=until,
    )
    written = 0
    keys: dict[int, str] = {}
    for page in _pages(f):
        ids = [d.pk for d in page]
        events: dict[int, list[DeliveryEvent]] = {pk: [] for pk in ids}
        for e in DeliveryEvent.objects.filter(delivery_id__in=ids).order_by("at", "pk"):
            events[e.delivery_id].append(e)
        missing = {d.communication_id for d in page} - keys.keys()
        if missing:
            keys.update(Communication.objects.filter(pk__in=missing).values_list("pk", "key"))
        # ``raw`` is deferred by the search; one query per page loads it for the whole page.
        raws = dict(Delivery.objects.filter(pk__in=ids).values_list("pk", "raw"))
        for d in page:
            d.raw = raws.get(d.pk)
            out.write(orjson.dumps(delivery_record(d, events[d.pk], keys.get(d.communication_id, "")),
                                   option=orjson.OPT_APPEND_NEWLINE))
            written += 1
    return written


def archive_eml(*, delivery: Delivery) -> bytes:
    """The email exactly as it was handed to the SMTP server (RFC 5322 bytes, a ``.eml`` file).
    ValidationError (field ``delivery``) for a delivery that is not an email or has not been rendered."""
    if delivery.channel_type != ChannelType.EMAIL:
        raise ValidationError(
            f"only email deliveries have an .eml; this one is {delivery.channel_type}", field="delivery"
        )
    raw = Delivery.objects.filter(pk=delivery.pk).values_list("raw", flat=True).first()
    if not raw:
        raise ValidationError("this email has not been rendered yet", field="delivery")
    return bytes(raw)


def archive_retention_apply(*, workspace: Workspace, now: dt.datetime) -> int:
    """Delete the workspace's deliveries created more than ``message_retention_days`` before ``now`` (0:
    keep for ever) with their events and index entries, and the sends left without deliveries; returns the
    number of deliveries deleted. Deliveries still queued or sending are kept.

    Works in chunks of 2,000 deliveries, each its own transaction with its own audit entry
    (``messaging.retention``, actor SYSTEM, with the counts and the cutoff), so a long backlog never holds
    the database's write lock for long and every deletion that committed is logged. A crash between chunks
    leaves the rest for the next run."""
    days = workspace.message_retention_days
    if not days:
        return 0
    cutoff = now - dt.timedelta(days=days)
    total = 0
    while True:
        with transaction.atomic():
            doomed = list(
                Delivery.objects.filter(workspace=workspace, created_at__lt=cutoff)
                .exclude(status__in=_IN_FLIGHT)
                .only("pk", "workspace_id", "channel_type", "communication_id", "created_at", "subject", "body_text")
                .order_by("pk")[:RETENTION_CHUNK]
            )
            if not doomed:
                return total
            ids = [d.pk for d in doomed]
            archive_unindex(deliveries=doomed)
            events = DeliveryEvent.objects.filter(delivery_id__in=ids).delete()[0]
            send_ids = set(Delivery.objects.filter(pk__in=ids).values_list("send_id", flat=True))
            deleted = Delivery.objects.filter(pk__in=ids).delete()[1].get(Delivery._meta.label, 0)
            orphans = (
                Send.objects.filter(pk__in=send_ids).annotate(left=Count("deliveries")).filter(left=0)
                .values_list("pk", flat=True)
            )
            sends = Send.objects.filter(pk__in=list(orphans)).delete()[1].get(Send._meta.label, 0)
            audit_record(
                workspace=workspace, actor=SYSTEM, action="messaging.retention",
                target=f"{deleted} deliveries",
                data={"deliveries": deleted, "events": events, "sends": sends, "retention_days": days,
                      "cutoff": cutoff.isoformat(), "first_id": ids[0], "last_id": ids[-1]},
            )
            total += deleted
        log.info("retention: %s deleted %s deliveries created before %s", workspace.slug, deleted, cutoff)


@job_handler("messaging.retention")
def archive_retention_job(job: Job) -> None:
    """Apply every workspace's retention (or the job's workspace only, when it has one)."""
    workspaces = Workspace.objects.filter(message_retention_days__gt=0)
    if job.workspace_id is not None:
        workspaces = workspaces.filter(pk=job.workspace_id)
    now = clock.now()
    for ws in workspaces.order_by("pk"):
        archive_retention_apply(workspace=ws, now=now)


__all__ = [
    "archive_eml", "archive_export_jsonl", "archive_retention_apply", "archive_retention_job", "delivery_record",
]
