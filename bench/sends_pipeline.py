"""Sends through the whole pipeline — policy, consent, caps, quiet hours, render, deliver — beside the raw
email worker, in one run.

``python -m bench sends [--sends N] [--write]`` (part of ``make bench``). On a fresh database each
repetition, with the minimal SMTP sink of ``bench.email_send`` in its own process:

1. baseline — the communications issue's raw figure: service emails, each recorded with ``send_create``
   beforehand (one email step, no consent needed, no caps), then one ``Runner`` executing them: emails/s
   of the worker alone;
2. full pipeline — a marketing communication with the policy LINE → email (the customers have no LINE id,
   so every send skips LINE with ``no_address`` first), an email opt-in per customer, a frequency cap and
   quiet hours configured (outside the window), sends recorded as rows of work (as a broadcast records
   them) and taken through ``sends_run_due`` — consent, suppression, caps, quiet hours, the delivery — then
   the same ``Runner``: sends/s from the first row recorded to the last message at the sink.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _setup(port: int, n: int) -> tuple[Any, list[Any]]:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from tsunagu.core.permissions import SYSTEM
    from tsunagu.core.services import workspace_create, workspace_settings_update
    from tsunagu.customers.selectors import customer_list
    from tsunagu.events.applier import events_apply_pending
    from tsunagu.events.services import events_append, source_create
    from tsunagu.events.validation import parse_event
    from tsunagu.messaging.services import channel_create, communication_create

    ws = workspace_create(name="Bench", slug=f"bench-{os.getpid()}", actor=SYSTEM)
    # Quiet hours that never cover the run (an hour-long window twelve hours away) still cost their check.
    hour = (time.gmtime().tm_hour + 9 + 12) % 24
    workspace_settings_update(workspace=ws, actor=SYSTEM, changes={
        "quiet_hours": {"marketing": {"start": f"{hour:02d}:00", "end": f"{(hour + 1) % 24:02d}:00"}},
        "frequency_caps": [{"topic": "marketing", "max": 5, "per": "week"}],
    })
    ws.refresh_from_db()
    source = source_create(workspace=ws, name="web", actor=SYSTEM)
    events = [
        parse_event(
            {"type": "identify", "userId": f"u{i}", "traits": {
                "email": f"c{i}@example.jp", "name": f"山田 {i}", "consent_email_marketing": True}},
            type_=None, where="", max_bytes=32_000,
        )
        for i in range(2 * n)
    ]
    for i in range(0, len(events), 500):
        events_append(source=source, events=events[i : i + 500], check_backlog=False)
    events_apply_pending(workspace_id=ws.pk)
    channel_create(
        workspace=ws, type="email", name="smtp", actor=SYSTEM,
        config={"host": "127.0.0.1", "port": port, "security": "none", "from_email": "info@tsunagu-mart.example",
                "from_name": "つなぐマート"},
    )
    channel_create(workspace=ws, type="line", name="LINE", actor=SYSTEM,
                   config={"channel_access_token": "t" * 40, "channel_secret": "s" * 32})
    html = ("<h1>{{ customer.traits.name }} 様</h1><p>{{ data.item }} がお得です。</p>"
            "<p><a href=\"https://example.jp/sale\">セール会場へ</a></p>")
    communication_create(
        workspace=ws, key="shipped", name="発送", topic="service", actor=SYSTEM,
        variants=[{"channel": "email", "locale": "ja", "subject": "{{ customer.traits.name }}様、発送しました",
                   "html": html}],
    )
    communication_create(
        workspace=ws, key="sale", name="セール", topic="marketing", actor=SYSTEM,
        variants=[
            {"channel": "line", "locale": "ja", "text": "{{ customer.traits.name }}様、セール開催中"},
            {"channel": "email", "locale": "ja", "subject": "{{ customer.traits.name }}様、セールのお知らせ",
             "html": html},
        ],
        policy={"steps": [{"channel": "line"}, {"channel": "email"}]},
    )
    return ws, list(customer_list(workspace=ws).order_by("id"))


def _drain() -> None:
    from tsunagu.messaging.delivery import Runner
    from tsunagu.messaging.failover import sends_run_due

    runner = Runner(worker_id="bench")
    try:
        while sends_run_due(worker_id="bench", limit=500) or runner.run_due(limit=200):
            pass
    finally:
        runner.close()


def run(port: int, n: int, counter: Any) -> dict[str, float]:
    import django

    django.setup()
    from bench.email_send import _wait_count
    from tsunagu.core import clock
    from tsunagu.core.permissions import SYSTEM
    from tsunagu.messaging.models import Communication, CommunicationVersion, Send
    from tsunagu.messaging.policy import policy_resolve
    from tsunagu.messaging.render import variant_channels
    from tsunagu.messaging.services import send_create

    ws, customers = _setup(port, n)
    raw, full = customers[:n], customers[n:]
    for i, customer in enumerate(raw):
        send_create(workspace=ws, communication="shipped", customer=customer, actor=SYSTEM, data={"item": f"#{i}"})
    start = counter.value
    started = time.perf_counter()
    _drain()
    _wait_count(counter, start + n)
    raw_rate = n / (time.perf_counter() - started)

    comm = Communication.objects.get(workspace=ws, key="sale")
    version = CommunicationVersion.objects.get(communication=comm, number=comm.current_version)
    policy = policy_resolve(override=None, stored=comm.policy, channels=variant_channels(version.variants))
    start = counter.value
    started = time.perf_counter()
    now = clock.now()
    Send.objects.bulk_create(
        [Send(workspace=ws, communication=comm, version=version, customer=c, data={"item": "冬のコート"},
              policy=policy, due_at=now, created_at=now, updated_at=now) for c in full],
        batch_size=1000,
    )
    _drain()
    _wait_count(counter, start + n)
    full_rate = n / (time.perf_counter() - started)
    skipped_line = Send.objects.filter(workspace=ws, attempts__channel="line", attempts__reason="no_address").count()
    assert skipped_line == n, f"{skipped_line} of {n} sends skipped LINE"
    return {"raw": raw_rate, "full": full_rate}


def _child(q: Any, port: int, n: int, counter: Any) -> None:
    q.put(run(port, n, counter))


def main(argv: list[str] | None = None) -> int:
    from bench.email_send import _fast_sink, _free_port

    p = argparse.ArgumentParser(prog="python -m bench sends", description=__doc__.split("\n\n")[0])
    p.add_argument("--sends", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--write", action="store_true", help="write the figures into docs/performance.md")
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    args = p.parse_args(argv)
    port = _free_port()
    counter, ready = mp.Value("l", 0), mp.Event()
    sink = mp.Process(target=_fast_sink, args=(port, counter, ready), daemon=True)
    sink.start()
    ready.wait(30)
    results: dict[str, list[float]] = {"raw": [], "full": []}
    try:
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as data:
                os.environ["TSUNAGU_DATA_DIR"] = data
                os.environ["DJANGO_SETTINGS_MODULE"] = "tsunagu.settings"
                q: Any = mp.Queue()
                proc = mp.Process(target=_child, args=(q, port, args.sends, counter))
                proc.start()
                out = q.get(timeout=1800)
                proc.join()
            for k, v in out.items():
                results[k].append(v)
    finally:
        sink.terminate()
    med = {k: statistics.median(v) for k, v in results.items()}
    load = os.getloadavg()[0]
    print(f"[{args.sends} sends, median of {args.repeat}] raw email worker {med['raw']:.0f}/s, "
          f"full pipeline {med['full']:.0f}/s ({med['full'] / med['raw']:.2f}); load {load:.1f}")
    if args.write:
        from bench import report

        report.write_section(args.output, "sends-pipeline", _section(args, med, load))
    return 0


def _section(args: Any, med: dict[str, float], load: float) -> str:
    return f"""## Sends through the whole pipeline (`python -m bench sends`)

{args.sends} sends a run, median of {args.repeat} runs, one worker process, SQLite, load average {load:.1f} at the end;
the minimal SMTP sink of the email benchmark.

| | sends/s | vs. baseline |
|---|---:|---:|
| baseline: the raw email worker (service emails recorded beforehand, one `Runner`) | {med['raw']:.0f} | 1.00 |
| **full pipeline**: {_FULL} | **{med['full']:.0f}** | {med['full'] / med['raw']:.2f} |
"""


_FULL = ("rows of work → policy LINE → email (LINE skipped, no address), email opt-in checked, frequency cap "
         "counted, quiet hours checked, rendered, delivered")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT))
    mp.set_start_method("fork")
    raise SystemExit(main())
