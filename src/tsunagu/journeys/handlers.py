"""Journeys in the worker: the engine's loop (a thread beside the jobs loop, woken by the applier), the job
handlers of webhook and email steps, and the worker tasks (the trait outbox, scheduled entries)."""

from __future__ import annotations

import html
import logging
import os
import socket
import threading

from django.db import close_old_connections, connection

from tsunagu.core import clock
from tsunagu.core.jobs import job_handler
from tsunagu.core.models import Job
from tsunagu.core.worker import worker_task
from tsunagu.journeys import engine
from tsunagu.journeys.outbox import trait_updates_publish, webhook_job
from tsunagu.journeys.schedule import schedules_run

log = logging.getLogger(__name__)
POLL = 0.25  # seconds: a timer fires at most this late (the applier wakes the loop for events at once)


@job_handler(engine.WEBHOOK_JOB)
def _webhook(job: Job) -> None:
    webhook_job(job)


@job_handler(engine.NOTIFY_EMAIL_JOB)
def _notify_email(job: Job) -> None:
    from tsunagu.journeys.models import Run
    from tsunagu.journeys.plans import plan_of
    from tsunagu.messaging.channels import channel_class
    from tsunagu.messaging.channels.base import Message
    from tsunagu.messaging.selectors import channel_config, channel_list

    run = Run.objects.filter(pk=job.payload["run_id"]).select_related("journey", "version", "workspace").first()
    if run is None:
        return
    raw = plan_of(run.version).steps[job.payload["step"]].raw
    row = channel_list(workspace=run.workspace).filter(type="email", enabled=True).first()
    if row is None:
        raise RuntimeError("the workspace has no enabled email channel to notify the team through")
    cls = channel_class("email")
    subject = raw.get("subject") or f"[tsunagu] {run.journey.name}"
    text = f"{raw.get('message', '')}\n\njourney: {run.journey.key} · run {run.pk} · customer {run.customer_id}"
    content = cls.finish({"subject": subject, "text": text, "html": f"<pre>{html.escape(text)}</pre>"})
    impl = cls(channel_config(row), allow_private=run.workspace.allow_private_webhooks)
    try:
        # The step's idempotency key, in the dot-atom a Message-ID's left part allows: a retry is the same mail.
        key = (job.idempotency_key or f"journey-notify-{job.pk}").replace(":", ".")
        impl.send(Message(key=key, channel_type="email",
                          topic="transactional", address=raw["email"], content=content))
    finally:
        impl.close()


@worker_task("journeys.traits")
def _traits(worker_id: str) -> int:
    # After a crash between commit and the on_commit publish.
    return trait_updates_publish(limit=1000)


@worker_task("journeys.schedules")
def _schedules(worker_id: str) -> int:
    return schedules_run(now=clock.now())


def _loop(stop: threading.Event, worker_id: str) -> None:
    try:
        while not stop.is_set():
            try:
                close_old_connections()
                claimed = engine.runs_run_due(worker_id=worker_id)
            except Exception:  # noqa: BLE001 - a transient database error must not end the loop
                log.exception("journey engine loop error")
                claimed = 0
            if not claimed:
                engine.WAKE.wait(POLL)
                engine.WAKE.clear()
    finally:
        connection.close()


def start_engine(stop: threading.Event) -> threading.Thread:
    """Run the journey engine in a daemon thread of this process until ``stop`` is set."""
    worker_id = f"{socket.gethostname()}:{os.getpid()}:journeys"
    thread = threading.Thread(target=_loop, args=(stop, worker_id), name="tsunagu-journeys", daemon=True)
    thread.start()
    return thread
