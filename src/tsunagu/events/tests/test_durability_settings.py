"""The connection the app opens to its SQLite database is durable: WAL, and synchronous=FULL, so a commit is
on disk before an event is acknowledged. The crash test (test_crash_safety.py) only proves survival of a
process crash, which synchronous=OFF survives too; a power cut does not. So this reads the settings the
connection actually runs with.

The test suite's own database is in memory, so these open a file database as the app does: through
``tsunagu.settings`` (in a process of its own, with only a data directory set) and through
``database_from_url`` directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.db.utils import ConnectionHandler

from tsunagu.core.dburl import database_from_url

FULL = 2

_READ_PRAGMAS = """
import django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("PRAGMA synchronous")
    synchronous = cursor.fetchone()[0]
    cursor.execute("PRAGMA journal_mode")
    journal_mode = cursor.fetchone()[0]
print(__import__("json").dumps(
    {"vendor": connection.vendor, "name": str(connection.settings_dict["NAME"]),
     "synchronous": synchronous, "journal_mode": journal_mode}))
"""


def test_the_apps_default_database_connection_is_wal_and_synchronous_full(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TSUNAGU_", "DJANGO_"))}
    env.update(TSUNAGU_DATA_DIR=str(tmp_path / "data"), DJANGO_SETTINGS_MODULE="tsunagu.settings")
    done = subprocess.run(
        [sys.executable, "-c", _READ_PRAGMAS], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {
        "vendor": "sqlite",
        "name": str(tmp_path / "data" / "tsunagu.sqlite3"),
        "synchronous": FULL,
        "journal_mode": "wal",
    }


def test_a_database_url_opens_wal_and_synchronous_full(tmp_path: Path, django_db_blocker: Any) -> None:
    handler = ConnectionHandler({"default": database_from_url(f"sqlite:///{tmp_path / 'events.sqlite3'}")})
    connection = handler["default"]
    # Not the test database but a connection of its own, which pytest-django blocks unless told otherwise.
    with django_db_blocker.unblock():
        try:
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA synchronous")
                assert cursor.fetchone()[0] == FULL
                cursor.execute("PRAGMA journal_mode")
                assert cursor.fetchone()[0] == "wal"
        finally:
            connection.close()
