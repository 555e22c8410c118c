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
3. **1,000,000 waiting runs** — a shop's traffic for ``--customers`` (200,000) existing customers applied
   through the applier (``events_apply_pending``) on three databases: with no runs; with ``--waiting``
   (1,000,000) runs waiting on ``wait_for_event`` (5 per customer, 10 journeys; 10 % await an event name
   the traffic carries, the rest names it never does); and with as many runs *ended* (a database as large,
   nobody waiting). The runs are written by raw ``executemany`` in the engine's own sequence: each inserted
   as it enters (its context the entry), then updated to wait on its step (the context grows by the step's
   state, ``awaits`` is set) — not inserted in their final state, which packs the table's pages full as no
   sequence of the engine's writes does, and makes every later change of a run split a page. The three
   databases (each with its ingest log) are built once from one snapshot of the set-up and kept side by
   side; the same traffic is then applied to them in slices of ``--slice`` (20,000) events, the three in
   turn (renaming each database into place), ``--ingest-events`` (200,000) per database per repetition. A
   slice is timed from the applier's start to the checkpoint of what it wrote (a database whose slice
   dirtied more pages pays for them in its own slice). Slowdown: the median over the slices of one minus
   the ratio of a slice's events/s to its neighbour's with no runs — the machine's speed drifts by more
   than the effect between runs a minute apart, and the neighbours of one slice are seconds apart. The
   applier takes chunks of its sustained size (``TSUNAGU_APPLY_CHUNK_MAX``, 20,000) from the first.

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
KINDS = ["none", "waiting", "ended"]

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
    p.add_argument("--ingest-events", type=int, default=200_000, help="events per database per repetition")
    p.add_argument("--slice", type=int, default=20_000, help="events of one timed slice (waiting runs)")
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
    from tsunagu.journeys.models import Run

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
    waiting = Run.objects.filter(journey=journey).exclude(awaits="").count()
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
    """``--waiting`` runs, each waiting on its journey's ``wait_for_event`` step; 5 per customer over the
    journeys (entry keys 0..4); 10 % of them await a name the traffic carries. Written as the engine writes
    them, 50,000 at a time: inserted on entry, then updated to wait (and, ``ended``, updated once more to
    have completed and await nothing — a database as large, with nobody waiting)."""
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
    entered, waiting, done = [], [], []
    for i in range(args.waiting):
        rid = first_run + i
        cid = setup["first"] + (i // per) % args.customers
        journey_id, version_id, name = rng.choice(traffic) if rng.random() < 0.10 else rng.choice(others)
        entry = {"data": {"k": str(i)}}
        entered.append((rid, journey_id, version_id, cid, str(i), at, json.dumps({"entry": entry}), at, at))
        waiting.append((due, json.dumps({"entry": entry, "steps": {"await": {
            "at": at, "waiting_for": name, "until": due}}}), name, rid))
        done.append((at, rid))
        if len(entered) >= 50_000 or i == args.waiting - 1:
            conn.executemany(
                "INSERT INTO journeys_run (id, workspace_id, journey_id, version_id, customer_id, entry_key, "  # noqa: S608
                "status, resume_status, step, step_state, visits, due_at, held, locked_by, lease_until, context, "
                f"entered_at, updated_at, ended_at, goal_at, goal_until, awaits) VALUES (?, {ws}, ?, ?, ?, ?, "
                "'active', '', 'await', '', 0, ?, 0, '', NULL, ?, ?, ?, NULL, NULL, NULL, '')", entered)
            conn.executemany("UPDATE journeys_run SET status = 'waiting', step_state = 'waiting', visits = 1, "
                             "due_at = ?, context = ?, awaits = ? WHERE id = ?", waiting)
            if ended:
                conn.executemany("UPDATE journeys_run SET status = 'completed', step_state = '', due_at = NULL, "
                                 "awaits = '', ended_at = ? WHERE id = ?", done)
            entered, waiting, done = [], [], []
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.monotonic() - t0


def _quiesce(files: list[Path]) -> None:
    """Every connection closed and each WAL checkpointed into its file, so the file is the whole state."""
    from django.db import connection

    from tsunagu.events.log import logs_close

    connection.close()
    logs_close()
    for path in files:
        conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


class States:
    """The databases of the comparison, each with its ingest log, kept side by side in ``root/<kind>`` and
    renamed into place in turn (``activate``). Each is built from the same snapshot of the set-up, so they
    differ only in the runs written into them."""

    def __init__(self, root: Path) -> None:
        from tsunagu.events.log import sqlite_log_path

        self.files = [_db_path(), sqlite_log_path()]
        self.root = root
        self.active = ""
        _quiesce(self.files)
        self._store("snapshot", copy=True)

    def _store(self, kind: str, copy: bool = False) -> None:
        (self.root / kind).mkdir(parents=True, exist_ok=True)
        for path in self.files:
            (shutil.copyfile if copy else os.replace)(path, self.root / kind / path.name)

    def build(self, kind: str, fill: Any) -> float:
        """The set-up's state, ``fill()`` applied to it (the runs), stored as ``kind``; returns fill's time."""
        _quiesce(self.files)
        for path in self.files:
            shutil.copyfile(self.root / "snapshot" / path.name, path)
        seconds = float(fill())
        _quiesce(self.files)
        self._store(kind)
        return seconds

    def activate(self, kind: str) -> None:
        if self.active == kind:
            return
        _quiesce(self.files)
        if self.active:
            self._store(self.active)
        for path in self.files:
            os.replace(self.root / kind / path.name, path)
        self.active = kind


def _traffic(args: argparse.Namespace, seed: int) -> list[list[dict[str, Any]]]:
    from bench.segments_live import _traffic as shop_traffic

    bodies = shop_traffic(random.Random(seed), args.customers, args.ingest_events)
    return [orjson.loads(b)["batch"] for b in bodies]


def _woken() -> int:
    from tsunagu.journeys.models import RunHistory

    return RunHistory.objects.filter(action="event").count()


def _checkpoint() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.fetchone()


def waiting_slice(args: argparse.Namespace, world: World, batches: list[list[dict[str, Any]]], kind: str,
                  profile: bool = False) -> dict[str, Any]:
    """Append ``batches`` (untimed), then apply them and checkpoint what the applier wrote (timed)."""

    for batch in batches:
        world.append(batch)
    before = _woken()
    _checkpoint()  # the slice starts with nothing owed from before
    prof = _profiler(args, f"{kind}-slice") if profile else None
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    outcome = world.apply()
    _checkpoint()
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    _profiled(args, prof)
    events = sum(len(b) for b in batches)
    return {"kind": kind, "events": events, "stored": outcome.stored, "seconds": seconds, "cpu": cpu,
            "rate": outcome.stored / seconds, "woken": _woken() - before, "load": load_avg(),
            "ok": outcome.stored == events}


def waiting_run(args: argparse.Namespace, world: World, setup: dict[str, Any], root: Path) -> list[dict[str, Any]]:
    """Build the three databases, then apply the same traffic to each, slice by slice, in turn."""
    from django.conf import settings

    from tsunagu.journeys.models import Run

    states = States(root)
    built: dict[str, float] = {}
    for kind in KINDS:
        if kind == "none":
            built[kind] = states.build(kind, lambda: 0.0)
        else:
            built[kind] = states.build(kind, lambda kind=kind: waiting_insert(args, world, setup,
                                                                               ended=kind == "ended"))
            print(f"  wrote {args.waiting:,} {kind} runs in {built[kind]:.1f} s", flush=True)
    counts = {}
    for kind in KINDS:
        states.activate(kind)
        counts[kind] = Run.objects.exclude(awaits="").count()
    chunk, settings.TSUNAGU_APPLY_CHUNK = settings.TSUNAGU_APPLY_CHUNK, settings.TSUNAGU_APPLY_CHUNK_MAX
    out: list[dict[str, Any]] = []
    try:
        for rep in range(1, args.repeat + 1):
            batches = _traffic(args, seed=rep)  # new message ids each repetition: none is a duplicate
            slices, size, step = [], 0, []
            for batch in batches:
                step.append(batch)
                size += len(batch)
                if size >= args.slice:
                    slices.append(step)
                    step, size = [], 0
            if step:
                slices.append(step)
            for i, part in enumerate(slices):
                order = KINDS if (i + rep) % 2 else KINDS[::-1]
                for kind in order:
                    states.activate(kind)
                    row = waiting_slice(args, world, part, kind, profile=rep == 1 and i == 1)
                    row.update(rep=rep, slice=i, awaits=counts[kind], insert_seconds=built[kind],
                               waiting=0 if kind == "none" else args.waiting)
                    out.append(row)
            by = {k: [r for r in out if r["rep"] == rep and r["kind"] == k] for k in KINDS}
            summary = "; ".join(f"{k} {sum(r['stored'] for r in v) / sum(r['seconds'] for r in v):,.0f} events/s "
                                f"(cpu {sum(r['cpu'] for r in v):.2f} s, {sum(r['woken'] for r in v):,} woken)"
                                for k, v in by.items())
            print(f"  repetition {rep}: {summary}", flush=True)
    finally:
        settings.TSUNAGU_APPLY_CHUNK = chunk
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
        rows = res["waiting"]
        by = {k: [x for x in rows if x["kind"] == k] for k in KINDS}
        at = {(x["kind"], x["rep"], x["slice"]): x for x in rows}

        def rate(kind: str) -> float:
            return sum(x["stored"] for x in by[kind]) / sum(x["seconds"] for x in by[kind])

        def slowdowns(kind: str, base: str) -> list[float]:
            return [1 - x["rate"] / at[(base, x["rep"], x["slice"])]["rate"] for x in by[kind]]

        s["waiting"] = {
            "zero_rate": rate("none"), "full_rate": rate("waiting"), "ended_rate": rate("ended"),
            "zero_cpu": sum(x["cpu"] for x in by["none"]), "full_cpu": sum(x["cpu"] for x in by["waiting"]),
            "ended_cpu": sum(x["cpu"] for x in by["ended"]),
            "slowdown": _med(slowdowns("waiting", "none")),
            "slowdown_q": (_pct(slowdowns("waiting", "none"), 0.25), _pct(slowdowns("waiting", "none"), 0.75)),
            "slowdown_total": 1 - rate("waiting") / rate("none"),
            "slowdown_vs_ended": _med(slowdowns("waiting", "ended")),
            "ended_vs_zero": _med(slowdowns("ended", "none")),
            "slices": len(by["none"]), "woken": sum(x["woken"] for x in by["waiting"]),
            "waiting": by["waiting"][0]["waiting"] if by["waiting"] else 0,
            "awaits": by["waiting"][0]["awaits"] if by["waiting"] else 0,
            "events": sum(x["events"] for x in by["none"]),
            "load": _med([x["load"] for x in rows]), "ok": all(x["ok"] for x in rows),
            "insert_seconds": by["waiting"][0]["insert_seconds"] if by["waiting"] else 0.0,
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
        lo, hi = x["slowdown_q"]
        lines += [
            f"| ingestion through the applier ({x['events']:,} events of a shop's traffic per database, "
            f"{args.customers:,} customers, {x['slices']} slices of {args.slice:,} applied to the three in turn; "
            f"load {x['load']:.2f}) | events/s | CPU s | target |",
            "|---|---|---|---|",
            f"| baseline: 0 runs | {x['zero_rate']:,.0f} | {x['zero_cpu']:.1f} | |",
            f"| {x['waiting']:,} runs waiting on `wait_for_event` ({x['awaits']:,} awaiting an event; "
            f"{x['woken']:,} woken by the traffic, each executing its next step) | {x['full_rate']:,.0f} | "
            f"{x['full_cpu']:.1f} | |",
            f"| slowdown, median over the slices (interquartile {lo * 100:.1f} – {hi * 100:.1f} %; of the totals "
            f"{x['slowdown_total'] * 100:.1f} %) | **{x['slowdown'] * 100:.1f} %** | | ≤ {TARGET_SLOWDOWN * 100:g} %: "
            f"{_verdict(x['slowdown'] <= TARGET_SLOWDOWN and x['ok'])} |",
            f"| second baseline: {x['waiting']:,} *ended* runs (a database as large, nobody waiting) | "
            f"{x['ended_rate']:,.0f} | {x['ended_cpu']:.1f} | |",
            f"| the database's size alone (ended against 0 runs), median over the slices | "
            f"{x['ended_vs_zero'] * 100:.1f} % | | |",
            f"| waiting against ended (the cost of waiting and waking itself), median over the slices | "
            f"{x['slowdown_vs_ended'] * 100:.1f} % | | |"]
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
        args.ingest_events, args.slice = min(args.ingest_events, 20_000), min(args.slice, 5_000)
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
            res["waiting"] = waiting_run(args, world, setup, data_dir / "states")
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
