"""The demo's journeys — the abandoned cart and the new members' onboarding — with weeks of runs to monitor.

The runs are not made up: each journey is published, then the real engine replays the demo's stored events
in time order with the clock moved (``journeys.backfill``), so every run, wait, send, split and conversion
is what the journey would have done over those weeks. The sends it made are then played out as the
messaging demo plays its own (delivered, opened, failed over), a few runs are paused, and a few carry the
CSAT score the customer gave afterwards.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from tsunagu.demo.messaging import send_play
from tsunagu.journeys.backfill import journey_backfill
from tsunagu.journeys.selectors import known_names, runs_list
from tsunagu.journeys.services import evaluation_add, journey_create, journey_publish, run_pause
from tsunagu.messaging.selectors import send_get
from tsunagu.messaging.services import communication_create

WEEKS = 3

COMMUNICATIONS: list[dict[str, Any]] = [
    {
        "key": "welcome",
        "name": "会員登録ありがとうございます",
        "topic": "service",
        "variants": [
            {"channel": "email", "locale": "ja", "subject": "【つなぐマート】会員登録ありがとうございます",
             "html": "<p>{{ customer.family_name }} 様</p>"
                     "<p>つなぐマートへようこそ。お買い物でポイントが貯まります。</p>"},
            {"channel": "line", "locale": "ja", "text": "つなぐマートへようこそ🎉 お買い物でポイントが貯まります。"},
            {"channel": "in_app", "locale": "ja", "title": "ようこそ", "body": "会員登録ありがとうございます。"},
        ],
    },
    {
        "key": "first-order-coupon",
        "name": "はじめてのお買い物クーポン",
        "topic": "service",
        "variants": [
            {"channel": "email", "locale": "ja", "subject": "はじめてのお買い物に{{ data.offer }}クーポン",
             "html": "<p>{{ customer.family_name }} 様</p><p>はじめてのご注文に使える"
                     "<strong>{{ data.offer }}</strong>クーポンをお届けします（{{ journey.split.offer }}）。</p>"},
            {"channel": "line", "locale": "ja", "text": "はじめてのご注文に使える{{ data.offer }}クーポンです🎁"},
            {"channel": "in_app", "locale": "ja", "title": "{{ data.offer }}クーポン",
             "body": "はじめてのご注文にお使いください。"},
        ],
    },
]

# docs/journeys.md walks through this one.
ABANDONED_CART: dict[str, Any] = {
    "entry": {"event": "Checkout Started"},
    "reentry": {"policy": "per_entry_key", "entry_key": "event.properties.cart_id"},
    "goal": {"event": "Order Completed", "within": {"days": 3}},
    "steps": [
        {"id": "wait_purchase", "name": "購入を1時間待つ", "type": "wait_for_event", "event": "Order Completed",
         "timeout_seconds": 3600, "on_event": "exit", "on_timeout": "reminder"},
        {"id": "reminder", "name": "リマインド（LINE→メール）", "type": "send", "communication": "cart-reminder",
         "policy": {"steps": [{"channel": "line"}, {"channel": "email"}]}},
    ],
}

ONBOARDING: dict[str, Any] = {
    "entry": {"event": "Signed Up"},
    "reentry": {"policy": "once"},
    "goal": {"event": "Order Completed", "within": {"days": 14}},
    "steps": [
        {"id": "welcome", "name": "ようこそ", "type": "send", "communication": "welcome",
         "policy": {"steps": [{"channel": "email"}, {"channel": "line"}, {"channel": "in_app"}]}},
        {"id": "first_look", "name": "商品を見るのを2日待つ", "type": "wait_for_event", "event": "Product Viewed",
         "timeout_seconds": 2 * 86400},
        {"id": "engaged", "name": "商品を見た？", "type": "branch",
         "rule": {"journey": "steps.first_look.outcome", "op": "eq", "value": "event"},
         "then": "offer", "else": "nudge_wait"},
        {"id": "nudge_wait", "name": "さらに2日", "type": "wait", "seconds": 2 * 86400, "next": "offer"},
        {"id": "offer", "name": "クーポンのA/Bテスト", "type": "split", "holdout": 10,
         "paths": [{"name": "500円OFF", "percent": 45, "next": "coupon_yen"},
                   {"name": "送料無料", "percent": 45, "next": "coupon_shipping"}]},
        {"id": "coupon_yen", "name": "500円OFFクーポン", "type": "send", "communication": "first-order-coupon",
         "data": {"offer": "500円OFF"}, "next": "settle"},
        {"id": "coupon_shipping", "name": "送料無料クーポン", "type": "send", "communication": "first-order-coupon",
         "data": {"offer": "送料無料"}, "next": "settle"},
        {"id": "settle", "name": "1週間", "type": "wait", "seconds": 7 * 86400},
    ],
}

JOURNEYS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("abandoned-cart", "カゴ落ちリマインド", ABANDONED_CART),
    ("onboarding", "新規会員オンボーディング", ONBOARDING),
)


def _events_named(definition: dict[str, Any]) -> set[str]:
    names = {s["event"] for s in definition["steps"] if s["type"] == "wait_for_event"}
    names |= {part["event"] for part in (definition["entry"], definition.get("goal") or {}) if "event" in part}
    return names


def _all_runs(journey: Any) -> list[Any]:
    found: list[Any] = []
    while True:
        page = runs_list(journey=journey, after=found[-1].pk if found else 0, limit=1000)
        if not page:
            return found
        found += page


def demo_journeys(*, workspace: Any, actor: Any, until: dt.datetime, seed: int) -> dict[str, dict[str, int]]:
    """Create, publish and replay the demo's journeys over the ``WEEKS`` before ``until``; returns each
    journey's runs by status. The provider channels must still be on (the sends are made through them)."""
    rng = random.Random(seed * 11 + 3)  # noqa: S311 - demo data, not security
    for spec in COMMUNICATIONS:
        communication_create(workspace=workspace, actor=actor, **spec)
    since = until - dt.timedelta(weeks=WEEKS)
    counts: dict[str, dict[str, int]] = {}
    known = known_names(workspace=workspace)
    for key, name, definition in JOURNEYS:
        if not all(known.has_event(e) for e in _events_named(definition)):
            continue  # a tiny demo (a handful of people) may never have had a checkout: nothing to replay
        journey = journey_create(workspace=workspace, key=key, name=name, definition=definition, actor=actor)
        journey_publish(journey=journey, actor=actor)
        journey_backfill(journey=journey, since=since, until=until)
        runs = _all_runs(journey)
        for run in runs:
            for step in run.context.get("steps", {}).values():
                send = send_get(workspace=workspace, send_id=step["send_id"]) if "send_id" in step else None
                if send is not None:
                    send_play(send, at=send.created_at, rng=rng)
        # A few customers the CX team is looking into: their runs paused where they are.
        waiting = [r for r in runs if r.status == "waiting"]
        for run in rng.sample(waiting, min(3, len(waiting))):
            run_pause(run=run, actor=actor)
        # CSAT (1–5) the survey tool attached afterwards to some runs that reached the goal.
        converted = [r for r in runs if r.goal_at is not None]
        for run in rng.sample(converted, min(12, len(converted))):
            evaluation_add(run=run, name="csat", value=rng.choice((3, 4, 4, 5, 5, 5)), actor=actor)
        by_status: dict[str, int] = {}
        for run in _all_runs(journey):
            by_status[run.status] = by_status.get(run.status, 0) + 1
        counts[key] = by_status
    return counts
