"""``docs/performance.md``: regenerated numbers, kept analysis.

Everything outside the ``analysis`` markers is rewritten by each ``make bench``; the text between them is
written by people (where the time goes, what to change) and carried over unchanged.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sqlite3
import statistics
import sys
from pathlib import Path
from typing import Any

START = "<!-- analysis:start (hand-written; kept when the bench regenerates this file) -->"
END = "<!-- analysis:end -->"
TARGET_ACK = 100_000
TARGET_APPLIED = 25_000
TARGET_VISIBLE_MS = {1000.0: 250.0, 10000.0: 1000.0}
TARGET_P99_MS = 15.0
TARGET_LATENCY_RATE = 500.0

_DEFAULT_ANALYSIS = "_No analysis yet: profile the server (`python -m bench --profile DIR`) and write it here._"


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(reps: list[dict[str, Any]]) -> dict[str, Any]:
    base = [r["baseline"]["rate"] for r in reps]
    ack = [r["ack"]["rate"] for r in reps]
    applied = [r["applied"]["rate"] for r in reps]
    s: dict[str, Any] = {
        "baseline": _med(base),
        "baseline_load": _med([r["baseline"]["load"] for r in reps]),
        "ack": _med(ack),
        "ack_load": _med([r["ack"]["load"] for r in reps]),
        "ack_ratio": _med([a / b for a, b in zip(ack, base, strict=True)]),
        "applied": _med(applied),
        "sustained": next(({"events": r["in_log"], **r["applied"]} for r in reps if r["in_log"] > r["ack"]["sent"]),
                          None),
        "applied_load": _med([r["applied"]["load"] for r in reps]),
        "applied_ratio": _med([a / b for a, b in zip(applied, base, strict=True)]),
        "client_cpu_share": _med([r["ack"]["client_cpu"] / r["ack"]["seconds"] for r in reps]),
        "all_ok": all(r["ack"]["ok"] and r["applied"]["ok"] for r in reps),
        "visible": [],
    }
    rates = sorted({v["offered"] for r in reps for v in r.get("visible", [])})
    for rate in rates:
        runs = [v for r in reps for v in r.get("visible", []) if v["offered"] == rate]
        s["visible"].append({
            "offered": rate,
            **{k: _med([v[k] for v in runs]) for k in (
                "p50_ms", "p99_ms", "max_ms", "ack_p50_ms", "ack_p99_ms", "sched_p50_ms", "sched_p99_ms", "achieved",
                "poll_ms", "load",
            )},
            "errors": sum(v["errors"] for v in runs),
            "unseen": sum(v["unseen"] for v in runs),
        })
    lats = [r["latency"] for r in reps if "latency" in r]
    if lats:
        s["track"] = {k: _med([x[k] for x in lats]) for k in ("p50_ms", "p99_ms", "max_ms", "achieved_rate", "load")}
        s["track"]["errors"] = sum(x["errors"] for x in lats)
    return s


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _visible_ok(v: dict[str, Any]) -> bool:
    target = TARGET_VISIBLE_MS.get(v["offered"])
    return target is not None and v["p99_ms"] <= target and v["unseen"] == 0 and v["achieved"] >= 0.95 * v["offered"]


def _track_ok(t: dict[str, Any]) -> bool:
    return t["p99_ms"] <= TARGET_P99_MS and t["achieved_rate"] >= 0.95 * TARGET_LATENCY_RATE and t["errors"] == 0


def summary_text(s: dict[str, Any]) -> str:
    lines = [
        f"baseline      {s['baseline']:>10,.0f} events/s (median, load {s['baseline_load']:.2f})",
        f"acknowledged  {s['ack']:>10,.0f} events/s (median, load {s['ack_load']:.2f})  ratio to baseline "
        f"{s['ack_ratio']:.2f}   target >= {TARGET_ACK:,}: {'met' if s['ack'] >= TARGET_ACK else 'NOT MET'}",
        f"applied       {s['applied']:>10,.0f} events/s (median, load {s['applied_load']:.2f})  ratio to baseline "
        f"{s['applied_ratio']:.2f}   target >= {TARGET_APPLIED:,}: "
        f"{'met' if s['applied'] >= TARGET_APPLIED else 'NOT MET'}",
    ]
    if s["sustained"]:
        u = s["sustained"]
        lines.append(
            f"sustained     {u['rate']:>10,.0f} events/s applying a log of {u['events']:,} events (load "
            f"{u['load']:.2f})   target >= {TARGET_APPLIED:,}: {'met' if u['rate'] >= TARGET_APPLIED else 'NOT MET'}"
        )
    for v in s["visible"]:
        target = TARGET_VISIBLE_MS.get(v["offered"], float("nan"))
        lines.append(
            f"visible @{v['offered']:>6,.0f}/s  p50 {v['p50_ms']:.1f} ms  p99 {v['p99_ms']:.1f} ms "
            f"(load {v['load']:.2f})"
            f"   target p99 <= {target:g} ms: {'met' if _visible_ok(v) else 'NOT MET'}"
        )
    if "track" in s:
        t = s["track"]
        lines.append(
            f"track         p50 {t['p50_ms']:.2f} ms  p99 {t['p99_ms']:.2f} ms at {t['achieved_rate']:.0f} req/s "
            f"(load {t['load']:.2f})   target p99 <= {TARGET_P99_MS:g} ms: {'met' if _track_ok(t) else 'NOT MET'}"
        )
    lines.append("verification: " + (
        "pending = sent after the append; every event stored once and counted on its profile"
        if s["all_ok"] else "FAILED"
    ))
    return "\n".join(lines)


def _machine() -> list[str]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"- CPUs: {os.cpu_count()} (`nproc`){f' — {cpu}' if cpu else ''}",
        f"- OS: {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()} ({sys.implementation.name}), SQLite {sqlite3.sqlite_version}",
        "- Storage: SQLite; main database WAL + synchronous=FULL; the ingest log its own file, WAL, grouped fsync",
        "- Shared: other engineers' test suites ran on this machine; the 1-minute load average is beside every "
        "figure (averaged over the start and end of its step)",
    ]


def _kept_analysis(path: Path) -> str:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return _DEFAULT_ANALYSIS
    if START in text and END in text:
        return text.split(START, 1)[1].split(END, 1)[0].strip("\n")
    return _DEFAULT_ANALYSIS


def render(*, args: argparse.Namespace, reps: list[dict[str, Any]], summary: dict[str, Any], analysis: str) -> str:
    s = summary
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Performance",
        "",
        "Generated by `make bench` (`python -m bench`; how it works: `bench/README.md`). The numbers are",
        "rewritten on every run; the analysis section is hand-written and kept.",
        "",
        f"Run: {now}, {args.events:,} events per repetition, {args.repeat} repetitions (medians below), "
        f"`/v1/batch` requests of {args.batch} events from {args.clients} client processes, "
        f"`--workers {args.workers}`{f' with {args.threads} threads' if args.threads else ''}.",
        "",
        "## Machine",
        "",
        *_machine(),
        "",
        "## Results",
        "",
        "| | median | load | vs baseline | target | |",
        "|---|---:|---:|---:|---:|---|",
        f"| Baseline: raw `executemany` into an integer-key SQLite table, fsync per 5,000 events "
        f"| {s['baseline']:,.0f} events/s | {s['baseline_load']:.2f} | 1 | | |",
        f"| Acknowledged, `/v1/batch` over HTTP, `tsunagu web` only | {s['ack']:,.0f} events/s | {s['ack_load']:.2f} "
        f"| {s['ack_ratio']:.2f} | >= {TARGET_ACK:,} events/s | {_verdict(s['ack'] >= TARGET_ACK)} |",
        f"| Applied (`tsunagu worker` start until `pending` = 0), median over the repetitions' logs "
        f"({', '.join(format(r['in_log'], ',') for r in reps)} events) "
        f"| {s['applied']:,.0f} events/s | {s['applied_load']:.2f} | {s['applied_ratio']:.2f} "
        f"| >= {TARGET_APPLIED:,} events/s | {_verdict(s['applied'] >= TARGET_APPLIED)} |",
    ]
    if s["sustained"]:
        u = s["sustained"]
        out.append(
            f"| Applied, sustained: {u['events']:,} events in the log (repetition 1, filled over HTTP) "
            f"| {u['rate']:,.0f} events/s | {u['load']:.2f} | {u['rate'] / reps[0]['baseline']['rate']:.2f} "
            f"| >= {TARGET_APPLIED:,} events/s | {_verdict(u['rate'] >= TARGET_APPLIED)} |"
        )
    for v in s["visible"]:
        target = TARGET_VISIBLE_MS.get(v["offered"])
        label = f"Ack -> visible at {v['offered']:,.0f} events/s offered ({v['achieved']:,.0f} served), `tsunagu up`"
        out += [
            f"| {label}, p50 | {v['p50_ms']:.1f} ms | {v['load']:.2f} | | | |",
            f"| {label}, p99 | {v['p99_ms']:.1f} ms | {v['load']:.2f} | | "
            f"{f'<= {target:g} ms' if target else ''} | {_verdict(_visible_ok(v)) if target else ''} |",
            f"| {label}: scheduled send -> visible, p50 / p99 | {v['sched_p50_ms']:.1f} / {v['sched_p99_ms']:.1f} ms "
            f"| {v['load']:.2f} | | | |",
            f"| {label}: the batches' own acknowledgement, p50 / p99 | {v['ack_p50_ms']:.1f} / "
            f"{v['ack_p99_ms']:.1f} ms | {v['load']:.2f} | | | |",
        ]
    if "track" in s:
        t = s["track"]
        label = (f"Single event `POST /v1/track`, {args.latency_rate:.0f} req/s offered "
                 f"({t['achieved_rate']:.0f} served), worker running")
        out += [
            f"| {label}, p50 | {t['p50_ms']:.2f} ms | {t['load']:.2f} | | | |",
            f"| {label}, p99 | {t['p99_ms']:.2f} ms | {t['load']:.2f} | | <= {TARGET_P99_MS:g} ms "
            f"| {_verdict(_track_ok(t))} |",
        ]
    out += [
        "",
        "Before (the foundation, which stored and resolved inside the request): ~3,400 events/s end to end "
        "through `/v1/batch`, single events p99 in seconds at 500 requests/s.",
        "",
        "Verification after every repetition: "
        + ("`pending` equalled the events sent once the append step finished; after the applier, every sent "
           "event was stored exactly once, linked to a profile, and the live profiles' `event_count` added up "
           "to the events stored." if s["all_ok"] else "**FAILED** (see the per-run table)."),
        f"Load generators used {s['client_cpu_share']:.2f} CPU-seconds per second of the acknowledged step "
        f"(median), out of {os.cpu_count()} CPUs shared with the server.",
        "",
        "Ack -> visible is measured by an open-loop sender (scheduled send times, batches of "
        f"{args.visible_batch} events over {args.visible_senders} keep-alive connections) and a poller of "
        "`GET /api/v1/ingestion` in the same process. The applier applies one workspace in log order, and a "
        "request's record is in the log before its 200, behind records of requests sent before it at most; so a "
        "batch is visible once `applied` reaches the events of every request sent before the batch's 200 "
        "arrived (an upper bound: it also waits for the requests in flight). The latency is from the 200 to the "
        "arrival of the first poll answer showing that (so it includes up to one poll interval, "
        f"{', '.join(format(v['poll_ms'], '.1f') for v in s['visible']) or '–'} ms median here). "
        "\"Scheduled send -> visible\" also counts the time a batch waited for a free connection.",
        "",
        "### Per run",
        "",
        "| run | baseline /s | ack /s | ack/base | pending / sent | applied /s | applied/base | stored (= in log) | "
        "profiles' count | visible p99 ms (by rate) | track p99 ms | loads (base, ack, apply) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in reps:
        b, a, p = r["baseline"], r["ack"], r["applied"]
        vis = ", ".join(f"{v['offered']:,.0f}: {v['p99_ms']:.0f}" for v in r.get("visible", [])) or "–"
        track = f"{r['latency']['p99_ms']:.2f}" if "latency" in r else "–"
        out.append(
            f"| {r['rep']} | {b['rate']:,.0f} | {a['rate']:,.0f} | {a['rate'] / b['rate']:.2f} "
            f"| {a['status']['pending']:,} / {a['sent']:,}{'' if a['ok'] else ' FAILED'} | {p['rate']:,.0f} "
            f"| {p['rate'] / b['rate']:.2f} | {p['stored']:,} ({r['in_log']:,}){'' if p['ok'] else ' FAILED'} "
            f"| {p['profile_events']:,} | {vis} | {track} | {b['load']:.2f}, {a['load']:.2f}, {p['load']:.2f} |"
        )
    out += ["", "## Analysis", "", START, analysis, END, ""]
    return "\n".join(out)


def _section_marks(name: str) -> tuple[str, str]:
    return f"<!-- section:{name}:start (written by its own benchmark) -->", f"<!-- section:{name}:end -->"


def _kept_sections(text: str) -> str:
    """The other benchmarks' sections (``write_section``) of the file, in order, markers included."""
    out = []
    while "<!-- section:" in text:
        head, rest = text.split("<!-- section:", 1)
        name = rest.split(":", 1)[0]
        end = _section_marks(name)[1]
        if end not in rest:
            break
        body, text = rest.split(end, 1)
        out.append(f"<!-- section:{body}{end}")
    return "\n\n".join(out)


def write(path: Path, *, args: argparse.Namespace, reps: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    analysis = _kept_analysis(path)
    kept = _kept_sections(path.read_text()) if path.exists() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render(args=args, reps=reps, summary=summary, analysis=analysis)
    path.write_text(text + (f"\n{kept}\n" if kept else ""))


def write_section(path: Path, name: str, body: str) -> None:
    """Replace (or append) another benchmark's section of ``path``, between its own markers; the rest of
    the file (the ingestion numbers, the analysis, other sections) is kept."""
    start, end = _section_marks(name)
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Performance\n"
    if start in text and end in text:
        text = text.split(start, 1)[0] + block + text.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
