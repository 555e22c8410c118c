"""The demo loader: one idempotent call fills a workspace through the ingestion path, on every channel."""

from __future__ import annotations

import re
import stat
from typing import Any

import pytest
from django.contrib.auth import authenticate

from tsunagu.core.models import Job, Membership
from tsunagu.core.selectors import apikey_resolve, workspace_get
from tsunagu.customers.models import Customer, Identity, Merge
from tsunagu.demo import DEFAULT_PASSWORD, demo_load
from tsunagu.demo.simulation import _fit, _Simulation
from tsunagu.events.models import Channel, Event, Source

pytestmark = pytest.mark.django_db

DEMO_CHANNELS = {"web", "app", "email", "line", "store", "call_center"}
# tsunagu's own sources: messaging's outcomes and segments' entries and exits.
SYSTEM_SOURCES = ("tsunagu messaging", "tsunagu segments")
KATAKANA = re.compile(r"^[\u30a0-\u30ffー]+$")


@pytest.fixture(autouse=True)
def _default_port(monkeypatch: Any) -> None:
    monkeypatch.delenv("TSUNAGU_PORT", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.delenv("TSUNAGU_DEMO_PASSWORD", raising=False)


@pytest.fixture
def demo(settings: Any, tmp_path: Any) -> dict[str, Any]:
    settings.DATA_DIR = tmp_path
    return demo_load(customers=30, events=300)


def test_loads_once_and_second_call_only_reports(demo, tmp_path):
    assert demo["created"] is True
    assert demo["workspace"] == "demo" and demo["username"] == "demo"
    assert demo["password"] == DEFAULT_PASSWORD
    # The simulated touchpoints' 300 events, and the demo messages' outcomes on the timelines beside them.
    assert Event.objects.exclude(source__name__in=SYSTEM_SOURCES).count() == 300
    assert demo["events"] == Event.objects.count() > 300
    assert "http://127.0.0.1:8000" in demo["message"] and DEFAULT_PASSWORD in demo["message"]
    workspace = workspace_get(slug="demo")
    assert workspace is not None and workspace.name == "つなぐマート"

    again = demo_load(customers=30, events=300)

    assert again["created"] is False
    assert "already" in again["message"] and "demo" in again["message"]
    assert again["api_token"] == demo["api_token"]
    assert Event.objects.count() == demo["events"]
    # The six touchpoints and tsunagu's own two (messaging, segments).
    assert Source.objects.filter(workspace=workspace).count() == 8


def test_the_demo_has_communications_and_weeks_of_archived_messages(demo):
    from tsunagu.messaging.models import Attempt, Channel, Communication, Consent, Delivery, Send

    workspace = workspace_get(slug="demo")
    assert set(Communication.objects.filter(workspace=workspace).values_list("key", flat=True)) == {
        "order-shipped", "cart-reminder", "point-expiry", "refund-done", "welcome", "first-order-coupon"}
    # The messaging demo's own 400 (the journeys' sends are test_demo_journeys.py's).
    sends = Send.objects.filter(workspace=workspace, broadcast__isnull=True).exclude(
        idempotency_key__startswith="journey-run:")
    assert sends.count() == 400
    deliveries = Delivery.objects.filter(workspace=workspace, send__broadcast__isnull=True)
    # Some sends could use no step (no address, no opt-in: skipped), some failed over to a second message.
    assert sends.filter(status="skipped").exists()
    failed_over = Attempt.objects.filter(send__workspace=workspace, reason__in=("failed", "bounced"))
    assert failed_over.exists()
    assert Attempt.objects.filter(send__in=failed_over.values("send"), step__gt=0).exists()
    assert Consent.objects.filter(workspace=workspace, status="granted", source="signup_form").exists()
    statuses = set(deliveries.values_list("status", flat=True))
    assert {"sent", "delivered", "failed"} <= statuses and "queued" not in statuses
    assert deliveries.filter(opened_at__isnull=False).exists()
    assert {c.type for c in Channel.objects.filter(workspace=workspace, enabled=True)} == {"in_app"}
    spread = deliveries.order_by("created_at").values_list("created_at", flat=True)
    assert (spread.last() - spread.first()).days >= 14
    assert Event.objects.filter(workspace=workspace, event="Message Sent").exists()


def test_the_demo_has_a_finished_broadcast(demo):
    from tsunagu.customers.selectors import customer_list
    from tsunagu.messaging.broadcasts import broadcast_list, broadcast_summary

    workspace = workspace_get(slug="demo")
    [b] = broadcast_list(workspace=workspace)
    summary = broadcast_summary(b)
    assert b.status == "done" and b.communication.key == "point-expiry"
    # Every profile of the demo (its customers, and LINE friends not yet linked to one), one listed twice.
    people = min(120, customer_list(workspace=workspace).count())
    assert summary["total"] == people + 1 and summary["sent"] == summary["sends"] == people
    assert summary["skipped"] == {"duplicate": 1} and summary["pending"] == 0


def test_login_owner_membership_and_api_token(demo, tmp_path):
    user = authenticate(username="demo", password=DEFAULT_PASSWORD)
    assert user is not None
    workspace = workspace_get(slug="demo")
    assert Membership.objects.get(workspace=workspace, user=user).role == "owner"
    key = apikey_resolve(token=demo["api_token"])
    assert key is not None and key.workspace == workspace
    token_file = tmp_path / "demo-api-token"
    assert token_file.read_text().strip() == demo["api_token"]
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_password_from_environment(settings, tmp_path, monkeypatch):
    settings.DATA_DIR = tmp_path
    monkeypatch.setenv("TSUNAGU_DEMO_PASSWORD", "another-secret")
    outcome = demo_load(customers=5, events=60)
    assert outcome["password"] == "another-secret"
    assert authenticate(username="demo", password="another-secret") is not None


def test_every_demo_channel_has_a_source_and_events(demo):
    # Messaging's own source (back office) carries the demo messages' outcomes, on their channels' timelines.
    sources = Source.objects.filter(workspace__slug="demo").exclude(name__in=SYSTEM_SOURCES)
    touchpoints = Event.objects.exclude(source__name__in=SYSTEM_SOURCES)
    assert set(sources.values_list("channel", flat=True)) == DEMO_CHANNELS
    assert set(touchpoints.values_list("channel", flat=True)) == DEMO_CHANNELS
    assert set(Channel.values) >= DEMO_CHANNELS
    # each event came in through its channel's source
    for event in touchpoints.select_related("source"):
        assert event.channel == event.source.channel
    messaging = Event.objects.filter(source__name="tsunagu messaging")
    assert set(messaging.values_list("channel", flat=True)) <= {"email", "sms", "line", "app", "backoffice"}
    # Only a send's own outcome with no one channel (its policy ran out) is the back office's.
    assert set(messaging.filter(channel="backoffice").values_list("event", flat=True)) <= {"Message Undeliverable"}
    # Segments' own source carries entries and exits caused after the segments were made (consents).
    moved = Event.objects.filter(source__name="tsunagu segments")
    assert set(moved.values_list("event", flat=True)) <= {"Segment Entered", "Segment Exited"}
    assert set(moved.values_list("channel", flat=True)) <= {"backoffice"}


def test_names_with_furigana(demo):
    named = Customer.objects.filter(merged_into__isnull=True).exclude(family_kana="")
    assert named.exists()
    for customer in named:
        assert customer.family_name and customer.given_name
        assert KATAKANA.match(customer.family_kana) and KATAKANA.match(customer.given_kana)
        assert customer.traits["lastNameKana"] == customer.family_kana
        assert customer.display_name == f"{customer.family_name} {customer.given_name}"


def test_phones_stored_as_e164(demo):
    phones = list(Identity.objects.filter(type="phone").values_list("value", flat=True))
    assert phones
    assert all(re.fullmatch(r"\+81[789]0\d{8}", p) for p in phones)
    assert all(re.fullmatch(r"\+81[789]0\d{8}", c.phone) for c in Customer.objects.exclude(phone=""))
    # the payloads carried the local format, as a Japanese form would
    identify = Event.objects.filter(type="identify", traits__has_key="phone").first()
    assert identify is not None and re.fullmatch(r"0[789]0-\d{4}-\d{4}", identify.traits["phone"])


def test_events_are_stored_through_ingestion(demo):
    assert not Event.objects.filter(customer__isnull=True).exists()
    live = Customer.objects.filter(merged_into__isnull=True)
    for customer in live:
        # event_count is the customer's own activity: not the segment events tsunagu adds to the timeline.
        own = Event.objects.filter(customer=customer).exclude(source__name="tsunagu segments")
        assert own.count() == customer.event_count
    assert Event.objects.filter(event="Segment Entered", source__name="tsunagu segments").exists()
    assert not Event.objects.filter(customer__merged_into__isnull=False).exists()
    timestamps = Event.objects.values_list("timestamp", flat=True)
    assert (max(timestamps) - min(timestamps)).days >= 30  # history spread over the 90 days
    assert Event.objects.filter(event="Order Completed", properties__currency="JPY").exists()


def test_anonymous_browsing_that_identifies_is_merged(demo):
    merges = Merge.objects.all()
    assert merges.exists()
    merge = merges.first()
    assert merge.reason and merge.message_id.startswith("demo-")
    assert Customer.objects.get(pk=merge.other_id).merged_into_id is not None


def test_optimize_job_enqueued(demo):
    job = Job.objects.get(idempotency_key="demo-optimize")
    assert job.kind == "core.optimize_database"


def test_simulation_is_deterministic():
    import datetime as dt

    end = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def fingerprint() -> list[tuple[str, str, Any]]:
        units = _fit(_Simulation(people=20, end=end, seed=7), 200)
        return sorted(
            (e.payload["messageId"], e.payload["timestamp"], e.payload.get("userId")) for u in units for e in u.events
        )

    first = fingerprint()
    assert len(first) == 200
    assert first == fingerprint()


def test_the_demo_has_segments_kept_true_by_the_applier(demo):
    from tsunagu.segments.selectors import rule_count, segment_list, segment_member_ids

    workspace = workspace_get(slug="demo")
    segments = {s.key: s for s in segment_list(workspace=workspace)}
    expected = {"vip", "repeat-buyers", "lapsed", "line-friends", "email-optin", "vip-at-risk", "big-spenders"}
    assert expected <= set(segments)
    for segment in segments.values():
        # Whatever the applier and the consents did after creation, membership equals a fresh evaluation.
        assert segment.member_count == rule_count(workspace=workspace, rule=segment.rule), segment.key
        assert segment.member_count == len(segment_member_ids(segment=segment)), segment.key
    assert segments["vip"].member_count > 0
    assert segments["line-friends"].member_count > 0
    # Computed traits were backfilled from the orders: customers who bought have a total.
    assert rule_count(workspace=workspace, rule={"computed": "total_spent", "op": "gt", "value": 0}) > 0
    assert rule_count(workspace=workspace, rule={"computed": "rfm.recency", "op": "between", "value": [1, 5]}) > 0
    assert set(segment_member_ids(segment=segments["vip-at-risk"])) <= set(segment_member_ids(segment=segments["vip"]))
