"""``python -m bench journeys [--write]`` (part of ``make bench``): the journey engine on SQLite, each figure
beside a baseline measured in the same run, medians of ``--repeat`` repetitions.

1. **steps** — ``--runs`` (20,000) runs of a journey of cheap but real steps (a ``branch`` on a ``journey``
   condition, a ``split``, an ``update_traits``, a ``wait`` of 60 s), executed by ``runs_run_due`` in this
   process: a pass at the entry time (four steps each, up to the wait), then a pass 61 s later (the wait
   falls due, the run completes). Step executions/s = the steps executed (the runs' ``visits``) over the
   wall time of both passes. Baseline: as many bare core jobs (``tsunagu.core.jobs``), bulk-enqueued
   untimed, then claimed (``job_claim``, 200 at a time) and completed (``job_complete``) one by one.
2. **resume latency** — a real applier thread (``start_applier``) and the engine thread (``start_engine``)
   in this process; events appended to the ingest log in small batches at ``--latency-rate`` events/s.
   Baseline: the same number of events, before any journey exists, dated from their append to the
   applier's commit (a bench reaction, last stage, stamps each event's message id on commit). Then
   ``--latency-events`` runs waiting on ``wait_for_event`` (one per customer) and one awaited event per
   customer: append -> applier's commit, and append -> the engine's commit of the turn that executed the
   run's next step (``runs_execute`` wrapped: the time it returns).
3. **1,000,000 waiting runs** — ``--ingest-events`` (200,000) events of a shop's traffic for
   ``--customers`` (200,000) existing customers applied through the applier (``events_apply_pending``)
   with 0 waiting runs and with ``--waiting`` (1,000,000) runs waiting on ``wait_for_event`` (5 per
   customer, 10 journeys; 10 % await an event name the traffic carries, the rest names it never does),
   inserted with their ``Await`` rows by raw ``executemany``, alternating the order. Every run starts from
   the same database and ingest log (``Snapshot``, taken after the set-up): only the runs inserted differ.

Results go to the "Journeys" section of ``docs/performance.md`` (``--write``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
TARGET_STEPS = 5_000
TARGET_RESUME_P99_MS = 100.0
TARGET_SLOWDOWN = 0.10
WORKER = "bench:journeys"

STEPS_JOURNEY = {
    "entry": {"api": True},
    "reentry": {"policy": "per_entry_key", "entry_key": "data.n"},
    "steps": [
        {"id": "tier", "type": "branch", "rule": {"journey": "entry.data.tier", "op": "eq", "value": "gold"},
         "then": "ab", "else": "ab"},
        {"id": "ab", "type": "split", "paths": [{"percent": 50, "next": "mark", "name": "a"},
                                                {"percent": 50, "next": "mark", "name": "b"}]},
        {"id": "mark", "type": "update_traits", "traits": {"journey_bench": True}},
        {"id": "pause", "type": "wait", "seconds": 60},
    ],
}
AWAITED = "Bench Done"
RESUME_JOURNEY = {
    "entry": {"api": True},
    "steps": [
        {"id": "await", "type": "wait_for_event", "event": AWAITED, "timeout_seconds": 86400,
         "on_event": "after", "on_timeout": "exit"},
        {"id": "after", "type": "split", "paths": [{"percent": 100, "next": "exit", "name": "all"}]},
    ],
}
# What the million runs await: names the traffic carries (10 %), and names it never does.
IN_TRAFFIC = ["Order Completed", "Product Added"]
NOT_IN_TRAFFIC = ["Survey Answered", "Ticket Solved", "Coupon Redeemed", "App Installed", "Store Visited",
                  "Review Posted", "Call Ended", "Refund Issued"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench journeys", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20_000, help="runs of the step benchmark (default 20,000)")
    p.add_argument("--limit", type=int, default=500, help="runs per claim (the engine loop's default)")
    p.add_argument("--latency-events", type=int, default=2_000, help="awaited events per latency run")
    p.add_argument("--latency-rate", type=float, default=200.0, help="events/s appended in the latency runs")
    p.add_argument("--latency-batch", type=int, default=5, help="events per append in the latency runs")
    p.add_argument("--customers", type=int, default=200_000)
    p.add_argument("--waiting", type=int, default=1_000_000)
    p.add_argument("--ingest-events", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--only", choices=["steps", "latency", "waiting"], action="append")
    p.add_argument("--quick", action="store_true", help="small sizes, 1 repetition; prints only")
    p.add_argument("--write", action="store_true", help="write the doc (always without --quick)")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--profile", type=Path, help="directory for pyinstrument profiles (steps, waiting apply)")
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    p.add_argument("--keep", action="store_true")
    return p


def load_avg() -> float:
    return os.getloadavg()[0]


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _setup(data_dir: Path) -> None:
    os.environ["TSUNAGU_DATA_DIR"] = str(data_dir)
    os.environ.pop("TSUNAGU_DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsunagu.settings")
    os.environ.setdefault("TSUNAGU_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _profiler(args: argparse.Namespace, name: str) -> Any:
    if args.profile is None:
        return None
    from pyinstrument import Profiler

    prof = Profiler(interval=0.001)
    prof.start()
    prof.name = name  # type: ignore[attr-defined]
    return prof


def _profiled(args: argparse.Namespace, prof: Any) -> None:
    if prof is None:
        return
    prof.stop()
    args.profile.mkdir(parents=True, exist_ok=True)
    out = args.profile / f"journeys-{prof.name}.txt"
    out.write_text(prof.output_text(unicode=True, show_all=True))
    (args.profile / f"journeys-{prof.name}.html").write_text(prof.output_html())
    print(f"  profile: {out}")


class World:
    """The workspace, its source, and helpers to append and apply events in this process."""

    def __init__(self) -> None:
        from tsunagu.core.permissions import SYSTEM
        from tsunagu.core.services import workspace_create
        from tsunagu.events.services import source_create

        self.ws = workspace_create(name="Bench Journeys", slug=f"bench-journeys-{uuid.uuid4().hex[:6]}",
                                   actor=SYSTEM)
        self.ws.quiet_hours = {}
        self.ws.save(update_fields=["quiet_hours"])
        self.source = source_create(workspace=self.ws, name="shop", actor=SYSTEM)

    def append(self, batch: list[dict[str, Any]]) -> None:
        from tsunagu.core import clock
        from tsunagu.events import fastpath
        from tsunagu.events.log import get_log

        encoded, _ = fastpath.encode_batch(orjson.dumps({"batch": batch}), max_bytes=32 * 1024)
        get_log().append(workspace_id=self.ws.pk, source_id=self.source.pk, received_at=clock.now(),
                         count=encoded.count, body=encoded.body)

    def apply(self) -> Any:
        from tsunagu.events.applier import events_apply_pending

        return events_apply_pending(workspace_id=self.ws.pk, timeout=600)

    def journey(self, key: str, definition: dict[str, Any]) -> Any:
        from tsunagu.core.permissions import SYSTEM
        from tsunagu.journeys.services import journey_create, journey_publish

        journey = journey_create(workspace=self.ws, key=key, name=key, definition=definition, actor=SYSTEM)
        version = journey_publish(journey=journey, actor=SYSTEM)
        journey.refresh_from_db()
        return journey, version

    def customers(self, prefix: str, n: int) -> list[int]:
        from tsunagu.customers.models import Customer

        rows = Customer.objects.bulk_create(
            [Customer(workspace=self.ws, user_id=f"{prefix}{i:07d}", traits={"tier": "gold" if i % 3 else "silver"})
             for i in range(n)], batch_size=2000)
        return [c.pk for c in rows]


def _enter(journey: Any, version: Any, customer_ids: list[int], data: Any = None) -> None:
    from tsunagu.core import clock
    from tsunagu.journeys.entries import Candidate, runs_enter
    from tsunagu.journeys.plans import plan_of

    now = clock.now()
    plan = plan_of(version)
    for start in range(0, len(customer_ids), 5000):
        part = customer_ids[start:start + 5000]
        runs_enter(journey=journey, version=version, plan=plan, now=now, candidates=[
            Candidate(customer_id=c, entry={"data": data(i + start) if data else {}}, at=now)
            for i, c in enumerate(part)])


# -- 1. step executions/s ----------------------------------------------------------------------------------

def steps_once(args: argparse.Namespace, world: World, rep: int, prof: Any = None) -> dict[str, Any]:
    from django.db import connection
    from django.db.models import Sum

    from tsunagu.core import clock
    from tsunagu.core.jobs import job_claim, job_complete
    from tsunagu.core.models import Job
    from tsunagu.journeys.engine import runs_run_due
    from tsunagu.journeys.models import Run, RunHistory

    journey, version = world.journey(f"steps-{rep}", STEPS_JOURNEY)
    customers = world.customers(f"s{rep}-", args.runs // 4 or 1)
    ids = [customers[i % len(customers)] for i in range(args.runs)]
    _enter(journey, version, ids, data=lambda i: {"n": i, "tier": "gold" if i % 2 else "silver"})
    assert Run.objects.filter(journey=journey).count() == args.runs
    connection.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    load0 = load_avg()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    now = clock.now()
    while runs_run_due(worker_id=WORKER, limit=args.limit, now=now):
        pass
    later = now + dt.timedelta(seconds=61)
    while runs_run_due(worker_id=WORKER, limit=args.limit, now=later):
        pass
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    load1 = load_avg()
    if prof is not None:
        _profiled(args, prof)
    runs = Run.objects.filter(journey=journey)
    steps = runs.aggregate(s=Sum("visits"))["s"] or 0
    completed = runs.filter(status=Run.Status.COMPLETED).count()
    executed = RunHistory.objects.filter(journey=journey, action__in=["step", "wait"]).count()
    ok = completed == args.runs and steps == 4 * args.runs and executed == steps

    # Baseline: the same number of bare jobs claimed and completed.
    Job.objects.bulk_create([Job(kind="bench.noop", payload={"n": i}, due_at=now) for i in range(args.runs)],
                            batch_size=2000)
    connection.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    b0 = time.perf_counter()
    done = 0
    while True:
        jobs = job_claim(worker_id=WORKER, limit=args.limit)
        if not jobs:
            break
        for job in jobs:
            done += job_complete(job=job, worker_id=WORKER)
    base_seconds = time.perf_counter() - b0
    Job.objects.filter(kind="bench.noop").delete()
    out = {"runs": args.runs, "steps": steps, "seconds": seconds, "cpu": cpu, "rate": steps / seconds,
           "runs_rate": args.runs / seconds, "jobs": done, "base_seconds": base_seconds,
           "base_rate": done / base_seconds, "ok": ok and done == args.runs, "load": (load0 + load1) / 2}
    out["ratio"] = out["rate"] / out["base_rate"]
    print(f"  steps: {steps:,} steps of {args.runs:,} runs in {seconds:.2f} s = {out['rate']:,.0f} steps/s "
          f"(cpu {cpu:.2f} s); baseline {done:,} jobs claimed+completed in {base_seconds:.2f} s = "
          f"{out['base_rate']:,.0f}/s; ratio {out['ratio']:.2f}; ok={out['ok']} load {out['load']:.2f}", flush=True)
    return out


# -- 2. applier -> resumed run latency ---------------------------------------------------------------------

class Stamps:
    """Wall times of the applier's commits (per message id) and of the engine's turns (per run id)."""

    def __init__(self) -> None:
        self.applied: dict[str, float] = {}
        self.executed: dict[int, float] = {}

    def install(self) -> None:
        from django.db import transaction

        from tsunagu.events.reactions import reaction
        from tsunagu.journeys import engine

        @reaction("bench-stamps", stage=1000)
        def stamp(applied: Any) -> None:
            ids = [e.message_id for e in applied.events]

            def committed() -> None:
                now = time.time()
                for mid in ids:
                    self.applied[mid] = now

            transaction.on_commit(committed)

        real = engine.runs_execute

        def timed(**kw: Any) -> int:
            steps = real(**kw)
            now = time.time()
            for run_id in kw["ids"]:
                self.executed.setdefault(run_id, now)
            return steps

        engine.runs_execute = timed  # type: ignore[assignment]

        # Runs an applied event woke go on inside the applier's transaction: stamped at its commit.
        real_now = engine.runs_step_now

        def timed_now(**kw: Any) -> int:
            steps = real_now(**kw)
            ids = [r.pk for r in kw["runs"]]

            def committed() -> None:
                now = time.time()
                for run_id in ids:
                    self.executed.setdefault(run_id, now)

            transaction.on_commit(committed)
            return steps

        engine.runs_step_now = timed_now  # type: ignore[assignment]


def _send_paced(world: World, users: list[str], rate: float, batch: int) -> dict[str, float]:
    """Append one ``AWAITED`` event per user at ``rate`` events/s in batches; returns message id -> the
    wall time of its append (after the log's fsync)."""
    sent: dict[str, float] = {}
    interval = batch / rate
    start = time.perf_counter()
    for i in range(0, len(users), batch):
        due = start + (i // batch) * interval
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        items = [{"type": "track", "event": AWAITED, "userId": u, "messageId": str(uuid.uuid4()),
                  "properties": {"n": i}} for u in users[i:i + batch]]
        world.append(items)
        now = time.time()
        for item in items:
            sent[item["messageId"]] = now
    return sent


def _wait_for(pred: Any, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def latency_once(args: argparse.Namespace, world: World, stamps: Stamps, rep: int) -> dict[str, Any]:
    from tsunagu.events.applier import start_applier
    from tsunagu.journeys.engine import runs_run_due
    from tsunagu.journeys.handlers import start_engine
    from tsunagu.journeys.models import Await, Run

    n = args.latency_events
    base_users = [f"b{rep}-{i:06d}" for i in range(n)]
    wait_users = [f"w{rep}-{i:06d}" for i in range(n)]
    for users in (base_users, wait_users):  # the customers exist (identified) before the timed part
        for i in range(0, n, 500):
            world.append([{"type": "identify", "userId": u, "messageId": str(uuid.uuid4()),
                           "traits": {"name": u}} for u in users[i:i + 500]])
    world.append([{"type": "track", "event": AWAITED, "userId": "seed", "messageId": str(uuid.uuid4())}])
    world.apply()

    stop = threading.Event()
    threads = [start_applier(stop), start_engine(stop)]
    try:
        # Baseline: no journey waits on these events (the journey of this repetition does not exist yet).
        load0 = load_avg()
        sent = _send_paced(world, base_users, args.latency_rate, args.latency_batch)
        _wait_for(lambda: all(m in stamps.applied for m in sent))
        base = [(stamps.applied[m] - t) * 1000 for m, t in sent.items() if m in stamps.applied]
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)

    from tsunagu.customers.models import Customer

    journey, version = world.journey(f"resume-{rep}", RESUME_JOURNEY)
    by_user = dict(Customer.objects.filter(workspace=world.ws, user_id__in=wait_users).values_list("user_id", "pk"))
    _enter(journey, version, [by_user[u] for u in wait_users])
    while runs_run_due(worker_id=WORKER, limit=1000):
        pass
    waiting = Await.objects.filter(run__journey=journey).count()
    run_of = dict(Run.objects.filter(journey=journey).values_list("customer_id", "pk"))
    stamps.executed.clear()  # the pass above executed the runs' first step: only the resuming turn counts

    stop = threading.Event()
    threads = [start_applier(stop), start_engine(stop)]
    try:
        sent = _send_paced(world, wait_users, args.latency_rate, args.latency_batch)
        load1 = load_avg()
        runs = {m: run_of[by_user[u]] for m, u in zip(sent, wait_users, strict=True)}
        _wait_for(lambda: all(r in stamps.executed for r in runs.values()))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    applied = [(stamps.applied[m] - t) * 1000 for m, t in sent.items() if m in stamps.applied]
    resumed = [(stamps.executed[runs[m]] - t) * 1000 for m, t in sent.items() if runs[m] in stamps.executed]
    after_apply = [(stamps.executed[runs[m]] - stamps.applied[m]) * 1000 for m in sent
                   if runs[m] in stamps.executed and m in stamps.applied]
    done = Run.objects.filter(journey=journey, status=Run.Status.EXITED).count()
    out = {
        "events": n, "waiting": waiting, "resumed": len(resumed), "completed": done,
        "ok": waiting == n and len(resumed) == n and done == n and len(base) == n,
        "base_p50_ms": _pct(base, 0.5), "base_p99_ms": _pct(base, 0.99),
        "applied_p50_ms": _pct(applied, 0.5), "applied_p99_ms": _pct(applied, 0.99),
        "resume_p50_ms": _pct(resumed, 0.5), "resume_p99_ms": _pct(resumed, 0.99),
        "resume_max_ms": max(resumed) if resumed else float("nan"),
        "after_apply_p50_ms": _pct(after_apply, 0.5), "after_apply_p99_ms": _pct(after_apply, 0.99),
        "load": (load0 + load1) / 2,
    }
    print(f"  latency: baseline append->applied p50 {out['base_p50_ms']:.1f} p99 {out['base_p99_ms']:.1f} ms; "
          f"with {waiting:,} waiting: append->applied p50 {out['applied_p50_ms']:.1f} p99 "
          f"{out['applied_p99_ms']:.1f}, applied->resumed p50 {out['after_apply_p50_ms']:.1f} p99 "
          f"{out['after_apply_p99_ms']:.1f}, append->resumed p50 {out['resume_p50_ms']:.1f} p99 "
          f"{out['resume_p99_ms']:.1f} ms; ok={out['ok']} load {out['load']:.2f}", flush=True)
    return out


# -- 3. a million waiting runs and ingestion ----------------------------------------------------------------

def _db_path() -> Path:
    from django.db import connection

    return Path(connection.settings_dict["NAME"])


def waiting_setup(args: argparse.Namespace, world: World) -> dict[str, Any]:
    """Customers (with user_id identities) by raw executemany; the journeys the runs belong to."""
    from django.db import connection

    known = [*IN_TRAFFIC, *NOT_IN_TRAFFIC]
    world.append([{"type": "track", "event": name, "userId": "seed", "messageId": str(uuid.uuid4())}
                  for name in known])
    world.apply()
    journeys = []
    for i, name in enumerate(known):
        definition = {"entry": {"api": True},
                      "reentry": {"policy": "per_entry_key", "entry_key": "data.k"},
                      "steps": [{"id": "await", "type": "wait_for_event", "event": name,
                                 "timeout_seconds": 30 * 86400, "on_event": "exit", "on_timeout": "exit"}]}
        journey, version = world.journey(f"await-{i}", definition)
        journeys.append((journey.pk, version.pk, name))
    connection.close()
    conn = sqlite3.connect(_db_path(), timeout=60, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")  # setup only
    first = conn.execute("SELECT COALESCE(MAX(id), 0) FROM customers_customer").fetchone()[0] + 1
    created = dt.datetime.now(dt.UTC).isoformat(sep=" ")
    conn.execute("BEGIN")
    ws = world.ws.pk
    cust, ident = [], []
    for i in range(args.customers):
        cid = first + i
        uid = f"u{i:07d}"
        cust.append((cid, uid, f"c{i}@example.jp", json.dumps({"loyaltyTier": "gold", "email": f"c{i}@example.jp"}),
                     created, created))
        ident.append((cid, "user_id", uid, created))
    conn.executemany(
        "INSERT INTO customers_customer (id, workspace_id, user_id, email, phone, family_name, given_name, "  # noqa: S608
        "family_kana, given_kana, display_name, search_text, traits, trait_times, channels, first_seen, "
        f"last_seen, event_count, created_at, updated_at) VALUES (?, {ws}, ?, ?, '', '', '', '', '', '', '', ?, "
        "'{}', '{}', NULL, NULL, 0, ?, ?)", cust)
    conn.executemany(
        "INSERT INTO customers_identity (workspace_id, customer_id, type, value, first_seen, "  # noqa: S608
        f"source_message_id) VALUES ({ws}, ?, ?, ?, ?, '')", ident)
    conn.execute("COMMIT")
    conn.close()
    return {"first": first, "journeys": journeys}


def waiting_insert(args: argparse.Namespace, world: World, setup: dict[str, Any], *, ended: bool = False) -> float:
    """``--waiting`` runs, each waiting on its journey's ``wait_for_event`` step, with their Await rows; 5
    per customer over the journeys (entry keys 0..4); 10 % of them await a name the traffic carries.
    ``ended``: the same runs, completed and awaiting nothing — a database as large, with nobody waiting."""
    from django.db import connection

    connection.close()
    rng = random.Random(7)
    t0 = time.monotonic()
    conn = sqlite3.connect(_db_path(), timeout=60, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    first_run = conn.execute("SELECT COALESCE(MAX(id), 0) FROM journeys_run").fetchone()[0] + 1
    now = dt.datetime.now(dt.UTC)
    at = now.isoformat(sep=" ")
    due = (now + dt.timedelta(days=30)).isoformat(sep=" ")
    journeys = setup["journeys"]
    traffic = [j for j in journeys if j[2] in IN_TRAFFIC]
    others = [j for j in journeys if j[2] not in IN_TRAFFIC]
    per = 5
    ws = world.ws.pk
    conn.execute("BEGIN")
    runs, awaits = [], []
    for i in range(args.waiting):
        rid = first_run + i
        cid = setup["first"] + (i // per) % args.customers
        journey_id, version_id, name = rng.choice(traffic) if rng.random() < 0.10 else rng.choice(others)
        key = str(i)
        ctx = json.dumps({"entry": {"data": {"k": key}}, "steps": {"await": {
            "at": at, "waiting_for": name, "until": due}}})
        runs.append((rid, journey_id, version_id, cid, key, None if ended else due, ctx, at, at))
        if not ended:
            awaits.append((rid, cid, name))
        if len(runs) >= 50_000 or i == args.waiting - 1:
            conn.executemany(
                "INSERT INTO journeys_run (id, workspace_id, journey_id, version_id, customer_id, entry_key, "  # noqa: S608
                "status, resume_status, step, step_state, visits, due_at, held, locked_by, lease_until, context, "
                f"entered_at, updated_at, ended_at, goal_at, goal_until) VALUES (?, {ws}, ?, ?, ?, ?, "
                f"'{'completed' if ended else 'waiting'}', '', 'await', '{'' if ended else 'waiting'}', 1, ?, 0, "
                "'', NULL, ?, ?, ?, NULL, NULL, NULL)", runs)
            conn.executemany(
                "INSERT INTO journeys_await (run_id, workspace_id, customer_id, event, step, \"where\") "  # noqa: S608
                f"VALUES (?, {ws}, ?, ?, 'await', '[]')", awaits)
            runs, awaits = [], []
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.monotonic() - t0


class Snapshot:
    """The database and the ingest log as they are after the set-up, restored before every measured
    ingestion: each run applies its traffic to the same files, so a run's figure does not depend on how many
    runs came before it (each adds 200,000 events, and the applier slows as the tables grow: 15,500 events/s
    in the first run to 9,000 in the seventh, with no waiting run at all, on 2026-12-04)."""

    def __init__(self, dest: Path) -> None:
        from tsunagu.events.log import sqlite_log_path

        self.files = [_db_path(), sqlite_log_path()]
        self.dest = dest
        dest.mkdir()
        self._quiesce()
        for path in self.files:
            shutil.copyfile(path, dest / path.name)

    def _quiesce(self) -> None:
        """Every connection closed and each WAL checkpointed into its file, so the file is the whole state."""
        from django.db import connection

        from tsunagu.events.log import logs_close

        connection.close()
        logs_close()
        for path in self.files:
            conn = sqlite3.connect(path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()

    def restore(self) -> None:
        self._quiesce()
        for path in self.files:
            for suffix in ("-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            shutil.copyfile(self.dest / path.name, path)


def _traffic(args: argparse.Namespace, seed: int) -> list[list[dict[str, Any]]]:
    from bench.segments_live import _traffic as shop_traffic

    bodies = shop_traffic(random.Random(seed), args.customers, args.ingest_events)
    return [orjson.loads(b)["batch"] for b in bodies]


def waiting_apply(args: argparse.Namespace, world: World, waiting: int, seed: int, prof: Any = None,
                  kind: str = "") -> dict[str, Any]:
    from django.db import connection

    from tsunagu.journeys.models import Await, RunHistory

    batches = _traffic(args, seed)
    for batch in batches:
        world.append(batch)
    before = RunHistory.objects.filter(action="event").count()
    awaiting = Await.objects.count()
    connection.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    load0 = load_avg()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    outcome = world.apply()
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    if prof is not None:
        _profiled(args, prof)
    woken = RunHistory.objects.filter(action="event").count() - before
    stored = outcome.stored
    kind = kind or ("waiting" if waiting else "none")
    out = {"kind": kind, "waiting": waiting, "awaits": awaiting, "events": args.ingest_events, "stored": stored,
           "seconds": seconds, "cpu": cpu, "rate": stored / seconds, "woken": woken,
           "load": (load0 + load_avg()) / 2, "ok": stored == args.ingest_events}
    what = f"{waiting:,} ended runs" if kind == "ended" else f"{waiting:,} waiting runs"
    print(f"  ingest with {what} ({awaiting:,} awaits): {stored:,} events in {seconds:.2f} s = "
          f"{out['rate']:,.0f} events/s (cpu {cpu:.2f} s), {woken:,} runs woken; load {out['load']:.2f}",
          flush=True)
    return out


# -- the report ---------------------------------------------------------------------------------------------

def summarize(res: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    s: dict[str, Any] = {}
    if res.get("steps"):
        r = res["steps"]
        s["steps"] = {k: _med([x[k] for x in r]) for k in ("rate", "base_rate", "ratio", "seconds", "base_seconds",
                                                            "cpu", "runs_rate", "load")}
        s["steps"].update(runs=r[0]["runs"], steps=r[0]["steps"], ok=all(x["ok"] for x in r))
    if res.get("latency"):
        r = res["latency"]
        s["latency"] = {k: _med([x[k] for x in r]) for k in r[0] if k.endswith("_ms") or k == "load"}
        s["latency"].update(events=r[0]["events"], ok=all(x["ok"] for x in r))
    if res.get("waiting"):
        zero = [x for x in res["waiting"] if x["kind"] == "none"]
        full = [x for x in res["waiting"] if x["kind"] == "waiting"]
        ended = [x for x in res["waiting"] if x["kind"] == "ended"]
        pairs = list(zip(zero, full, strict=False))
        s["waiting"] = {
            "zero_rate": _med([x["rate"] for x in zero]), "full_rate": _med([x["rate"] for x in full]),
            "slowdown": _med([1 - f["rate"] / z["rate"] for z, f in pairs]),
            "zero_cpu": _med([x["cpu"] for x in zero]), "full_cpu": _med([x["cpu"] for x in full]),
            "woken": _med([x["woken"] for x in full]), "waiting": full[0]["waiting"] if full else 0,
            "awaits": full[0]["awaits"] if full else 0, "events": zero[0]["events"] if zero else 0,
            "load": _med([x["load"] for x in res["waiting"]]), "ok": all(x["ok"] for x in res["waiting"]),
            "insert_seconds": _med([x.get("insert_seconds", 0) for x in full]),
            "ended_rate": _med([x["rate"] for x in ended]) if ended else 0.0,
            "ended_cpu": _med([x["cpu"] for x in ended]) if ended else 0.0,
            "slowdown_vs_ended": _med([1 - f["rate"] / e["rate"] for e, f in zip(ended, full, strict=False)])
            if ended else 0.0,
        }
    return s


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def section(args: argparse.Namespace, s: dict[str, Any]) -> str:
    import platform

    lines = ["## Journeys", "",
             f"`python -m bench journeys --write` — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
             f"{os.cpu_count()} CPUs, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; "
             f"medians of {args.repeat} repetitions, each figure beside its baseline from the same run. The "
             "machine is shared: the 1-minute load average is printed beside each figure; compare a figure with "
             "its own baseline rather than with another run's.", ""]
    if "steps" in s:
        x = s["steps"]
        lines += [
            "| engine (one process, `runs_run_due`) | figure | baseline (same run) | ratio | target |",
            "|---|---|---|---|---|",
            f"| step executions/s ({x['runs']:,} runs × branch, split, update_traits, wait; then the wait falls "
            f"due) | **{x['rate']:,.0f}** ({x['runs_rate']:,.0f} runs/s, {x['seconds']:.2f} s, load "
            f"{x['load']:.2f}) | {x['base_rate']:,.0f} bare jobs claimed + completed/s | {x['ratio']:.2f} | "
            f"≥ {TARGET_STEPS:,}: {_verdict(x['rate'] >= TARGET_STEPS and x['ok'])} |", ""]
    if "latency" in s:
        x = s["latency"]
        lines += [
            f"| applier → resumed run ({x['events']:,} events at {args.latency_rate:g}/s in appends of "
            f"{args.latency_batch}; applier and engine threads) | p50 | p99 | target |",
            "|---|---|---|---|",
            f"| baseline: append → applier's commit, no journey | {x['base_p50_ms']:.1f} ms | "
            f"{x['base_p99_ms']:.1f} ms | |",
            f"| append → applier's commit, runs waiting | {x['applied_p50_ms']:.1f} ms | "
            f"{x['applied_p99_ms']:.1f} ms | |",
            f"| applier's commit → the run's next step committed | {x['after_apply_p50_ms']:.1f} ms | "
            f"**{x['after_apply_p99_ms']:.1f} ms** | ≤ {TARGET_RESUME_P99_MS:g} ms: "
            f"{_verdict(x['after_apply_p99_ms'] <= TARGET_RESUME_P99_MS and x['ok'])} |",
            f"| append → the run's next step committed | {x['resume_p50_ms']:.1f} ms | {x['resume_p99_ms']:.1f} ms | |",
            ""]
    if "waiting" in s:
        x = s["waiting"]
        lines += [
            f"| ingestion through the applier ({x['events']:,} events of a shop's traffic, {args.customers:,} "
            "customers) | events/s | CPU s | target |",
            "|---|---|---|---|",
            f"| baseline: 0 waiting runs | {x['zero_rate']:,.0f} | {x['zero_cpu']:.1f} | |",
            f"| {x['waiting']:,} runs waiting on `wait_for_event` ({x['awaits']:,} Await rows; "
            f"{x['woken']:,.0f} woken by the traffic) | {x['full_rate']:,.0f} | {x['full_cpu']:.1f} | |",
            f"| slowdown | **{x['slowdown'] * 100:.1f} %** | | ≤ {TARGET_SLOWDOWN * 100:g} %: "
            f"{_verdict(x['slowdown'] <= TARGET_SLOWDOWN and x['ok'])} |"]
        if x["ended_rate"]:
            lines += [
                f"| second baseline: {x['waiting']:,} *ended* runs (a database as large, nobody waiting) | "
                f"{x['ended_rate']:,.0f} | {x['ended_cpu']:.1f} | |",
                f"| slowdown against it (the cost of waiting itself) | {x['slowdown_vs_ended'] * 100:.1f} % | | |"]
        lines.append("")
    return "\n".join(lines)


ANALYSIS_START = "<!-- journeys-analysis:start (hand-written; kept when the bench regenerates this section) -->"
ANALYSIS_END = "<!-- journeys-analysis:end -->"


def _kept_analysis(path: Path) -> str:
    text = path.read_text() if path.exists() else ""
    if ANALYSIS_START in text and ANALYSIS_END in text:
        return text.split(ANALYSIS_START, 1)[1].split(ANALYSIS_END, 1)[0].strip()
    return "_Where the time goes: profile with `python -m bench journeys --profile DIR` and write it here._"


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.runs, args.repeat = min(args.runs, 4000), 1
        args.latency_events = min(args.latency_events, 500)
        args.customers, args.waiting = min(args.customers, 20_000), min(args.waiting, 100_000)
        args.ingest_events = min(args.ingest_events, 20_000)
    only = set(args.only or ["steps", "latency", "waiting"])
    data_dir = Path(tempfile.mkdtemp(prefix="tsunagu-bench-journeys-"))
    print(f"journeys benchmark in {data_dir} (load {load_avg():.2f})", flush=True)
    res: dict[str, list[dict[str, Any]]] = {"steps": [], "latency": [], "waiting": []}
    try:
        _setup(data_dir)
        if "steps" in only:
            world = World()
            for rep in range(1, args.repeat + 1):
                res["steps"].append(steps_once(args, world, rep, _profiler(args, "steps") if rep == 1 else None))
        if "latency" in only:
            world = World()
            stamps = Stamps()
            stamps.install()
            for rep in range(1, args.repeat + 1):
                res["latency"].append(latency_once(args, world, stamps, rep))
            from tsunagu.events.reactions import reaction_remove

            reaction_remove("bench-stamps")
        if "waiting" in only:
            world = World()
            setup = waiting_setup(args, world)
            snapshot = Snapshot(data_dir / "snapshot")
            for rep in range(1, args.repeat + 1):
                kinds = ["none", "waiting", "ended"]
                order = kinds if rep % 2 else kinds[::-1]
                for kind in order:
                    snapshot.restore()
                    waiting = 0 if kind == "none" else args.waiting
                    inserted = 0.0
                    if waiting:
                        inserted = waiting_insert(args, world, setup, ended=kind == "ended")
                        print(f"  inserted {waiting:,} {kind} runs in {inserted:.1f} s", flush=True)
                    prof = _profiler(args, f"{kind}-apply") if rep == 1 else None  # each kind: compare their trees
                    # Traffic of the same shape, seeded apart: the same message ids would be dropped as duplicates.
                    out = waiting_apply(args, world, waiting, seed=rep * 10 + kinds.index(kind), prof=prof, kind=kind)
                    out["insert_seconds"] = inserted
                    res["waiting"].append(out)
        s = summarize(res)
        body = section(args, s)
        print(body)
        if not args.no_write and (args.write or not args.quick):
            from bench import report

            analysis = _kept_analysis(args.output)
            report.write_section(args.output, "journeys",
                                 f"{body}\n{ANALYSIS_START}\n{analysis}\n{ANALYSIS_END}")
            print(f"wrote {args.output}")
        ok = all(v.get("ok", True) for v in s.values())
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
