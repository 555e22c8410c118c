"""Shared helpers of journeys' tests: the engine run to quiet, the way a worker would, and known events."""

from __future__ import annotations

from typing import Any

from tsunagu.journeys.engine import runs_run_due
from tsunagu.journeys.models import Run
from tsunagu.journeys.outbox import trait_updates_publish
from tsunagu.segments.services import segment_changes_publish
from tsunagu.testing.pipeline import apply_all


def engine_pass(worker_id: str = "test-worker", *, rounds: int = 5) -> int:
    """Claim and execute due runs until none is due (at most ``rounds`` claims); returns the runs claimed."""
    total = 0
    for _ in range(rounds):
        claimed = runs_run_due(worker_id=worker_id)
        total += claimed
        if not claimed:
            break
    return total


def settle(workspace: Any, *, messaging: bool = True) -> None:
    """Everything a worker does, until quiet: runs, sends and deliveries, their events applied."""
    from tsunagu.messaging.tests.helpers import work

    for _ in range(4):
        engine_pass()
        if messaging:
            work()
        trait_updates_publish()
        segment_changes_publish()  # on_commit callbacks do not run in a test's transaction
        apply_all(workspace)
    engine_pass()


def run_of(journey_key: str, user_id: str) -> Run:
    return Run.objects.select_related("version").get(journey__key=journey_key, customer__user_id=user_id,
                                                      customer__merged_into__isnull=True)


def path(run: Run) -> list[tuple[str, str]]:
    """The run's history as (step, action) pairs."""
    return list(run.history.order_by("id").values_list("step", "action"))


def known_events(send: Any, *names: str) -> None:
    """Make event names known to the workspace (a definition may only name events it has received)."""
    for name in names:
        status, body = send("/v1/track", {"userId": "seed-user", "event": name})
        assert status == 200, body
