"""CPU per event of the pipeline's phases, in one process and one thread, without HTTP:
``python -m bench.inprocess [--events N] [--batch 500] [--chunk 5000] [--prefill N] [--profile]``.

Same traffic as the HTTP benchmark (``bench.payloads``) on a fresh SQLite database in a temporary data
directory. The append side times, in CPU time of the thread, the ordinary path's JSON parse, validation
(``parse_event``) and encoding for the log (``codec.encode``), then the fast path (``fastpath.encode_batch``)
on the same bodies and the durable append of its records (``get_log().append``: commit and fsync). The apply side
then times the applier's phases on the log it filled, per chunk: read + decode + ``prepare``, dedup,
profile load/resolve/flush and the event insert (``prepare`` and ``apply_prepared``, cProfile'd with
``--profile``), and the commit. The first half of the log warms the database (creates the profiles);
the second half is measured.
``--prefill N`` then stores N more events (and their dedup keys) by SQL before the measured half, to see
how the applier behaves on a large event table (the dedup structure and the timeline index grow with it).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import gc
import os
import pstats
import shutil
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--prefill", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="append-side rounds (the best is reported)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="tsunagu-inprocess-")
    os.environ["TSUNAGU_DATA_DIR"] = data_dir
    os.environ.pop("TSUNAGU_DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsunagu.settings")
    try:
        _run(args)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _us(seconds: float, count: int) -> str:
    return f"{seconds / count * 1e6:7.1f} µs"


def _run(args: argparse.Namespace) -> None:
    import django

    django.setup()
    import orjson
    from django.core.management import call_command

    fromiso = dt.datetime.fromisoformat
    from django.db import transaction

    from bench import payloads
    from tsunagu.core import clock
    from tsunagu.core.permissions import System
    from tsunagu.core.services import workspace_create
    from tsunagu.events import applier, apply, codec, fastpath, services
    from tsunagu.events.log import get_log
    from tsunagu.events.validation import parse_event

    call_command("migrate", verbosity=0)
    actor = System("tsunagu bench")
    workspace = workspace_create(name="Bench", slug="bench", actor=actor)
    source = services.source_create(workspace=workspace, name="bench", actor=actor)
    bodies = [payloads.batch_body(items) for items in payloads.batches(5, args.events, size=args.batch)]
    log = get_log()

    # -- append side (what a /v1/batch request does after HTTP and authentication) --
    # CPU time of this thread (not wall time): the machine may be shared, and a figure that waits for a CPU
    # would measure the neighbours. The ordinary path's phases first, then the fast path on the same bodies
    # (``fastpath.encode_batch``: parse, validate and encode in one), whose records are the ones appended.
    tick = time.thread_time
    gc.collect()
    gc.freeze()  # as the server does after loading Django (tsunagu.server)
    n = args.events
    rounds: list[dict[str, float]] = []
    for _ in range(args.rounds):  # alternating, the minimum of each phase: the machine may be shared
        t = {"parse": 0.0, "validate": 0.0, "encode": 0.0, "fast": 0.0}
        for raw in bodies:
            c0 = tick()
            items = orjson.loads(raw)["batch"]
            c1 = tick()
            parsed = [parse_event(item, type_=None, where="", max_bytes=32 * 1024) for item in items]
            c2 = tick()
            codec.encode(parsed)
            c3 = tick()
            fastpath.encode_batch(raw, max_bytes=32 * 1024)
            c4 = tick()
            t["parse"] += c1 - c0
            t["validate"] += c2 - c1
            t["encode"] += c3 - c2
            t["fast"] += c4 - c3
            del items, parsed
        rounds.append(t)
    best = {name: min(r[name] for r in rounds) for name in rounds[0]}
    print(f"append side, CPU per event, {n:,} events in batches of {args.batch} (one thread, best of "
          f"{args.rounds} rounds):")
    print("  ordinary path (orjson.loads, parse_event, codec.encode)")
    for name in ("parse", "validate", "encode"):
        print(f"    {name:<24}{_us(best[name], n)}")
    ordinary = best["parse"] + best["validate"] + best["encode"]
    print(f"    {'total':<24}{_us(ordinary, n)}")
    print("  fast path (fastpath.encode_batch: msgspec decode, checks, record bytes)")
    print(f"    {'parse+validate+encode':<24}{_us(best['fast'], n)}   ({ordinary / best['fast']:.1f}x less)")
    append = 0.0
    for raw in bodies:
        encoded, _key = fastpath.encode_batch(raw, max_bytes=32 * 1024)
        c0 = tick()
        log.append(workspace_id=workspace.pk, source_id=source.pk, received_at=clock.now(), count=encoded.count,
                   body=encoded.body)
        append += tick() - c0
    print(f"  append + grouped fsync{_us(append, n)} (CPU; the fsync's wait is not CPU)")
    same = all(
        codec.decode(fastpath.encode_batch(raw, max_bytes=32 * 1024)[0].body)
        == [
            parse_event(item, type_=None, where="", max_bytes=32 * 1024, batch_sent_at=fromiso(body["sentAt"]))
            for body in [orjson.loads(raw)]
            for item in body["batch"]
        ]
        for raw in bodies[:5]
    )
    print(f"  the fast path's records decode to parse_event's events: {same}")

    # -- apply side (what the applier does per chunk), without the lease bookkeeping --
    records = log.read(workspace_id=workspace.pk, after=0, max_events=10 * n)
    chunks: list[list] = [[]]
    size = 0
    for record in records:
        if size + record.count > args.chunk and chunks[-1]:
            chunks.append([])
            size = 0
        chunks[-1].append(record)
        size += record.count
    half = len(chunks) // 2
    profiler = cProfile.Profile() if args.profile else None
    a = {"read+decode+prepare": 0.0, "dedup+resolve+insert": 0.0, "commit": 0.0}
    stages = _stage_timers()
    # What events_apply_chunk wraps a chunk in, where this version of the applier has it.
    pause = getattr(applier, "_gc_paused", contextlib.nullcontext)
    measured = 0
    cpu = 0.0
    for i, chunk in enumerate(chunks):
        if i == half:
            if args.prefill:
                _prefill(workspace.pk, source.pk, args.prefill)
            for key in stages:
                stages[key] = 0.0
        p0 = time.process_time()
        c0 = time.perf_counter()
        prepared = []
        if profiler and i >= half:
            profiler.enable()
        for record in chunk:
            source.workspace = workspace
            prepared.extend(apply.prepare(source, codec.decode(record.body), record.received_at))
        if profiler and i >= half:
            profiler.disable()
        c1 = time.perf_counter()
        with pause(), transaction.atomic():
            if profiler and i >= half:
                profiler.enable()
            apply.apply_prepared(workspace, prepared)
            if profiler and i >= half:
                profiler.disable()
            c2 = time.perf_counter()
        c3 = time.perf_counter()
        if i >= half:
            cpu += time.process_time() - p0
            measured += len(prepared)
            a["read+decode+prepare"] += c1 - c0
            a["dedup+resolve+insert"] += c2 - c1
            a["commit"] += c3 - c2
    total = sum(a.values())
    print(f"apply side: {measured:,} events measured (warm, chunks of {args.chunk}), "
          f"{measured / total:,.0f} events/s (one thread)")
    for name, value in a.items():
        print(f"  {name:<22}{_us(value, measured)} per event")
    print(f"  of which CPU time of this process, by stage (total {_us(cpu, measured)} per event):")
    for name, value in stages.items():
        print(f"    {name:<20}{_us(value, measured)} per event")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)


def _stage_timers() -> dict[str, float]:
    """Wrap the applier's stages (whichever this version of the code has) with timers of CPU time (this
    process's: steadier than wall time on a machine shared with other work)."""
    import functools

    from tsunagu.customers import services as customers
    from tsunagu.events import apply

    totals: dict[str, float] = {}

    def timed(owner: object, attr: str, name: str) -> None:
        fn = getattr(owner, attr, None)
        if fn is None:
            return
        totals[name] = 0.0

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name] += time.process_time() - t0

        setattr(owner, attr, wrapper)

    from tsunagu.events import codec

    timed(codec, "decode", "log: decode")
    timed(apply, "prepare", "prepare")
    timed(apply, "dedup_admit", "dedup")
    timed(apply, "_known_message_ids", "dedup")
    timed(customers.ProfileBatch, "load", "profiles: load")
    timed(customers.ProfileBatch, "resolve", "profiles: resolve")
    timed(customers.ProfileBatch, "flush", "profiles: flush")
    timed(apply, "_insert_events", "events: insert")
    return totals


def _prefill(workspace_id: int, source_id: int, n: int) -> None:
    """Store ``n`` events with random UUID messageIds (and, where the dedup table exists, their keys) by
    SQL, spread over the existing profiles — not timed."""
    from django.db import connection, transaction

    t0 = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM customers_customer")
        low, high = cursor.fetchone()
        tables = connection.introspection.table_names(cursor)
        step = 100_000
        for start in range(0, n, step):
            count = min(step, n - start)
            cursor.execute(
                "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < %s) "
                "INSERT INTO events_event (workspace_id, source_id, message_id, type, event, name, user_id, "
                "anonymous_id, group_id, previous_id, customer_id, channel, timestamp, original_timestamp, "
                "sent_at, received_at, properties, traits, context) "
                "SELECT %s, %s, lower(hex(randomblob(16))), 'track', 'Prefilled', '', '', '', '', '', "
                "%s + abs(random()) %% (%s - %s + 1), 'web', datetime('now', '-' || (i %% 86400) || ' seconds'), "
                "NULL, NULL, datetime('now'), '{}', '{}', '{}' FROM seq",
                [count, workspace_id, source_id, low, high, low],
            )
            if "events_dedupkey" in tables:
                cursor.execute(
                    "INSERT OR IGNORE INTO events_dedupkey (digest, workspace_id, checksum, seen) "
                    "SELECT random(), %s, random(), unixepoch() FROM "
                    "(WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < %s) "
                    "SELECT i FROM seq)",
                    [workspace_id, count],
                )
    print(f"prefilled {n:,} events in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
