"""The aggregates of computed traits as folds: a state that one event at a time updates, and the value the
state stands for. The backfill, the applier's incremental update and the windowed recompute all fold with
these functions, so they cannot disagree.

Order independence is what makes the incremental update equal the backfill: the backfill folds a customer's
events in time order, the applier in log order. Every fold below gives the same state whatever the order,
except the tie of ``first``/``last`` between events of the same instant, which goes to the event applied first
(``first``) or last (``last``) — the order of their ids, which the backfill reads too (``(timestamp, id)``).
Float sums are kept as exact partial sums (Shewchuk's algorithm, as ``math.fsum``), so a sum does not depend
on the order of its terms either.

A state is plain JSON (``ComputedValue.state``); an empty state means "no matching event contributed", and
then no row is stored.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import orjson

TIMESTAMP = "$timestamp"  # the event's own time, as a property
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Aggregates whose value for a customer without a matching event is 0, not missing.
ZERO_WHEN_EMPTY = frozenset({"count", "sum", "distinct_count"})
NEEDS_PROPERTY = frozenset({"sum", "min", "max", "avg", "first", "last", "distinct_count", "most_frequent", "rfm"})
NUMERIC = frozenset({"sum", "avg"})


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def micros(ts: dt.datetime) -> int:
    """An instant as whole microseconds since 1970 (exact, unlike a float of seconds)."""
    delta = ts - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def property_value(properties: Any, path: str, timestamp: dt.datetime) -> Any:
    """The value a trait reads from one event: ``$timestamp`` is the event's time, any other path a key of
    its properties (a dotted path walks into objects when no key has the whole name). Absent and JSON null
    are ``MISSING``."""
    if path == TIMESTAMP:
        return timestamp
    if not isinstance(properties, dict):
        return MISSING
    if path in properties:
        value = properties[path]
        return MISSING if value is None else value
    node: Any = properties
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return MISSING if node is None else node


def _key(value: Any) -> str:
    """A value's identity for distinct_count and most_frequent: its canonical JSON (1 and 1.0 are one)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        value = int(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def _json(value: Any) -> Any:
    return iso(value) if isinstance(value, dt.datetime) else value


def _partials_add(partials: list[float], x: float) -> None:
    """Add ``x`` to the exact sum that ``partials`` stands for (non-overlapping floats, Shewchuk)."""
    i = 0
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]


def _total(state: dict[str, Any]) -> int | float:
    """The exact sum of ints ``i`` and floats ``f``, correctly rounded to a float when floats were added."""
    if not state.get("x"):
        return int(state.get("i", 0))
    return math.fsum([*state.get("f", []), state.get("i", 0)])


def _add_number(state: dict[str, Any], value: int | float) -> None:
    if isinstance(value, int):
        state["i"] = state.get("i", 0) + value
    else:
        state["x"] = True
        partials = state.setdefault("f", [])
        _partials_add(partials, value)
        if not partials or partials == [0.0]:
            partials.clear()


def _order_key(value: Any, *, high: bool) -> list[Any] | None:
    """How min and max order values: numbers as numbers, strings as text, the event time (``$timestamp``)
    as an instant. Numbers win over strings (a string is taken only when no number was seen); booleans,
    objects and lists take no part."""
    if isinstance(value, dt.datetime):
        return [2, micros(value)]
    if is_number(value):
        return [1 if high else 0, value]
    if isinstance(value, str):
        return [0 if high else 1, value]
    return None


@dataclass(frozen=True, slots=True)
class Fold:
    """One aggregate of one property."""

    aggregate: str
    prop: str = ""

    def add(self, state: dict[str, Any], properties: Any, ts: dt.datetime) -> bool:
        """Fold one matching event into ``state`` (in place); False when the event did not contribute."""
        agg = self.aggregate
        if agg == "count":
            state["n"] = state.get("n", 0) + 1
            return True
        value = property_value(properties, self.prop, ts)
        if agg == "rfm":
            state["n"] = state.get("n", 0) + 1
            state["t"] = max(state.get("t", micros(ts)), micros(ts))
            if is_number(value):
                _add_number(state, value)
            return True
        if value is MISSING:
            return False
        if agg in NUMERIC:
            if not is_number(value):
                return False
            state["n"] = state.get("n", 0) + 1
            _add_number(state, value)
            return True
        if agg in ("min", "max"):
            key = _order_key(value, high=agg == "max")
            if key is None:
                return False
            old = state.get("k")
            if old is None or (key < old if agg == "min" else key > old):
                state["k"], state["v"] = key, _json(value)
            return True
        if agg in ("first", "last"):
            at = micros(ts)
            old = state.get("t")
            # Ties: ``first`` keeps the earlier-applied event, ``last`` takes the later one (module docstring).
            if old is None or (at < old if agg == "first" else at >= old):
                state["t"], state["v"] = at, _json(value)
            return True
        text = _key(_json(value))
        if agg == "distinct_count":
            seen = state.setdefault("s", [])
            where = bisect.bisect_left(seen, text)
            if where == len(seen) or seen[where] != text:
                seen.insert(where, text)
            return True
        # most_frequent: per value, how many times and when last
        counts = state.setdefault("c", {})
        entry = counts.get(text)
        when = micros(ts)
        counts[text] = [1, when] if entry is None else [entry[0] + 1, max(entry[1], when)]
        return True

    def value(self, state: dict[str, Any]) -> Any:
        """The JSON value of a non-empty state (RFM's scores are given by the refresh: None here)."""
        agg = self.aggregate
        if agg == "count":
            return state["n"]
        if agg == "sum":
            return _total(state)
        if agg == "avg":
            return float(_total(state)) / state["n"]
        if agg in ("min", "max", "first", "last"):
            return state["v"]
        if agg == "distinct_count":
            return len(state["s"])
        if agg == "most_frequent":
            # The most frequent value; ties go to the one seen most recently, then to the smaller JSON text.
            best = max(state["c"].items(), key=lambda kv: (kv[1][0], kv[1][1], _neg(kv[0])))
            return orjson.loads(best[0])
        return None


def _neg(text: str) -> tuple[int, ...]:
    # ``max`` with "smaller text wins": negate the code points.
    return tuple(-ord(c) for c in text)


def empty(state: dict[str, Any] | None) -> bool:
    return not state


def num_of(value: Any) -> float | None:
    """``ComputedValue.num``: the value as a float when it is a finite number (not a boolean)."""
    if is_number(value):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


def same(a: Any, b: Any) -> bool:
    """Equal as JSON: 1 and True differ, 1 and 1.0 do not."""
    if is_number(a) and is_number(b):
        return bool(a == b)
    return _key(a) == _key(b)
