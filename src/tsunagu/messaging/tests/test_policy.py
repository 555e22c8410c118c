"""Channel policies through the API: checked naming the step, kept on the communication, overridden by a
send, and a send's attempts in order on ``GET /api/v1/sends/{id}``."""

from __future__ import annotations

import pytest

from tsunagu.messaging.tests.helpers import api_call, identified

pytestmark = pytest.mark.django_db

VARIANTS = [
    {"channel": "line", "locale": "ja", "text": "こんにちは"},
    {"channel": "sms", "locale": "ja", "text": "こんにちは"},
    {"channel": "email", "locale": "ja", "subject": "こんにちは", "html": "<p>こんにちは</p>"},
]


def test_a_policy_is_checked_naming_the_step(token):
    base = {"key": "hello", "name": "Hello", "topic": "service", "variants": VARIANTS}
    for policy, field in [
        ({"steps": []}, "policy.steps"),
        ({"steps": [{"channel": "fax"}]}, "policy.steps[0].channel"),
        ({"steps": [{"channel": "webpush"}]}, "policy.steps[0].channel"),  # no web push variant
        ({"steps": [{"channel": "sms"}, {"channel": "sms"}]}, "policy.steps[1].channel"),
        ({"steps": [{"channel": "email", "wait": {"delivered": 60}}]}, "policy.steps[0].wait.delivered"),
        ({"steps": [{"channel": "line", "wait": {"read": 60}}]}, "policy.steps[0].wait.read"),
        ({"steps": [{"channel": "sms", "wait": {"delivered": 0}}]}, "policy.steps[0].wait.delivered"),
        ({"steps": [{"channel": "sms", "wait": {"soon": 5}}]}, "policy.steps[0].wait"),
        ({"steps": [{"channel": "sms"}], "late_success": "maybe"}, "policy.late_success"),
        ({"steps": [{"channel": "sms", "retry": 3}]}, "policy.steps[0]"),
    ]:
        status, body = api_call("post", "/api/v1/communications", token, {**base, "policy": policy})
        assert (status, body.get("field")) == (400, field), (policy, body)


def test_the_policy_is_kept_replaced_or_cleared_with_new_versions(token):
    policy = {"steps": [{"channel": "line"}, {"channel": "sms", "wait": {"delivered": 600}}, {"channel": "email"}],
              "late_success": "cancel"}
    body = {"key": "hello", "name": "Hello", "topic": "service", "variants": VARIANTS, "policy": policy}
    status, out = api_call("post", "/api/v1/communications", token, body)
    assert status == 201 and out["policy"] == policy
    status, out = api_call("put", "/api/v1/communications/hello", token, {"variants": VARIANTS})
    assert out["version"] == 2 and out["policy"] == policy  # left out: kept
    # A new version without the SMS variant cannot keep a policy that names SMS.
    status, out = api_call("put", "/api/v1/communications/hello", token, {"variants": [VARIANTS[0], VARIANTS[2]]})
    assert (status, out["field"]) == (400, "policy.steps[1].channel")
    status, out = api_call("put", "/api/v1/communications/hello", token, {"variants": VARIANTS, "policy": None})
    assert status == 200 and out["policy"] is None


def test_a_send_shows_its_policy_and_attempts_and_may_override_the_policy(token, workspace, send):
    identified(send, workspace, email="hanako@example.jp")
    api_call("post", "/api/v1/communications", token,
             {"key": "hello", "name": "Hello", "topic": "service", "variants": VARIANTS})
    override = {"steps": [{"channel": "sms"}, {"channel": "line"}]}
    status, created = api_call("post", "/api/v1/sends", token,
                               {"communication": "hello", "user_id": "u-1", "policy": override})
    assert status == 201 and created["status"] == "skipped" and created["due_at"] is None
    status, out = api_call("get", f"/api/v1/sends/{created['id']}", token)
    assert out["policy"] == {**override, "late_success": "ignore"}
    assert [(a["channel"], a["status"], a["reason"]) for a in out["attempts"]] == [
        ("sms", "skipped", "no_address"),
        ("line", "skipped", "no_address"),
    ]
    assert out["attempts"][0]["detail"] == "no sms channel is configured" and out["attempts"][0]["ended_at"]
    assert out["ended_at"] is not None and out["deliveries"] == []
    status, out = api_call("post", "/api/v1/sends", token,
                           {"communication": "hello", "user_id": "u-1", "policy": {"steps": [{"channel": "fax"}]}})
    assert (status, out["field"]) == (400, "policy.steps[0].channel")


def test_a_policy_change_is_audited_with_its_actor(token):
    from tsunagu.core.models import AuditEntry

    policy = {"steps": [{"channel": "sms"}, {"channel": "email"}], "late_success": "ignore"}
    api_call("post", "/api/v1/communications", token,
             {"key": "hello", "name": "Hello", "topic": "service", "variants": VARIANTS})
    api_call("put", "/api/v1/communications/hello", token, {"variants": VARIANTS, "policy": policy})
    entry = AuditEntry.objects.get(action="communication.versioned")
    assert entry.data["policy"] == {"before": None, "after": policy} and entry.actor
