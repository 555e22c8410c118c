"""Plans of published versions, parsed once per process (a published version never changes), and what the
engine evaluates against a run: its context as the ``journey`` of rules and templates."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from tsunagu.journeys.definition import JOURNEY_HEAD, TRUSTED, Plan, definition_parse
from tsunagu.segments.rule.values import path_get

_PLANS: dict[int, Plan] = {}
_MAX_PLANS = 2000


def plan_of(version: Any) -> Plan:
    """The plan of a published version (``JourneyVersion``), from the cache when it was read before."""
    plan = _PLANS.get(version.pk)
    # A published version never changes, but a row id can name another version after a rollback (tests,
    # a restored backup): the definition is compared, which costs far less than parsing it again.
    if plan is None or plan.definition != version.definition:
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        plan = _PLANS[version.pk] = definition_parse(version.definition, TRUSTED)
    return plan


class JourneyFacts:
    """A customer's facts for the rule evaluator, plus the run's context under ``journey`` conditions."""

    def __init__(self, facts: Any, context: dict[str, Any]) -> None:
        self._facts = facts
        self._context = context

    def trait(self, path: tuple[str, ...]) -> Any:
        if path and path[0] == JOURNEY_HEAD:
            return path_get(self._context, path[1:])
        return self._facts.trait(path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._facts, name)


def iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def event_context(event: Any) -> dict[str, Any]:
    """An applied event as a run keeps it (``journey.entry.event``, a step's matched event)."""
    return {"event": event.event, "type": event.type, "properties": event.properties,
            "timestamp": iso(event.timestamp), "message_id": event.message_id, "channel": event.channel}


def split_bucket(journey_id: int, step_id: str, customer_id: int) -> float:
    """A customer's place in [0, 100) for one split: stable, so a customer re-entering takes the same path."""
    digest = hashlib.blake2b(f"{journey_id}:{step_id}:{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10000 / 100


def split_path(raw: dict[str, Any], bucket: float) -> tuple[str, str]:
    """(path label, next step) of a split for a bucket: the holdout first, then the paths in order."""
    holdout = float(raw.get("holdout", 0))
    if bucket < holdout:
        return "holdout", "exit"
    edge = holdout
    paths = raw["paths"]
    for i, item in enumerate(paths):
        edge += float(item["percent"])
        if bucket < edge or i == len(paths) - 1:
            return str(item.get("name") or item["next"]), str(item["next"])
    raise AssertionError("unreachable: the last path takes the rest")
