"""TSUNAGU_DATABASE_URL: the SQLite path conventions, PostgreSQL parts, and clear errors."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from tsunagu.core.dburl import DatabaseUrlError, database_from_url


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("sqlite:////srv/tsunagu/db.sqlite3", "/srv/tsunagu/db.sqlite3"),
        ("sqlite:///var/db.sqlite3", "var/db.sqlite3"),
        ("sqlite:///my%20data/db.sqlite3", "my data/db.sqlite3"),
        ("sqlite://", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_sqlite_paths(url, name):
    db = database_from_url(url)
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == name
    assert "synchronous=FULL" in db["OPTIONS"]["init_command"]


@pytest.mark.parametrize("url", ["sqlite://x.db", "sqlite:///", "mysql://u@h/db", "nonsense"])
def test_bad_urls_are_named(url):
    with pytest.raises(DatabaseUrlError, match="TSUNAGU_DATABASE_URL"):
        database_from_url(url)


def test_postgres_parts():
    db = database_from_url("postgres://app:s%40cret@db.internal:6543/tsunagu?sslmode=require")
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == (
        "app",
        "s@cret",
        "db.internal",
        "6543",
        "tsunagu",
    )
    assert db["OPTIONS"]["sslmode"] == "require"


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=9)), dt.timezone(dt.timedelta(hours=-5))]),
)
def test_datetime_param_writes_what_djangos_sqlite_backend_writes(value, zone):
    from django.db import connection

    # Through the backend's own module: importing its operations module first is a circular import.
    from django.db.backends.sqlite3.base import DatabaseWrapper

    from tsunagu.core.dburl import datetime_param

    if zone is not None:
        value = value.replace(tzinfo=zone)
    # SQLite's adaptation, whichever backend the suite runs on (it reads only the connection's time zone).
    ops = DatabaseWrapper.ops_class(connection)
    with override_settings(USE_TZ=True):
        assert datetime_param(value, "sqlite") == ops.adapt_datetimefield_value(value)
