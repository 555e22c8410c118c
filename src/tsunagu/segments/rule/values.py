"""How the rule language compares values — the one definition both evaluators share.

The Python evaluator calls ``cmp_holds`` directly; the SQL compiler mirrors it clause by clause, and on SQLite
calls ``nfkc``, ``fold`` and ``instant`` themselves as SQL functions (``tsunagu.segments.sqlfunctions``), so
the two cannot drift on normalisation or date parsing. docs/rules.md states the same semantics for users.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tsunagu.core import clock
from tsunagu.segments.rule.nodes import Cmp, DateValue

# The date and datetime strings the language reads, in rules and in traits: an ISO date, optionally a
# time (minutes, seconds, fractions), optionally ``Z`` or an offset. Without an offset it is read in the
# workspace's time zone. Anything else is not a date (a comparison with it is false).
DATE_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?"
)

# Case folding of Latin letters and hiragana to katakana, after NFKC (which already turns full-width
# letters and half-width katakana into their usual forms): a table both SQLite (through ``fold``) and
# PostgreSQL (``translate``) apply the same way.
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_HIRAGANA = "".join(chr(c) for c in range(0x3041, 0x3097))
_KATAKANA = "".join(chr(c + 0x60) for c in range(0x3041, 0x3097))
FOLD_FROM = _UPPER + _HIRAGANA
FOLD_TO = _UPPER.lower() + _KATAKANA
_FOLD = str.maketrans(FOLD_FROM, FOLD_TO)


def nfkc(text: str) -> str:
    # ASCII is NFKC already: the usual trait value costs one check, not a normalisation.
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


def fold(text: str) -> str:
    return nfkc(text).translate(_FOLD)


@lru_cache(maxsize=64)
def zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def parse_instant(text: str, tz: dt.tzinfo) -> dt.datetime | None:
    """The instant a date string names, or None when it is not one (``DATE_RE``, a real calendar day)."""
    m = DATE_RE.fullmatch(text)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, off = m.groups()
    try:
        moment = dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0),
                             int((frac or "0").ljust(6, "0")))
    except ValueError:
        return None
    if off is None:
        return moment.replace(tzinfo=tz)
    if off == "Z":
        return moment.replace(tzinfo=dt.UTC)
    sign = 1 if off[0] == "+" else -1
    hours, minutes = int(off[1:3]), int(off[4:6])
    if hours > 23 or minutes > 59:
        return None
    return moment.replace(tzinfo=dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes)))


def instant(text: Any, tz_name: str) -> float | None:
    """Seconds since 1970 of a date string read in ``tz_name``; None for anything else. A SQL function
    on SQLite (``tsunagu_instant``)."""
    if not isinstance(text, str):
        return None
    moment = parse_instant(text, zone(tz_name))
    return None if moment is None else moment.timestamp()


@dataclass(frozen=True, slots=True)
class Context:
    """When and where a rule is evaluated: relative dates and windows are resolved against ``now``, dates
    without an offset in ``tz``."""

    now: dt.datetime
    tz: str = "Asia/Tokyo"

    def resolve(self, value: DateValue) -> dt.datetime:
        tzinfo = zone(self.tz)
        if value.days_ago is not None:
            # The start of the day ``days_ago`` days before today, in the workspace's time zone.
            day = self.now.astimezone(tzinfo).date() - dt.timedelta(days=value.days_ago)
            return dt.datetime.combine(day, dt.time(), tzinfo)
        moment = parse_instant(value.iso or "", tzinfo)
        assert moment is not None  # rule_parse admitted only dates it can read
        return moment


def context(workspace: Any = None, *, now: dt.datetime | None = None) -> Context:
    return Context(now=now or clock.now(), tz=getattr(workspace, "timezone", None) or "Asia/Tokyo")


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def same_scalar(left: Any, right: Any) -> bool:
    """Equality by JSON type: numbers as numbers, strings after NFKC, booleans as booleans."""
    if isinstance(right, str):
        return isinstance(left, str) and nfkc(left) == right
    if isinstance(right, bool):
        return isinstance(left, bool) and left == right
    if is_number(right):
        return is_number(left) and left == right
    return False


def _order_value(value: Any, cmp: Cmp, ctx: Context) -> float | None:
    """The left side of an ordering comparison as a number: itself, or a date string's instant."""
    if cmp.is_date:
        if isinstance(value, dt.datetime):
            return value.timestamp()
        return instant(value, ctx.tz)
    return float(value) if is_number(value) else None


def _order_operand(operand: Any, ctx: Context) -> float:
    if isinstance(operand, DateValue):
        return ctx.resolve(operand).timestamp()
    return float(operand)


def cmp_holds(value: Any, cmp: Cmp, ctx: Context) -> bool:
    """Whether ``value`` (a JSON value, None when missing; a datetime for the profile's time fields)
    satisfies ``cmp``. A missing value satisfies only ``not_exists``."""
    op = cmp.op
    if op == "exists":
        return value is not None
    if op == "not_exists":
        return value is None
    if value is None:
        return False
    operand = cmp.value
    if op == "eq":
        return same_scalar(value, operand)
    if op == "neq":
        return not same_scalar(value, operand)
    if op == "in":
        return any(same_scalar(value, item) for item in operand)
    if op == "not_in":
        return not any(same_scalar(value, item) for item in operand)
    if op in ("contains", "not_contains"):
        if isinstance(value, str) and isinstance(operand, str):
            found = operand in nfkc(value)
        elif isinstance(value, list):
            found = any(same_scalar(item, operand) for item in value)
        else:
            found = False
        return found if op == "contains" else not found
    if op == "starts_with":
        return isinstance(value, str) and nfkc(value).startswith(operand)
    if op == "eq_folded":
        return isinstance(value, str) and fold(value) == operand
    left = _order_value(value, cmp, ctx)
    if left is None:
        return False
    if op == "between":
        low, high = (_order_operand(v, ctx) for v in operand)
        return low <= left <= high
    right = _order_operand(operand, ctx)
    return {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op]


def count_holds(count: int, cmp: Cmp) -> bool:
    """An event condition's ``count`` (numbers only; ``between`` both ends included)."""
    op, v = cmp.op, cmp.value
    if op == "between":
        return v[0] <= count <= v[1]
    return {"eq": count == v, "neq": count != v, "gt": count > v, "gte": count >= v, "lt": count < v,
            "lte": count <= v}[op]


def path_get(obj: Any, path: tuple[str, ...]) -> Any:
    """The value at a dotted path of a JSON object; None when any step is missing (or JSON null)."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj
