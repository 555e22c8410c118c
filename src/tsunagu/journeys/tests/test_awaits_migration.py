"""Migration 0002 moves what each waiting run awaits from the ``Await`` table into the run's row, and back
when reversed, on a real database: a run awaiting keeps awaiting the same event after an upgrade."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

OLD = ("journeys", "0001_initial")
NEW = ("journeys", "0002_run_awaits")
WHERE = [{"property": "total", "op": "gte", "value": 1000}]
DEFINITION = {"entry": {"api": True}, "steps": [
    {"id": "buy", "type": "wait_for_event", "event": "Order Completed", "where": WHERE, "timeout_seconds": 60},
    {"id": "open", "type": "wait_for_event", "event": "Email Opened"}]}


def migrate(target: tuple[str, str]) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


def test_waiting_runs_keep_what_they_await_through_the_upgrade_and_back() -> None:
    apps = migrate(OLD)
    try:
        Workspace = apps.get_model("core", "Workspace")
        Customer = apps.get_model("customers", "Customer")
        Journey = apps.get_model("journeys", "Journey")
        JourneyVersion = apps.get_model("journeys", "JourneyVersion")
        Run = apps.get_model("journeys", "Run")
        Await = apps.get_model("journeys", "Await")
        ws = Workspace.objects.create(name="Old", slug="old-awaits")
        journey = Journey.objects.create(workspace=ws, key="j", name="j", draft=DEFINITION, current_version=1)
        version = JourneyVersion.objects.create(journey=journey, number=1, definition=DEFINITION)
        runs = [Run.objects.create(workspace=ws, journey=journey, version=version,
                                   customer=Customer.objects.create(workspace=ws), step=step,
                                   step_state="waiting" if step else "", status="waiting" if step else "completed")
                for step in ("buy", "open", "")]
        Await.objects.create(run=runs[0], workspace=ws, customer_id=runs[0].customer_id, event="Order Completed",
                             step="buy", where=WHERE)
        Await.objects.create(run=runs[1], workspace=ws, customer_id=runs[1].customer_id, event="Email Opened",
                             step="open", where=[])

        apps = migrate(NEW)
        Run = apps.get_model("journeys", "Run")
        assert [Run.objects.get(pk=r.pk).awaits for r in runs] == ["Order Completed", "Email Opened", ""]

        apps = migrate(OLD)
        Await = apps.get_model("journeys", "Await")
        back = {a.run_id: (a.event, a.step, a.where, a.customer_id) for a in Await.objects.all()}
        assert back == {runs[0].pk: ("Order Completed", "buy", WHERE, runs[0].customer_id),
                        runs[1].pk: ("Email Opened", "open", [], runs[1].customer_id)}
    finally:
        call_command("migrate", verbosity=0)  # back to the latest state for the tests that follow
