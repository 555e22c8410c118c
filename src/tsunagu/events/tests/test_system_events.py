"""``system_events_append``: the outboxes' way in. Each workspace's payloads go under its own system source;
a payload that fails validation is skipped with a warning and the valid ones still go."""

from __future__ import annotations

import logging

import pytest

from tsunagu.events.models import Event
from tsunagu.events.services import system_events_append
from tsunagu.testing.pipeline import apply_all

pytestmark = pytest.mark.django_db


def _track(message_id: str, user: str) -> dict:
    return {"type": "track", "event": "Noted", "messageId": message_id, "userId": user,
            "context": {"channel": "backoffice"}}


def test_valid_payloads_go_per_workspace_and_a_bad_one_is_skipped(workspace, other_workspace, caplog):
    bad = {"type": "track", "messageId": "m-bad", "userId": "u1"}  # no event name
    with caplog.at_level(logging.WARNING, logger="tsunagu.events.services"):
        appended = system_events_append(name="tsunagu test", payloads={
            workspace.pk: [_track("m-1", "u1"), bad], other_workspace.pk: [_track("m-2", "u2")]})
    assert appended == 2
    assert "m-bad" in caplog.text
    apply_all()
    stored = {(e.workspace_id, e.message_id, e.source.name) for e in Event.objects.all()}
    assert stored == {(workspace.pk, "m-1", "tsunagu test"), (other_workspace.pk, "m-2", "tsunagu test")}
