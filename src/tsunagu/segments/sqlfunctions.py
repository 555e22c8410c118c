"""The rule language's SQL functions on SQLite: the Python evaluator's own normalisation and date parsing
(``rule.values``), registered on every connection, so SQL and Python read text and dates the same way.
PostgreSQL has its own (migration 0002)."""

from __future__ import annotations

from typing import Any

from django.db.backends.signals import connection_created
from django.dispatch import receiver

from tsunagu.segments.rule.values import fold, instant, nfkc


def _text(fn: Any) -> Any:
    def call(value: Any) -> Any:
        return fn(value) if isinstance(value, str) else None

    return call


@receiver(connection_created)
def _register(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor != "sqlite":
        return
    raw = connection.connection
    raw.create_function("tsunagu_nfkc", 1, _text(nfkc), deterministic=True)
    raw.create_function("tsunagu_fold", 1, _text(fold), deterministic=True)
    raw.create_function("tsunagu_instant", 2, instant, deterministic=True)
