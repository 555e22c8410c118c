"""Dedup by messageId over a look-back window (Segment's semantics), run by the applier in its transaction.

**The rule.** An event is a duplicate when an event of the same workspace with the same ``messageId`` was
applied before it and received at most ``TSUNAGU_DEDUP_WINDOW_DAYS`` days before it (both dates are the
receive times of the acknowledged requests, so the rule does not depend on when the applier runs). A
duplicate older than the window is stored again — as Segment documents for its ~24 hour window. A window of
0 keeps every messageId for ever.

**The structure.** Not a unique index on the event table's messageId text: a random 36-character key is
the most expensive index of an insert-heavy table, and it grows with the table for ever. Instead a table of
its own, ``DedupKey``, of small integer rows: a 16-byte hash of (workspace, messageId) — its first 8 bytes
the key (on SQLite the rowid itself, so the table is one dense B-tree), the other 8 a checksum that tells a
collision of keys from a duplicate — and the receive time. Two different messageIds are mistaken for each
other only if all 16 bytes agree (2^-128 a pair). When only the keys collide (2^-64 a pair), the later
event is stored and the key stays with the earlier one, so the later one's own repeats within the window
would be stored again. Keys older than the window are deleted by the applier as it goes, so the table
holds about one window of messageIds, whatever the size of the event table.

Exactly once: keys are written in the transaction that stores the events, under the workspace's applier
lease (and, on PostgreSQL, its advisory lock), so no other writer can race between the lookup and the insert.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

from django.conf import settings
from django.db import connection

from tsunagu.events.models import DedupKey

_CHUNK = 900  # under SQLite's old 999-variable limit
# Log order and receive time agree only up to the clocks of the web processes that appended: trimming
# keeps this much more than the window behind the oldest record of a chunk, so a record received a little
# "earlier" than one already applied still finds its keys.
TRIM_SLACK_SECONDS = 600
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def dedup_window_seconds() -> int | None:
    """The look-back window in whole seconds, or None (keep every messageId)."""
    days = float(getattr(settings, "TSUNAGU_DEDUP_WINDOW_DAYS", 7))
    return round(days * 86_400) if days > 0 else None


def dedup_key(workspace_id: int, message_id: str) -> tuple[int, int]:
    """The key and checksum of a messageId in a workspace: the two halves of a 16-byte keyed BLAKE2b, as
    signed 64-bit integers (SQLite's rowid range)."""
    raw = hashlib.blake2b(message_id.encode(), digest_size=16, key=workspace_id.to_bytes(8, "little")).digest()
    return int.from_bytes(raw[:8], "little", signed=True), int.from_bytes(raw[8:], "little", signed=True)


def seconds(value: dt.datetime) -> int:
    """A receive time as the table stores it: whole seconds since 1970 (UTC)."""
    delta = value - _EPOCH
    return delta.days * 86_400 + delta.seconds


def dedup_admit(*, workspace_id: int, message_ids: Sequence[str], received_at: Sequence[dt.datetime]) -> list[bool]:
    """For events in log order, True for each to store, False for each duplicate (of an event applied
    earlier within the window, or of one earlier in ``message_ids``); records the admitted ones' keys.
    Inside the applier's transaction: the keys commit with the events or not at all."""
    window = dedup_window_seconds()
    keyed = [dedup_key(workspace_id, mid) for mid in message_ids]
    table = connection.ops.quote_name(DedupKey._meta.db_table)
    # key -> (checksum, seen) of the event that holds it: from the table, then as this chunk goes.
    held: dict[int, tuple[int | None, int]] = {}
    distinct = list({key for key, _ in keyed})
    with connection.cursor() as cursor:
        for start in range(0, len(distinct), _CHUNK):
            chunk = distinct[start : start + _CHUNK]
            cursor.execute(
                f"SELECT digest, workspace_id, checksum, seen FROM {table} "  # noqa: S608
                f"WHERE digest IN ({', '.join(['%s'] * len(chunk))})",
                chunk,
            )
            for key, ws, checksum, seen in cursor.fetchall():
                # Another workspace's key (a collision): its checksum cannot match ours.
                held[key] = (checksum if ws == workspace_id else None, seen)
    stored = set(held)

    admitted: list[bool] = []
    inserts: dict[int, tuple[int, int, int, int]] = {}
    takeovers: dict[int, tuple[int, int, int, int]] = {}
    for (key, checksum), received in zip(keyed, received_at, strict=True):
        now = seconds(received)
        holder = held.get(key)
        if holder is None:
            admitted.append(True)
            held[key] = (checksum, now)
            inserts[key] = (key, workspace_id, checksum, now)
            continue
        live = window is None or now - holder[1] <= window
        if live and holder[0] == checksum:
            admitted.append(False)
            continue
        admitted.append(True)
        if not live:
            # Past the window (this messageId's old key, or a colliding one's): this event holds it now.
            held[key] = (checksum, now)
            if key in stored:
                takeovers[key] = (workspace_id, checksum, now, key)
            else:
                inserts[key] = (key, workspace_id, checksum, now)
        # A live key of another messageId (the keys collide): the event is stored, the key stays.
    with connection.cursor() as cursor:
        if inserts:
            cursor.executemany(
                f"INSERT INTO {table} (digest, workspace_id, checksum, seen) VALUES (%s, %s, %s, %s)",  # noqa: S608
                list(inserts.values()),
            )
        if takeovers:
            cursor.executemany(
                f"UPDATE {table} SET workspace_id = %s, checksum = %s, seen = %s WHERE digest = %s",  # noqa: S608
                list(takeovers.values()),
            )
    return admitted


def dedup_trim(*, workspace_id: int, oldest_pending: dt.datetime, limit: int) -> int:
    """Delete up to ``limit`` keys of a workspace that no event still to be applied can be a duplicate of
    (received more than the window, plus ``TRIM_SLACK_SECONDS``, before ``oldest_pending``); returns how
    many. Inside the applier's transaction."""
    window = dedup_window_seconds()
    if window is None:
        return 0
    cutoff = seconds(oldest_pending) - window - TRIM_SLACK_SECONDS
    table = connection.ops.quote_name(DedupKey._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE digest IN (SELECT digest FROM {table} "  # noqa: S608
            "WHERE workspace_id = %s AND seen < %s ORDER BY workspace_id, seen LIMIT %s)",
            [workspace_id, cutoff, limit],
        )
        return int(cursor.rowcount or 0)
