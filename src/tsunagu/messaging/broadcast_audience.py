"""A broadcast's audience as given — customer ids, user ids, a CSV, or a segment — checked and turned into
recipient rows (``BroadcastRecipient``) a chunk at a time, so that a million listed customers never sit in
memory as a million objects. Nothing here reads customers: they are resolved when the broadcast is expanded
(``messaging.broadcast_expand``), so a profile created between the upload and the send is found.

A segment (``{"segment": "vip"}``) is listed later still: its members when expansion starts
(``audience_snapshot``), one INSERT … SELECT from the segment's membership, so the broadcast reaches who is
in the segment when it is sent — not when it was scheduled — and later entries and exits change nothing."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from django.db import connection

from tsunagu.core import clock
from tsunagu.core.errors import ValidationError
from tsunagu.customers.normalize import normalize_email, normalize_id, normalize_phone

MAX_RECIPIENTS = 1_000_000
MAX_CSV_BYTES = 64 * 1024 * 1024
MAX_CSV_COLUMNS = 50
MAX_CELL_CHARS = 1000
# The identifier columns a CSV may name, in the order one is picked when several are present: the others
# are data like any other column.
KEY_COLUMNS = ("customer_id", "user_id", "email", "phone")
KINDS = frozenset(KEY_COLUMNS)

Recipient = tuple[str, str, dict[str, str] | None]  # kind, ref, data


def _ref(kind: str, value: Any, field: str) -> str:
    if kind == "customer_id":
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValidationError("must be a customer id (a positive whole number)", field=field)
        return str(value)
    if kind == "user_id":
        ref = normalize_id(value)
        if not ref:
            raise ValidationError("must be a user id (a non-empty string of at most 255 characters)", field=field)
        return ref
    if kind == "email":
        ref = normalize_email(value)
        if not ref:
            raise ValidationError(f"{str(value)[:80]!r} is not an email address", field=field)
        return ref
    ref = normalize_phone(value)
    if not ref:
        raise ValidationError(f"{str(value)[:80]!r} is not a phone number", field=field)
    return ref


AUDIENCE_KEYS = ("customer_ids", "user_ids", "csv", "segment")


def audience_kind(audience: Any) -> str:
    """Which of ``customer_ids``, ``user_ids``, ``csv`` or ``segment`` the audience is; ``ValidationError``
    otherwise (a segment key that is not a string included; whether the segment exists is the caller's)."""
    known = ", ".join(AUDIENCE_KEYS)
    if not isinstance(audience, dict):
        raise ValidationError(f"must be an object with one of {known}", field="audience")
    given = [k for k in AUDIENCE_KEYS if k in audience]
    unknown = sorted(set(audience) - set(AUDIENCE_KEYS))
    if unknown:
        raise ValidationError(f"unknown key {unknown[0]!r} (known: {known})", field="audience")
    if len(given) != 1:
        raise ValidationError(f"must have exactly one of {known}", field="audience")
    if given[0] == "segment" and not (isinstance(audience["segment"], str) and audience["segment"].strip()):
        raise ValidationError("must be a segment key", field="audience.segment")
    return given[0]


def audience_snapshot(broadcast: Any) -> int:
    """List the members of the broadcast's segment now as its recipients (kind ``customer_id``, by
    customer id), set ``total`` and ``snapshot_at``; returns the count. In the caller's transaction (the
    expansion's, which also moves the cursor), once: a broadcast already snapshotted is left alone. A
    segment deleted since the broadcast was made has no members: the broadcast ends with none."""
    from tsunagu.messaging.models import Broadcast, BroadcastRecipient
    from tsunagu.segments.models import Membership, Segment

    segment_id = (Segment.objects.filter(workspace_id=broadcast.workspace_id, key=broadcast.audience_segment)
                  .values_list("pk", flat=True).first())
    count = 0
    if segment_id is not None:
        sql = (
            f"INSERT INTO {BroadcastRecipient._meta.db_table} (broadcast_id, position, kind, ref, data) "  # noqa: S608
            f"SELECT %s, ROW_NUMBER() OVER (ORDER BY m.customer_id), 'customer_id', "
            f"CAST(m.customer_id AS VARCHAR(20)), NULL FROM {Membership._meta.db_table} m WHERE m.segment_id = %s"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [broadcast.pk, segment_id])
            count = max(cursor.rowcount, 0)
    now = clock.now()
    Broadcast.objects.filter(pk=broadcast.pk, snapshot_at__isnull=True).update(total=count, snapshot_at=now,
                                                                                 updated_at=now)
    broadcast.total, broadcast.snapshot_at = count, now
    return count


def audience_rows(audience: dict[str, Any]) -> Iterator[Recipient]:
    """The recipients of a checked audience, in order, each checked as it comes: raises
    ``ValidationError`` naming the first bad one (``audience.customer_ids[3]``, ``audience.csv`` line 7),
    or a list over ``MAX_RECIPIENTS``."""
    kind = audience_kind(audience)
    if kind == "csv":
        yield from _csv_rows(audience["csv"])
        return
    values = audience[kind]
    field = f"audience.{kind}"
    if not isinstance(values, list) or not values:
        raise ValidationError("must be a non-empty list", field=field)
    if len(values) > MAX_RECIPIENTS:
        raise ValidationError(f"has {len(values)} entries; at most {MAX_RECIPIENTS:,}", field=field)
    ref_kind = kind.removesuffix("s")
    for i, value in enumerate(values):
        yield ref_kind, _ref(ref_kind, value, f"{field}[{i}]"), None


def _csv_rows(text: Any) -> Iterator[Recipient]:
    field = "audience.csv"
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("must be CSV text with a header line", field=field)
    if len(text) > MAX_CSV_BYTES:  # characters: a cheap bound before encoding
        raise ValidationError(f"is over the {MAX_CSV_BYTES // (1024 * 1024)} MB limit", field=field)
    if "\x00" in text:
        raise ValidationError("must not contain the NUL character (U+0000)", field=field)
    # A BOM is what Excel writes in front of UTF-8; strict: an unclosed quote is an error, not a cell.
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")), strict=True)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ValidationError("has no header line", field=field) from None
    except csv.Error as exc:
        raise ValidationError(f"line 1: {exc}", field=field) from None
    if len(header) > MAX_CSV_COLUMNS:
        raise ValidationError(f"line 1: {len(header)} columns; at most {MAX_CSV_COLUMNS}", field=field)
    if len(set(header)) != len(header) or "" in header:
        raise ValidationError("line 1: every column needs a name, each once", field=field)
    key = next((c for c in KEY_COLUMNS if c in header), None)
    if key is None:
        raise ValidationError(f"line 1: the header names none of {', '.join(KEY_COLUMNS)}", field=field)
    at = header.index(key)
    count = 0
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ValidationError(f"line {reader.line_num}: {exc}", field=field) from None
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue  # blank lines (a trailing newline, a spreadsheet's empty rows)
        if len(row) != len(header):
            raise ValidationError(f"line {line}: {len(row)} columns; the header has {len(header)}", field=field)
        count += 1
        if count > MAX_RECIPIENTS:
            raise ValidationError(f"line {line}: more than {MAX_RECIPIENTS:,} recipients", field=field)
        if not row[at].strip():
            raise ValidationError(f"line {line}: the {key} column is empty", field=field)
        try:
            ref = _ref(key, row[at], field)
        except ValidationError as exc:
            raise ValidationError(f"line {line}: {key}: {exc.message}", field=field) from None
        data = {name: cell[:MAX_CELL_CHARS] for name, cell in zip(header, row, strict=True) if name != key}
        yield key, ref, data or None
    if count == 0:
        raise ValidationError("has a header but no recipients", field=field)
