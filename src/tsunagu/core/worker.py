"""The worker loop: claim due jobs, run them, sleep a little when idle, stop cleanly on SIGTERM/SIGINT.

Recurring maintenance is scheduled as ordinary job rows: each period gets one row whose idempotency key
names the period, so any number of workers on any number of machines enqueue it exactly once.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable

from django.db import close_old_connections

from tsunagu.core import clock
from tsunagu.core.jobs import job_enqueue, jobs_run_due

log = logging.getLogger(__name__)

# kind -> period. Handlers live in tsunagu.core.handlers.
RECURRING: dict[str, dt.timedelta] = {"core.optimize_database": dt.timedelta(hours=6)}


# Work other than job rows that each loop does (capabilities register here: messaging's deliveries and its
# outbox). ``fn(worker_id)`` returns how much it did; 0 lets the loop sleep.
Task = Callable[[str], int]
TASKS: dict[str, Task] = {}


def worker_task(name: str) -> Callable[[Task], Task]:
    def register(fn: Task) -> Task:
        TASKS[name] = fn
        return fn

    return register


def run_tasks(worker_id: str) -> int:
    done = 0
    for name, fn in list(TASKS.items()):
        try:
            done += fn(worker_id)
        except Exception:  # noqa: BLE001 - one capability's failure must not stop the others
            log.exception("worker task %s failed", name)
    return done


def schedule_recurring(*, now: dt.datetime | None = None) -> None:
    """Enqueue this period's row of every recurring job (a no-op when it already exists)."""
    now = now or clock.now()
    for kind, period in RECURRING.items():
        seconds = int(period.total_seconds())
        bucket = int(now.timestamp()) // seconds
        job_enqueue(kind=kind, idempotency_key=f"recurring:{kind}:{bucket}", max_attempts=3)


def run_worker(*, idle_sleep: float = 0.2, stop: threading.Event | None = None) -> None:
    """Run until signalled. Each loop closes stale connections so a restarted database is survived."""
    stop = stop or threading.Event()
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    log.info("worker %s started", worker_id)
    last_schedule = 0.0
    while not stop.is_set():
        close_old_connections()
        try:
            if clock.now().timestamp() - last_schedule > 60:
                schedule_recurring()
                last_schedule = clock.now().timestamp()
            ran = jobs_run_due(worker_id=worker_id)
            ran += run_tasks(worker_id)
        except Exception:  # noqa: BLE001 - the loop must survive a transient database error
            log.exception("worker loop error")
            ran = 0
        if not ran:
            stop.wait(idle_sleep)
    log.info("worker %s stopped", worker_id)
