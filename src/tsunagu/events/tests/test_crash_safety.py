"""An acknowledged event is never lost and never stored twice, even when the server is killed mid-stream.

Several client threads stream batches to a real server (``tsunagu up``: web and applier); the server's whole
process group is SIGKILLed while they send. After a restart on the same database the applier catches up on
the ingest log, and every event answered 200 must be stored, once, with its profile counted. The clients
then retry everything they sent — acknowledged or not, as an SDK does after a connection error — and each
event is still stored exactly once. (The applier killed mid-transaction: test_applier_crash.py.)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.live

THREADS = 4
BATCH = 25
STREAM_SECONDS = 5.0  # at most: the stream is killed as soon as enough batches are acknowledged


def make_batch(run: str, thread: int, seq: int) -> list[dict[str, Any]]:
    events = []
    for i in range(BATCH):
        events.append(
            {
                "type": "identify" if i == 0 else "track",
                "messageId": f"{run}-{thread}-{seq}-{i}",
                # A few customers per thread, so batches also update and merge profiles.
                "userId": f"user-{thread}-{seq % 3}",
                "anonymousId": f"device-{thread}-{seq % 5}",
                "event": "Streamed",
                "traits": {"seq": seq},
                "properties": {"seq": seq, "i": i},
            }
        )
    return events


class Streamer(threading.Thread):
    def __init__(self, url: str, write_key: str, run: str, index: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.write_key, self.run_id, self.index, self.stop = url, write_key, run, index, stop
        self.acked: list[str] = []
        self.unacked: list[str] = []
        self.batches: list[list[dict[str, Any]]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        session = requests.Session()
        session.auth = (self.write_key, "")
        seq = 0
        while not self.stop.is_set():
            batch = make_batch(self.run_id, self.index, seq)
            seq += 1
            self.batches.append(batch)
            ids = [e["messageId"] for e in batch]
            try:
                response = session.post(f"{self.url}/v1/batch", json={"batch": batch}, timeout=10)
            except requests.RequestException:
                self.unacked.extend(ids)
                time.sleep(0.1)
                continue
            if response.status_code == 200 and response.json().get("success") is True:
                self.acked.extend(ids)
            else:
                self.unacked.extend(ids)
                self.errors.append(f"{response.status_code} {response.text[:200]}")


def stored_counts(server: Any) -> Counter[str]:
    return Counter(dict(server.query("SELECT message_id, COUNT(*) FROM events_event GROUP BY message_id")))


def profile_counts_match_events(server: Any) -> tuple[int, int]:
    (events,) = server.query("SELECT COUNT(*) FROM events_event")[0]
    (counted,) = server.query(
        "SELECT COALESCE(SUM(event_count), 0) FROM customers_customer WHERE merged_into_id IS NULL"
    )[0]
    return int(events), int(counted)


def test_acknowledged_events_survive_sigkill_exactly_once(live_workspace):
    server, write_key, token, _slug = live_workspace
    run = uuid.uuid4().hex[:8]
    stop = threading.Event()
    streamers = [Streamer(server.url, write_key, run, i, stop) for i in range(THREADS)]
    for s in streamers:
        s.start()
    deadline = time.monotonic() + STREAM_SECONDS
    while time.monotonic() < deadline and sum(len(s.acked) for s in streamers) < THREADS * BATCH * 4:
        time.sleep(0.05)
    time.sleep(0.2)
    server.kill()
    # The streams keep going into the dead server for a moment: their requests fail, unacknowledged.
    time.sleep(0.3)
    stop.set()
    for s in streamers:
        s.join(timeout=15)
        assert not s.is_alive()

    acked = [m for s in streamers for m in s.acked]
    unacked = [m for s in streamers for m in s.unacked]
    assert not [e for s in streamers for e in s.errors], "the server refused batches before it was killed"
    assert len(acked) >= THREADS * BATCH, "too few batches acknowledged before the kill to prove anything"
    assert unacked, "no request failed: the kill did not happen while the clients were streaming"
    assert len(set(acked)) == len(acked)

    # The server is dead, with acknowledged events perhaps still in the log only: restart it on the same
    # database and let the applier catch up.
    server.start()
    server.wait_applied(token)
    counts = stored_counts(server)
    lost = [m for m in acked if counts[m] == 0]
    assert not lost, f"{len(lost)} acknowledged events lost, e.g. {lost[:5]}"
    assert max(counts.values()) == 1
    # Nothing stored that the clients never sent, and the profiles committed with their events.
    assert set(counts) <= set(acked) | set(unacked)
    events, counted = profile_counts_match_events(server)
    assert events == counted == sum(counts.values())

    # The clients retry every batch they sent.
    session = requests.Session()
    session.auth = (write_key, "")
    sent: list[str] = []
    for s in streamers:
        for batch in s.batches:
            response = session.post(f"{server.url}/v1/batch", json={"batch": batch}, timeout=30)
            assert response.status_code == 200, response.text
            assert response.json() == {"success": True}
            sent.extend(e["messageId"] for e in batch)
    server.wait_applied(token)
    counts = stored_counts(server)
    assert set(counts) == set(sent)
    assert max(counts.values()) == 1, [m for m, n in counts.items() if n > 1][:5]
    events, counted = profile_counts_match_events(server)
    assert events == counted == len(set(sent))
