"""Jobs as rows: enqueue, claim with a lease, complete, retry with backoff.

Claiming is one conditional UPDATE per job on SQLite (the database-wide write lock makes it atomic) and
``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL so that workers on several machines never block each
other or take the same row. A lease bounds how long a claim lives: a worker that dies mid-job loses its
claim when the lease runs out and another worker picks the job up.
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from tsunagu.core import clock
from tsunagu.core.models import Job, Workspace

log = logging.getLogger(__name__)

Handler = Callable[[Job], None]
_HANDLERS: dict[str, Handler] = {}

DEFAULT_LEASE = dt.timedelta(seconds=60)


def job_handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that executes jobs of ``kind``."""

    def register(fn: Handler) -> Handler:
        _HANDLERS[kind] = fn
        return fn

    return register


def registered_kinds() -> list[str]:
    return sorted(_HANDLERS)


def job_enqueue(
    *,
    kind: str,
    payload: dict[str, Any] | None = None,
    workspace: Workspace | None = None,
    due_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
    max_attempts: int = 8,
) -> Job:
    """Record a job. With an idempotency key, enqueueing the same work again returns the existing row."""
    if idempotency_key:
        existing = Job.objects.filter(idempotency_key=idempotency_key).first()
        if existing:
            return existing
    try:
        with transaction.atomic():
            return Job.objects.create(
                kind=kind,
                payload=payload or {},
                workspace=workspace,
                due_at=due_at or clock.now(),
                idempotency_key=idempotency_key,
                max_attempts=max_attempts,
            )
    except IntegrityError:
        return Job.objects.get(idempotency_key=idempotency_key)


def job_claim(*, worker_id: str, limit: int = 10, lease: dt.timedelta = DEFAULT_LEASE) -> list[Job]:
    """Claim up to ``limit`` due jobs for ``worker_id``: queued ones, and running ones whose lease expired.

    Taking over an expired lease counts the lost run as a failed attempt, so a job that kills its worker
    every time (a crash, an out-of-memory) gives up after ``max_attempts`` instead of looping forever."""
    now = clock.now()
    due = Q(status=Job.Status.QUEUED, due_at__lte=now) | Q(status=Job.Status.RUNNING, lease_until__lt=now)
    claimed: list[Job] = []
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Rows are locked by this transaction (others skip them), so the updates below cannot race.
            candidates = list(Job.objects.select_for_update(skip_locked=True).filter(due).order_by("due_at")[:limit])
            guard: dict[str, Any] = {}
        else:
            candidates = list(Job.objects.filter(due).order_by("due_at")[:limit])
        for job in candidates:
            if connection.vendor != "postgresql":
                # The conditional UPDATE is the claim: it succeeds only if nobody changed the row since we read it.
                guard = {"status": job.status, "lease_until": job.lease_until, "attempts": job.attempts}
            rows = Job.objects.filter(pk=job.pk, **guard)
            lost = job.status == Job.Status.RUNNING
            attempts = job.attempts + 1 if lost else job.attempts
            if lost and attempts >= job.max_attempts:
                rows.update(
                    status=Job.Status.FAILED,
                    attempts=attempts,
                    lease_until=None,
                    finished_at=now,
                    last_error=f"gave up: the lease of worker {job.locked_by!r} expired on attempt {attempts}",
                )
                continue
            changes: dict[str, Any] = {"status": Job.Status.RUNNING, "locked_by": worker_id, "lease_until": now + lease}
            if lost:
                changes.update(attempts=attempts, last_error=f"the lease of worker {job.locked_by!r} expired")
            if rows.update(**changes):
                for name, value in changes.items():
                    setattr(job, name, value)
                claimed.append(job)
    return claimed


def job_complete(*, job: Job, worker_id: str) -> bool:
    """Mark a claimed job done. False when the claim was lost (lease expired and taken over)."""
    return bool(
        Job.objects.filter(pk=job.pk, locked_by=worker_id, status=Job.Status.RUNNING).update(
            status=Job.Status.DONE, finished_at=clock.now(), lease_until=None
        )
    )


def backoff(attempts: int) -> dt.timedelta:
    """Exponential backoff: 10 s, 20 s, 40 s … capped at one hour."""
    return dt.timedelta(seconds=min(3600, 10 * 2 ** max(0, attempts - 1)))


def job_fail(*, job: Job, worker_id: str, error: str) -> None:
    """Record a failed attempt: retry later with backoff, or give up after ``max_attempts``."""
    attempts = job.attempts + 1
    final = attempts >= job.max_attempts
    Job.objects.filter(pk=job.pk, locked_by=worker_id).update(
        attempts=attempts,
        status=Job.Status.FAILED if final else Job.Status.QUEUED,
        due_at=clock.now() + backoff(attempts),
        lease_until=None,
        last_error=error[-4000:],
        finished_at=clock.now() if final else None,
    )


def job_run_one(*, job: Job, worker_id: str) -> bool:
    """Execute one claimed job with its handler. Returns True if it succeeded."""
    handler = _HANDLERS.get(job.kind)
    if handler is None:
        job_fail(job=job, worker_id=worker_id, error=f"no handler registered for {job.kind!r}")
        return False
    try:
        handler(job)
    except Exception:  # noqa: BLE001 - any failure of a handler is recorded and retried
        log.exception("job %s failed", job)
        job_fail(job=job, worker_id=worker_id, error=traceback.format_exc())
        return False
    job_complete(job=job, worker_id=worker_id)
    return True


def jobs_run_due(*, worker_id: str, limit: int = 50) -> int:
    """Claim and execute what is due now; returns how many jobs ran."""
    jobs = job_claim(worker_id=worker_id, limit=limit)
    for job in jobs:
        job_run_one(job=job, worker_id=worker_id)
    return len(jobs)
