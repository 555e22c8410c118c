"""Load generation: processes that replay pre-built HTTP requests over keep-alive sockets.

Everything a client does between two requests is ``sendall`` of bytes built before the clock started and
reading one small response, so the clients stay far cheaper than the server they measure (their CPU time is
reported next to every result to prove it).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench import payloads


class HttpError(RuntimeError):
    pass


class Connection:
    """A minimal HTTP/1.1 keep-alive client: one request in flight, Content-Length responses only."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def request(self, raw: bytes) -> tuple[int, bytes]:
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        while len(rest) < length:
            self.buffer = rest
            self._fill()
            rest = self.buffer
        body, self.buffer = rest[:length], rest[length:]
        if close:
            self.close()
            self.sock = socket.create_connection(("127.0.0.1", self.port))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer = b""
        return status, body

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise HttpError("server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


@dataclass
class ClientResult:
    requests: int = 0
    events: int = 0
    errors: int = 0
    first_error: str = ""
    started: float = 0.0
    finished: float = 0.0
    cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


# -- ingestion: send pre-built batches as fast as the server answers ----------------------------------


def _ingest_client(
    index: int, port: int, write_key: str, events: int, seed: int, size: int, ready: Any, go: Any, out: Any
) -> None:
    requests = [
        (payloads.http_request("/v1/batch", payloads.batch_body(items), write_key=write_key, port=port), len(items))
        for items in payloads.batches(seed, events, size=size)
    ]
    conn = Connection(port)
    result = ClientResult()
    ready.wait()
    go.wait()
    cpu0 = _cpu()
    result.started = time.monotonic()
    for raw, count in requests:
        status, body = conn.request(raw)
        result.requests += 1
        if status == 200 and body.startswith(b'{"success":true}'):
            result.events += count
        else:
            result.errors += 1
            result.first_error = result.first_error or f"{status} {body[:300]!r}"
    result.finished = time.monotonic()
    result.cpu = _cpu() - cpu0
    conn.close()
    out.put((index, result))


def client_share(events: int, clients: int) -> list[int]:
    return [events // clients + (1 if i < events % clients else 0) for i in range(clients)]


def client_batches(*, events: int, clients: int, seed: int, size: int) -> list[list[dict[str, Any]]]:
    """Exactly the batches ``run_ingest`` sends (same seeds), for the baseline."""
    share = client_share(events, clients)
    return [b for i in range(clients) for b in payloads.batches(seed * 1000 + i, share[i], size=size)]


def run_ingest(
    *, port: int, write_key: str, events: int, clients: int, seed: int, size: int = 500
) -> dict[str, Any]:
    """Send ``events`` events in batches of ``size`` split across ``clients`` processes; returns timings and
    counts."""
    ctx = mp.get_context("fork")
    ready = ctx.Barrier(clients + 1)
    go = ctx.Event()
    out = ctx.Queue()
    share = client_share(events, clients)
    procs = [
        ctx.Process(
            target=_ingest_client, args=(i, port, write_key, share[i], seed * 1000 + i, size, ready, go, out)
        )
        for i in range(clients)
    ]
    for p in procs:
        p.start()
    ready.wait(timeout=600)
    start = time.monotonic()
    go.set()
    results = [out.get(timeout=3600)[1] for _ in procs]
    for p in procs:
        p.join(timeout=30)
    end = max(r.finished for r in results)
    return {
        "seconds": end - start,
        "sent": sum(share),
        "acknowledged": sum(r.events for r in results),
        "requests": sum(r.requests for r in results),
        "errors": sum(r.errors for r in results),
        "first_error": next((r.first_error for r in results if r.first_error), ""),
        "client_cpu": sum(r.cpu for r in results),
    }


# -- latency: single events at a fixed rate, measured from their scheduled send time ------------------


def _latency_client(
    index: int,
    clients: int,
    port: int,
    write_key: str,
    rate: float,
    seconds: float,
    seed: int,
    ready: Any,
    go: Any,
    out: Any,
) -> None:
    rng = random.Random(seed)
    count = int(rate * seconds)
    now = dt.datetime.now(dt.UTC)
    bodies = []
    for _ in range(count):
        item = payloads.event(rng, now, kind="track")
        bodies.append(payloads.http_request("/v1/track", orjson.dumps(item), write_key=write_key, port=port))
    conn = Connection(port)
    result = ClientResult()
    interval = 1.0 / rate
    ready.wait()
    go.wait()
    cpu0 = _cpu()
    # Stagger the clients so that their schedules interleave instead of arriving in bursts.
    start = time.monotonic() + index * interval / clients
    result.started = start
    for i, raw in enumerate(bodies):
        due = start + i * interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        status, body = conn.request(raw)
        # From the scheduled time, not the send time: a slow answer delays the next request, and that wait
        # is latency too (no coordinated omission).
        result.latencies.append(time.monotonic() - due)
        result.requests += 1
        if status == 200:
            result.events += 1
        else:
            result.errors += 1
            result.first_error = result.first_error or f"{status} {body[:300]!r}"
    result.finished = time.monotonic()
    result.cpu = _cpu() - cpu0
    conn.close()
    out.put((index, result))


def run_latency(*, port: int, write_key: str, rate: float, seconds: float, clients: int, seed: int) -> dict[str, Any]:
    """Open-loop load of single events at ``rate`` requests/s in total for ``seconds``."""
    ctx = mp.get_context("fork")
    ready = ctx.Barrier(clients + 1)
    go = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_latency_client,
            args=(i, clients, port, write_key, rate / clients, seconds, seed * 1000 + i, ready, go, out),
        )
        for i in range(clients)
    ]
    for p in procs:
        p.start()
    ready.wait(timeout=600)
    go.set()
    results = [out.get(timeout=3600)[1] for _ in procs]
    for p in procs:
        p.join(timeout=30)
    latencies = sorted(x for r in results for x in r.latencies)
    span = max(r.finished for r in results) - min(r.started for r in results)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000.0

    return {
        "requests": len(latencies),
        "errors": sum(r.errors for r in results),
        "first_error": next((r.first_error for r in results if r.first_error), ""),
        "achieved_rate": len(latencies) / span if span > 0 else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1000.0,
        "client_cpu": sum(r.cpu for r in results),
    }


# -- ack -> visible: batches at a fixed rate while a poller watches the applier ---------------------------


def _get(conn: Connection, path: str, token: str) -> dict[str, Any]:
    raw = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{conn.port}\r\nAuthorization: Bearer {token}\r\n"
        "Connection: keep-alive\r\n\r\n"
    ).encode()
    status, body = conn.request(raw)
    if status != 200:
        raise HttpError(f"{path}: {status} {body[:200]!r}")
    return dict(orjson.loads(body))


def ingestion_status(port: int, token: str) -> dict[str, Any]:
    conn = Connection(port)
    try:
        return _get(conn, "/api/v1/ingestion", token)
    finally:
        conn.close()


def _visibility_client(
    port: int, write_key: str, token: str, rate: float, seconds: float, size: int, senders: int, seed: int, out: Any
) -> None:
    import bisect
    import threading

    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    per_second = rate / size
    count = max(1, int(per_second * seconds))
    requests = []
    for _ in range(count):
        items = [payloads.event(rng, now) for _ in range(size)]
        requests.append(payloads.http_request("/v1/batch", payloads.batch_body(items), write_key=write_key, port=port))
    poll_conn = Connection(port)
    applied0 = int(_get(poll_conn, "/api/v1/ingestion", token)["applied"])
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def poll() -> None:
        # The time a sample is taken is when its answer arrived: an upper bound of when the count was true.
        while not stop.is_set():
            applied = int(_get(poll_conn, "/api/v1/ingestion", token)["applied"]) - applied0
            samples.append((time.monotonic(), applied))
            time.sleep(0.002)

    sent: list[tuple[float, float, float]] = []  # (scheduled, sent, acknowledged) per successful request
    errors: list[str] = []
    lock = threading.Lock()
    start = time.monotonic() + 0.1
    interval = 1.0 / per_second

    def send(index: int) -> None:
        # Several connections, so that a slow answer does not hold back the schedule (open loop).
        conn = Connection(port)
        for i in range(index, count, senders):
            due = start + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            began = time.monotonic()
            status, body = conn.request(requests[i])
            acked = time.monotonic()
            with lock:
                if status == 200:
                    sent.append((due, began, acked))
                else:
                    errors.append(f"{status} {body[:300]!r}")
        conn.close()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    threads = [threading.Thread(target=send, args=(k,)) for k in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    finished = time.monotonic()
    total = len(sent) * size
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not samples or samples[-1][1] < total):
        time.sleep(0.01)
    stop.set()
    poller.join(timeout=10)
    poll_conn.close()
    # The applier applies one workspace in log order. A request's record is in the log before its 200, after
    # the records of requests sent before it at most; so once `applied` reaches the events of every request
    # *sent* before this one's 200, this one is applied (an upper bound: it counts the requests in flight).
    starts = sorted(b for _, b, _ in sent)
    visible: list[float] = []
    scheduled: list[float] = []
    for due, _began, acked in sorted(sent, key=lambda r: r[2]):
        needed = bisect.bisect_right(starts, acked) * size
        j = _first_at_least(samples, needed)
        if j == len(samples):
            continue
        visible.append(max(0.0, samples[j][0] - acked))
        # From the scheduled send time: also counts a request's wait for a free connection.
        scheduled.append(max(0.0, samples[j][0] - due))
    ack_ms = sorted((a - b) * 1000 for _, b, a in sent)
    gaps = [b[0] - a[0] for a, b in zip(samples, samples[1:], strict=False)]
    out.put({
        "batches": len(sent), "events": total, "errors": len(errors), "first_error": errors[0] if errors else "",
        "visible": visible, "scheduled": scheduled, "ack_ms": ack_ms, "span": finished - start,
        "poll_ms": (sorted(gaps)[len(gaps) // 2] * 1000) if gaps else float("nan"),
        "unseen": len(sent) - len(visible), "senders": senders,
    })


def _first_at_least(samples: list[tuple[float, int]], needed: int) -> int:
    """Index of the first sample whose count is >= ``needed`` (counts never decrease)."""
    lo, hi = 0, len(samples)
    while lo < hi:
        mid = (lo + hi) // 2
        if samples[mid][1] < needed:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_visibility(
    *, port: int, write_key: str, token: str, rate: float, seconds: float, size: int, seed: int, senders: int = 4
) -> dict[str, Any]:
    """Open loop: batches of ``size`` events at ``rate`` events/s for ``seconds`` over ``senders``
    connections; a poller of ``GET /api/v1/ingestion`` dates when each batch became visible."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    proc = ctx.Process(
        target=_visibility_client, args=(port, write_key, token, rate, seconds, size, senders, seed, out)
    )
    proc.start()
    result = out.get(timeout=600)
    proc.join(timeout=30)
    visible_ms = [v * 1000 for v in result.pop("visible")]
    ack_ms = result.pop("ack_ms")
    scheduled_ms = [v * 1000 for v in result.pop("scheduled")]
    result.update({
        "offered": rate,
        "achieved": result["events"] / result["span"] if result["span"] else 0.0,
        "p50_ms": _pct(visible_ms, 0.50),
        "p99_ms": _pct(visible_ms, 0.99),
        "max_ms": max(visible_ms) if visible_ms else float("nan"),
        "ack_p50_ms": _pct(ack_ms, 0.50),
        "ack_p99_ms": _pct(ack_ms, 0.99),
        "sched_p50_ms": _pct(scheduled_ms, 0.50),
        "sched_p99_ms": _pct(scheduled_ms, 0.99),
    })
    return result
