"""The worker loop: claim due jobs, run them, sleep a little when idle, stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

from django.db import close_old_connections

from tsunagu.core.jobs import jobs_run_due

log = logging.getLogger(__name__)


def run_worker(*, idle_sleep: float = 0.2, stop: threading.Event | None = None) -> None:
    """Run until signalled. Each loop closes stale connections so a restarted database is survived."""
    stop = stop or threading.Event()
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    log.info("worker %s started", worker_id)
    while not stop.is_set():
        close_old_connections()
        try:
            ran = jobs_run_due(worker_id=worker_id)
        except Exception:  # noqa: BLE001 - the loop must survive a transient database error
            log.exception("worker loop error")
            ran = 0
        if not ran:
            stop.wait(idle_sleep)
    log.info("worker %s stopped", worker_id)
    time.sleep(0)
