"""The demo's journeys: published, with weeks of runs the engine replayed over the demo's stored events —
runs at several steps, conversions, both paths of the onboarding split, sends recorded at the time of the
turn and played out, paused runs and CSAT evaluations. One load (a few hundred people: enough sign-ups and
checkouts in the weeks replayed), so one test."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tsunagu.core import clock
from tsunagu.core.selectors import workspace_get
from tsunagu.demo import demo_load
from tsunagu.demo.journeys import WEEKS
from tsunagu.journeys.models import Evaluation, Journey, Run, RunHistory, RunSend
from tsunagu.journeys.stats import journey_stats
from tsunagu.messaging.models import Delivery, Send

pytestmark = pytest.mark.django_db


def test_the_demo_journeys_have_weeks_of_runs_replayed_by_the_engine(settings: Any, tmp_path: Any) -> None:
    settings.DATA_DIR = tmp_path
    started = clock.now()
    demo_load(customers=300, events=6000)
    workspace = workspace_get(slug="demo")
    journeys = {j.key: j for j in Journey.objects.filter(workspace=workspace)}
    assert set(journeys) == {"abandoned-cart", "onboarding"}
    cart, onboarding = journeys["abandoned-cart"], journeys["onboarding"]
    for journey in journeys.values():
        assert (journey.status, journey.current_version) == ("active", 1)
        entered = list(Run.objects.filter(journey=journey).values_list("entered_at", flat=True))
        # Entered when the customers' events happened, over the weeks replayed — not at load time.
        assert min(entered) >= started - dt.timedelta(weeks=WEEKS)
        assert max(entered) - min(entered) > dt.timedelta(days=14)
        assert max(entered) < started

    # The cart: purchases within the hour left at wait_purchase (converted); the others were reminded.
    carts = Run.objects.filter(journey=cart)
    assert carts.filter(status="exited", step="wait_purchase", goal_at__isnull=False).exists()
    reminded = carts.filter(status="completed", step="reminder")
    assert reminded.exists()
    for run in reminded:
        send = Send.objects.get(pk=RunSend.objects.get(run=run, step="reminder").send_id)
        timeout = RunHistory.objects.get(run=run, step="wait_purchase", action="done")
        # The hour's timeout fired an hour after the checkout, and the reminder was recorded then.
        assert timeout.at == run.entered_at + dt.timedelta(hours=1)
        assert send.created_at == timeout.at and send.communication.key == "cart-reminder"
    assert len(set(carts.values_list("entry_key", flat=True))) == carts.count()  # one run per cart

    # Onboarding: runs at several steps now and in their history; both split paths; conversions.
    runs = Run.objects.filter(journey=onboarding)
    assert runs.filter(goal_at__isnull=False).exists()
    visited = set(RunHistory.objects.filter(journey=onboarding, action="step").values_list("step", flat=True))
    assert {"welcome", "engaged", "offer"} <= visited and visited & {"coupon_yen", "coupon_shipping"}
    paths = {r.context.get("split", {}).get("offer") for r in runs}
    assert {"500円OFF", "送料無料"} <= paths
    stats = journey_stats(journey=onboarding)
    live_steps = {s["id"] for s in stats["steps"] if s["now"]}
    assert live_steps, "customers are waiting at some step"
    assert {p["path"] for p in stats["splits"][0]["paths"]} >= {"500円OFF", "送料無料"}
    assert stats["converted"] == runs.filter(goal_at__isnull=False).count() > 0

    # Some runs left waiting, a few paused by the team; CSAT on converted runs.
    assert Run.objects.filter(journey__in=journeys.values(), status="waiting").exists()
    paused = Run.objects.filter(journey__in=journeys.values(), status="paused")
    assert paused.exists()
    assert all(RunHistory.objects.filter(run=r, action="paused").exists() for r in paused)
    evaluations = Evaluation.objects.filter(journey__in=journeys.values(), name="csat")
    assert evaluations.exists() and all(1 <= e.value <= 5 and e.run.goal_at is not None for e in evaluations)

    # Every journey send was played out like the messaging demo's: none is left for a worker to deliver, and
    # the provider channels are off again.
    sent = RunSend.objects.filter(run__journey__in=journeys.values()).values("send_id")
    assert Delivery.objects.filter(send_id__in=sent).exists()
    assert not Delivery.objects.filter(send_id__in=sent, status="queued").exists()
    from tsunagu.messaging.models import Channel

    assert {c.type for c in Channel.objects.filter(workspace=workspace, enabled=True)} == {"in_app"}
