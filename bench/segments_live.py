"""The segments benchmark's real-time step: segments kept up to date by the applier.

On the run's copy of the dataset: ``--segments`` (50) segments of mixed shapes are created through
``segment_create`` (each populated over the whole workspace; timed). Then, ``--repeat`` times, in
alternating order, with 0, 1 and all of them live: ``--live-events`` events for existing customers (a
shop's mix, with identifies that change traits) are appended to the ingest log and applied in this process
through the real applier (``events_apply_pending``: dedup, identity resolution, profiles, events, then the
reactions — the segments one included — one transaction per chunk). Measured: wall and CPU time of the
apply, the segments reaction's own time (its registered function, wrapped), and the (event, segment)
pairs an event can affect, from each rule's dependencies (``Parsed.deps``).

A segment is switched off by moving its row to a parking workspace (one UPDATE; back the same way): the
reaction only looks at the segments of the events' workspace, and the segments need not be populated
again between runs. With 0 segments the reaction still runs (computed traits, the lookup of segments),
so the figures with segments are the segments' own cost.
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import time
import uuid
from typing import Any

import orjson

from bench.segments import RULE, load_avg

MIX = [("page", 40), ("Product Viewed", 25), ("Product Added", 10), ("Checkout Started", 6),
       ("Order Completed", 12), ("identify", 7)]
TIERS = ["bronze", "silver", "gold", "platinum"]
CATEGORIES = ["fashion", "food", "electronics", "home", "beauty", "sports", "books", "kids"]
PREFS = ["東京都", "神奈川県", "大阪府", "愛知県", "北海道", "福岡県", "京都府", "沖縄県"]


def shapes(n: int) -> list[tuple[str, dict[str, Any]]]:
    """``n`` segments (key, rule) of the shapes CX teams build: traits, events in windows with property
    filters, computed traits, "did not", any/not, profile fields, another segment — and the acceptance's
    three-condition rule first."""
    out: list[tuple[str, dict[str, Any]]] = [("vip-active", RULE)]
    i = 0
    while len(out) < n:
        k = i % 10
        j = i // 10
        cat, pref = CATEGORIES[i % len(CATEGORIES)], PREFS[i % len(PREFS)]
        tier = ["gold", "platinum", "silver", "gold", "platinum"][j % 5]
        rule: dict[str, Any]
        if k == 0:
            key, rule = f"tier-{tier}-{j}", {"trait": "loyaltyTier", "op": "eq", "value": tier}
        elif k == 1:
            key, rule = f"pref-age-{i}", {"all": [{"trait": "prefecture", "op": "eq", "value": pref},
                                                {"trait": "age", "op": "between", "value": [20 + 5 * j, 34 + 5 * j]}]}
        elif k == 2:
            key, rule = f"viewed-{cat}-{i}", {"event": "Product Viewed", "where": [
                {"property": "category", "op": "eq", "value": cat}], "count": {"op": "gte", "value": 2 + j},
                "within": {"days": 30}}
        elif k == 3:
            key, rule = f"big-order-{i}", {"event": "Order Completed", "where": [
                {"property": "revenue", "op": "gte", "value": 10000 * (j + 1)}], "within": {"days": 30}}
        elif k == 4:
            key, rule = f"spent-{i}", {"computed": "total_spent", "op": "gte", "value": 20000 * (j + 1)}
        elif k == 5:
            key, rule = f"lapsed-{i}", {"all": [{"trait": "newsletter", "op": "eq", "value": True},
                                              {"trait": "loyaltyTier", "op": "eq", "value": tier},
                                              {"event": "Order Completed", "count": {"op": "eq", "value": 0},
                                               "within": {"days": 60 + 30 * j}}]}
        elif k == 6:
            key, rule = f"cart-{i}", {"any": [{"event": "Product Added", "within": {"days": 3 + j}},
                                            {"event": "Checkout Started", "within": {"days": 3 + j}}]}
        elif k == 7:
            key, rule = f"not-top-{i}", {"all": [{"not": {"trait": "loyaltyTier", "op": "in",
                                                        "value": ["gold", "platinum"]}},
                                               {"trait": "prefecture", "op": "eq", "value": pref}]}
        elif k == 8:
            key, rule = f"active-{i}", {"all": [{"trait": "$event_count", "op": "gte", "value": 50 + 25 * j},
                                              {"trait": "gender", "op": "eq", "value": "female"}]}
        else:
            key, rule = f"vip-{cat}-{i}", {"all": [{"segment": "vip-active"}, {"event": "Product Viewed", "where": [
                {"property": "category", "op": "eq", "value": cat}], "within": {"days": 14}}]}
        out.append((key, rule))
        i += 1
    return out[:n]


def _traffic(rng: random.Random, profiles: int, count: int, size: int = 500) -> list[bytes]:
    """``/v1/batch`` bodies of ``count`` events for existing customers (``u0000042``), active customers
    more often (a few hundred repeat in a run, as in a real minute of a shop)."""
    names = [m for m, _ in MIX]
    weights = [w for _, w in MIX]
    bodies = []
    sent = "2026-01-01T00:00:00.000Z"
    for start in range(0, count, size):
        batch = []
        for _ in range(min(size, count - start)):
            user = f"u{int(profiles * rng.random() ** 2):07d}"
            kind = rng.choices(names, weights)[0]
            mid = str(uuid.UUID(int=rng.getrandbits(128)))
            ctx = {"library": {"name": "analytics-python", "version": "2.3.3"}, "locale": "ja-JP"}
            cat = rng.choice(CATEGORIES)
            if kind == "page":
                batch.append({"type": "page", "userId": user, "messageId": mid, "name": "トップ",
                              "properties": {"path": "/"}, "context": ctx})
            elif kind == "identify":
                traits: dict[str, Any] = {"loyaltyTier": rng.choice(TIERS)} if rng.random() < 0.5 else {
                    "prefecture": rng.choice(PREFS)}
                batch.append({"type": "identify", "userId": user, "messageId": mid, "traits": traits,
                              "context": ctx})
            elif kind == "Order Completed":
                batch.append({"type": "track", "event": kind, "userId": user, "messageId": mid, "context": ctx,
                              "properties": {"order_id": mid[:8], "revenue": rng.randrange(10, 400) * 100,
                                             "currency": "JPY", "category": cat}})
            else:
                batch.append({"type": "track", "event": kind, "userId": user, "messageId": mid, "context": ctx,
                              "properties": {"product_id": f"p{rng.randrange(2400)}", "category": cat,
                                             "price": rng.randrange(5, 300) * 100}})
        bodies.append(orjson.dumps({"batch": batch, "sentAt": sent}))
    return bodies


def _affected(deps_of: dict[str, dict[str, Any]], body: bytes) -> int:
    """The (event, segment) pairs of one batch: the segments whose rule reads what the event changes, as
    the reaction picks them (``membership.candidates``): the event's (type, name), its traits (identify),
    a profile field (every event moves ``$event_count`` and ``$last_seen``), or a segment the rule refers
    to that the event affects. Computed-trait conditions count when the event is one the trait
    aggregates (``Order Completed`` for ``total_spent``)."""
    pairs = 0
    for item in orjson.loads(body)["batch"]:
        kind = item["type"]
        name = item.get("event", "") if kind == "track" else item.get("name", "")
        hit: set[str] = set()
        for key, deps in deps_of.items():
            if ([kind, name] in deps.get("events", []) or deps.get("fields")
                    or (kind == "identify" and (deps.get("traits") or deps.get("consent")))
                    or (deps.get("computed") and name == "Order Completed")):
                hit.add(key)
        changed = True
        while changed:  # a segment that reads an affected segment
            changed = False
            for key, deps in deps_of.items():
                if key not in hit and hit & set(deps.get("segments", [])):
                    hit.add(key)
                    changed = True
        pairs += len(hit)
    return pairs


def _instrument() -> dict[str, float]:
    """Time the registered ``segments`` reaction and, inside it, ``computed_apply`` and the storing of its
    changes' events (``publish``; CPU time of this process: steadier than wall time on a shared machine);
    count the (customer, segment) re-evaluations it asks for (``membership_sync``'s candidates) and time
    each segment's."""
    from tsunagu.events import reactions
    from tsunagu.segments import membership
    from tsunagu.segments import reactions as seg_reactions

    spent: dict[str, Any] = {"reaction": 0.0, "computed": 0.0, "publish": 0.0, "evaluated": 0, "syncs": 0,
                             "by_segment": {}}
    entry = reactions._REACTIONS["segments"]
    # (stage, fn) since reactions run by stage; a bare fn before.
    stage, fn = entry if isinstance(entry, tuple) else (None, entry)

    @functools.wraps(fn)
    def timed(applied: Any) -> Any:
        t0 = time.process_time()
        try:
            return fn(applied)
        finally:
            spent["reaction"] += time.process_time() - t0

    reactions._REACTIONS["segments"] = (stage, timed) if stage is not None else timed  # type: ignore[assignment]
    derive = seg_reactions.segment_changes_derive

    @functools.wraps(derive)
    def timed_derive(**kw: Any) -> Any:
        # Inside the reaction: the Segment Entered / Exited events of its changes, stored.
        t0 = time.process_time()
        try:
            return derive(**kw)
        finally:
            spent["publish"] += time.process_time() - t0

    seg_reactions.segment_changes_derive = timed_derive  # type: ignore[assignment]
    computed = seg_reactions.computed_apply

    @functools.wraps(computed)
    def timed_computed(**kw: Any) -> Any:
        t0 = time.process_time()
        try:
            return computed(**kw)
        finally:
            spent["computed"] += time.process_time() - t0

    seg_reactions.computed_apply = timed_computed  # type: ignore[assignment]
    sync = membership.membership_sync

    @functools.wraps(sync)
    def counted(**kw: Any) -> Any:
        spent["syncs"] += 1
        spent["evaluated"] += len(kw["candidates"] or [])
        t0 = time.process_time()
        try:
            return sync(**kw)
        finally:
            key = kw["segment"].key
            spent["by_segment"][key] = spent["by_segment"].get(key, 0.0) + time.process_time() - t0

    membership.membership_sync = counted  # type: ignore[assignment]
    return spent


def _apply(ws: Any, source_id: int, bodies: list[bytes]) -> Any:
    from tsunagu.core import clock
    from tsunagu.events import fastpath
    from tsunagu.events.applier import events_apply_pending
    from tsunagu.events.log import get_log

    log = get_log()
    for body in bodies:
        encoded, _ = fastpath.encode_batch(body, max_bytes=32 * 1024)
        log.append(workspace_id=ws.pk, source_id=source_id, received_at=clock.now(), count=encoded.count,
                   body=encoded.body)
    return events_apply_pending(workspace_id=ws.pk, timeout=120)


def measure(args: argparse.Namespace, meta: dict[str, Any]) -> dict[str, Any]:
    from django.db.models import Max

    from tsunagu.core.models import Workspace
    from tsunagu.core.permissions import SYSTEM
    from tsunagu.core.services import workspace_create
    from tsunagu.segments.models import MembershipChange, Segment
    from tsunagu.segments.services import segment_create

    ws = Workspace.objects.get(pk=meta["workspace_id"])
    parking = workspace_create(name="Bench parking", slug="bench-parking", actor=SYSTEM)
    defs = shapes(args.segments)
    created: list[float] = []
    keys = []
    print(f"  creating {len(defs)} segments (each populated over the workspace)", flush=True)
    for key, rule in defs:
        t0 = time.perf_counter()
        segment_create(workspace=ws, key=key, name=key, rule=rule, actor=SYSTEM)
        created.append(time.perf_counter() - t0)
        keys.append(key)
    segs = {s.key: s for s in Segment.objects.filter(workspace=ws)}
    print(f"    created in {sum(created):.0f} s (median {statistics.median(created):.2f} s, slowest "
          f"{max(created):.2f} s: {keys[created.index(max(created))]}); members: "
          + ", ".join(f"{k} {segs[k].member_count:,}" for k in keys[:10]) + ", …", flush=True)
    deps_all = {key: segs[key].deps for key in keys}
    spent = _instrument()
    configs = [0, 1, args.segments]
    runs: list[dict[str, Any]] = []
    rng = random.Random(args.seed + 7)
    for rep in range(args.repeat):
        for n in (configs if rep % 2 == 0 else configs[::-1]):
            live = keys[:n]
            Segment.objects.filter(workspace=ws).exclude(key__in=live).update(workspace=parking)
            Segment.objects.filter(workspace=parking, key__in=live).update(workspace=ws)
            bodies = _traffic(rng, meta["profiles"], args.live_events)
            pairs = sum(_affected({k: deps_all[k] for k in live}, b) for b in bodies)
            before = dict(spent)
            spent["by_segment"] = {}
            last_change = MembershipChange.objects.aggregate(m=Max("id"))["m"] or 0
            load0 = load_avg()
            c0, t0 = time.process_time(), time.perf_counter()
            outcome = _apply(ws, meta["source_id"], bodies)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            # ``events`` is the traffic sent; the reaction also stores a Segment Entered / Exited event for
            # each entry and exit it makes (``published``): part of the cost of the same traffic.
            published = MembershipChange.objects.filter(id__gt=last_change, reason="event").count()
            run = {"rep": rep + 1, "segments": n, "events": args.live_events, "stored": outcome.stored,
                   "published": published, "wall": wall, "cpu": cpu,
                   **{k: spent[k] - before[k] for k in spent if k != "by_segment"},
                   "by_segment": dict(spent["by_segment"]), "pairs": pairs,
                   "load": (load0 + load_avg()) / 2,
                   "ok": outcome.stored >= args.live_events and outcome.duplicates == 0}
            runs.append(run)
            print(f"  live {n:>2} segments: {run['events'] / wall:>8,.0f} events/s applied ({wall:.2f} s, CPU "
                  f"{cpu / max(1, run['events']) * 1e6:.0f} µs/event), segments reaction {run['reaction']:.2f} s "
                  f"CPU (computed traits {run['computed']:.2f} s; storing segment events {run['publish']:.2f} s), "
                  f"{pairs / max(1, run['events']):.2f} affected segments/event, {run['evaluated']:,} "
                  f"(customer, segment) re-evaluations in {run['syncs']} "
                  f"queries, {run['published']:,} segment events stored, load {run['load']:.2f}", flush=True)
    Segment.objects.filter(workspace=parking).update(workspace=ws)
    if args.profile:
        from pyinstrument import Profiler

        bodies = _traffic(rng, meta["profiles"], args.live_events)
        profiler = Profiler(interval=0.001)
        profiler.start()
        _apply(ws, meta["source_id"], bodies)
        profiler.stop()
        path = args.profile / f"apply-{args.segments}-segments.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(profiler.output_text(unicode=True, show_all=False))
        print(f"  profile: {path}", flush=True)
    checks = verify(args, meta, ws, defs)
    summary = _summarize(runs, args.segments)
    bad = [c for c in checks if not c["ok"]]
    ok = all(r["ok"] for r in runs) and not bad
    verification = (
        f"every run stored all {args.live_events:,} events it appended, once. Then, the clock stopped, "
        f"{len(checks)} segments of the shapes above were created afresh, {args.live_events:,} more events "
        "applied with all segments live, and each one's members compared with the customers its rule "
        "selects by SQL (`rule_member_ids`): " + ("equal for every one ("
        + ", ".join(f"{c['key']} {c['members']:,}" for c in checks) + ", entered/left during the batch: "
        + ", ".join(f"{c['changes']}" for c in checks) + ")." if ok else
        f"**FAILED**: {bad or [r for r in runs if not r['ok']]}"))
    return {"runs": runs, "summary": summary, "ok": ok, "verification": verification, "checks": checks,
            "create_median_s": statistics.median(created), "create_total_s": sum(created),
            "create": dict(zip(keys, created, strict=True)),
            "mix": ", ".join(f"{name} {w} %" for name, w in MIX), "shapes": _shapes_text()}


def verify(
    args: argparse.Namespace, meta: dict[str, Any], ws: Any, defs: list[tuple[str, Any]]
) -> list[dict[str, Any]]:
    """Members kept by the reaction = members by SQL, on segments that were never parked: created afresh
    with the clock stopped (so time alone moves no window between the apply and the check)."""
    import time_machine

    from tsunagu.core import clock
    from tsunagu.core.permissions import SYSTEM
    from tsunagu.segments.models import MembershipChange, Segment
    from tsunagu.segments.selectors import rule_member_ids, segment_member_ids
    from tsunagu.segments.services import segment_create

    # One of each shape (the acceptance's rule, a tier, events in windows, "any", a profile field, a
    # segment reference), not the biggest: each is populated again here.
    picks = [defs[i] for i in (0, 1, 3, 4, 7, 9, 10) if i < len(defs)]
    out = []
    with time_machine.travel(clock.now(), tick=False):
        fresh = []
        for key, rule in picks:
            seg, _warnings = segment_create(workspace=ws, key=f"check-{key}"[:100], name=key, rule=rule,
                                            actor=SYSTEM)
            fresh.append((seg, rule))
        first = MembershipChange.objects.order_by("-id").values_list("id", flat=True).first() or 0
        _apply(ws, meta["source_id"], _traffic(random.Random(args.seed + 99), meta["profiles"], args.live_events))
        for seg, rule in fresh:
            seg = Segment.objects.get(pk=seg.pk)
            members = set(segment_member_ids(segment=seg))
            expected = set(rule_member_ids(workspace=ws, rule=rule))
            changes = MembershipChange.objects.filter(segment=seg, id__gt=first).count()
            out.append({"key": seg.key, "members": len(members), "expected": len(expected), "changes": changes,
                        "ok": members == expected and seg.member_count == len(members)})
    return out


def _shapes_text() -> str:
    return ("the acceptance's three-condition rule; a tier; prefecture and an age band; Product Viewed of a "
            "category at least N times in 30 days; an Order Completed with revenue >= X in 30 days; "
            "total_spent >= X; newsletter and a tier and no order in 60+ days; Product Added or Checkout "
            "Started in a few days (any); not gold/platinum in a prefecture (not); `$event_count` >= N and a "
            "gender; the first segment and a recent view (segment reference)")


def _summarize(runs: list[dict[str, Any]], top: int) -> dict[str, Any]:
    by: dict[int, list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault(r["segments"], []).append(r)
    rows = []
    for n in sorted(by):
        rs = by[n]
        rows.append({
            "segments": n,
            "rate": statistics.median(r["events"] / r["wall"] for r in rs),
            "cpu_us": statistics.median(r["cpu"] / r["events"] * 1e6 for r in rs),
            "reaction_us": statistics.median(r["reaction"] / r["events"] * 1e6 for r in rs),
            "computed_us": statistics.median(r["computed"] / r["events"] * 1e6 for r in rs),
            "publish_us": statistics.median(r["publish"] / r["events"] * 1e6 for r in rs),
            "pairs_per_event": statistics.median(r["pairs"] / r["events"] for r in rs),
            "evaluated_per_event": statistics.median(r["evaluated"] / r["events"] for r in rs),
            "queries": statistics.median(r["syncs"] for r in rs),
            "published": statistics.median(r["published"] for r in rs),
            "load": statistics.median(r["load"] for r in rs),
        })
    reps = sorted({r["rep"] for r in runs})

    def one(rep: int, n: int) -> dict[str, Any]:
        return next(r for r in runs if r["rep"] == rep and r["segments"] == n)

    slowdown = statistics.median(
        (one(rep, 0)["events"] / one(rep, 0)["wall"]) / (one(rep, top)["events"] / one(rep, top)["wall"]) - 1
        for rep in reps)
    cpu_slowdown = statistics.median(
        (one(rep, top)["cpu"] / one(rep, top)["events"]) / (one(rep, 0)["cpu"] / one(rep, 0)["events"]) - 1
        for rep in reps)

    def per_pair(n: int) -> float:
        return statistics.median(
            max(0.0, one(rep, n)["reaction"] - one(rep, 0)["reaction"] * one(rep, n)["events"]
                / one(rep, 0)["events"]) / max(1, one(rep, n)["pairs"]) * 1000 for rep in reps)

    per_segment: dict[str, list[float]] = {}
    for r in by[top]:
        for key, seconds in r["by_segment"].items():
            per_segment.setdefault(key, []).append(seconds / r["events"] * 1e6)
    slowest = sorted(((statistics.median(v), k) for k, v in per_segment.items()), reverse=True)

    def per_eval(n: int) -> float:
        return statistics.median(
            max(0.0, one(rep, n)["reaction"] - one(rep, 0)["reaction"] * one(rep, n)["events"]
                / one(rep, 0)["events"]) / max(1, one(rep, n)["evaluated"]) * 1e6 for rep in reps)

    return {"rows": rows, "slowest": slowest, "per_eval_us": per_eval(top), "slowdown": slowdown,
            "cpu_slowdown": cpu_slowdown, "per_pair_ms": per_pair(top), "per_pair_ms_1": per_pair(1)}
