"""``python -m bench`` (``make bench``): tsunagu's ingestion benchmark against a live server.

Each repetition, on a fresh data directory:

1. the baseline — the same event rows appended straight to SQLite (``bench/baseline.py``);
2. ingestion — ``tsunagu web`` in a subprocess, several client processes replaying pre-built
   ``/v1/batch`` requests (segment-analytics-python's batches: <= 100 events / 500 KB, random UUID
   messageIds, ~10k users) over keep-alive sockets; events/s from the first request to the last 200,
   then a check that the database holds exactly the events sent and that the profiles counted them;
3. latency — single ``POST /v1/track`` at a fixed rate (open loop, measured from the scheduled send time).

Medians over the repetitions go to ``docs/performance.md``; the hand-written analysis between the
``analysis`` markers of that file is kept.

    python -m bench                      # 200,000 events x 3 repetitions, writes docs/performance.md
    python -m bench --quick              # 20,000 events x 1, prints only (add --write to write the doc)
    python -m bench --events 500000 --repeat 5 --clients 6 --workers 2 --threads 4
    python -m bench --profile /tmp/prof  # py-spy records the server workers during ingestion
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.baseline import run_baseline
from bench.client import run_ingest, run_latency

ROOT = Path(__file__).resolve().parent.parent


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=200_000, help="events per ingestion run (default 200000)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions; medians are reported (default 3)")
    p.add_argument("--clients", type=int, default=4, help="client processes sending batches (default 4)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    p.add_argument("--threads", type=int, default=None, help="threads per worker (default: the server's)")
    p.add_argument("--latency-rate", type=float, default=500.0, help="single-event requests/s (default 500)")
    p.add_argument("--latency-seconds", type=float, default=10.0, help="duration of the latency run (default 10)")
    p.add_argument("--latency-clients", type=int, default=4, help="client processes for the latency run")
    p.add_argument("--no-latency", action="store_true", help="skip the single-event latency run")
    p.add_argument("--quick", action="store_true", help="20000 events, 1 repetition, 3 s latency; no doc")
    p.add_argument("--write", action="store_true", help="write the doc even with --quick")
    p.add_argument("--no-write", action="store_true", help="print the results only")
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    p.add_argument("--profile", type=Path, help="directory for py-spy profiles of the server during ingestion")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the data directories (printed)")
    return p


def _sqlite(path: Path, sql: str) -> Any:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchone()


def _verify(db: Path) -> dict[str, int]:
    """What the server actually stored: events, and the events its live profiles counted."""
    events, distinct = _sqlite(db, "SELECT COUNT(*), COUNT(DISTINCT message_id) FROM events_event")
    counted, profiles = _sqlite(
        db, "SELECT COALESCE(SUM(event_count), 0), COUNT(*) FROM customers_customer WHERE merged_into_id IS NULL"
    )
    unlinked = _sqlite(db, "SELECT COUNT(*) FROM events_event WHERE customer_id IS NULL")[0]
    return {"stored": events, "distinct": distinct, "profile_events": counted, "profiles": profiles,
            "unlinked": unlinked}


def _profile_start(pid: int, directory: Path, rep: int) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found; install it with `pip install py-spy`", file=sys.stderr)
        return None
    directory.mkdir(parents=True, exist_ok=True)
    # Raw collapsed stacks: `grep`-able, and flamegraph.pl or speedscope read them.
    proc = subprocess.Popen(
        [spy, "record", "--subprocesses", "--pid", str(pid), "--rate", "250", "--nonblocking",
         "--format", "raw", "--output", str(directory / f"ingest-rep{rep}.txt")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    return proc


def _profile_stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def one_repetition(args: argparse.Namespace, rep: int) -> dict[str, Any]:
    from tsunagu.testing.live import LiveServer

    data_dir = Path(tempfile.mkdtemp(prefix=f"tsunagu-bench-{rep}-"))
    server = LiveServer(data_dir=data_dir)
    if args.threads:
        server.env["TSUNAGU_WEB_THREADS"] = str(args.threads)
    server.env["TSUNAGU_LOG_LEVEL"] = "WARNING"
    out: dict[str, Any] = {"rep": rep}
    try:
        server.cli("migrate")
        server.cli("workspace", "create", "Bench", "--slug", "bench")
        write_key = server.cli_json("source", "create", "--workspace", "bench", "--name", "bench")["write_key"]
        db = data_dir / "tsunagu.sqlite3"
        seed = args.seed * 100 + rep

        out["baseline"] = run_baseline(
            source_db=db, target_db=data_dir / "baseline.sqlite3", events=args.events, clients=args.clients, seed=seed
        )
        out["baseline"]["rate"] = out["baseline"]["stored"] / out["baseline"]["seconds"]
        print(f"  baseline   {out['baseline']['rate']:>10,.0f} events/s  ({out['baseline']['seconds']:.2f} s)")

        server.start(workers=args.workers)
        spy = _profile_start(server.process.pid, args.profile, rep) if args.profile and server.process else None
        try:
            ingest = run_ingest(
                port=server.port, write_key=write_key, events=args.events, clients=args.clients, seed=seed
            )
        finally:
            _profile_stop(spy)
        ingest.update(_verify(db))
        ingest["rate"] = ingest["stored"] / ingest["seconds"]
        ingest["ok"] = (
            ingest["errors"] == 0
            and ingest["stored"] == ingest["sent"] == ingest["acknowledged"] == ingest["distinct"]
            and ingest["profile_events"] == ingest["sent"]
            and ingest["unlinked"] == 0
        )
        out["ingest"] = ingest
        print(
            f"  ingestion  {ingest['rate']:>10,.0f} events/s  ({ingest['seconds']:.2f} s, {ingest['requests']} "
            f"requests, stored {ingest['stored']:,}/{ingest['sent']:,}, profiles {ingest['profiles']:,}, "
            f"clients' CPU {ingest['client_cpu']:.1f} s){'' if ingest['ok'] else '  CHECK FAILED'}"
        )
        if not ingest["ok"]:
            print(f"  first error: {ingest['first_error']}\n{server.log()}", file=sys.stderr)

        if not args.no_latency:
            lat = run_latency(
                port=server.port,
                write_key=write_key,
                rate=args.latency_rate,
                seconds=args.latency_seconds,
                clients=args.latency_clients,
                seed=seed + 7,
            )
            out["latency"] = lat
            print(
                f"  latency    p50 {lat['p50_ms']:.2f} ms  p99 {lat['p99_ms']:.2f} ms  max {lat['max_ms']:.1f} ms "
                f"at {lat['achieved_rate']:.0f} req/s ({lat['requests']} requests, {lat['errors']} errors)"
            )
    finally:
        server.stop()
        if args.keep:
            print(f"  data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return out


def summarize(reps: list[dict[str, Any]]) -> dict[str, Any]:
    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    base = [r["baseline"]["rate"] for r in reps]
    ingest = [r["ingest"]["rate"] for r in reps]
    summary: dict[str, Any] = {
        "baseline_rate": med(base),
        "ingest_rate": med(ingest),
        "ratio_of_medians": med(ingest) / med(base),
        "median_ratio": med([i / b for i, b in zip(ingest, base, strict=True)]),
        "all_ok": all(r["ingest"]["ok"] for r in reps),
        "client_cpu_share": med([r["ingest"]["client_cpu"] / r["ingest"]["seconds"] for r in reps]),
    }
    lats = [r["latency"] for r in reps if "latency" in r]
    if lats:
        summary["p50_ms"] = med([x["p50_ms"] for x in lats])
        summary["p99_ms"] = med([x["p99_ms"] for x in lats])
        summary["max_ms"] = med([x["max_ms"] for x in lats])
        summary["latency_rate"] = med([x["achieved_rate"] for x in lats])
    return summary


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.events, args.repeat = min(args.events, 20_000), 1
        args.latency_seconds = min(args.latency_seconds, 3.0)
    # The benchmark measures the embedded default: a fresh SQLite file per repetition.
    os.environ.pop("TSUNAGU_DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsunagu.settings")
    reps = []
    for rep in range(1, args.repeat + 1):
        print(f"repetition {rep}/{args.repeat}: {args.events:,} events, {args.clients} clients, "
              f"{args.workers} workers")
        reps.append(one_repetition(args, rep))
    summary = summarize(reps)
    print(report.summary_text(summary))
    if not args.no_write and (args.write or not args.quick):
        report.write(args.output, args=args, reps=reps, summary=summary)
        print(f"wrote {args.output}")
    return 0 if summary["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
