"""A computed trait's event filter and window: the ``where`` conditions and ``within`` of the rule language's
event conditions (docs/rules.md), read and evaluated through one narrow interface.

Interim: until the rule package (``tsunagu.segments.rule``) lands, this module holds a small implementation of
the same JSON shapes and value semantics; once it lands these functions delegate to it, so that a computed
trait's filter and a segment's event condition cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
import zoneinfo
from dataclasses import dataclass
from typing import Any

from tsunagu.core import clock
from tsunagu.core.errors import ValidationError

OPS = (
    "eq", "neq", "in", "not_in", "contains", "not_contains", "starts_with",
    "gt", "gte", "lt", "lte", "between", "exists", "not_exists",
)
_NO_VALUE = frozenset({"exists", "not_exists"})
MAX_CONDITIONS = 50
MAX_DAYS = 36600  # a century: beyond it a window is a mistake, and datetime arithmetic may overflow


@dataclass(frozen=True, slots=True)
class Cond:
    path: tuple[str, ...]
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class Window:
    days: int | None = None
    since: dt.date | dt.datetime | None = None
    until: dt.date | dt.datetime | None = None

    @property
    def rolling(self) -> bool:
        return self.days is not None


@dataclass(frozen=True, slots=True)
class Ctx:
    now: dt.datetime
    tz: dt.tzinfo


def context(workspace: Any, now: dt.datetime | None = None) -> Ctx:
    try:
        tz: dt.tzinfo = zoneinfo.ZoneInfo(workspace.timezone or "Asia/Tokyo")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = dt.UTC
    return Ctx(now or clock.now(), tz)


def where_parse(where: Any, path: str = "where") -> list[Cond]:
    """The conditions of a ``where`` list (AND); ``ValidationError`` naming ``where[i].<key>``."""
    if where is None:
        return []
    if not isinstance(where, list):
        raise ValidationError("must be a list of property conditions", field=path)
    if len(where) > MAX_CONDITIONS:
        raise ValidationError(f"at most {MAX_CONDITIONS} conditions", field=path)
    out = []
    for i, cond in enumerate(where):
        at = f"{path}[{i}]"
        if not isinstance(cond, dict):
            raise ValidationError("must be an object {property, op, value}", field=at)
        unknown = set(cond) - {"property", "op", "value"}
        if unknown:
            raise ValidationError(f"unknown key {sorted(unknown)[0]!r}", field=f"{at}.{sorted(unknown)[0]}")
        prop = cond.get("property")
        if not isinstance(prop, str) or not prop.strip() or len(prop) > 200:
            raise ValidationError("must be a property name (up to 200 characters)", field=f"{at}.property")
        op = cond.get("op")
        if op not in OPS:
            raise ValidationError(f"must be one of {', '.join(OPS)}", field=f"{at}.op")
        if op in _NO_VALUE:
            if "value" in cond:
                raise ValidationError(f"{op} takes no value", field=f"{at}.value")
            value = None
        else:
            if "value" not in cond:
                raise ValidationError(f"{op} needs a value", field=f"{at}.value")
            value = _check_value(op, cond["value"], f"{at}.value")
        out.append(Cond(tuple(prop.strip().split(".")), op, value))
    return out


def _check_value(op: str, value: Any, field: str) -> Any:
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ValidationError(f"{op} needs a non-empty list", field=field)
        return [_norm(v) for v in value]
    if op == "between":
        if not isinstance(value, list) or len(value) != 2 or not all(_number(v) for v in value):
            raise ValidationError("between needs [low, high], two numbers", field=field)
        return value
    if op in ("gt", "gte", "lt", "lte") and not _number(value):
        raise ValidationError(f"{op} needs a number", field=field)
    if op in ("contains", "not_contains", "starts_with") and not isinstance(value, str):
        raise ValidationError(f"{op} needs a string", field=field)
    if isinstance(value, dict | list) and op in ("eq", "neq"):
        raise ValidationError(f"{op} needs a string, number or boolean", field=field)
    return _norm(value)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _norm(v: Any) -> Any:
    return unicodedata.normalize("NFKC", v) if isinstance(v, str) else v


def _lookup(properties: Any, path: tuple[str, ...]) -> Any:
    node = properties
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _eq(a: Any, b: Any) -> bool:
    if _number(a) and _number(b):
        return bool(a == b)
    return type(a) is type(b) and a == b


def where_holds(conds: list[Cond], properties: Any, ctx: Ctx | None = None) -> bool:
    """Whether every condition holds of ``properties``: missing (absent or null) is false for every op but
    ``not_exists``; numbers compare as numbers, strings after NFKC."""
    for cond in conds:
        raw = _lookup(properties, cond.path)
        if cond.op == "not_exists":
            if raw is not None:
                return False
            continue
        if raw is None:
            return False
        value = _norm(raw)
        op, want = cond.op, cond.value
        if op == "exists":
            ok = True
        elif op == "eq":
            ok = _eq(value, want)
        elif op == "neq":
            ok = not _eq(value, want)
        elif op == "in":
            ok = any(_eq(value, w) for w in want)
        elif op == "not_in":
            ok = not any(_eq(value, w) for w in want)
        elif op in ("contains", "not_contains"):
            found = isinstance(value, str) and want in value or isinstance(value, list) and want in value
            ok = found if op == "contains" else not found
        elif op == "starts_with":
            ok = isinstance(value, str) and value.startswith(want)
        elif not _number(value):
            ok = False
        elif op == "gt":
            ok = value > want
        elif op == "gte":
            ok = value >= want
        elif op == "lt":
            ok = value < want
        elif op == "lte":
            ok = value <= want
        else:  # between
            ok = want[0] <= value <= want[1]
        if not ok:
            return False
    return True


def _date(value: Any, field: str) -> dt.date | dt.datetime:
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return dt.date.fromisoformat(value)
            return dt.datetime.fromisoformat(value)
        except ValueError:
            pass
    raise ValidationError("must be an ISO date (2026-04-01) or date-time", field=field)


def within_parse(within: Any, path: str = "within") -> Window | None:
    """``{"days": N}``, ``{"since": DATE}`` or ``{"between": [DATE, DATE]}``; None for no window."""
    if within is None:
        return None
    if not isinstance(within, dict) or len(within) != 1:
        raise ValidationError('must be {"days": N}, {"since": DATE} or {"between": [DATE, DATE]}', field=path)
    ((kind, value),) = within.items()
    if kind == "days":
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_DAYS:
            raise ValidationError(f"must be a whole number of days from 1 to {MAX_DAYS}", field=f"{path}.days")
        return Window(days=value)
    if kind == "since":
        return Window(since=_date(value, f"{path}.since"))
    if kind == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise ValidationError("must be [DATE, DATE]", field=f"{path}.between")
        low, high = _date(value[0], f"{path}.between[0]"), _date(value[1], f"{path}.between[1]")
        window = Window(since=low, until=high)
        start, end = window_bounds(window, Ctx(clock.now(), dt.UTC))
        if start is not None and end is not None and start > end:
            raise ValidationError("the first date is after the second", field=f"{path}.between")
        return window
    raise ValidationError(f"unknown window {kind!r}: use days, since or between", field=f"{path}.{kind}")


def _instant(value: dt.date | dt.datetime, tz: dt.tzinfo, *, end: bool) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    day = value + dt.timedelta(days=1) if end else value
    # The end of a date is the last instant before the next day (both ends included).
    start = dt.datetime.combine(day, dt.time(), tzinfo=tz)
    return start - dt.timedelta(microseconds=1) if end else start


def window_bounds(window: Window, ctx: Ctx) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(start, end) of the window at ``ctx.now``, both included; None where it is open."""
    if window.days is not None:
        return ctx.now - dt.timedelta(days=window.days), None
    start = _instant(window.since, ctx.tz, end=False) if window.since is not None else None
    end = _instant(window.until, ctx.tz, end=True) if window.until is not None else None
    return start, end
