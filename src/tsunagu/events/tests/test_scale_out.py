"""Scale-out: two ``tsunagu web`` and two ``tsunagu worker`` processes on one database ingest one stream into
several workspaces. Both workers take workspaces (leases); every acknowledged event is applied exactly once;
when one worker is SIGKILLed, the other takes its workspaces over once their lease runs out.

On PostgreSQL this is several machines' worth of processes sharing the database; on SQLite, several
processes of one machine sharing the ingest log and the database — the same leases either way."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest
import requests

from tsunagu.testing.live import free_port
from tsunagu.testing.pipeline import ingestion

pytestmark = pytest.mark.live

WORKSPACES = 4
BATCH = 50
PACE = 0.05  # seconds between one stream's batches
MAX_BATCHES_BEFORE_KILL = 100  # per stream: bounds the backlog if the kill is slow to come
TAIL_BATCHES = 10  # per stream, sent after the kill


def events(tag: str, seq: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "track",
            "messageId": f"{tag}-{seq}-{i}",
            "userId": f"{tag}-user-{(seq * BATCH + i) % 40}",
            "event": "Streamed",
            "properties": {"seq": seq, "i": i},
        }
        for i in range(BATCH)
    ]


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_webs_two_workers_and_a_worker_killed(live_server_factory):
    server = live_server_factory()
    server.cli("migrate")
    tenants = []
    for n in range(WORKSPACES):
        slug = server.cli_json("workspace", "create", f"Shop {n}", "--slug", f"shop-{n}")["slug"]
        key = server.cli_json("source", "create", "--workspace", slug, "--name", "Web")["write_key"]
        token = server.cli_json("apikey", "create", "--workspace", slug)["token"]
        tenants.append((slug, key, token))
    server.env["TSUNAGU_APPLIER_LEASE"] = "2"
    server.env["TSUNAGU_APPLY_CHUNK"] = "500"
    server.start(command="web", workers=1)
    second_port = free_port()
    second = server.spawn("web", "--port", str(second_port), "--workers", "1")
    workers = [server.spawn("worker"), server.spawn("worker")]
    processes = [second, *workers]
    try:
        urls = [server.url, f"http://127.0.0.1:{second_port}"]

        def second_ready() -> bool:
            try:
                return requests.get(f"{urls[1]}/readyz", timeout=1).ok
            except requests.ConnectionError:
                return False

        wait_for(second_ready, 30, "the second web server")

        # Both workers must be up before the stream starts: on a loaded machine one can take seconds
        # longer to import, and the first would otherwise apply the whole stream alone.
        worker_log = server.data_dir / "spawned-worker.log"

        def both_workers_started() -> bool:
            text = worker_log.read_text(errors="replace") if worker_log.exists() else ""
            return all(f":{w.pid}:applier started" in text for w in workers)

        wait_for(both_workers_started, 60, "both workers to start")

        acked: dict[str, int] = {slug: 0 for slug, _k, _t in tenants}
        lock = threading.Lock()
        failures: list[str] = []
        killed = threading.Event()

        def stream(url: str, slug: str, key: str) -> None:
            # Paced, and kept going until the kill, so that the workers always have something to take
            # whatever the machine's speed; then a fixed tail that only the survivor can apply.
            session = requests.Session()
            session.auth = (key, "")
            seq = after_kill = 0
            while after_kill < TAIL_BATCHES:
                if seq >= MAX_BATCHES_BEFORE_KILL and not killed.is_set():
                    killed.wait(120)
                response = session.post(
                    f"{url}/v1/batch", json={"batch": events(f"{slug}-{url[-5:]}", seq)}, timeout=30
                )
                seq += 1
                if killed.is_set():
                    after_kill += 1
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                with lock:
                    acked[slug] += BATCH
                time.sleep(PACE)

        threads = [threading.Thread(target=stream, args=(url, slug, key)) for url in urls for slug, key, _t in tenants]
        for t in threads:
            t.start()

        # While the stream runs, kill one worker once both have applied something.
        def owners() -> set[str]:
            rows = server.query("SELECT owner FROM events_applierstate WHERE owner <> ''")
            return {row[0].rsplit(":", 2)[1] for row in rows}

        seen: set[str] = set()

        def both_took_work_and_the_first_holds_one() -> bool:
            now = owners()
            seen.update(now)
            return len(seen) >= 2 and str(workers[0].pid) in now

        # Killed while it holds a lease: the survivor can only take that workspace once the lease runs out.
        try:
            wait_for(both_took_work_and_the_first_holds_one, 90, "both workers to hold leases")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; seen {seen}; worker log:\n{worker_log.read_text()[-4000:]}") from None
        finally:
            killed.set()
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(timeout=10)
        for t in threads:
            t.join(timeout=180)
        assert failures == []

        assert not any(t.is_alive() for t in threads)
        total = sum(acked.values())
        for slug, _key, token in tenants:
            status = server.wait_applied(token, timeout=180)
            assert status["applied"] == acked[slug] and status["duplicates"] == 0, (slug, status)
        ((stored,),) = server.query("SELECT COUNT(*) FROM events_event")
        ((distinct,),) = server.query("SELECT COUNT(DISTINCT message_id) FROM events_event")
        ((counted,),) = server.query("SELECT SUM(event_count) FROM customers_customer WHERE merged_into_id IS NULL")
        assert stored == distinct == counted == total
        # Everything after the kill was applied by the survivor.
        survivor = str(workers[1].pid)
        assert owners() <= {survivor}
        assert all(ingestion(server.url, t)["pending"] == 0 for _s, _k, t in tenants)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except Exception:  # noqa: BLE001
                process.kill()
