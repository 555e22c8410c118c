"""Bigger transactions while the applier is behind: a chunk that came back full doubles the next, up to
``TSUNAGU_APPLY_CHUNK_MAX``; once caught up the applier goes back to ``TSUNAGU_APPLY_CHUNK``. Every event
is still applied once, in log order."""

from __future__ import annotations

from typing import Any

import pytest

from tsunagu.events import reactions
from tsunagu.events.applier import Applier, ChunkOutcome, _next_limit, applier_claim, events_apply_pending
from tsunagu.events.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture
def sizes() -> Any:
    seen: list[list[str]] = []
    reactions.reaction("test-sizes")(lambda applied: seen.append([e.message_id for e in applied.events]))
    yield seen
    reactions.reaction_remove("test-sizes")


def test_full_chunks_double_up_to_the_maximum_and_a_short_one_resets(settings):
    settings.TSUNAGU_APPLY_CHUNK = 100
    settings.TSUNAGU_APPLY_CHUNK_MAX = 350
    assert _next_limit(100, ChunkOutcome(events=100, limit=100)) == 200
    assert _next_limit(200, ChunkOutcome(events=101, limit=200)) == 350
    assert _next_limit(350, ChunkOutcome(events=350, limit=350)) == 350
    assert _next_limit(350, ChunkOutcome(events=175, limit=350)) == 100  # caught up: back to the base
    settings.TSUNAGU_APPLY_CHUNK_MAX = 50  # a maximum below the base is the base
    assert _next_limit(100, ChunkOutcome(events=100, limit=100)) == 100


def test_a_backlog_is_applied_in_growing_chunks_in_log_order(send, workspace, settings, sizes):
    settings.TSUNAGU_APPLY_CHUNK = 2
    settings.TSUNAGU_APPLY_CHUNK_MAX = 8
    for i in range(30):
        assert send("/v1/track", {"userId": "u-1", "event": "E", "messageId": f"m-{i}"}, apply=False)[0] == 200
    events_apply_pending(workspace_id=workspace.pk)
    assert [len(chunk) for chunk in sizes] == [2, 4, 8, 8, 8]
    assert [mid for chunk in sizes for mid in chunk] == [f"m-{i}" for i in range(30)]
    assert Event.objects.count() == 30


def test_the_worker_loop_grows_its_chunks_too(send, workspace, settings, sizes):
    settings.TSUNAGU_APPLY_CHUNK = 2
    settings.TSUNAGU_APPLY_CHUNK_MAX = 4
    for i in range(12):
        assert send("/v1/track", {"userId": "u-1", "event": "E", "messageId": f"w-{i}"}, apply=False)[0] == 200
    applier = Applier(owner="test-worker", slice_seconds=60)
    assert applier_claim(workspace_id=workspace.pk, owner="test-worker")
    assert applier._apply_slice(workspace.pk) == 12
    assert [len(chunk) for chunk in sizes] == [2, 4, 4, 2]
    # Caught up (the last chunk was short): the next slice starts from the base again.
    assert applier._limit[workspace.pk] == 2
