"""``python -m bench`` (``make bench``): tsunagu's ingestion pipeline against a live server.

Each repetition, on a fresh data directory (details: ``bench/README.md``):

1. baseline — the same events appended by raw ``executemany`` into an SQLite table with only an integer
   key, fsync'd (synchronous=FULL commit) per 5,000 events (``bench/baseline.py``);
2. acknowledged — ``tsunagu web`` only (no applier), client processes replaying pre-built ``/v1/batch``
   requests of 500 events over keep-alive sockets; then ``pending`` must equal the events sent;
3. applied — ``tsunagu worker`` started on that log; the time until ``pending`` is 0; then the database
   must hold every event once and the profiles' ``event_count`` must add up to it;
4. ack -> visible — ``tsunagu up`` (web + worker); batches at a fixed rate (open loop), a poller of
   ``GET /api/v1/ingestion`` dates when each batch is applied;
5. single events — ``POST /v1/track`` at a fixed rate, open loop, latency from the scheduled time.

Medians over the repetitions go to ``docs/performance.md``, with the load average beside each figure; the
hand-written analysis between the ``analysis`` markers of that file is kept.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.baseline import run_baseline
from bench.client import client_batches, ingestion_status, run_ingest, run_latency, run_visibility

ROOT = Path(__file__).resolve().parent.parent


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=100_000, help="events acknowledged then applied per run")
    p.add_argument(
        "--sustained", type=int, default=1_000_000,
        help="in the first repetition, top the log up to this many events (over HTTP) before the applier starts",
    )
    p.add_argument("--repeat", type=int, default=3, help="repetitions; medians are reported (default 3)")
    p.add_argument("--clients", type=int, default=4, help="client processes sending batches (default 4)")
    p.add_argument("--batch", type=int, default=500, help="events per /v1/batch request (default 500)")
    p.add_argument("--workers", type=int, default=2, help="web worker processes (default 2)")
    p.add_argument("--threads", type=int, default=None, help="threads per web worker (default: the server's)")
    p.add_argument("--visible-rates", default="1000,10000", help="events/s offered for ack -> visible")
    p.add_argument("--visible-seconds", type=float, default=10.0, help="duration of each ack -> visible run")
    p.add_argument("--visible-batch", type=int, default=100, help="events per batch in ack -> visible runs")
    p.add_argument("--visible-senders", type=int, default=4, help="connections of the ack -> visible sender")
    p.add_argument("--latency-rate", type=float, default=500.0, help="single-event requests/s (default 500)")
    p.add_argument("--latency-seconds", type=float, default=10.0, help="duration of the latency run (default 10)")
    p.add_argument("--latency-clients", type=int, default=4, help="client processes for the latency run")
    p.add_argument("--no-latency", action="store_true", help="skip steps 4 and 5")
    p.add_argument("--quick", action="store_true", help="50000 events, 1 repetition, short latency runs; no doc")
    p.add_argument("--write", action="store_true", help="write the doc even with --quick")
    p.add_argument("--no-write", action="store_true", help="print the results only")
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    p.add_argument("--profile", type=Path, help="directory for py-spy profiles (web during 2, worker during 3)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the data directories (printed)")
    return p


def load() -> float:
    """1-minute load average, published beside every figure (other work shares this machine)."""
    return os.getloadavg()[0]


def _sqlite(path: Path, sql: str) -> Any:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql).fetchone()
    finally:
        conn.close()


def _verify(db: Path) -> dict[str, int]:
    """What the applier actually stored: events, and the events its live profiles counted."""
    events, distinct = _sqlite(db, "SELECT COUNT(*), COUNT(DISTINCT message_id) FROM events_event")
    counted, profiles = _sqlite(
        db, "SELECT COALESCE(SUM(event_count), 0), COUNT(*) FROM customers_customer WHERE merged_into_id IS NULL"
    )
    unlinked = _sqlite(db, "SELECT COUNT(*) FROM events_event WHERE customer_id IS NULL")[0]
    return {"stored": events, "distinct": distinct, "profile_events": counted, "profiles": profiles,
            "unlinked": unlinked}


def _profile_start(pid: int, path: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found; install it with `pip install py-spy`", file=sys.stderr)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    # Raw collapsed stacks: `grep`-able, and flamegraph.pl, speedscope and bench/flame.py read them.
    proc = subprocess.Popen(
        [spy, "record", "--subprocesses", "--pid", str(pid), "--rate", "250", "--nonblocking",
         "--format", "raw", "--output", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    return proc


def _profile_stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    proc.send_signal(signal.SIGINT)  # py-spy writes its output and exits
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _step_applied(server: Any, token: str, sent: int, args: argparse.Namespace, rep: int) -> dict[str, Any]:
    load0 = load()
    start = time.monotonic()
    worker = server.spawn("worker")
    spy = _profile_start(worker.pid, args.profile / f"apply-rep{rep}.txt") if args.profile else None
    status: dict[str, Any] = {}
    try:
        deadline = start + 1800
        while time.monotonic() < deadline:
            status = ingestion_status(server.port, token)
            if status["pending"] == 0:
                break
            if worker.poll() is not None:
                raise RuntimeError(f"tsunagu worker exited with {worker.returncode}")
            time.sleep(0.05)
        seconds = time.monotonic() - start
    finally:
        _profile_stop(spy)
        _stop(worker)
    out = {"seconds": seconds, "status": status, "load": (load0 + load()) / 2}
    out.update(_verify(server.data_dir / "tsunagu.sqlite3"))
    out["rate"] = out["stored"] / seconds if seconds else 0.0
    out["ok"] = (
        status.get("pending") == 0
        and out["stored"] == out["distinct"] == sent == status.get("applied")
        and out["profile_events"] == out["stored"]
        and out["unlinked"] == 0
    )
    return out


def one_repetition(args: argparse.Namespace, rep: int) -> dict[str, Any]:
    from tsunagu.testing.live import LiveServer

    data_dir = Path(tempfile.mkdtemp(prefix=f"tsunagu-bench-{rep}-"))
    server = LiveServer(data_dir=data_dir)
    if args.threads:
        server.env["TSUNAGU_WEB_THREADS"] = str(args.threads)
    server.env["TSUNAGU_LOG_LEVEL"] = "WARNING"
    # The benchmark fills the log with more than the default backlog bound before it starts the applier.
    server.env["TSUNAGU_INGEST_MAX_PENDING"] = str(max(2_000_000, 2 * args.events))
    out: dict[str, Any] = {"rep": rep}
    seed = args.seed * 100 + rep
    try:
        write_key, token, _slug = server.provision(name="Bench", slug="bench")

        batches = client_batches(events=args.events, clients=args.clients, seed=seed, size=args.batch)
        load0 = load()
        base = run_baseline(target_db=data_dir / "baseline.sqlite3", batches=batches)
        del batches
        base["load"] = (load0 + load()) / 2
        out["baseline"] = base
        print(f"  baseline      {base['rate']:>10,.0f} events/s  ({base['seconds']:.2f} s, load {base['load']:.2f})")

        # 2. acknowledged: web only, nothing applies.
        server.start(workers=args.workers, command="web")
        spy = _profile_start(server.process.pid, args.profile / f"ack-rep{rep}.txt") if args.profile else None
        load0 = load()
        try:
            ack = run_ingest(
                port=server.port, write_key=write_key, events=args.events, clients=args.clients, seed=seed,
                size=args.batch,
            )
        finally:
            _profile_stop(spy)
        ack["load"] = (load0 + load()) / 2
        ack["rate"] = ack["acknowledged"] / ack["seconds"]
        ack["status"] = ingestion_status(server.port, token)
        ack["ok"] = ack["errors"] == 0 and ack["acknowledged"] == ack["sent"] == ack["status"]["pending"]
        out["ack"] = ack
        print(
            f"  acknowledged  {ack['rate']:>10,.0f} events/s  ({ack['seconds']:.2f} s, {ack['requests']} requests, "
            f"pending {ack['status']['pending']:,}/{ack['sent']:,}, clients' CPU {ack['client_cpu']:.1f} s, "
            f"load {ack['load']:.2f}){'' if ack['ok'] else '  CHECK FAILED ' + ack['first_error']}"
        )

        in_log = ack["acknowledged"]
        if rep == 1 and args.sustained > in_log:
            # Not timed: more of the same traffic, so that the applier starts on a log of --sustained events.
            more = run_ingest(
                port=server.port, write_key=write_key, events=args.sustained - in_log, clients=args.clients,
                seed=seed + 50, size=args.batch,
            )
            in_log += more["acknowledged"]
            print(f"  log topped up to {in_log:,} events ({more['errors']} errors)")
        out["in_log"] = in_log

        # 3. applied: the worker drains the log the web filled.
        applied = _step_applied(server, token, in_log, args, rep)
        out["applied"] = applied
        print(
            f"  applied       {applied['rate']:>10,.0f} events/s  ({applied['seconds']:.2f} s, stored "
            f"{applied['stored']:,}, profiles {applied['profiles']:,} counting {applied['profile_events']:,}, "
            f"load {applied['load']:.2f}){'' if applied['ok'] else '  CHECK FAILED ' + str(applied['status'])}"
        )
        server.stop()

        if not args.no_latency:
            # 4 and 5: web + worker, on the database just filled (warm: 10,000 profiles, the events above).
            server.start(workers=args.workers, command="up")
            out["visible"] = []
            for rate in [float(r) for r in args.visible_rates.split(",") if r]:
                load0 = load()
                vis = run_visibility(
                    port=server.port, write_key=write_key, token=token, rate=rate,
                    seconds=args.visible_seconds, size=args.visible_batch, seed=seed + int(rate),
                    senders=args.visible_senders,
                )
                vis["load"] = (load0 + load()) / 2
                out["visible"].append(vis)
                print(
                    f"  visible @{rate:>6,.0f}/s p50 {vis['p50_ms']:.1f} ms  p99 {vis['p99_ms']:.1f} ms  max "
                    f"{vis['max_ms']:.1f} ms (from scheduled p99 {vis['sched_p99_ms']:.1f} ms, "
                    f"ack p99 {vis['ack_p99_ms']:.1f} ms, achieved {vis['achieved']:,.0f}/s, "
                    f"poll every {vis['poll_ms']:.1f} ms, {vis['errors']} errors, {vis['unseen']} unseen, "
                    f"load {vis['load']:.2f})"
                )
            load0 = load()
            lat = run_latency(
                port=server.port, write_key=write_key, rate=args.latency_rate, seconds=args.latency_seconds,
                clients=args.latency_clients, seed=seed + 7,
            )
            lat["load"] = (load0 + load()) / 2
            out["latency"] = lat
            print(
                f"  track         p50 {lat['p50_ms']:.2f} ms  p99 {lat['p99_ms']:.2f} ms  max {lat['max_ms']:.1f} ms "
                f"at {lat['achieved_rate']:.0f} req/s ({lat['requests']} requests, {lat['errors']} errors, "
                f"load {lat['load']:.2f})"
            )
    finally:
        server.stop()
        if args.keep:
            print(f"  data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return out


# Other benchmarks: ``python -m bench NAME [ARGS]`` runs ``SUITES[NAME].main(ARGS)``; each writes its own
# section of docs/performance.md (``report.write_section``), kept when this one rewrites the file.
SUITES = {
    "archive": "bench.archive_search",
    "email": "bench.email_send",
    "sends": "bench.sends_pipeline",
    "broadcast": "bench.broadcast",
    "segments": "bench.segments",
    "journeys": "bench.journeys",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUITES:
        import importlib

        return int(importlib.import_module(SUITES[argv[0]]).main(argv[1:]))
    args = _parser().parse_args(argv)
    if args.quick:
        args.events, args.repeat, args.sustained = min(args.events, 50_000), 1, 0
        args.visible_seconds = min(args.visible_seconds, 5.0)
        args.latency_seconds = min(args.latency_seconds, 4.0)
    # The benchmark measures the embedded default: a fresh SQLite file per repetition.
    os.environ.pop("TSUNAGU_DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsunagu.settings")
    reps = []
    for rep in range(1, args.repeat + 1):
        print(f"repetition {rep}/{args.repeat}: {args.events:,} events, batches of {args.batch}, "
              f"{args.clients} clients, {args.workers} web workers, load {load():.2f}", flush=True)
        reps.append(one_repetition(args, rep))
    summary = report.summarize(reps)
    print(report.summary_text(summary))
    if not args.no_write and (args.write or not args.quick):
        report.write(args.output, args=args, reps=reps, summary=summary)
        print(f"wrote {args.output}")
    return 0 if summary["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
