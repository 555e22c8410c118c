"""The rule language's tree once validated (``parse.rule_parse``): what both evaluators walk.

Values are kept as the rule gave them, except strings (NFKC once, here) and dates (a ``DateValue`` that is
resolved to an instant against the evaluation's clock and time zone, so one parsed rule serves the
applier for hours)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Operators on a value, and what each takes.
VALUE_OPS = frozenset({"eq", "neq", "in", "not_in", "contains", "not_contains", "starts_with", "gt", "gte", "lt",
                       "lte", "between", "exists", "not_exists", "eq_folded"})
ORDER_OPS = frozenset({"gt", "gte", "lt", "lte", "between"})
COUNT_OPS = ("eq", "neq", "gt", "gte", "lt", "lte", "between")
EVENT_TYPES = ("track", "page", "screen")
# The profile's own fields, as ``{"trait": "$email"}``, and the kind of value each holds.
FIELDS = {
    "$email": "string",
    "$phone": "string",
    "$first_seen": "instant",
    "$last_seen": "instant",
    "$event_count": "number",
    "$channels": "set",
}


@dataclass(frozen=True, slots=True)
class DateValue:
    """A date in a rule: an ISO date or datetime (``iso``) or ``{"days_ago": N}`` (``days_ago``)."""

    iso: str | None = None
    days_ago: int | None = None


@dataclass(frozen=True, slots=True)
class Cmp:
    """``op`` with its operand: a scalar, a list (in, not_in), a pair (between) or nothing (exists)."""

    op: str
    value: Any = None

    @property
    def is_date(self) -> bool:
        v = self.value
        return isinstance(v, DateValue) or (isinstance(v, tuple) and bool(v) and isinstance(v[0], DateValue))


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class Trait:
    """A trait by path (``("address", "city")``) or one of the profile's fields (``field="$email"``)."""

    path: tuple[str, ...]
    cmp: Cmp
    field: str | None = None


@dataclass(frozen=True, slots=True)
class Computed:
    key: str
    path: tuple[str, ...]  # into an object value (``rfm.recency``)
    cmp: Cmp


@dataclass(frozen=True, slots=True)
class InSegment:
    key: str


@dataclass(frozen=True, slots=True)
class Consent:
    channel: str
    topic: str


@dataclass(frozen=True, slots=True)
class Prop:
    """One ``where`` condition on an event property (dotted path)."""

    path: tuple[str, ...]
    cmp: Cmp


@dataclass(frozen=True, slots=True)
class Window:
    """``{"days": N}`` (``days``), ``{"since": D}`` (``since``) or ``{"between": [D, D]}`` (``since``, ``until``)."""

    days: float | None = None
    since: DateValue | None = None
    until: DateValue | None = None


@dataclass(frozen=True, slots=True)
class EventCond:
    name: str
    type: str = "track"
    channel: str | None = None
    where: tuple[Prop, ...] = ()
    count: Cmp = field(default_factory=lambda: Cmp("gte", 1))
    within: Window | None = None


Node = And | Or | Not | Trait | Computed | InSegment | Consent | EventCond
