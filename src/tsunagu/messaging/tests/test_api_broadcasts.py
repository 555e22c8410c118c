"""The broadcasts API: create (201 with id and status), errors naming the field, list, progress and summary,
pause, resume, cancel."""

from __future__ import annotations

import pytest

from tsunagu.messaging.tests.broadcast_helpers import people, run_until_idle
from tsunagu.messaging.tests.helpers import inapp_communication

pytestmark = pytest.mark.django_db

VARIANTS = [{"channel": "in_app", "locale": "ja", "title": "お知らせ", "body": "{{ data.coupon }}"}]


def test_create_follow_and_finish_a_broadcast(api, workspace):
    people(workspace, 3)
    inapp_communication(workspace, variants=VARIANTS)
    status, body = api.post("/api/v1/broadcasts", {
        "communication": "notice", "name": "冬のセール",
        "audience": {"csv": "user_id,coupon\nu0,A\nu1,B\nu2,C\nghost,D\n"},
    })
    assert status == 201, body
    assert set(body) == {"id", "status"} and body["status"] == "scheduled"
    bid = body["id"]
    status, listed = api.get("/api/v1/broadcasts")
    assert status == 200 and [(b["id"], b["name"], b["total"]) for b in listed["items"]] == [(bid, "冬のセール", 4)]
    assert listed["items"][0]["summary"] is None  # the list stays cheap
    run_until_idle()
    status, one = api.get(f"/api/v1/broadcasts/{bid}")
    assert status == 200
    assert (one["status"], one["progress"], one["communication"]) == ("done", 1.0, "notice")
    assert one["policy"] == {"steps": [{"channel": "in_app"}], "late_success": "ignore"}
    s = one["summary"]
    assert (s["total"], s["expanded"], s["sends"], s["sent"], s["pending"]) == (4, 4, 3, 3, 0)
    assert s["skipped"] == {"unknown_recipient": 1}


def test_pause_resume_cancel_through_the_api(api, workspace):
    people(workspace, 2)
    inapp_communication(workspace, variants=VARIANTS)
    _, body = api.post("/api/v1/broadcasts", {"communication": "notice", "audience": {"user_ids": ["u0", "u1"]}})
    bid = body["id"]
    status, paused = api.post(f"/api/v1/broadcasts/{bid}/pause")
    assert status == 200 and paused["status"] == "paused"
    run_until_idle()
    assert api.get(f"/api/v1/broadcasts/{bid}")[1]["summary"]["sends"] == 0  # paused: nothing expanded
    status, resumed = api.post(f"/api/v1/broadcasts/{bid}/resume")
    assert status == 200 and resumed["status"] == "scheduled"  # it had not started yet
    status, cancelled = api.post(f"/api/v1/broadcasts/{bid}/cancel")
    assert status == 200 and cancelled["status"] == "cancelled" and cancelled["finished_at"]
    run_until_idle()
    assert api.get(f"/api/v1/broadcasts/{bid}")[1]["summary"]["sends"] == 0
    status, body = api.post(f"/api/v1/broadcasts/{bid}/resume")
    assert status == 400 and body["field"] == "status"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"communication": "notice", "audience": {"customer_ids": [1, "x"]}}, "audience.customer_ids[1]"),
        ({"communication": "notice", "audience": {"csv": "email\nnope\n"}}, "audience.csv"),
        ({"communication": "notice", "audience": {}}, "audience"),
        ({"communication": "notice", "audience": {"user_ids": ["a"]}, "send_at": "tomorrow"}, "send_at"),
        ({"communication": "notice", "audience": {"user_ids": ["a"]}, "policy": {"steps": []}}, "policy.steps"),
        ({"communication": "notice", "audience": {"user_ids": ["a"]}, "data": [1]}, "data"),
    ],
)
def test_bad_requests_are_400_naming_the_field(api, workspace, payload, field):
    inapp_communication(workspace, variants=VARIANTS)
    status, body = api.post("/api/v1/broadcasts", payload)
    assert status == 400, body
    assert body["field"] == field, body


def test_unknown_communication_and_broadcast_are_404(api, workspace):
    status, body = api.post("/api/v1/broadcasts", {"communication": "nope", "audience": {"user_ids": ["a"]}})
    assert status == 404 and body["field"] == "communication"
    assert api.get("/api/v1/broadcasts/999")[0] == 404
    assert api.post("/api/v1/broadcasts/999/pause")[0] == 404
