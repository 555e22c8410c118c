"""Messaging's work in ``tsunagu worker``: execute due deliveries, publish delivery events to the timeline."""

from __future__ import annotations

import datetime as dt
import threading
import time

from django.conf import settings

from tsunagu.core.worker import RECURRING, worker_task
from tsunagu.messaging import (
    archive_export,  # noqa: F401 - registers the messaging.retention job handler
    broadcast_expand,  # noqa: F401 - registers the messaging.broadcasts worker task
    segment_webhooks,  # noqa: F401 - registers the messaging.segment_webhooks worker task
)
from tsunagu.messaging.delivery import Runner
from tsunagu.messaging.failover import sends_run_due
from tsunagu.messaging.inbound import bounce_mailboxes_poll
from tsunagu.messaging.timeline import delivery_events_publish, send_events_publish

# The archive's retention (``archive_export.archive_retention_apply`` per workspace), once an hour.
RECURRING["messaging.retention"] = dt.timedelta(hours=1)

_runners: dict[str, Runner] = {}
_lock = threading.Lock()


def runner_for(worker_id: str) -> Runner:
    with _lock:
        runner = _runners.get(worker_id)
        if runner is None:
            runner = _runners[worker_id] = Runner(worker_id=worker_id)
        return runner


@worker_task("messaging.sends")
def advance_sends(worker_id: str) -> int:
    # Before the deliveries: a step made here is sent in the same pass of the worker.
    return sends_run_due(worker_id=worker_id, limit=500)


@worker_task("messaging.deliveries")
def run_deliveries(worker_id: str) -> int:
    runner = runner_for(worker_id)
    done = runner.run_due(limit=100)
    if not done:
        runner.close()  # idle: do not hold SMTP connections open between bursts
    return done


@worker_task("messaging.timeline")
def publish_timeline(worker_id: str) -> int:
    return delivery_events_publish(limit=500) + send_events_publish(limit=500)


_last_poll = [0.0]


@worker_task("messaging.bounce_mailboxes")
def poll_bounces(worker_id: str) -> int:
    # Every TSUNAGU_BOUNCE_POLL seconds per worker; several workers reading one mailbox is harmless (each
    # report is applied once, by its receipt).
    if time.monotonic() - _last_poll[0] < float(settings.TSUNAGU_BOUNCE_POLL):
        return 0
    _last_poll[0] = time.monotonic()
    bounce_mailboxes_poll()
    return 0
