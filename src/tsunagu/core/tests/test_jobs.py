"""Jobs as rows: idempotent enqueue, claims with a lease, takeover of an expired lease, retries with backoff,
and parallel workers that never run the same job twice."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter

import pytest
import time_machine
from django.db import OperationalError, connection

from tsunagu.core import jobs
from tsunagu.core.jobs import backoff, job_claim, job_complete, job_enqueue, job_fail, job_handler, jobs_run_due
from tsunagu.core.models import Job

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(seconds=60)


@pytest.fixture
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def handlers(monkeypatch):
    """A private handler registry, so the test's handlers never leak into other tests."""
    registry: dict = {}
    monkeypatch.setattr(jobs, "_HANDLERS", registry)
    return registry


@pytest.mark.django_db
def test_enqueue_with_the_same_idempotency_key_is_one_row(frozen):
    first = job_enqueue(kind="mail.send", payload={"to": "a"}, idempotency_key="welcome:42")
    second = job_enqueue(kind="mail.send", payload={"to": "b"}, idempotency_key="welcome:42")
    assert second.pk == first.pk
    assert Job.objects.count() == 1
    assert Job.objects.get().payload == {"to": "a"}, "the first enqueue wins"
    job_enqueue(kind="mail.send", payload={"to": "c"}, idempotency_key="welcome:43")
    job_enqueue(kind="mail.send", payload={"to": "d"})
    job_enqueue(kind="mail.send", payload={"to": "e"})
    assert Job.objects.count() == 4, "without a key, or with another key, each enqueue is a row"


@pytest.mark.django_db
def test_a_claim_gives_a_lease_and_excludes_other_workers(frozen):
    job = job_enqueue(kind="k", idempotency_key="one")
    claimed = job_claim(worker_id="w1", lease=LEASE)
    assert [j.pk for j in claimed] == [job.pk]
    row = Job.objects.get()
    assert (row.status, row.locked_by, row.lease_until) == (Job.Status.RUNNING, "w1", T0 + LEASE)
    assert job_claim(worker_id="w2", lease=LEASE) == []
    frozen.shift(LEASE - dt.timedelta(seconds=1))
    assert job_claim(worker_id="w2", lease=LEASE) == [], "the lease still holds"
    assert job_claim(worker_id="w1", lease=LEASE) == [], "a running job is not claimed again, even by its worker"


@pytest.mark.django_db
def test_jobs_not_yet_due_are_not_claimed(frozen):
    job_enqueue(kind="k", due_at=T0 + dt.timedelta(minutes=5))
    assert job_claim(worker_id="w1") == []
    frozen.shift(dt.timedelta(minutes=5))
    assert len(job_claim(worker_id="w1")) == 1


@pytest.mark.django_db
def test_an_expired_lease_is_taken_over_and_the_first_worker_loses_its_claim(frozen):
    job_enqueue(kind="k")
    (mine,) = job_claim(worker_id="w1", lease=LEASE)
    frozen.shift(LEASE + dt.timedelta(seconds=1))  # w1 hangs or died
    (theirs,) = job_claim(worker_id="w2", lease=LEASE)
    assert theirs.pk == mine.pk
    row = Job.objects.get()
    assert (row.locked_by, row.lease_until) == ("w2", T0 + LEASE + dt.timedelta(seconds=1) + LEASE)
    # w1 wakes up: its completion and its failure are both refused and change nothing.
    assert job_complete(job=mine, worker_id="w1") is False
    job_fail(job=mine, worker_id="w1", error="late failure")
    row = Job.objects.get()
    # The takeover counted w1's lost run as an attempt; w1's late failure counted nothing more.
    assert (row.status, row.locked_by, row.attempts) == (Job.Status.RUNNING, "w2", 1)
    assert "late failure" not in row.last_error
    assert job_complete(job=theirs, worker_id="w2") is True
    row = Job.objects.get()
    assert row.status == Job.Status.DONE and row.finished_at == frozen_now()
    assert job_complete(job=theirs, worker_id="w2") is False, "a job completes once"
    frozen.shift(dt.timedelta(days=1))
    assert job_claim(worker_id="w3") == [], "a done job is never claimed again"


def frozen_now() -> dt.datetime:
    return dt.datetime.now(tz=dt.UTC)


@pytest.mark.django_db
def test_a_failing_job_is_retried_with_backoff_then_given_up(frozen, handlers):
    calls: list[int] = []

    @job_handler("flaky")
    def flaky(job: Job) -> None:
        calls.append(job.attempts)
        raise RuntimeError(f"provider down (attempt {job.attempts + 1})")

    job_enqueue(kind="flaky", max_attempts=3)
    assert jobs_run_due(worker_id="w1") == 1
    row = Job.objects.get()
    assert (row.status, row.attempts) == (Job.Status.QUEUED, 1)
    assert "provider down (attempt 1)" in row.last_error
    assert row.due_at == T0 + backoff(1) == T0 + dt.timedelta(seconds=10)
    assert row.lease_until is None

    frozen.shift(backoff(1) - dt.timedelta(seconds=1))
    assert jobs_run_due(worker_id="w1") == 0, "not before the backoff has passed"
    frozen.shift(dt.timedelta(seconds=1))
    assert jobs_run_due(worker_id="w2") == 1
    row = Job.objects.get()
    assert (row.status, row.attempts) == (Job.Status.QUEUED, 2)
    assert row.due_at == frozen_now() + dt.timedelta(seconds=20), "the backoff doubles"

    frozen.shift(dt.timedelta(seconds=20))
    assert jobs_run_due(worker_id="w1") == 1
    row = Job.objects.get()
    assert (row.status, row.attempts) == (Job.Status.FAILED, 3)
    assert row.finished_at == frozen_now()
    assert "provider down (attempt 3)" in row.last_error
    assert calls == [0, 1, 2]

    frozen.shift(dt.timedelta(days=30))
    assert jobs_run_due(worker_id="w1") == 0, "a job that gave up is not retried"
    assert calls == [0, 1, 2]


@pytest.mark.django_db
def test_a_job_whose_worker_dies_every_time_is_given_up(frozen):
    job_enqueue(kind="poison", max_attempts=3)
    for n in range(3):
        claimed = job_claim(worker_id=f"w{n}", lease=LEASE)
        assert len(claimed) == 1, f"run {n + 1} of 3"
        frozen.shift(LEASE + dt.timedelta(seconds=1))  # the worker was killed while running it
    assert job_claim(worker_id="w9", lease=LEASE) == []
    row = Job.objects.get()
    assert (row.status, row.attempts) == (Job.Status.FAILED, 3)
    assert "lease" in row.last_error and "w2" in row.last_error
    assert row.finished_at == frozen_now()


def test_backoff_grows_and_is_capped():
    delays = [backoff(n).total_seconds() for n in range(1, 12)]
    assert delays[:4] == [10, 20, 40, 80]
    assert delays == sorted(delays)
    assert max(delays) == 3600


@pytest.mark.django_db
def test_a_job_without_a_handler_fails_and_says_why(frozen, handlers):
    job_enqueue(kind="nobody.handles.this", max_attempts=1)
    assert jobs_run_due(worker_id="w1") == 1
    row = Job.objects.get()
    assert row.status == Job.Status.FAILED
    assert "no handler registered for 'nobody.handles.this'" in row.last_error


@pytest.mark.django_db
def test_a_successful_job_runs_once(frozen, handlers):
    seen: list[dict] = []
    job_handler("hello")(lambda job: seen.append(job.payload))
    job_enqueue(kind="hello", payload={"n": 1}, idempotency_key="hello-1")
    job_enqueue(kind="hello", payload={"n": 1}, idempotency_key="hello-1")
    assert jobs_run_due(worker_id="w1") == 1
    assert jobs_run_due(worker_id="w1") == 0
    frozen.shift(dt.timedelta(hours=1))
    assert jobs_run_due(worker_id="w2") == 0
    assert seen == [{"n": 1}]
    assert Job.objects.get().status == Job.Status.DONE


def shared_cache_retry(call):  # type: ignore[no-untyped-def]
    """Retry when SQLite says "database table is locked". The suite's SQLite database is an in-memory one in
    shared-cache mode, where a busy table fails at once instead of waiting out the busy timeout as the
    file database of a real deployment does. A failed claim or completion changed nothing (its transaction
    rolled back), so retrying it is what a worker would do; PostgreSQL never needs it."""
    while True:
        try:
            return call()
        except OperationalError as exc:
            if connection.vendor != "sqlite" or "locked" not in str(exc):
                raise
            time.sleep(0.001)


@pytest.mark.django_db(transaction=True)
def test_parallel_workers_never_run_the_same_job_twice(handlers):
    total = 120
    ran: list[int] = []
    lock = threading.Lock()

    @job_handler("count")
    def count(job: Job) -> None:
        with lock:
            ran.append(job.payload["n"])

    for n in range(total):
        job_enqueue(kind="count", payload={"n": n})

    start = threading.Barrier(6)
    failures: list[BaseException] = []
    completed_false: list[int] = []

    def worker(index: int) -> None:
        worker_id = f"thread-{index}"
        try:
            start.wait()
            idle = 0
            while idle < 3:
                claimed = shared_cache_retry(
                    lambda: job_claim(worker_id=worker_id, limit=4, lease=dt.timedelta(minutes=5))
                )
                if not claimed:
                    idle += 1
                    continue
                idle = 0
                for job in claimed:
                    handlers["count"](job)
                    if not shared_cache_retry(lambda job=job: job_complete(job=job, worker_id=worker_id)):
                        completed_false.append(job.pk)
        except BaseException as exc:  # noqa: BLE001 - reported below with the thread's name
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    assert not failures, failures
    counts = Counter(ran)
    assert [n for n, c in counts.items() if c > 1] == [], "a job ran twice"
    assert sorted(counts) == list(range(total)), "every job ran"
    assert completed_false == []
    assert Job.objects.filter(status=Job.Status.DONE).count() == total
    owners = Counter(Job.objects.values_list("locked_by", flat=True))
    assert len(owners) > 1, f"one worker did everything, the race was not exercised: {owners}"


# -- several worker processes on one real database ---------------------------------------------------

WORKER_SCRIPT = """
import json, os, sys, time
import django
django.setup()
import datetime as dt
from tsunagu.core.jobs import job_claim, job_complete, job_enqueue
mode, worker_id, go = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "enqueue":
    from django.db import transaction
    with transaction.atomic():
        for n in range(int(worker_id)):
            job_enqueue(kind="count", payload={"n": n}, idempotency_key=f"count:{n}")
    sys.exit(0)
if mode == "crash":
    claimed = job_claim(worker_id=worker_id, limit=5, lease=dt.timedelta(seconds=1))
    print(json.dumps([[j.pk, j.payload["n"]] for j in claimed]), flush=True)
    time.sleep(600)
while not os.path.exists(go):
    time.sleep(0.01)
done, last = [], time.monotonic()
while time.monotonic() - last < 1.8:
    claimed = job_claim(worker_id=worker_id, limit=4, lease=dt.timedelta(seconds=30))
    if not claimed:
        time.sleep(0.05)
        continue
    last = time.monotonic()
    for job in claimed:
        time.sleep(0.05)  # each job takes a moment, as real work does, so the others get a turn
        done.append([job.payload["n"], job_complete(job=job, worker_id=worker_id)])
print(json.dumps(done), flush=True)
"""


@pytest.mark.live
def test_worker_processes_share_the_work_and_take_over_a_killed_workers_jobs(tmp_path):
    import json
    import subprocess
    import sys

    from tsunagu.testing.live import LiveServer

    total = 40
    holder = LiveServer(data_dir=tmp_path / "jobs")
    holder.cli("migrate")
    go = tmp_path / "go"

    def spawn(mode: str, arg: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT, mode, arg, str(go)],
            env=holder.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    enqueue = spawn("enqueue", str(total))
    assert enqueue.wait(timeout=60) == 0, enqueue.stderr.read() if enqueue.stderr else ""
    crasher = spawn("crash", "crasher")
    workers = [spawn("work", f"proc-{i}") for i in range(4)]
    try:
        assert crasher.stdout is not None
        stolen_rows = json.loads(crasher.stdout.readline())
        assert len(stolen_rows) == 5, "the crashing worker claimed its jobs"
        stolen = [n for _, n in stolen_rows]
        crasher.kill()  # dies holding five claims with a one-second lease
        go.touch()  # the others start together
        outputs = []
        for w in workers:
            out, err = w.communicate(timeout=60)
            assert w.returncode == 0, err
            outputs.append(json.loads(out))
    finally:
        for p in [crasher, *workers]:
            if p.poll() is None:
                p.kill()
                p.wait()
    completions = [(n, ok) for out in outputs for n, ok in out]
    assert all(ok for _, ok in completions), "a worker ran a job whose claim it had lost"
    counts = Counter(n for n, _ in completions)
    assert [n for n, c in counts.items() if c > 1] == [], "a job ran twice"
    assert sorted(counts) == list(range(total)), "every job ran, the killed worker's included"
    assert set(stolen) <= set(counts)
    assert sum(1 for out in outputs if out) > 1, "the work was not shared between processes"
    rows = holder.query("SELECT status, COUNT(*) FROM core_job GROUP BY status")
    assert dict(rows) == {"done": total}
    for pk, _ in stolen_rows:
        ((taker,),) = holder.query("SELECT locked_by FROM core_job WHERE id = %s", (pk,))
        assert taker.startswith("proc-"), "a live worker completed the killed worker's job"
