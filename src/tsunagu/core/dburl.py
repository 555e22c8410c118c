"""Turn TSUNAGU_DATABASE_URL into a Django DATABASES entry.

SQLite is the embedded default: WAL so readers never block the writer, a busy timeout so concurrent
processes queue instead of failing, IMMEDIATE transactions so a writer takes the lock up front (no
deadlocking upgrade from a read lock), and synchronous=FULL so a commit is on disk before we answer 200.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

SQLITE_INIT = (
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=FULL;"
    "PRAGMA foreign_keys=ON;"
    "PRAGMA temp_store=MEMORY;"
    "PRAGMA cache_size=-65536;"
    "PRAGMA mmap_size=268435456;"
)


class DatabaseUrlError(ValueError):
    pass


def database_from_url(url: str) -> dict[str, Any]:
    """Parse ``sqlite:///path`` or ``postgres://user:pass@host:port/name?opt=v`` into a DATABASES entry."""
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme == "sqlite":
        path = unquote(parsed.path)
        if url.startswith("sqlite:////"):
            path = "/" + path.lstrip("/")
        elif path.startswith("/") and not url.startswith("sqlite:///"):
            raise DatabaseUrlError(f"TSUNAGU_DATABASE_URL: cannot read sqlite path from {url!r}")
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path or ":memory:",
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
