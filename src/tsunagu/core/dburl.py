"""Turn TSUNAGU_DATABASE_URL into a Django DATABASES entry.

SQLite is the embedded default: WAL so readers never block the writer, a busy timeout so concurrent
processes queue instead of failing, IMMEDIATE transactions so a writer takes the lock up front (no
deadlocking upgrade from a read lock), and synchronous=FULL so a commit is on disk before we answer 200.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

import orjson

SQLITE_INIT = (
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=FULL;"
    "PRAGMA foreign_keys=ON;"
    "PRAGMA temp_store=MEMORY;"
    "PRAGMA cache_size=-65536;"
    "PRAGMA mmap_size=268435456;"
    # The applier is nearly the only writer, in large transactions: a commit checkpoints only past 64 MB of
    # WAL, so that checkpoints (each with fsyncs of their own) are rare, yet the WAL cannot grow unbounded
    # (a long WAL slows every reader and the writer).
    "PRAGMA wal_autocheckpoint=16384;"
)


class DatabaseUrlError(ValueError):
    pass


def _sqlite_path(url: str) -> str:
    """``sqlite:///var/x.db`` is relative to the working directory, ``sqlite:////srv/x.db`` absolute (the
    convention SQLAlchemy and dj-database-url share); ``sqlite://`` alone is an in-memory database."""
    rest = url.split("://", 1)[1]
    if rest in ("", "/:memory:", ":memory:"):
        return ":memory:"
    if not rest.startswith("/"):
        raise DatabaseUrlError(
            f"TSUNAGU_DATABASE_URL: cannot read a sqlite path from {url!r} "
            "(use sqlite:///relative/path or sqlite:////absolute/path)"
        )
    path = unquote(rest[1:].split("?", 1)[0])
    if not path:
        raise DatabaseUrlError(f"TSUNAGU_DATABASE_URL: no sqlite path in {url!r}")
    return path


def database_from_url(url: str) -> dict[str, Any]:
    """Parse ``sqlite:///path`` or ``postgres://user:pass@host:port/name?opt=v`` into a DATABASES entry."""
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme == "sqlite":
        path = _sqlite_path(url)
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path,
            # Keep connections across requests: a new one per request paid the connect and PRAGMAs and, worse,
            # started with an empty page cache every time.
            "CONN_MAX_AGE": None,
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": SQLITE_INIT,
            },
            "TEST": {"NAME": None},
        }
    if scheme in {"postgres", "postgresql", "pgsql"}:
        options = dict(parse_qsl(parsed.query))
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    raise DatabaseUrlError(f"TSUNAGU_DATABASE_URL: unsupported scheme {scheme!r} (use sqlite:// or postgres://)")


# -- parameters for raw SQL on the hot paths ---------------------------------------------------------
# Ingestion writes with raw ``executemany`` instead of the ORM (which builds a model instance and runs
# every field's get_db_prep_value per row). These produce what the ORM would store, for both backends.

_UTC = dt.UTC


def json_param(value: Any) -> str:
    """A JSONField value as JSON text: orjson (UTF-8, ~10x faster than json.dumps) with a json.dumps
    fallback for what orjson refuses (integers past 64 bits), so anything the ORM accepts is accepted."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


def json_placeholder(vendor: str) -> str:
    """The placeholder of a JSONField column: PostgreSQL's jsonb needs the text cast."""
    return "%s::jsonb" if vendor == "postgresql" else "%s"


def ids_in(column: str, ids: list[int], vendor: str) -> tuple[str, Any]:
    """``column IN (ids)`` as one parameter whatever the number of ids (no statement of thousands of
    placeholders, and one cached plan): PostgreSQL's ``= ANY(array)``, SQLite's ``json_each`` of a list."""
    if vendor == "postgresql":
        return f"{column} = ANY(%s)", list(ids)
    return f"{column} IN (SELECT value FROM json_each(%s))", orjson.dumps(list(ids)).decode()  # noqa: S608


def datetime_param(value: dt.datetime | None, vendor: str) -> Any:
    """A DateTimeField value: PostgreSQL takes aware datetimes; Django stores UTC text on SQLite."""
    if value is None or vendor != "sqlite":
        return value
    if value.tzinfo is _UTC:
        # orjson's RFC 3339 text of a UTC datetime is isoformat's with "T" and "+00:00": a third of
        # isoformat's time (~3 µs an aware datetime here, and the applier formats four an event). Same
        # digits, microseconds left out when zero, as Django writes them (``test_dburl``).
        return orjson.dumps(value)[1:-7].decode().replace("T", " ")
    text = value.isoformat(" ")
    if value.tzinfo is None:
        return text
    if text.endswith("+00:00"):  # the usual case, without building two more datetimes
        return text[:-6]
    return value.astimezone(_UTC).replace(tzinfo=None).isoformat(" ")


# -- file permissions ----------------------------------------------------------------------------------
# The database holds session keys, write keys and password hashes. New files are private through the
# processes' umask (tsunagu.cli.UMASK); these were perhaps created before it, by an older version.
SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def sqlite_restrict_files(path: str) -> None:
    """Make the SQLite database ``path`` and its side files (WAL, shared memory, journal, lock) readable by
    their owner only, where they exist and are ours; an in-memory database has none."""
    if path == ":memory:" or path.startswith("file:"):
        return
    for suffix in SQLITE_SIDE_FILES:
        try:
            info = os.stat(path + suffix)
        except OSError:
            continue
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            with contextlib.suppress(OSError):
                os.chmod(path + suffix, info.st_mode & 0o700)


@contextlib.contextmanager
def snapshot_read() -> Any:
    """Several reads that must agree with each other (a journey run and its history): one transaction that
    sees one snapshot. PostgreSQL's default READ COMMITTED takes a new snapshot per statement, so a commit
    between two reads could show a run still waiting beside the history of its end: REPEATABLE READ here.
    SQLite's read transaction in WAL mode reads one snapshot already. Inside an outer transaction (whose
    isolation is set) it only joins it."""
    from django.db import connection, transaction

    outer = connection.in_atomic_block
    with transaction.atomic():
        if not outer and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield
