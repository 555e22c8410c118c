"""The journeys API as docs/api.md states it: drafts, publishing, pause and resume, API entries, runs with
their history, one run's pause/resume/cancel, evaluations, migration — and bad definitions answered 400
naming the step and the field, never a 5xx."""

from __future__ import annotations

from typing import Any

import pytest

from tsunagu.journeys.models import Run
from tsunagu.journeys.tests.support import engine_pass, known_events, settle
from tsunagu.messaging.tests.helpers import identified, inapp_communication

pytestmark = pytest.mark.django_db

API = "/api/v1"
WELCOME = {
    "entry": {"api": True},
    "steps": [
        {"id": "hello", "type": "send", "communication": "notice"},
        {"id": "pause_a_day", "type": "wait", "seconds": 86400},
        {"id": "check", "type": "branch", "rule": {"journey": "entry.data.plan", "op": "eq", "value": "gold"},
         "then": "thanks", "else": "exit"},
        {"id": "thanks", "type": "update_traits", "traits": {"welcomed": True}},
    ],
}


@pytest.fixture
def ready(workspace: Any, send: Any) -> Any:
    inapp_communication(workspace)
    identified(send, workspace, user_id="u-1", name="花子")
    known_events(send, "Checkout Started")
    return workspace


def _create(api: Any, definition: Any = None, key: str = "welcome") -> tuple[int, Any]:
    return api.post(f"{API}/journeys", {"key": key, "name": "Welcome", "definition": definition or WELCOME})


def test_a_draft_is_published_and_an_api_entry_runs_with_its_history(ready: Any, api: Any, workspace: Any) -> None:
    status, body = _create(api)
    assert status == 201, body
    assert (body["status"], body["version"], body["definition"]) == ("draft", 0, None)
    assert api.post(f"{API}/journeys/welcome/runs", {"user_id": "u-1"})[0] == 409  # not published yet
    status, body = api.post(f"{API}/journeys/welcome/publish")
    assert (status, body) == (200, {"version": 1})
    status, run = api.post(f"{API}/journeys/welcome/runs", {"user_id": "u-1", "data": {"plan": "gold"}})
    assert status == 201, run
    assert (run["status"], run["step"], run["version"]) == ("active", "hello", 1)
    engine_pass()
    status, page = api.get(f"{API}/journeys/welcome/runs", status="waiting")
    assert status == 200
    (item,) = page["items"]
    assert item["id"] == run["id"] and item["step"] == "pause_a_day"
    assert [(h["step"], h["action"]) for h in item["history"]] == [
        ("hello", "entered"), ("hello", "step"), ("pause_a_day", "wait")]
    # The history keeps the send as recorded; the delivery's outcome comes back as an event, into the context.
    assert item["history"][1]["outcome"]["outcome"] == "queued"
    settle(workspace)
    _, page = api.get(f"{API}/journeys/welcome/runs", customer_id=run["customer_id"])
    assert page["items"][0]["context"]["steps"]["hello"]["outcome"] == "delivered"
    assert page["items"][0]["context"]["last_channel"] == "in_app"
    # once (the default): the same customer does not enter again.
    assert api.post(f"{API}/journeys/welcome/runs", {"user_id": "u-1"})[0] == 409


def test_one_run_is_paused_resumed_and_cancelled_with_the_actor_in_its_history(ready: Any, api: Any) -> None:
    _create(api)
    api.post(f"{API}/journeys/welcome/publish")
    _, run = api.post(f"{API}/journeys/welcome/runs", {"user_id": "u-1"})
    status, paused = api.post(f"{API}/journey-runs/{run['id']}/pause")
    assert (status, paused["status"]) == (200, "paused")
    assert engine_pass() == 0  # a paused run is not claimed
    assert api.post(f"{API}/journey-runs/{run['id']}/pause")[0] == 409
    status, resumed = api.post(f"{API}/journey-runs/{run['id']}/resume")
    assert (status, resumed["status"], resumed["step"]) == (200, "active", "hello")
    engine_pass()
    status, cancelled = api.post(f"{API}/journey-runs/{run['id']}/cancel")
    assert (status, cancelled["status"]) == (200, "cancelled")
    actions = [(h["action"], h["actor"]) for h in cancelled["history"]]
    assert ("paused", "api key " + actions[-1][1].split("api key ")[-1]) in actions
    assert [a for a, _ in actions] == ["entered", "paused", "resumed", "step", "wait", "cancelled"]
    assert all(actor.startswith("api key") for a, actor in actions if a in ("paused", "resumed", "cancelled"))


def test_evaluations_attach_to_the_step_the_run_is_at(ready: Any, api: Any) -> None:
    _create(api)
    api.post(f"{API}/journeys/welcome/publish")
    _, run = api.post(f"{API}/journeys/welcome/runs", {"user_id": "u-1"})
    engine_pass()
    status, body = api.post(f"{API}/journey-runs/{run['id']}/evaluations", {"name": "csat", "value": 4})
    assert status == 201, body
    assert body["evaluations"] == [{"name": "csat", "value": 4, "step": "pause_a_day", "at": body["evaluations"][0]
                                    ["at"], "actor": body["evaluations"][0]["actor"]}]
    status, err = api.post(f"{API}/journey-runs/{run['id']}/evaluations", {"name": "csat", "value": {"x": 1}})
    assert (status, err["field"]) == (400, "value")
    status, stats = api.get(f"{API}/journeys/welcome/stats")
    assert stats["evaluations"] == [{"step": "pause_a_day", "name": "csat", "count": 1, "mean": 4.0}]


@pytest.mark.parametrize(("definition", "field"), [
    ({"entry": {"api": True}, "steps": []}, "definition.steps"),
    ({"entry": {"api": True}, "steps": [{"id": "a", "type": "send", "communication": "nope"}]},
     "definition.steps[a].communication"),
    ({"entry": {"api": True}, "steps": [{"id": "a", "type": "wait", "seconds": 5, "next": "zzz"}]},
     "definition.steps[a].next"),
    ({"entry": {"api": True}, "steps": [{"id": "a", "type": "exit"}, {"id": "b", "type": "exit"}]},
     "definition.steps[b]"),
    ({"entry": {"api": True}, "steps": [
        {"id": "a", "type": "branch", "rule": {"trait": "plan", "op": "exists"}, "then": "b", "else": "exit"},
        {"id": "b", "type": "update_traits", "traits": {"x": 1}, "next": "a"}]}, "definition.steps[a]"),
    ({"entry": {"api": True}, "steps": [
        {"id": "a", "type": "branch", "rule": {"trait": "plan", "op": "bogus"}, "then": "exit", "else": "exit"}]},
     "definition.steps[a].rule.op"),
    ({"entry": {"event": "Never Seen"}, "steps": [{"id": "a", "type": "exit"}]}, "definition.entry.event"),
    ({"entry": {"event": "Checkout Started", "where": [{"property": "x", "op": "nope"}]},
      "steps": [{"id": "a", "type": "exit"}]}, "definition.entry.where[0].op"),
    ({"entry": {"api": True}, "steps": [{"id": "a", "type": "split", "paths": [{"percent": 60, "next": "exit"}]}]},
     "definition.steps[a].paths"),
    ({"entry": {"api": True}, "steps": [{"id": "a", "type": "teleport"}]}, "definition.steps[a].type"),
    ({"entry": {"api": True}, "steps": [{"id": "a", "type": "wait", "until_time": "25:00"}]},
     "definition.steps[a].until_time"),
    ({"entry": {"segment_entered": "vip"}, "steps": [{"id": "a", "type": "exit"}]},
     "definition.entry.segment_entered"),
    ({"entry": {"schedule": {"cron": "every day", "segment": "vip"}}, "steps": [{"id": "a", "type": "exit"}]},
     "definition.entry.schedule.cron"),
    ("not an object", "definition"),
])
def test_a_bad_definition_is_a_400_naming_the_step_and_field(ready: Any, api: Any, definition: Any,
                                                              field: str) -> None:
    status, body = _create(api, definition)
    assert status == 400, body
    assert body["field"] == field, body


def test_put_replaces_the_draft_and_published_versions_stay(ready: Any, api: Any) -> None:
    _create(api)
    api.post(f"{API}/journeys/welcome/publish")
    changed = {**WELCOME, "steps": [*WELCOME["steps"][:2], {"id": "check", "type": "exit"}]}
    status, body = api.client.put(f"{API}/journeys/welcome", {"definition": changed}, content_type="application/json",
                                  headers=api.headers).status_code, None
    assert status == 200
    status, body = api.get(f"{API}/journeys/welcome")
    assert body["draft"] == changed and body["definition"] == WELCOME and body["version"] == 1
    assert api.post(f"{API}/journeys/welcome/publish")[1] == {"version": 2}
    status, body = api.get(f"{API}/journeys/welcome")
    assert body["definition"] == changed and [v["number"] for v in body["versions"]] == [2, 1]


def test_migrating_moves_runs_by_step_id_and_refuses_those_whose_step_is_gone(ready: Any, api: Any,
                                                                               send: Any, workspace: Any) -> None:
    _create(api)
    api.post(f"{API}/journeys/welcome/publish")
    identified(send, workspace, user_id="u-2")
    for uid in ("u-1", "u-2"):
        api.post(f"{API}/journeys/welcome/runs", {"user_id": uid})
    engine_pass()
    one = Run.objects.get(customer__user_id="u-2")
    api.post(f"{API}/journey-runs/{one.pk}/pause")  # paused runs move too; one is made to sit elsewhere
    Run.objects.filter(pk=one.pk).update(step="hello")
    v2 = {"entry": {"api": True}, "steps": [
        {"id": "pause_a_day", "type": "wait", "seconds": 3600},
        {"id": "bye", "type": "exit"}]}
    api.client.put(f"{API}/journeys/welcome", {"definition": v2}, content_type="application/json",
                   headers=api.headers)
    api.post(f"{API}/journeys/welcome/publish")
    status, body = api.post(f"{API}/journeys/welcome/migrate", {"from_version": 1, "to_version": 2})
    assert status == 200, body
    assert body["moved"] == 1
    assert body["refused"] == [{"run_id": one.pk, "step": "hello", "reason": "version 2 has no step 'hello'"}]
    moved = Run.objects.get(customer__user_id="u-1")
    assert moved.version.number == 2 and moved.step == "pause_a_day"
    assert api.post(f"{API}/journeys/welcome/migrate", {"from_version": 1, "to_version": 9})[0] == 404
    assert api.post(f"{API}/journeys/welcome/migrate", {"from_version": "one", "to_version": 2})[1]["field"] \
        == "from_version"


def test_stats_name_the_filter_at_fault(ready: Any, api: Any) -> None:
    _create(api)
    status, body = api.get(f"{API}/journeys/welcome/stats", segment="nobody")
    assert (status, body["field"]) == (404, "segment")
    status, body = api.get(f"{API}/journeys/welcome/stats", since="someday")
    assert (status, body["field"]) == (400, "since")
