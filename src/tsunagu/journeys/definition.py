"""A journey definition (JSON) validated as a whole into a ``Plan`` the engine runs.

Every error names where it is: ``steps[reminder].communication``, ``entry.where[0].op``,
``steps[check].rule.all[1].value`` — the API answers 400 with it in ``field`` and the console marks the step.
Validation walks the step graph too: every target exists, every step can be reached from the first, and no
cycle goes round without a wait (it would spin a worker). What the definition names outside itself —
communications, segments, events — is checked through ``Known``, which the caller fills from the database;
this module reads none.

Branches and ``exit_when`` are rules of the rule language (docs/rules.md) plus one condition of their own:
``{"journey": "steps.reminder.outcome", "op": "eq", "value": "delivered"}`` reads the run's context. It is
parsed by the rule parser as a trait under a reserved head, so its operators and values are the language's,
and ``JourneyFacts`` answers it from the context.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tsunagu.core.errors import ValidationError
from tsunagu.segments.rule import Parsed, rule_parse
from tsunagu.segments.rule.nodes import Prop
from tsunagu.segments.rule.parse import where_parse

# A trait head no profile can have: the rule parser keeps it as a trait, JourneyFacts reads the context.
JOURNEY_HEAD = "\x1fjourney"
STEP_TYPES = ("wait", "wait_for_event", "send", "branch", "split", "update_traits", "notify", "webhook", "exit")
WAITS = frozenset({"wait", "wait_for_event"})
REENTRY = ("once", "per_entry_key", "after")
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
MAX_STEPS = 200
MAX_WAIT_SECONDS = 366 * 24 * 3600
# What the platform itself puts on timelines: always known, whether or not one has been applied yet.
BUILTIN_EVENTS = frozenset({
    "Segment Entered", "Segment Exited", "Message Sent", "Message Delivered", "Message Failed",
    "Message Bounced", "Message Opened", "Message Clicked", "Message Replied", "Message Undeliverable",
    "Message Skipped", "Message Unsubscribed",
})
_TOP = {"entry", "reentry", "goal", "exit_when", "steps"}


@dataclass(frozen=True)
class Known:
    """What the workspace has: a definition naming anything else is refused."""

    communications: frozenset[str] = frozenset()
    segments: frozenset[str] = frozenset()
    event_known: Callable[[str], bool] = lambda _name: True
    check: bool = True  # False: a published version re-read by the engine (names were checked at publish)

    def has_communication(self, key: str) -> bool:
        return not self.check or key in self.communications

    def has_segment(self, key: str) -> bool:
        return not self.check or key in self.segments

    def has_event(self, name: str) -> bool:
        return not self.check or name in BUILTIN_EVENTS or self.event_known(name)


TRUSTED = Known(check=False)


@dataclass(frozen=True)
class Step:
    id: str
    type: str
    raw: dict[str, Any]
    next: str | None  # the step after this one: an id, "exit", or None (the run completes)
    rule: Parsed | None = None  # branch
    where: tuple[Prop, ...] = ()  # wait_for_event

    def targets(self) -> list[str]:
        """Where a run can go from here (ids; "exit" and completion left out)."""
        raw = self.raw
        if self.type == "exit":
            found: list[Any] = []
        elif self.type == "branch":
            found = [raw["then"], raw["else"]]
        elif self.type == "split":
            found = [p["next"] for p in raw["paths"]]
        elif self.type == "wait_for_event":
            found = [raw.get("on_event", self.next), raw.get("on_timeout", self.next)]
        else:
            found = [self.next]
        return [t for t in found if t not in (None, "exit")]


@dataclass(frozen=True)
class Plan:
    definition: dict[str, Any]
    entry: dict[str, Any]
    entry_where: tuple[Prop, ...]
    reentry: dict[str, Any]
    goal: dict[str, Any] | None
    goal_where: tuple[Prop, ...]
    exit_when: Parsed | None
    steps: dict[str, Step] = field(default_factory=dict)
    first: str = ""

    @property
    def entry_event(self) -> str | None:
        """The event name whose applied events can start a run (``Segment Entered`` for a segment entry)."""
        if "event" in self.entry:
            return str(self.entry["event"])
        if "segment_entered" in self.entry:
            return "Segment Entered"
        return None


def _fail(path: str, message: str) -> ValidationError:
    return ValidationError(f"{path}: {message}", field=path)


def _obj(raw: Any, path: str, allowed: set[str], required: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _fail(path, "must be an object")
    for key in raw:
        if key not in allowed:
            raise _fail(f"{path}.{key}" if path else key, f"not a field here (fields: {', '.join(sorted(allowed))})")
    for key in required:
        if key not in raw:
            raise _fail(f"{path}.{key}" if path else key, "is required")
    return raw


def _name(raw: Any, path: str, *, limit: int = 200) -> str:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > limit or "\x00" in raw:
        raise _fail(path, f"must be a non-empty string of at most {limit} characters")
    return raw


def _positive_int(raw: Any, path: str, *, maximum: int) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 < raw <= maximum:
        raise _fail(path, f"must be a whole number from 1 to {maximum}")
    return raw


def _rebase(exc: ValidationError, path: str) -> ValidationError:
    """A rule parser's error (paths from ``$``) under ``path``."""
    inner = exc.field or "$"
    where = path + inner[1:]
    message = exc.message[len(inner) + 2:] if exc.message.startswith(inner + ": ") else exc.message
    return _fail(where, message)


def _journey_conditions(raw: Any) -> Any:
    """``{"journey": PATH, op, value}`` nodes rewritten as traits under the reserved head (see the module)."""
    if isinstance(raw, list):
        return [_journey_conditions(item) for item in raw]
    if not isinstance(raw, dict):
        return raw
    if "journey" in raw:
        rest = {k: v for k, v in raw.items() if k != "journey"}
        target = raw["journey"]
        return {"trait": f"{JOURNEY_HEAD}.{target}" if isinstance(target, str) else target, **rest}
    return {k: _journey_conditions(v) for k, v in raw.items()}


def journey_rule_parse(raw: Any, path: str) -> Parsed:
    """A branch rule or ``exit_when``: the rule language plus ``journey`` conditions."""
    try:
        return rule_parse(_journey_conditions(raw))
    except ValidationError as exc:
        raise _rebase(exc, path) from None


def _where(raw: Any, path: str) -> tuple[Prop, ...]:
    try:
        return where_parse(raw if raw is not None else [], "$")
    except ValidationError as exc:
        raise _rebase(exc, path) from None


def _event(raw: Any, path: str, known: Known) -> str:
    name = _name(raw, path)
    if not known.has_event(name):
        raise _fail(path, f"no event named {name!r} has been received in this workspace")
    return name


def _segments_in(parsed: Parsed, path: str, known: Known) -> None:
    for key in sorted(parsed.deps.segments):
        if not known.has_segment(key):
            raise _fail(path, f"no segment with key {key!r}")


def _entry(raw: Any, known: Known) -> tuple[dict[str, Any], tuple[Prop, ...]]:
    entry = _obj(raw, "entry", {"event", "where", "segment_entered", "api", "schedule"})
    kinds = [k for k in ("event", "segment_entered", "api", "schedule") if k in entry]
    if len(kinds) != 1:
        raise _fail("entry", "needs exactly one of event, segment_entered, api, schedule")
    kind = kinds[0]
    if "where" in entry and kind != "event":
        raise _fail("entry.where", "filters an event entry only")
    where: tuple[Prop, ...] = ()
    if kind == "event":
        _event(entry["event"], "entry.event", known)
        where = _where(entry.get("where"), "entry.where")
    elif kind == "segment_entered":
        key = _name(entry["segment_entered"], "entry.segment_entered", limit=100)
        if not known.has_segment(key):
            raise _fail("entry.segment_entered", f"no segment with key {key!r}")
    elif kind == "api":
        if entry["api"] is not True:
            raise _fail("entry.api", "must be true")
    else:
        schedule = _obj(entry["schedule"], "entry.schedule", {"cron", "segment"}, ("cron", "segment"))
        cron_parse(schedule["cron"], "entry.schedule.cron")
        key = _name(schedule["segment"], "entry.schedule.segment", limit=100)
        if not known.has_segment(key):
            raise _fail("entry.schedule.segment", f"no segment with key {key!r}")
    return entry, where


def cron_parse(raw: Any, path: str) -> Any:
    """A five-field cron expression (``0 9 * * *``), read in the workspace's time zone."""
    from cronsim import CronSim, CronSimError

    text = _name(raw, path, limit=100)
    try:
        return CronSim(text, dt.datetime(2026, 1, 1))
    except CronSimError as exc:
        raise _fail(path, f"not a cron expression ({exc})") from None


ENTRY_KEY_RE = re.compile(r"^(event\.(properties|context)|data)(\.[^.\s]+)+$")


def _reentry(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {"policy": "once"}
    reentry = _obj(raw, "reentry", {"policy", "days", "entry_key"}, ("policy",))
    policy = reentry["policy"]
    if policy not in REENTRY:
        raise _fail("reentry.policy", f"must be one of {', '.join(REENTRY)}")
    if policy == "after":
        _positive_int(reentry.get("days"), "reentry.days", maximum=3650)
    elif "days" in reentry:
        raise _fail("reentry.days", "applies to the policy 'after' only")
    if policy == "per_entry_key":
        key = reentry.get("entry_key")
        if not isinstance(key, str) or not ENTRY_KEY_RE.match(key):
            raise _fail("reentry.entry_key", "must be a path such as event.properties.cart_id or data.order_id")
    elif "entry_key" in reentry:
        raise _fail("reentry.entry_key", "applies to the policy 'per_entry_key' only")
    return reentry


def _goal(raw: Any, known: Known) -> tuple[dict[str, Any] | None, tuple[Prop, ...]]:
    if raw is None:
        return None, ()
    goal = _obj(raw, "goal", {"event", "where", "within", "exit"}, ("event",))
    _event(goal["event"], "goal.event", known)
    where = _where(goal.get("where"), "goal.where")
    if "within" in goal:
        within = _obj(goal["within"], "goal.within", {"days"}, ("days",))
        _positive_int(within["days"], "goal.within.days", maximum=3650)
    if "exit" in goal and not isinstance(goal["exit"], bool):
        raise _fail("goal.exit", "must be true or false")
    return goal, where


_STEP_FIELDS: dict[str, set[str]] = {
    "wait": {"seconds", "until_time", "until_trait", "at"},
    "wait_for_event": {"event", "where", "timeout_seconds", "on_event", "on_timeout"},
    "send": {"communication", "policy", "data"},
    "branch": {"rule", "then", "else"},
    "split": {"paths", "holdout"},
    "update_traits": {"traits"},
    "notify": {"webhook", "task", "assignee", "message", "email", "subject"},
    "webhook": {"url", "payload"},
    "exit": set(),
}
_COMMON = {"id", "type", "next", "name"}


def _target(raw: Any, path: str, ids: set[str]) -> str:
    if raw == "exit":
        return "exit"
    if not isinstance(raw, str) or raw not in ids:
        raise _fail(path, f"names no step of this journey (steps: {', '.join(sorted(ids))}, or \"exit\")")
    return raw


def _step(raw: dict[str, Any], index: int, order: list[str], ids: set[str], known: Known) -> Step:
    sid = raw["id"]
    kind = raw["type"]
    path = f"steps[{sid}]"
    _obj(raw, path, _COMMON | _STEP_FIELDS[kind])
    if "name" in raw:
        _name(raw["name"], f"{path}.name")
    following = order[index + 1] if index + 1 < len(order) else None
    nxt = _target(raw["next"], f"{path}.next", ids) if "next" in raw else following
    if kind in ("branch", "split", "exit") and "next" in raw:
        raise _fail(f"{path}.next", f"a {kind} step goes on through its own fields")
    rule = None
    where: tuple[Prop, ...] = ()
    if kind == "wait":
        forms = [k for k in ("seconds", "until_time", "until_trait") if k in raw]
        if len(forms) != 1:
            raise _fail(path, "a wait needs exactly one of seconds, until_time, until_trait")
        if "seconds" in raw:
            _positive_int(raw["seconds"], f"{path}.seconds", maximum=MAX_WAIT_SECONDS)
        if "until_time" in raw and (not isinstance(raw["until_time"], str) or not TIME_RE.match(raw["until_time"])):
            raise _fail(f"{path}.until_time", "must be a time of day as HH:MM (the customer's time zone)")
        if "until_trait" in raw:
            _name(raw["until_trait"], f"{path}.until_trait", limit=100)
        if "at" in raw and ("until_trait" not in raw or not isinstance(raw["at"], str) or not TIME_RE.match(raw["at"])):
            raise _fail(f"{path}.at", "is the time of day (HH:MM) of an until_trait wait")
    elif kind == "wait_for_event":
        _event(raw.get("event"), f"{path}.event", known)
        where = _where(raw.get("where"), f"{path}.where")
        if "timeout_seconds" in raw:
            _positive_int(raw["timeout_seconds"], f"{path}.timeout_seconds", maximum=MAX_WAIT_SECONDS)
        elif "on_timeout" in raw:
            raise _fail(f"{path}.on_timeout", "needs timeout_seconds")
        for name in ("on_event", "on_timeout"):
            if name in raw:
                _target(raw[name], f"{path}.{name}", ids)
    elif kind == "send":
        key = _name(raw.get("communication"), f"{path}.communication", limit=100)
        if not known.has_communication(key):
            raise _fail(f"{path}.communication", f"no communication with key {key!r}")
        if "policy" in raw and not isinstance(raw["policy"], dict):
            raise _fail(f"{path}.policy", "must be a channel policy object (docs/messaging.md)")
        if "data" in raw and not isinstance(raw["data"], dict):
            raise _fail(f"{path}.data", "must be an object")
    elif kind == "branch":
        if "rule" not in raw:
            raise _fail(f"{path}.rule", "is required")
        rule = journey_rule_parse(raw["rule"], f"{path}.rule")
        _segments_in(rule, f"{path}.rule", known)
        for name in ("then", "else"):
            if name not in raw:
                raise _fail(f"{path}.{name}", "is required")
            _target(raw[name], f"{path}.{name}", ids)
    elif kind == "split":
        _split(raw, path, ids)
    elif kind == "update_traits":
        traits = raw.get("traits")
        if not isinstance(traits, dict) or not traits:
            raise _fail(f"{path}.traits", "must be a non-empty object of traits")
    elif kind == "notify":
        _notify(raw, path)
    elif kind == "webhook":
        url = raw.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url) or len(url) > 2000:
            raise _fail(f"{path}.url", "must be an http(s) URL")
        if "payload" in raw and not isinstance(raw["payload"], dict):
            raise _fail(f"{path}.payload", "must be an object")
    return Step(id=sid, type=kind, raw=raw, next=nxt, rule=rule, where=where)


def _split(raw: dict[str, Any], path: str, ids: set[str]) -> None:
    paths = raw.get("paths")
    if not isinstance(paths, list) or not paths:
        raise _fail(f"{path}.paths", "must be a non-empty list of {\"percent\", \"next\"}")
    total = 0.0
    for i, item in enumerate(paths):
        where = f"{path}.paths[{i}]"
        _obj(item, where, {"percent", "next", "name"}, ("percent", "next"))
        percent = item["percent"]
        if not isinstance(percent, int | float) or isinstance(percent, bool) or not 0 < percent <= 100:
            raise _fail(f"{where}.percent", "must be a number above 0 and at most 100")
        total += percent
        _target(item["next"], f"{where}.next", ids)
    holdout = raw.get("holdout", 0)
    if not isinstance(holdout, int | float) or isinstance(holdout, bool) or not 0 <= holdout < 100:
        raise _fail(f"{path}.holdout", "must be a number from 0 to below 100")
    if abs(total + holdout - 100) > 1e-9:
        raise _fail(f"{path}.paths", f"the paths' percents and the holdout add up to {total + holdout:g}, not 100")


def _notify(raw: dict[str, Any], path: str) -> None:
    forms = [k for k in ("webhook", "task", "email") if k in raw]
    if len(forms) != 1:
        raise _fail(path, "a notify step needs exactly one of webhook, email, task")
    if "webhook" in raw and (not isinstance(raw["webhook"], str) or not re.match(r"^https?://[^\s/]+", raw["webhook"])):
        raise _fail(f"{path}.webhook", "must be an http(s) URL")
    if "task" in raw:
        _name(raw["task"], f"{path}.task", limit=300)
    if "email" in raw and (not isinstance(raw["email"], str) or not EMAIL_RE.match(raw["email"])):
        raise _fail(f"{path}.email", "must be an email address")
    for name in ("message", "subject", "assignee"):
        if name in raw and not isinstance(raw[name], str):
            raise _fail(f"{path}.{name}", "must be a string")


def _graph(steps: dict[str, Step], first: str) -> None:
    """Every step reachable from the first, and no cycle without a wait."""
    seen = {first}
    todo = [first]
    while todo:
        for target in steps[todo.pop()].targets():
            if target not in seen:
                seen.add(target)
                todo.append(target)
    for sid in steps:
        if sid not in seen:
            raise _fail(f"steps[{sid}]", "cannot be reached from the first step")
    # A cycle through steps that are not waits would run forever in one claim: depth-first over them alone.
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(steps, white)

    def visit(sid: str) -> None:
        color[sid] = grey
        for target in steps[sid].targets():
            if steps[target].type in WAITS:
                continue
            if color[target] == grey:
                raise _fail(f"steps[{target}]", "is on a cycle without a wait (a run would loop at once)")
            if color[target] == white:
                visit(target)
        color[sid] = black

    for sid, step in steps.items():
        if color[sid] == white and step.type not in WAITS:
            visit(sid)


def definition_parse(raw: Any, known: Known) -> Plan:
    """The validated plan of a definition; raises ValidationError naming the step id and field at fault."""
    top = _obj(raw, "", _TOP, ("entry", "steps"))
    entry, entry_where = _entry(top["entry"], known)
    reentry = _reentry(top.get("reentry"))
    if reentry["policy"] == "per_entry_key":
        source = reentry["entry_key"].split(".")[0]
        if source == "event" and "event" not in entry and "segment_entered" not in entry:
            raise _fail("reentry.entry_key", "an event path needs an event entry")
    goal, goal_where = _goal(top.get("goal"), known)
    exit_when = None
    if "exit_when" in top:
        exit_when = journey_rule_parse(top["exit_when"], "exit_when")
        _segments_in(exit_when, "exit_when", known)
    raw_steps = top["steps"]
    if not isinstance(raw_steps, list) or not raw_steps:
        raise _fail("steps", "must be a non-empty list of steps")
    if len(raw_steps) > MAX_STEPS:
        raise _fail("steps", f"a journey has at most {MAX_STEPS} steps")
    order: list[str] = []
    for i, step in enumerate(raw_steps):
        if not isinstance(step, dict):
            raise _fail(f"steps[{i}]", "must be an object")
        sid = step.get("id")
        if not isinstance(sid, str) or not ID_RE.match(sid) or sid == "exit":
            raise _fail(f"steps[{i}].id", "must be 1–64 letters, digits, - or _ (and not \"exit\")")
        if sid in order:
            raise _fail(f"steps[{sid}].id", "is used by another step: ids are unique")
        if step.get("type") not in STEP_TYPES:
            raise _fail(f"steps[{sid}].type", f"must be one of {', '.join(STEP_TYPES)}")
        order.append(sid)
    ids = set(order)
    steps = {sid: _step(raw, i, order, ids, known)
             for i, (sid, raw) in enumerate(zip(order, raw_steps, strict=True))}
    _graph(steps, order[0])
    return Plan(definition=top, entry=entry, entry_where=entry_where, reentry=reentry, goal=goal,
                goal_where=goal_where, exit_when=exit_when, steps=steps, first=order[0])


def definition_names(raw: dict[str, Any]) -> dict[str, list[str]]:
    """The communications a (valid) definition sends, for the console's builder."""
    return {"communications": sorted({s["communication"] for s in raw.get("steps", []) if s.get("type") == "send"})}
