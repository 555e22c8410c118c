"""A segment's members out of tsunagu, as CSV or JSON Lines: one row per member — customer id, user id,
email, phone, display name, when they entered, and the traits asked for — read a page at a time along the
membership's unique index, so an export of a million members holds one page in memory, not the segment.

A read, not a snapshot: pages are separate queries, so a customer who enters or leaves while a long export
runs may or may not be in it (each member appears at most once: pages are by ascending customer id).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import orjson

from tsunagu.core.errors import ValidationError
from tsunagu.segments.models import Membership, Segment

PAGE = 1000
FORMATS = ("csv", "jsonl")
MAX_TRAITS = 50
COLUMNS = ("customer_id", "user_id", "email", "phone", "display_name", "entered_at")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): such text cells
# are written with a leading apostrophe. Phones are E.164 ("+81…") and left alone.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def export_format_clean(value: Any) -> str:
    """``csv`` or ``jsonl`` (``ValidationError`` on ``format`` otherwise)."""
    if value not in FORMATS:
        raise ValidationError(f"must be one of {', '.join(FORMATS)}", field="format")
    return str(value)


def export_traits_clean(value: Any) -> list[str]:
    """The trait names of ``?traits=a,b,address.city`` (dotted paths read into objects), in order, each
    once; empty for none. ``ValidationError`` on ``traits`` for more than 50 or an empty/overlong name."""
    if value is None or value == "":
        return []
    parts = value if isinstance(value, list) else str(value).split(",")
    names: list[str] = []
    for part in parts:
        name = str(part).strip()
        if not name or len(name) > 200 or "\x00" in name or any(not p for p in name.split(".")):
            raise ValidationError(f"{name[:50]!r} is not a trait name", field="traits")
        if name in COLUMNS:
            raise ValidationError(f"{name!r} is a column of every export; name a trait", field="traits")
        if name not in names:
            names.append(name)
    if len(names) > MAX_TRAITS:
        raise ValidationError(f"at most {MAX_TRAITS} traits", field="traits")
    return names


def _trait(traits: Any, path: str) -> Any:
    value = traits
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def segment_export_rows(*, segment: Segment, traits: list[str]) -> Iterator[dict[str, Any]]:
    """The segment's members by ascending customer id, one dict per member (``COLUMNS`` then ``traits``,
    a missing trait None), ``PAGE`` members per query."""
    after = 0
    while True:
        page = list(
            Membership.objects.filter(segment=segment, customer_id__gt=after).order_by("customer_id").values_list(
                "customer_id", "entered_at", "customer__user_id", "customer__email", "customer__phone",
                "customer__display_name", "customer__traits",
            )[:PAGE]
        )
        for cid, entered_at, user_id, email, phone, name, held in page:
            row: dict[str, Any] = {
                "customer_id": cid, "user_id": user_id, "email": email, "phone": phone, "display_name": name,
                "entered_at": entered_at.isoformat(),
            }
            for t in traits:
                row[t] = _trait(held, t)
            yield row
        if len(page) < PAGE:
            return
        after = page[-1][0]


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | int | float | dict | list):
        return orjson.dumps(value).decode()  # true, 12, 3.5, {"city": "渋谷"}: JSON, as the API shows them
    text = str(value)
    if column != "phone" and text.startswith(_FORMULA_START):
        return "'" + text
    return text


def segment_export_chunks(*, segment: Segment, fmt: str, traits: list[str]) -> Iterator[bytes]:
    """The export as UTF-8 bytes, a page of rows per chunk: CSV (a header line, then one line per member;
    traits that are numbers, booleans, objects or lists as JSON) or JSON Lines (one object per member,
    values as stored). For a ``StreamingHttpResponse`` or a file."""
    fmt = export_format_clean(fmt)
    header = [*COLUMNS, *traits]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if fmt == "csv":
        writer.writerow(header)
    out = [buffer.getvalue().encode()] if fmt == "csv" else []
    buffer.seek(0)
    buffer.truncate()
    for n, row in enumerate(segment_export_rows(segment=segment, traits=traits), start=1):
        if fmt == "csv":
            writer.writerow([_cell(c, row[c]) for c in header])
        else:
            out.append(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
        if n % PAGE == 0:
            if fmt == "csv":
                out.append(buffer.getvalue().encode())
                buffer.seek(0)
                buffer.truncate()
            yield b"".join(out)
            out = []
    if fmt == "csv":
        out.append(buffer.getvalue().encode())
    if out:
        yield b"".join(out)


def export_filename(segment: Segment, fmt: str) -> str:
    return f"segment-{segment.key}.{fmt}"
