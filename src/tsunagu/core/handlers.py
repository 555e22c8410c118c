"""Job handlers shipped with the core. Importing this module registers them with the worker."""

from __future__ import annotations

import logging

from django.db import connection

from tsunagu.core.jobs import job_handler
from tsunagu.core.models import Job

log = logging.getLogger(__name__)


@job_handler("core.optimize_database")
def optimize_database(job: Job) -> None:
    """Keep SQLite's query planner statistics fresh after large loads (a no-op on PostgreSQL, whose
    autovacuum does it)."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA optimize")
