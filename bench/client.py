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
    index: int, port: int, write_key: str, events: int, seed: int, ready: Any, go: Any, out: Any
) -> None:
    requests = [
        (payloads.http_request("/v1/batch", payloads.batch_body(items), write_key=write_key, port=port), len(items))
        for items in payloads.batches(seed, events)
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


def run_ingest(*, port: int, write_key: str, events: int, clients: int, seed: int) -> dict[str, Any]:
    """Send ``events`` events split across ``clients`` processes; returns timings and counts."""
    ctx = mp.get_context("fork")
    ready = ctx.Barrier(clients + 1)
    go = ctx.Event()
    out = ctx.Queue()
    share = [events // clients + (1 if i < events % clients else 0) for i in range(clients)]
    procs = [
        ctx.Process(target=_ingest_client, args=(i, port, write_key, share[i], seed * 1000 + i, ready, go, out))
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
