"""Validating a rule (JSON) into its tree (``nodes``): every error names the JSON path of the node at fault
(``$.all[1].where[0].op``), so the API answers 400 with it in ``field`` and the console can point at it.

Pure: no database. What the rule reads (``deps``) and whether time alone can change it are worked out here
too, once, and stored with a segment."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from tsunagu.core.errors import ValidationError
from tsunagu.segments.rule.nodes import (
    COUNT_OPS,
    EVENT_TYPES,
    FIELDS,
    ORDER_OPS,
    VALUE_OPS,
    And,
    Cmp,
    Computed,
    Consent,
    DateValue,
    EventCond,
    InSegment,
    Node,
    Not,
    Or,
    Prop,
    Trait,
    Window,
)
from tsunagu.segments.rule.values import DATE_RE, fold, is_number, nfkc, parse_instant

MAX_DEPTH = 12
MAX_NODES = 200
MAX_LIST = 1000
MAX_STRING = 1000
MAX_PATH = 8
CONSENT_TOPICS = ("marketing", "service", "transactional")
KINDS = ("all", "any", "not", "trait", "computed", "segment", "consent", "event")


@dataclass
class Deps:
    """What a rule reads: the applier re-evaluates a segment only for customers whose applied events touch
    one of these."""

    traits: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)
    events: set[tuple[str, str]] = field(default_factory=set)  # (type, name)
    computed: set[str] = field(default_factory=set)
    segments: set[str] = field(default_factory=set)
    consent: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "traits": sorted(self.traits),
            "fields": sorted(self.fields),
            "events": sorted([t, n] for t, n in self.events),
            "computed": sorted(self.computed),
            "segments": sorted(self.segments),
            "consent": self.consent,
        }


@dataclass
class Parsed:
    node: Node
    deps: Deps
    time_dependent: bool


class _Parser:
    def __init__(self) -> None:
        self.deps = Deps()
        self.time_dependent = False
        self.nodes = 0

    def fail(self, path: str, message: str) -> ValidationError:
        return ValidationError(f"{path}: {message}", field=path)

    # -- nodes ---------------------------------------------------------------------------------------

    def node(self, raw: Any, path: str, depth: int) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(path, f"a rule has at most {MAX_NODES} nodes")
        if depth > MAX_DEPTH:
            raise self.fail(path, f"a rule nests at most {MAX_DEPTH} levels deep")
        if not isinstance(raw, dict):
            raise self.fail(path, "a rule node is an object")
        kinds = [k for k in KINDS if k in raw]
        if len(kinds) != 1:
            if not kinds:
                raise self.fail(path, "a node needs one of " + ", ".join(KINDS))
            raise self.fail(path, "a node has only one of " + ", ".join(kinds))
        kind = kinds[0]
        if kind in ("all", "any"):
            self.keys(raw, path, {kind})
            items = raw[kind]
            if not isinstance(items, list) or not items:
                raise self.fail(f"{path}.{kind}", "a non-empty list of nodes")
            children = tuple(self.node(c, f"{path}.{kind}[{i}]", depth + 1) for i, c in enumerate(items))
            return And(children) if kind == "all" else Or(children)
        if kind == "not":
            self.keys(raw, path, {"not"})
            return Not(self.node(raw["not"], f"{path}.not", depth + 1))
        if kind == "trait":
            return self.trait(raw, path)
        if kind == "computed":
            self.keys(raw, path, {"computed", "op", "value"})
            key, sub = self.dotted(raw["computed"], f"{path}.computed")
            self.deps.computed.add(key)
            return Computed(key, sub, self.cmp(raw, path, kind="any"))
        if kind == "segment":
            self.keys(raw, path, {"segment"})
            key = self.name(raw["segment"], f"{path}.segment")
            self.deps.segments.add(key)
            return InSegment(key)
        if kind == "consent":
            return self.consent(raw, path)
        return self.event(raw, path)

    def trait(self, raw: dict[str, Any], path: str) -> Trait:
        self.keys(raw, path, {"trait", "op", "value"})
        name = raw["trait"]
        if isinstance(name, str) and name.startswith("$"):
            if name not in FIELDS:
                raise self.fail(f"{path}.trait", "the profile's fields are " + ", ".join(FIELDS))
            kind = FIELDS[name]
            self.deps.fields.add(name)
            return Trait((), self.cmp(raw, path, kind=kind), field=name)
        head, sub = self.dotted(name, f"{path}.trait")
        self.deps.traits.add(head)
        return Trait((head, *sub), self.cmp(raw, path, kind="any"))

    def consent(self, raw: dict[str, Any], path: str) -> Consent:
        self.keys(raw, path, {"consent"})
        body = raw["consent"]
        if not isinstance(body, dict):
            raise self.fail(f"{path}.consent", 'an object: {"channel": …, "topic": …}')
        self.keys(body, f"{path}.consent", {"channel", "topic"})
        channel = body.get("channel", "")
        if not isinstance(channel, str) or len(channel) > 16:
            raise self.fail(f"{path}.consent.channel", "a channel type (email, sms, line, …)")
        topic = body.get("topic")
        if topic not in CONSENT_TOPICS:
            raise self.fail(f"{path}.consent.topic", "one of " + ", ".join(CONSENT_TOPICS))
        self.deps.consent = True
        return Consent(channel, topic)

    def event(self, raw: dict[str, Any], path: str) -> EventCond:
        self.keys(raw, path, {"event", "type", "channel", "where", "count", "within"})
        name = self.string(raw["event"], f"{path}.event")
        if not name:
            raise self.fail(f"{path}.event", "an event name")
        type_ = raw.get("type", "track")
        if type_ not in EVENT_TYPES:
            raise self.fail(f"{path}.type", "one of " + ", ".join(EVENT_TYPES))
        channel = raw.get("channel")
        if channel is not None and (not isinstance(channel, str) or not channel or len(channel) > 20):
            raise self.fail(f"{path}.channel", "a channel name (web, app, line, store, …)")
        where = self.where(raw.get("where", []), f"{path}.where")
        count = Cmp("gte", 1)
        if "count" in raw:
            count = self.count(raw["count"], f"{path}.count")
        within = self.within(raw.get("within"), f"{path}.within")
        self.deps.events.add((type_, name))
        return EventCond(name, type_, channel, where, count, within)

    # -- pieces --------------------------------------------------------------------------------------

    def where(self, raw: Any, path: str) -> tuple[Prop, ...]:
        if not isinstance(raw, list):
            raise self.fail(path, "a list of property conditions")
        if len(raw) > 50:
            raise self.fail(path, "at most 50 property conditions")
        out = []
        for i, item in enumerate(raw):
            p = f"{path}[{i}]"
            if not isinstance(item, dict) or "property" not in item:
                raise self.fail(p, 'a property condition: {"property": …, "op": …, "value": …}')
            self.keys(item, p, {"property", "op", "value"})
            head, sub = self.dotted(item["property"], f"{p}.property")
            out.append(Prop((head, *sub), self.cmp(item, p, kind="any")))
        return tuple(out)

    def count(self, raw: Any, path: str) -> Cmp:
        if not isinstance(raw, dict):
            raise self.fail(path, 'an object: {"op": …, "value": N}')
        self.keys(raw, path, {"op", "value"})
        op = raw.get("op")
        if op not in COUNT_OPS:
            raise self.fail(f"{path}.op", "one of " + ", ".join(COUNT_OPS))
        value = raw.get("value")
        if op == "between":
            if not (isinstance(value, list) and len(value) == 2 and all(self._count_int(v) for v in value)):
                raise self.fail(f"{path}.value", "[low, high]: two whole numbers, 0 or more")
            if value[0] > value[1]:
                raise self.fail(f"{path}.value", "low is not above high")
            return Cmp(op, (value[0], value[1]))
        if not self._count_int(value):
            raise self.fail(f"{path}.value", "a whole number, 0 or more")
        return Cmp(op, value)

    @staticmethod
    def _count_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10**9

    def within(self, raw: Any, path: str) -> Window | None:
        if raw is None:
            return None
        if not isinstance(raw, dict) or len(raw) != 1:
            raise self.fail(path, 'one of {"days": N}, {"since": DATE}, {"between": [DATE, DATE]}')
        if "days" in raw:
            days = raw["days"]
            if not is_number(days) or not 0 < days <= 36600:
                raise self.fail(f"{path}.days", "a number of days above 0")
            self.time_dependent = True
            return Window(days=float(days))
        if "since" in raw:
            return Window(since=self.date(raw["since"], f"{path}.since"))
        if "between" in raw:
            pair = raw["between"]
            if not isinstance(pair, list) or len(pair) != 2:
                raise self.fail(f"{path}.between", "[DATE, DATE]")
            return Window(since=self.date(pair[0], f"{path}.between[0]"),
                          until=self.date(pair[1], f"{path}.between[1]"))
        raise self.fail(path, 'one of {"days": N}, {"since": DATE}, {"between": [DATE, DATE]}')

    def date(self, raw: Any, path: str) -> DateValue:
        if isinstance(raw, dict):
            self.keys(raw, path, {"days_ago"})
            n = raw.get("days_ago")
            if not isinstance(n, int) or isinstance(n, bool) or not -36600 <= n <= 36600:
                raise self.fail(f"{path}.days_ago", "a whole number of days")
            self.time_dependent = True
            return DateValue(days_ago=n)
        if isinstance(raw, str) and DATE_RE.fullmatch(raw) and parse_instant(raw, _UTC) is not None:
            return DateValue(iso=raw)
        raise self.fail(path, 'a date: "2024-05-01", "2024-05-01T09:00:00+09:00" or {"days_ago": N}')

    def cmp(self, raw: dict[str, Any], path: str, *, kind: str) -> Cmp:
        op = raw.get("op")
        if op not in VALUE_OPS:
            raise self.fail(f"{path}.op", "one of " + ", ".join(sorted(VALUE_OPS)))
        allowed = _FIELD_OPS.get(kind)
        if allowed is not None and op not in allowed:
            raise self.fail(f"{path}.op", f"this field takes {', '.join(sorted(allowed))}")
        vpath = f"{path}.value"
        if op in ("exists", "not_exists"):
            if "value" in raw:
                raise self.fail(vpath, f"{op} takes no value")
            return Cmp(op)
        if "value" not in raw:
            raise self.fail(vpath, f"{op} needs a value")
        value = raw["value"]
        if op in ORDER_OPS:
            if op == "between":
                if not isinstance(value, list) or len(value) != 2:
                    raise self.fail(vpath, "[low, high]")
                low, high = (self.order_operand(v, f"{vpath}[{i}]", kind) for i, v in enumerate(value))
                if type(low) is not type(high) and not (is_number(low) and is_number(high)):
                    raise self.fail(vpath, "low and high are both numbers or both dates")
                if is_number(low) and low > high:
                    raise self.fail(vpath, "low is not above high")
                return Cmp(op, (low, high))
            return Cmp(op, self.order_operand(value, vpath, kind))
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not value or len(value) > MAX_LIST:
                raise self.fail(vpath, f"a list of 1 to {MAX_LIST} values")
            return Cmp(op, tuple(self.scalar(v, f"{vpath}[{i}]") for i, v in enumerate(value)))
        if op in ("starts_with", "eq_folded") or (op in ("contains", "not_contains") and kind == "set"):
            text = self.string(value, vpath)
            return Cmp(op, fold(text) if op == "eq_folded" else (text if kind == "set" else nfkc(text)))
        return Cmp(op, self.scalar(value, vpath))

    def order_operand(self, raw: Any, path: str, kind: str) -> Any:
        if is_number(raw) and kind != "instant":
            if raw != raw or raw in (float("inf"), float("-inf")):
                raise self.fail(path, "a finite number")
            return raw
        if kind == "number":
            raise self.fail(path, "a number")
        return self.date(raw, path)

    def scalar(self, raw: Any, path: str) -> Any:
        if isinstance(raw, str):
            if len(raw) > MAX_STRING:
                raise self.fail(path, f"at most {MAX_STRING} characters")
            return nfkc(raw)
        if isinstance(raw, bool) or (is_number(raw) and raw == raw and abs(raw) != float("inf")):
            return raw
        raise self.fail(path, "a string, number or boolean")

    def string(self, raw: Any, path: str) -> str:
        if not isinstance(raw, str) or len(raw) > MAX_STRING or "\x00" in raw:
            raise self.fail(path, f"a string of at most {MAX_STRING} characters")
        return raw

    def name(self, raw: Any, path: str) -> str:
        text = self.string(raw, path)
        if not text:
            raise self.fail(path, "a name")
        return text

    def dotted(self, raw: Any, path: str) -> tuple[str, tuple[str, ...]]:
        """``address.city`` as ("address", ("city",)): dots separate the keys of nested objects."""
        text = self.name(raw, path)
        parts = text.split(".")
        if len(parts) > MAX_PATH or any(not p or '"' in p or "\\" in p for p in parts):
            raise self.fail(path, f"a name, or up to {MAX_PATH} names joined by dots, without quotes")
        return parts[0], tuple(parts[1:])

    def keys(self, raw: dict[str, Any], path: str, allowed: set[str]) -> None:
        for key in raw:
            if key not in allowed:
                takes = ", ".join(sorted(allowed))
                raise self.fail(f"{path}.{key}", f"not a field of this node (it takes {takes})")


# The ops each of the profile's fields takes (traits and properties take them all).
_STRING_OPS = frozenset({"eq", "neq", "in", "not_in", "contains", "not_contains", "starts_with", "eq_folded",
                         "exists", "not_exists"})
_FIELD_OPS: dict[str, frozenset[str]] = {
    "string": _STRING_OPS,
    "instant": frozenset(ORDER_OPS | {"exists", "not_exists"}),
    "number": frozenset({"eq", "neq", "in", "not_in", "exists", "not_exists"} | ORDER_OPS),
    "set": frozenset({"contains", "not_contains", "exists", "not_exists"}),
}

_UTC = dt.UTC


def rule_parse(rule: Any) -> Parsed:
    """The validated tree of ``rule``, with what it reads; raises ValidationError naming the node's path."""
    parser = _Parser()
    node = parser.node(rule, "$", 1)
    return Parsed(node=node, deps=parser.deps, time_dependent=parser.time_dependent)


def where_parse(where: Any, path: str = "$.where") -> tuple[Prop, ...]:
    """An event filter's ``where`` list alone (computed traits reuse it)."""
    return _Parser().where(where if where is not None else [], path)


def within_parse(within: Any, path: str = "$.within") -> Window | None:
    return _Parser().within(within, path)
