"""Exactly once on PostgreSQL with real processes: four worker processes (``pg_worker.py``: the engine's
claim loop and the jobs loop) execute 10,000 runs of a journey whose steps are a split and a webhook to the
loopback stand-in. One worker is SIGKILLed inside a step, its claimed runs uncommitted; after its lease
(``TSUNAGU_JOURNEY_LEASE=2``) the others take them over. Then every run has each step exactly once in its
history and the stand-in received exactly one signed call per run, under the run's idempotency key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count, Min
from standardwebhooks import Webhook

from tsunagu.core import clock
from tsunagu.core.models import Job
from tsunagu.core.permissions import SYSTEM
from tsunagu.customers.models import Customer
from tsunagu.journeys.engine import WEBHOOK_JOB
from tsunagu.journeys.entries import Candidate, runs_enter
from tsunagu.journeys.models import Run, RunHistory
from tsunagu.journeys.plans import plan_of
from tsunagu.journeys.secrets import webhook_secret_of
from tsunagu.journeys.services import journey_create, journey_publish
from tsunagu.testing.pipeline import poll
from tsunagu.testing.standins.webhook import WebhookReceiver

ON_POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not ON_POSTGRES, reason="worker processes sharing one database: PostgreSQL only"),
    pytest.mark.django_db(transaction=True),
]

RUNS = 10_000
WORKERS = 4
LEASE = 2.0
WORKER = Path(__file__).with_name("pg_worker.py")


def _definition(url: str) -> dict[str, Any]:
    return {"entry": {"api": True}, "steps": [
        {"id": "ab", "type": "split", "paths": [{"percent": 100, "next": "call", "name": "all"}]},
        {"id": "call", "type": "webhook", "url": url, "payload": {"kind": "bench"}},
    ]}


def _database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def workers(tmp_path: Path) -> Any:
    procs: list[subprocess.Popen[bytes]] = []
    stop = tmp_path / "stop"
    env = {**os.environ, "TSUNAGU_DATABASE_URL": _database_url(), "TSUNAGU_JOURNEY_LEASE": str(LEASE),
           "TSUNAGU_DATA_DIR": str(settings.DATA_DIR),  # its secrets key decrypts the journey's
           "TSUNAGU_LOG_LEVEL": "WARNING",
           "DJANGO_SETTINGS_MODULE": "tsunagu.settings"}
    env.pop("PYTEST_CURRENT_TEST", None)

    def start(worker_id: str, hold: Path | None = None) -> subprocess.Popen[bytes]:
        args = [sys.executable, str(WORKER), worker_id, str(stop), *([str(hold)] if hold else [])]
        with open(tmp_path / f"{worker_id}.log", "wb") as log:
            proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log)
        procs.append(proc)
        return proc

    yield start
    stop.touch()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_four_worker_processes_execute_every_step_once_and_take_over_a_killed_one(
        workspace: Any, workers: Any, tmp_path: Path) -> None:
    workspace.allow_private_webhooks = True
    workspace.save(update_fields=["allow_private_webhooks"])
    hook = WebhookReceiver()
    journey = journey_create(workspace=workspace, key="calls", name="Calls", definition=_definition(hook.url()),
                             actor=SYSTEM)
    version = journey_publish(journey=journey, actor=SYSTEM)
    journey.refresh_from_db()
    # The stand-in verifies with the journey's own signing secret (made on first use, as a worker would).
    hook._verifier = Webhook(webhook_secret_of(journey))
    customers = Customer.objects.bulk_create(
        [Customer(workspace=workspace, user_id=f"u{i:05d}") for i in range(RUNS)], batch_size=2000)
    now = clock.now()
    runs_enter(journey=journey, version=version, plan=plan_of(version), now=now,
               candidates=[Candidate(customer_id=c.pk, entry={"data": {}}, at=now) for c in customers])
    assert Run.objects.filter(journey=journey).count() == RUNS
    with hook:
        held = tmp_path / "held"
        victim = workers("victim", hold=held)
        poll(held.exists, timeout=60)
        # The victim is inside a step of its first turn: its claim is committed, its turn is not.
        claimed = dict(Run.objects.filter(locked_by="victim").values_list("pk", "lease_until"))
        assert claimed, "the victim held no claim"
        for i in range(WORKERS - 1):
            workers(f"w{i}")
        time.sleep(0.5)  # the others are at work while the victim holds its runs
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)

        def all_done() -> bool:
            return Run.objects.filter(journey=journey, status=Run.Status.COMPLETED).count() == RUNS

        try:
            # What is asserted is exactly-once, not speed: on 2 CPUs shared with another suite the 10,000
            # runs took over 300 s (9,242 done at that bound), so the bound is generous.
            poll(all_done, timeout=900, every=0.5)
        except AssertionError:
            progress = {
                "runs": dict(Run.objects.filter(journey=journey).values_list("status").annotate(n=Count("id"))),
                "jobs": dict(Job.objects.filter(kind=WEBHOOK_JOB).values_list("status").annotate(n=Count("id"))),
                "received": len(hook.received)}
            raise AssertionError(f"not every run completed: {progress}") from None
        received = hook.received
        assert hook.rejected == []

    runs = Run.objects.filter(journey=journey)
    assert runs.exclude(status=Run.Status.COMPLETED).count() == 0
    assert runs.exclude(locked_by="").count() == 0
    # Each step exactly once in every run's history.
    per_run = (RunHistory.objects.filter(journey=journey).values("run_id", "step", "action")
               .annotate(n=Count("id")))
    assert [row for row in per_run if row["n"] != 1] == []
    expected = [("ab", "entered"), ("ab", "step"), ("call", "wait"), ("call", "response"), ("call", "done"),
                ("call", "completed")]
    counts = dict(((s, a), n) for s, a, n in RunHistory.objects.filter(journey=journey)
                  .values_list("step", "action").annotate(n=Count("id")).values_list("step", "action", "n"))
    assert counts == dict.fromkeys(expected, RUNS)
    # One job per run, each done; one verified call per run under its key, none twice.
    jobs = Job.objects.filter(kind=WEBHOOK_JOB)
    assert jobs.count() == RUNS and jobs.exclude(status=Job.Status.DONE).count() == 0
    ids = [r.webhook_id for r in received]
    assert len(ids) == RUNS and len(set(ids)) == RUNS
    assert set(ids) == {f"journey-run:{pk}:call:2" for pk in runs.values_list("pk", flat=True)}
    # The victim's claimed runs were taken over after its lease ran out, by the others: their first step
    # was executed (and committed) no earlier than the victim's lease end.
    first_step = dict(RunHistory.objects.filter(run_id__in=claimed, step="ab", action="step")
                      .values_list("run_id").annotate(at=Min("at")).values_list("run_id", "at"))
    assert set(first_step) == set(claimed)
    assert all(first_step[pk] >= lease_until for pk, lease_until in claimed.items())
