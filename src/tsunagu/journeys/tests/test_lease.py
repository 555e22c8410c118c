"""A claim lives as long as its lease: worker A claims, its lease runs out (the clock moved), worker B claims
the same runs and executes them; A's late turn finds the runs no longer its own and executes nothing, so no
step runs twice."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from tsunagu.core import clock
from tsunagu.core.permissions import SYSTEM
from tsunagu.customers.models import Customer
from tsunagu.journeys.engine import lease, runs_claim, runs_execute
from tsunagu.journeys.models import Run, RunHistory, TraitUpdate
from tsunagu.journeys.services import journey_create, journey_publish, run_start
from tsunagu.journeys.tests.support import path

pytestmark = pytest.mark.django_db

TWO_STEPS = {
    "entry": {"api": True},
    "steps": [
        {"id": "ab", "type": "split", "paths": [{"percent": 100, "next": "mark", "name": "all"}]},
        {"id": "mark", "type": "update_traits", "traits": {"seen": True}},
    ],
}


@pytest.fixture
def runs(workspace: Any) -> list[Run]:
    journey = journey_create(workspace=workspace, key="lease", name="Lease", definition=TWO_STEPS, actor=SYSTEM)
    journey_publish(journey=journey, actor=SYSTEM)
    journey.refresh_from_db()
    customers = [Customer.objects.create(workspace=workspace, user_id=f"u-{i}") for i in range(3)]
    return [run_start(journey=journey, actor=SYSTEM, customer_id=c.pk) for c in customers]


def test_an_expired_claim_is_taken_over_and_the_first_worker_executes_nothing(runs: list[Run]) -> None:
    ids = sorted(r.pk for r in runs)
    with time_machine.travel(clock.now(), tick=False) as traveller:
        assert sorted(runs_claim(worker_id="A")) == ids
        assert runs_claim(worker_id="B") == []  # A's lease holds
        traveller.shift(lease() + dt.timedelta(seconds=1))
        assert sorted(runs_claim(worker_id="B")) == ids
        assert set(Run.objects.filter(pk__in=ids).values_list("locked_by", flat=True)) == {"B"}
        # A wakes up late, before B's turn: nothing is A's any more, so A executes nothing.
        assert runs_execute(ids=ids, worker_id="A") == 0
        assert set(Run.objects.filter(pk__in=ids).values_list("status", flat=True)) == {Run.Status.ACTIVE}
        assert runs_execute(ids=ids, worker_id="B") == 2 * len(ids)
    for run in Run.objects.filter(pk__in=ids):
        assert run.status == Run.Status.COMPLETED and run.locked_by == "" and run.lease_until is None
        assert path(run) == [("ab", "entered"), ("ab", "step"), ("mark", "step"), ("mark", "completed")]
    assert RunHistory.objects.filter(run_id__in=ids, action="step").count() == 2 * len(ids)
    assert TraitUpdate.objects.count() == len(ids)


def test_a_late_turn_after_the_takeover_finished_changes_nothing(runs: list[Run]) -> None:
    ids = sorted(r.pk for r in runs)
    with time_machine.travel(clock.now(), tick=False) as traveller:
        runs_claim(worker_id="A")
        traveller.shift(lease() + dt.timedelta(seconds=1))
        runs_claim(worker_id="B")
        runs_execute(ids=ids, worker_id="B")
        before = list(Run.objects.filter(pk__in=ids).order_by("pk").values())
        traveller.shift(dt.timedelta(minutes=5))
        assert runs_execute(ids=ids, worker_id="A") == 0
        assert runs_claim(worker_id="A") == []  # ended runs are no work
    assert list(Run.objects.filter(pk__in=ids).order_by("pk").values()) == before
    assert RunHistory.objects.filter(run_id__in=ids).count() == 4 * len(ids)
