"""Emails rendered and handed to a loopback SMTP server by one worker, beside smtplib in a tight loop.

``python -m bench.email_send [--emails N]`` (``python -m bench email``). In one run, on a fresh database,
every figure against the same server:

1. baseline — the same number of messages, built once with ``email.message.EmailMessage`` and sent with
   ``smtplib`` over one connection in a tight loop (``sendmail``: one command a round trip): what the SMTP
   server and the loopback allow a plain client;
2. the hand-over alone — the same pre-built message sent the way the worker sends (MAIL, RCPT and DATA
   pipelined, over as many connections as the worker has, one thread each), nothing else: the ceiling
   of the worker's way of sending on this server and machine;
3. tsunagu — ``send_create`` for each customer (recorded, not timed in the worker's figure), then one
   ``Runner`` executing every delivery through the email channel: claimed, rendered (Liquid, tracked
   links), stored with its search index, the ``sending`` and ``sent`` commits and the timeline outbox
   rows, the MIME built and handed over. The worker's figure is messages / its seconds.

The SMTP server (``--server sink``, the default) is a minimal asyncio SMTP server in its own process (it
would otherwise share the GIL with what is measured) offering PIPELINING, answering 250 to everything and
counting messages, so every figure ends with the server having every message. ``--server aiosmtpd`` uses
aiosmtpd instead (no PIPELINING; it tops out below the target on this machine).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import smtplib
import socket
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fast_sink(port: int, counter: Any, ready: Any) -> None:
    """A minimal SMTP server: the commands a client sends (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT)
    answered as RFC 5321 says, the message read to its final dot, 250. aiosmtpd tops out near 370 messages/s
    on this machine — below the 500 a worker must reach — so the figure would measure aiosmtpd."""
    import asyncio

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ESMTP\r\n")
        while True:
            line = await reader.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await reader.readuntil(b"\r\n.\r\n")
                with counter.get_lock():
                    counter.value += 1
                writer.write(b"250 OK queued\r\n")
            elif verb == b"EHLO":
                writer.write(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 OK\r\n")
            await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(session, "127.0.0.1", port, limit=2**24)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _smtp_sink(port: int, counter: Any, ready: Any) -> None:
    import asyncio

    from aiosmtpd.controller import Controller

    class Count:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
            with counter.get_lock():
                counter.value += 1
            return "250 OK"

    controller = Controller(Count(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    try:
        asyncio.run(asyncio.sleep(10**6))
    finally:
        controller.stop()


def _wait_count(counter: Any, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while counter.value < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the SMTP sink got {counter.value} of {n} messages")
        time.sleep(0.01)


def baseline(port: int, n: int, counter: Any) -> float:
    msg = EmailMessage()
    msg["From"] = "つなぐマート <info@tsunagu-mart.example>"
    msg["To"] = "customer@example.jp"
    msg["Subject"] = "【つなぐマート】ご注文の商品を発送しました"
    msg.set_content("ご注文の商品を発送しました。")
    msg.add_alternative("<p>ご注文の商品を発送しました。</p>", subtype="html")
    start_count = counter.value
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for i in range(n):
            smtp.sendmail("info@tsunagu-mart.example", [f"c{i}@example.jp"], msg.as_bytes())
    _wait_count(counter, start_count + n)
    return n / (time.perf_counter() - started)


def handover(port: int, n: int, counter: Any, connections: int) -> float:
    """The worker's way of sending without the worker: a pre-built message, MAIL/RCPT/DATA in one write
    (when the server offers PIPELINING), ``connections`` connections, a thread each."""
    import threading

    msg = EmailMessage()
    msg["From"] = "つなぐマート <info@tsunagu-mart.example>"
    msg["Subject"] = "【つなぐマート】ご注文の商品を発送しました"
    msg.set_content("ご注文の商品を発送しました。")
    msg.add_alternative("<p>ご注文の商品を発送しました。</p>", subtype="html")
    data = msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b".\r\n"

    def lane(count: int) -> None:
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            smtp.ehlo()
            pipelined = smtp.has_extn("pipelining")
            for i in range(count):
                to = f"c{i}@example.jp"
                if pipelined:
                    smtp.send(f"MAIL FROM:<info@tsunagu-mart.example>\r\nRCPT TO:<{to}>\r\nDATA\r\n".encode())
                    replies = [smtp.getreply() for _ in range(3)]
                else:
                    replies = [smtp.mail("info@tsunagu-mart.example"), smtp.rcpt(to), smtp.docmd("DATA")]
                assert [code for code, _ in replies] == [250, 250, 354], replies
                smtp.send(data)
                assert smtp.getreply()[0] == 250

    start_count = counter.value
    started = time.perf_counter()
    threads = [threading.Thread(target=lane, args=(n // connections + (i < n % connections),))
               for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _wait_count(counter, start_count + n)
    return n / (time.perf_counter() - started)


def tsunagu(port: int, n: int, counter: Any, connections: int | None = None) -> tuple[float, dict[str, float]]:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from tsunagu.core.permissions import SYSTEM
    from tsunagu.core.services import workspace_create
    from tsunagu.customers.selectors import customer_list
    from tsunagu.events.applier import events_apply_pending
    from tsunagu.events.services import events_append, source_create
    from tsunagu.events.validation import parse_event
    from tsunagu.messaging.delivery import Runner
    from tsunagu.messaging.services import channel_create, communication_create, send_create

    ws = workspace_create(name="Bench", slug=f"bench-{os.getpid()}", actor=SYSTEM)
    source = source_create(workspace=ws, name="web", actor=SYSTEM)
    events = [
        parse_event(
            {"type": "identify", "userId": f"u{i}", "traits": {"email": f"c{i}@example.jp", "name": f"山田 {i}",
                                                              "family_name": "山田"}},
            type_=None, where="", max_bytes=32_000,
        )
        for i in range(n)
    ]
    for i in range(0, n, 500):
        events_append(source=source, events=events[i : i + 500], check_backlog=False)
    events_apply_pending(workspace_id=ws.pk)
    channel_create(
        workspace=ws, type="email", name="smtp", actor=SYSTEM,
        config={"host": "127.0.0.1", "port": port, "security": "none", "from_email": "info@tsunagu-mart.example",
                "from_name": "つなぐマート", **({"connections": connections} if connections else {})},
    )
    communication_create(
        workspace=ws, key="order-shipped", name="発送", topic="service", actor=SYSTEM,
        variants=[{
            "channel": "email", "locale": "ja", "subject": "【つなぐマート】{{ customer.traits.name }}様、発送しました",
            "html": "<h1>{{ customer.traits.name }} 様</h1><p>ご注文 {{ data.order }} を発送しました。</p>"
                    "<p><a href=\"https://example.jp/o/{{ data.order }}\">配送状況</a></p>",
        }],
    )
    customers = list(customer_list(workspace=ws).order_by("id"))
    start_count = counter.value
    started = time.perf_counter()
    for i, customer in enumerate(customers):
        send_create(workspace=ws, communication="order-shipped", customer=customer, actor=SYSTEM,
                    data={"order": f"TM-{i}"})
    recorded = time.perf_counter()
    runner = Runner(worker_id="bench")
    while runner.run_due(limit=200):
        pass
    runner.close()
    _wait_count(counter, start_count + len(customers))
    done = time.perf_counter()
    return len(customers) / (done - started), {
        "render_record_per_s": len(customers) / (recorded - started),
        "send_per_s": len(customers) / (done - recorded),
    }


def _child(q: Any, port: int, n: int, counter: Any, connections: int | None) -> None:
    q.put(tsunagu(port, n, counter, connections))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.email_send", description=__doc__.split("\n\n")[0])
    p.add_argument("--emails", type=int, default=5000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--server", choices=("sink", "aiosmtpd"), default="sink", help="the loopback SMTP server")
    p.add_argument("--connections", type=int, default=0,
                   help="the email channel's connections (default: the channel's default)")
    p.add_argument("--write", action="store_true", help="write the figures into docs/performance.md")
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    args = p.parse_args(argv)
    port = _free_port()
    counter, ready = mp.Value("l", 0), mp.Event()
    target = _fast_sink if args.server == "sink" else _smtp_sink
    sink = mp.Process(target=target, args=(port, counter, ready), daemon=True)
    sink.start()
    ready.wait(30)
    from tsunagu.messaging.channels.email import DEFAULT_CONNECTIONS

    connections = args.connections or DEFAULT_CONNECTIONS
    results: dict[str, list[float]] = {
        "baseline": [], "handover": [], "tsunagu": [], "render_record_per_s": [], "send_per_s": [], "load": [],
    }
    try:
        for _ in range(args.repeat):
            results["baseline"].append(baseline(port, args.emails, counter))
            results["handover"].append(handover(port, args.emails, counter, connections))
            with tempfile.TemporaryDirectory() as data:
                os.environ["TSUNAGU_DATA_DIR"] = data
                os.environ["DJANGO_SETTINGS_MODULE"] = "tsunagu.settings"
                # Each repetition in its own process: a fresh settings module for its data directory.
                q: Any = mp.Queue()
                proc = mp.Process(target=_child, args=(q, port, args.emails, counter, args.connections or None))
                proc.start()
                figure, parts = q.get(timeout=900)
                proc.join()
            results["tsunagu"].append(figure)
            for k, v in parts.items():
                results[k].append(v)
            results["load"].append(os.getloadavg()[0])
            print(f"  run {len(results['tsunagu'])}: baseline {results['baseline'][-1]:.0f}, hand-over "
                  f"{results['handover'][-1]:.0f}, worker {parts['send_per_s']:.0f} emails/s; "
                  f"load {results['load'][-1]:.1f}", flush=True)
    finally:
        sink.terminate()
    med = {k: statistics.median(v) for k, v in results.items()}
    load = med["load"]
    line = (
        f"[{args.server}, {args.emails} emails, {connections} connections, median of {args.repeat}] emails/s: "
        f"baseline smtplib {med['baseline']:.0f}, hand-over alone {med['handover']:.0f}, worker "
        f"{med['send_per_s']:.0f}, record {med['render_record_per_s']:.0f}, end to end {med['tsunagu']:.0f}; "
        f"load {load:.1f}"
    )
    print(line)
    if args.write:
        from bench import report

        report.write_section(args.output, "email-send", _section(args, med, load, results, connections))
    return 0


def _section(
    args: Any, med: dict[str, float], load: float, results: dict[str, list[float]], connections: int
) -> str:
    target = 500
    worker, record, base, hand = med["send_per_s"], med["render_record_per_s"], med["baseline"], med["handover"]
    met = "met" if worker >= target else "**not met**"
    lines = []
    for i, (b, h, w, ld) in enumerate(
        zip(results["baseline"], results["handover"], results["send_per_s"], results["load"], strict=True)
    ):
        lines.append(f"| {i + 1} | {b:.0f} | {h:.0f} | {w:.0f} | {w / b:.2f} | {w / h:.2f} | {ld:.1f} |")
    runs = "\n".join(lines)
    hand_row = (
        f"hand-over alone: the same message sent the worker's way ({connections} connections, pipelined), "
        f"nothing else | {hand:.0f} | {hand / base:.2f} | 1.00 | | |"
    )
    worker_row = (
        "**one worker**: claim, render (Liquid, tracked links), store and index, `sending`/`sent` commits, MIME, "
        f"SMTP hand-over | **{worker:.0f}** | {worker / base:.2f} | {worker / hand:.2f} | ≥ {target} | {met} |"
    )
    server = (
        "a minimal asyncio SMTP server in its own process, offering PIPELINING"
        if args.server == "sink" else "aiosmtpd (no PIPELINING)"
    )
    return f"""## Email sending (`python -m bench email`)

{args.emails} emails a run, median of {args.repeat} runs, one worker with {connections} SMTP connections, SQLite,
load average {load:.1f} (median of the runs' ends; 2 CPUs shared with other work). Every figure of a run is
against the same loopback SMTP server: {server}.

| | emails/s | vs. baseline | vs. hand-over alone | target | |
|---|---:|---:|---:|---:|---|
| baseline: `smtplib` over one connection, a pre-built message, tight loop | {base:.0f} | 1.00 | | | |
| {hand_row}
| {worker_row}
| `send_create` (the API's recording: channel choice, suppression check, fsync'd commit) | {record:.0f} | | | | |
| end to end (record, then the worker) | {med['tsunagu']:.0f} | {med['tsunagu'] / base:.2f} | | | |

| run | baseline /s | hand-over /s | worker /s | worker/baseline | worker/hand-over | load |
|---:|---:|---:|---:|---:|---:|---:|
{runs}

Where the time goes: the analysis above ("Email sending").
"""


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    mp.set_start_method("fork")
    raise SystemExit(main())
