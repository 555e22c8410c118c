"""Keyset pagination for the REST API: ``{"items": [...], "next": <cursor or null>}``.

Cursors are opaque (URL-safe base64 of the last row's sort key), so pages stay stable while new rows
arrive, and a page costs the same at the millionth row as at the first.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from typing import Any, TypeVar

import orjson
from django.db.models import Model, Q, QuerySet

from tsunagu.core.errors import ValidationError

M = TypeVar("M", bound=Model)
MAX_LIMIT = 500
# Ids are 64-bit in every database we support; a larger number in a cursor would make the driver raise.
_MAX_ID = 2**63 - 1


def encode_cursor(values: Sequence[Any]) -> str:
    raw = orjson.dumps([v.isoformat() if isinstance(v, dt.datetime) else v for v in values])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise ValidationError(
            "cursor is not valid; pass the `next` value of the previous page", field="cursor"
        ) from exc
    if not isinstance(values, list) or len(values) != size:
        raise ValidationError("cursor is not valid; pass the `next` value of the previous page", field="cursor")
    return values


def _valid_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_ID


def check_limit(limit: int) -> int:
    if limit < 1 or limit > MAX_LIMIT:
        raise ValidationError(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return limit


def page_by_id_desc(qs: QuerySet[M], *, limit: int, cursor: str | None) -> tuple[list[M], str | None]:
    """Newest id first."""
    check_limit(limit)
    if cursor:
        (last_id,) = decode_cursor(cursor, 1)
        if not _valid_id(last_id):
            raise ValidationError("cursor is not valid", field="cursor")
        qs = qs.filter(pk__lt=last_id)
    rows = list(qs.order_by("-pk")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor([rows[-1].pk]) if more and rows else None


def page_by_time_desc(
    qs: QuerySet[M], *, limit: int, cursor: str | None, field: str = "timestamp"
) -> tuple[list[M], str | None]:
    """Newest ``field`` first, ties broken by id."""
    check_limit(limit)
    if cursor:
        when_raw, last_id = decode_cursor(cursor, 2)
        try:
            when = dt.datetime.fromisoformat(when_raw)
            # In UTC now, so that an instant the database cannot hold fails here and not in the driver.
            when = (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValidationError("cursor is not valid", field="cursor") from exc
        if not _valid_id(last_id):
            raise ValidationError("cursor is not valid", field="cursor")
        qs = qs.filter(Q(**{f"{field}__lt": when}) | Q(**{field: when, "pk__lt": last_id}))
    rows = list(qs.order_by(f"-{field}", "-pk")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor([getattr(rows[-1], field), rows[-1].pk]) if more and rows else None
