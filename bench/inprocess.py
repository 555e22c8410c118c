"""CPU per event of ingestion's phases, in one process and one thread, without HTTP:
``python -m bench.inprocess [--events N] [--profile]``.

Same traffic as the HTTP benchmark (``bench.payloads``) on a fresh SQLite database in a temporary data
directory; the first half of the events warms the database (creates the profiles), the second half is
measured. ``--profile`` adds a cProfile of the part that runs under the write lock.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess")
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="tsunagu-inprocess-")
    os.environ["TSUNAGU_DATA_DIR"] = data_dir
    os.environ.pop("TSUNAGU_DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsunagu.settings")
    try:
        _run(args.events, args.profile)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _run(events: int, profile: bool) -> None:
    import django

    django.setup()
    import orjson
    from django.core.management import call_command
    from django.db import transaction

    from bench import payloads
    from tsunagu.core import clock
    from tsunagu.core.permissions import System
    from tsunagu.core.services import workspace_create
    from tsunagu.events import services
    from tsunagu.events.validation import parse_event

    call_command("migrate", verbosity=0)
    bench = System("tsunagu bench")
    workspace = workspace_create(name="Bench", slug="bench", actor=bench)
    source = services.source_create(workspace=workspace, name="bench", actor=bench)
    bodies = [payloads.batch_body(items) for items in payloads.batches(5, events)]
    half = len(bodies) // 2
    totals = [0.0, 0.0, 0.0]
    profiler = cProfile.Profile() if profile else None

    def run(chunk: list[bytes], prof: cProfile.Profile | None) -> None:
        for raw in chunk:
            c0 = time.process_time()
            parsed = [
                parse_event(item, type_=None, where="", max_bytes=32 * 1024) for item in orjson.loads(raw)["batch"]
            ]
            prepared = services._prepare(source, parsed, clock.now())
            c1 = time.process_time()
            with transaction.atomic():
                if prof:
                    prof.enable()
                services._apply(source, prepared)
                if prof:
                    prof.disable()
                c2 = time.process_time()
            c3 = time.process_time()
            totals[0] += c1 - c0
            totals[1] += c2 - c1
            totals[2] += c3 - c2

    run(bodies[:half], None)
    totals[:] = [0.0, 0.0, 0.0]
    start = time.perf_counter()
    run(bodies[half:], profiler)
    wall = time.perf_counter() - start
    count = sum(len(orjson.loads(b)["batch"]) for b in bodies[half:])
    print(f"{count:,} events measured, {count / wall:,.0f} events/s wall (one thread)")
    print(f"CPU per event: parse+validate+prepare {totals[0] / count * 1e6:.0f} µs, "
          f"apply (under the write lock) {totals[1] / count * 1e6:.0f} µs, commit {totals[2] / count * 1e6:.0f} µs")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
