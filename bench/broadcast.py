"""A LINE broadcast to generated audiences (10,000 and 100,000) through the real worker and the LINE
stand-in, with the worker SIGKILLed midway: everyone reached exactly once, peak RSS, throughput.

``python -m bench broadcast [--sizes 10000,100000] [--write]`` (part of ``make bench``). For each size, on
a fresh SQLite database:

1. ``tsunagu web`` on loopback; a LINE channel pointing at the stand-in (in this process); a service
   communication with one text variant (``{{ data.coupon }}``: identical for everyone, so multicast can
   merge it); the customers made by ``identify`` events with a LINE user id each (``/v1/batch``, applied
   by a worker that is then stopped);
2. ``POST /api/v1/broadcasts`` with every ``user_id``; a ``tsunagu worker`` runs it — expansion, the policy
   engine (consent, suppression, caps, quiet hours), rendering, LINE multicast — and is SIGKILLed once the
   stand-in has received half of the audience; a second worker takes over (leases of 5 s) and runs it to
   ``done``;
3. at the stand-in: every LINE user received the message exactly once (the run fails otherwise); the
   workers' peak RSS (``VmHWM``) and the recipients a second from the broadcast's creation to ``done``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (``VmHWM``) in MB, read while it still exists."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def _rss_anon_mb(pid: int) -> float:
    """The process's anonymous resident memory now (``RssAnon``): its heap, without the SQLite file pages
    it has mapped (``mmap_size``), which count in RSS but are the page cache's, shared and reclaimable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def _poll(fn: Any, what: str, timeout: float, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise RuntimeError(f"gave up waiting for {what} after {timeout:.0f}s")


def run(size: int, *, timeout: float) -> dict[str, Any]:
    import requests

    from tsunagu.testing.live import LiveServer
    from tsunagu.testing.standins.line import LineStandIn, user_id

    with tempfile.TemporaryDirectory() as data, LineStandIn() as line:
        server = LiveServer(data_dir=Path(data))
        server.env.pop("TSUNAGU_DATABASE_URL", None)
        server.env["TSUNAGU_DATABASE_URL"] = f"sqlite:///{Path(data) / 'tsunagu.sqlite3'}"
        server.env["TSUNAGU_DELIVERY_LEASE"] = "5"
        try:
            write_key, token, _ = server.provision(name="Bench Broadcast", slug="bench-broadcast")
            server.start(command="web", workers=1)
            api = requests.Session()
            api.headers["Authorization"] = f"Bearer {token}"
            r = api.post(f"{server.url}/api/v1/channels", timeout=30,
                         json={"type": "line", "name": "LINE", "config": line.channel_config()})
            r.raise_for_status()
            r = api.post(f"{server.url}/api/v1/communications", timeout=30, json={
                "key": "sale", "name": "Sale", "topic": "service",
                "variants": [{"channel": "line", "locale": "ja", "text": "冬のセール クーポン {{ data.coupon }}"}]})
            r.raise_for_status()
            users = [user_id() for _ in range(size)]
            web = requests.Session()
            for start in range(0, size, 500):
                batch = [{"type": "identify", "userId": f"u{i}", "traits": {"name": f"客{i}"},
                          "context": {"externalIds": [{"type": "line_user_id", "id": users[i]}]}}
                         for i in range(start, min(start + 500, size))]
                web.post(f"{server.url}/v1/batch", auth=(write_key, ""), json={"batch": batch},
                         timeout=60).raise_for_status()
            applier = server.spawn("worker")
            server.wait_applied(token, timeout=timeout)
            applier.send_signal(signal.SIGTERM)
            applier.wait(timeout=60)

            t0 = time.monotonic()
            r = api.post(f"{server.url}/api/v1/broadcasts", timeout=120, json={
                "communication": "sale", "data": {"coupon": "W10"},
                "audience": {"user_ids": [f"u{i}" for i in range(size)]}})
            r.raise_for_status()
            bid = r.json()["id"]
            created = time.monotonic() - t0

            def reached() -> int:
                return sum(len(d.to) for d in list(line.deliveries))

            first = server.spawn("worker")
            last = [time.monotonic()]

            anon = {"first": 0.0, "second": 0.0}

            def progress(worker: Any, which: str) -> None:
                anon[which] = max(anon[which], _rss_anon_mb(worker.pid))
                # A line a minute: a run stopped before the end still shows its pace and its memory.
                if time.monotonic() - last[0] >= 60:
                    last[0] = time.monotonic()
                    print(f"    {time.monotonic() - t0:5.0f} s: {reached():,} reached; worker peak RSS "
                          f"{_peak_rss_mb(worker.pid):.0f} MB, heap (RssAnon) now "
                          f"{_rss_anon_mb(worker.pid):.0f} MB", flush=True)

            _poll(lambda: progress(first, "first") or reached() >= size // 2, "half the audience reached", timeout)
            rss_first = _peak_rss_mb(first.pid)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
            killed_at = reached()
            second = server.spawn("worker")
            peak_second = [0.0]

            def done() -> bool:
                # The list, not the broadcast: its summary's aggregates would compete with the worker.
                peak_second[0] = max(peak_second[0], _peak_rss_mb(second.pid))
                progress(second, "second")
                items = api.get(f"{server.url}/api/v1/broadcasts", timeout=60).json()["items"]
                return any(b["id"] == bid and b["status"] == "done" for b in items)

            _poll(done, "the broadcast to be done", timeout, every=1.0)
            elapsed = time.monotonic() - t0
            final = api.get(f"{server.url}/api/v1/broadcasts/{bid}", timeout=120).json()
            rss_second = max(peak_second[0], _peak_rss_mb(second.pid))
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=60)
        finally:
            server.stop()
        received = Counter(to for d in line.deliveries for to in d.to)
        twice = sum(1 for n in received.values() if n > 1)
        missing = size - len(set(received) & set(users))
        if twice or missing:
            raise RuntimeError(f"{size}: {twice} users received the message more than once, {missing} never")
        multicasts = [r for r in line.requests if r.path.endswith("/multicast")]
        return {
            "size": size,
            "create_s": created,
            "elapsed_s": elapsed,
            "per_s": size / elapsed,
            "killed_at": killed_at,
            "rss_first_mb": rss_first,
            "rss_second_mb": rss_second,
            "anon_mb": max(anon.values()),
            "requests": len(line.requests),
            "multicasts": len(multicasts),
            "conflicts": sum(1 for r in line.requests if r.status == 409),
            "largest": max((len(r.body["to"]) for r in multicasts), default=0),
            "summary": final["summary"],
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench broadcast", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000", help="audience sizes (default 10000,100000)")
    p.add_argument("--timeout", type=float, default=7200, help="seconds allowed per stage")
    p.add_argument("--write", action="store_true", help="write the figures into docs/performance.md")
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    args = p.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsunagu.settings")
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"broadcast to {size:,} LINE users ...", flush=True)
        out = run(size, timeout=args.timeout)
        results.append(out)
        print(f"  {size:,}: done in {out['elapsed_s']:.0f} s ({out['per_s']:.0f} recipients/s), worker killed at "
              f"{out['killed_at']:,} reached; peak RSS {out['rss_first_mb']:.0f} MB (killed worker), "
              f"{out['rss_second_mb']:.0f} MB (second), heap at most {out['anon_mb']:.0f} MB; "
              f"{out['multicasts']} multicasts (largest "
              f"{out['largest']}), {out['conflicts']} answered 409; everyone reached once", flush=True)
        if args.write:  # after each size: a long run stopped later keeps the figures so far
            from bench import report

            kept = [r for r in _previous(args.output) if r["size"] not in {x["size"] for x in results}]
            rows = sorted(kept + results, key=lambda r: r["size"])
            report.write_section(args.output, "broadcast", _section(rows, os.getloadavg()[0]))
    return 0


_COLUMNS = ("size", "elapsed_s", "per_s", "killed_at", "rss_first_mb", "rss_second_mb", "anon_mb")


def _previous(path: Path) -> list[dict[str, Any]]:
    """The rows of the section as last written, so that one size can be measured again on its own."""
    import re

    if not path.exists():
        return []
    text = path.read_text()
    start = text.find("<!-- section:broadcast:start")
    end = text.find("<!-- section:broadcast:end")
    if start < 0 or end < 0:
        return []
    rows = []
    for line in text[start:end].splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if len(cells) != 10 or not re.fullmatch(r"[\d,]+", cells[0]):
            continue
        m = re.fullmatch(r"(\d+) \((\d+)\)", cells[7])
        if m is None:
            continue
        values = [float(c.replace(",", "")) for c in cells[:7]]
        row: dict[str, Any] = dict(zip(_COLUMNS, values, strict=True))
        row["size"], row["killed_at"] = int(row["size"]), int(row["killed_at"])
        row.update(multicasts=int(m.group(1)), largest=int(m.group(2)), conflicts=int(cells[8]))
        rows.append(row)
    return rows


def _section(results: list[dict[str, Any]], load: float) -> str:
    rows = "\n".join(
        f"| {r['size']:,} | {r['elapsed_s']:.0f} | **{r['per_s']:.0f}** | {r['killed_at']:,} | "
        f"{r['rss_first_mb']:.0f} | {r['rss_second_mb']:.0f} | {r['anon_mb']:.0f} | "
        f"{r['multicasts']} ({r['largest']}) | {r['conflicts']} | 0 |"
        for r in results
    )
    heap = "its heap was " + " and ".join(f"{r['anon_mb']:.0f} MB at {r['size']:,}" for r in results)
    heap += " recipients"
    return f"""## Broadcasts (`python -m bench broadcast`)

A LINE broadcast through the real worker to the LINE stand-in on loopback (one `tsunagu worker`, SQLite),
the worker SIGKILLed once half of the audience had been reached and a second one finishing; load
average {load:.1f} at the end. Recipients/s is the audience over the time from `POST /api/v1/broadcasts`
to `done` (expansion, the policy engine's checks per send, rendering per recipient, multicast, the
timeline outbox, the kill and the 5 s leases running out). Peak RSS is each worker's `VmHWM`: it
includes the pages of the SQLite file the worker has mapped (`mmap_size` 256 MB, plus a 64 MB page cache),
which grow with the database up to that bound; peak heap is the largest `RssAnon` sampled (the worker's
own memory), the figure that shows whether memory grows with the audience.

| recipients | seconds | recipients/s | reached when killed | peak RSS, killed worker (MB) \
| peak RSS, second worker (MB) | peak heap (MB) | multicasts (largest) | answered 409 | reached twice |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{rows}

Every LINE user received the message exactly once (checked at the stand-in; the run fails otherwise).
The worker holds one chunk of 1,000 recipients, one batch of 200 sends and up to 1,000 deliveries of a
multicast group at a time, whatever the audience: {heap}. Recipients/s follows the machine's load (other
work shares it) more than the audience. Most of the time is the policy engine (`failover.send_advance`,
about ten queries a send), then the per-recipient render.
"""


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
