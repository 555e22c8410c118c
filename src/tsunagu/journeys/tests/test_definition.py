"""Definitions validated as a whole, without a database: the graph (targets, reachability, cycles without a
wait), each step's fields, and the journey conditions of branches — every error naming its step and field."""

from __future__ import annotations

from typing import Any

import pytest

from tsunagu.core.errors import ValidationError
from tsunagu.journeys.definition import Known, definition_parse

KNOWN = Known(communications=frozenset({"hello"}), segments=frozenset({"vip"}),
              event_known=lambda name: name in {"Order Completed", "Checkout Started"})


def _error(definition: Any) -> str:
    with pytest.raises(ValidationError) as raised:
        definition_parse(definition, KNOWN)
    return str(raised.value.field)


def _steps(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"entry": {"api": True}, "steps": list(steps)}


def test_a_cycle_through_a_wait_is_allowed_and_one_without_is_not() -> None:
    looping = _steps(
        {"id": "a", "type": "send", "communication": "hello"},
        {"id": "w", "type": "wait", "seconds": 86400},
        {"id": "b", "type": "branch", "rule": {"trait": "done", "op": "exists"}, "then": "exit", "else": "a"})
    plan = definition_parse(looping, KNOWN)
    assert [s.targets() for s in plan.steps.values()] == [["w"], ["b"], ["a"]]
    assert _error(_steps(
        {"id": "a", "type": "send", "communication": "hello"},
        {"id": "b", "type": "branch", "rule": {"trait": "done", "op": "exists"}, "then": "exit", "else": "a"},
    )) == "steps[a]"


def test_unreachable_steps_and_missing_targets_are_named() -> None:
    assert _error(_steps({"id": "a", "type": "exit"}, {"id": "orphan", "type": "exit"})) == "steps[orphan]"
    assert _error(_steps({"id": "a", "type": "branch", "rule": {"trait": "x", "op": "exists"}, "then": "nowhere",
                          "else": "exit"})) == "steps[a].then"
    assert _error(_steps({"id": "a", "type": "wait_for_event", "event": "Order Completed", "on_event": "zz"})) \
        == "steps[a].on_event"


def test_steps_fields_are_checked_with_their_step_id() -> None:
    assert _error(_steps({"id": "a", "type": "send", "communication": "bye"})) == "steps[a].communication"
    assert _error(_steps({"id": "a", "type": "wait"})) == "steps[a]"
    assert _error(_steps({"id": "a", "type": "wait", "seconds": 0})) == "steps[a].seconds"
    assert _error(_steps({"id": "a", "type": "wait", "seconds": 5, "colour": "red"})) == "steps[a].colour"
    assert _error(_steps({"id": "a", "type": "wait_for_event", "event": "Nope"})) == "steps[a].event"
    assert _error(_steps({"id": "a", "type": "wait_for_event", "event": "Order Completed", "on_timeout": "exit"})) \
        == "steps[a].on_timeout"
    assert _error(_steps({"id": "a", "type": "split", "paths": [{"percent": 50, "next": "exit"}],
                          "holdout": 40})) == "steps[a].paths"
    assert _error(_steps({"id": "a", "type": "webhook", "url": "ftp://x"})) == "steps[a].url"
    assert _error(_steps({"id": "a", "type": "notify", "email": "not-an-address"})) == "steps[a].email"
    assert _error(_steps({"id": "a", "type": "exit"}, {"id": "a", "type": "exit"})) == "steps[a].id"
    assert _error(_steps({"id": "exit", "type": "exit"})) == "steps[0].id"


def test_journey_conditions_are_parsed_by_the_rule_language_with_their_path() -> None:
    plan = definition_parse(_steps(
        {"id": "b", "type": "branch", "rule": {"any": [
            {"journey": "steps.reminder.outcome", "op": "in", "value": ["delivered", "opened"]},
            {"segment": "vip"}]}, "then": "exit", "else": "exit"}), KNOWN)
    assert plan.steps["b"].rule is not None
    assert _error(_steps({"id": "b", "type": "branch", "then": "exit", "else": "exit",
                          "rule": {"all": [{"journey": "steps.x.outcome", "op": "around", "value": 1}]}})) \
        == "steps[b].rule.all[0].op"
    assert _error(_steps({"id": "b", "type": "branch", "then": "exit", "else": "exit",
                          "rule": {"segment": "nobody"}})) == "steps[b].rule"


def test_entries_reentry_and_goals() -> None:
    assert _error({"entry": {"event": "Checkout Started", "api": True}, "steps": [{"id": "a", "type": "exit"}]}) \
        == "entry"
    assert _error({"entry": {"api": True}, "reentry": {"policy": "after"}, "steps": [{"id": "a", "type": "exit"}]}) \
        == "reentry.days"
    assert _error({"entry": {"api": True}, "reentry": {"policy": "per_entry_key", "entry_key": "cart"},
                   "steps": [{"id": "a", "type": "exit"}]}) == "reentry.entry_key"
    assert _error({"entry": {"api": True}, "reentry": {"policy": "per_entry_key",
                                                       "entry_key": "event.properties.cart_id"},
                   "steps": [{"id": "a", "type": "exit"}]}) == "reentry.entry_key"
    assert _error({"entry": {"api": True}, "goal": {"event": "Order Completed", "within": {"days": -1}},
                   "steps": [{"id": "a", "type": "exit"}]}) == "goal.within.days"
    plan = definition_parse({"entry": {"segment_entered": "vip"}, "steps": [{"id": "a", "type": "exit"}]}, KNOWN)
    assert plan.entry_event == "Segment Entered"
