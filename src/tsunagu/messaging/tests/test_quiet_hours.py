"""Quiet hours, public holidays and frequency caps, with the clock moved: a marketing send inside the
window waits for it to open (in the customer's time zone), a transactional one goes at once, the third
marketing message of a day moves on to the next channel or is skipped."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from tsunagu.core.models import DEFAULT_QUIET_HOURS
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import workspace_create, workspace_settings_update
from tsunagu.events.models import Event
from tsunagu.messaging.models import Delivery, Send
from tsunagu.messaging.selectors import send_status
from tsunagu.messaging.services import communication_create, send_create
from tsunagu.messaging.tests.helpers import api_call, identified, inapp_communication, work
from tsunagu.testing.pipeline import apply_all

pytestmark = pytest.mark.django_db
JST = dt.timezone(dt.timedelta(hours=9))


def _rules(workspace, **changes):
    workspace_settings_update(workspace=workspace, changes=changes, actor=SYSTEM)
    workspace.refresh_from_db()


def test_a_new_workspace_keeps_marketing_quiet_from_21_to_8(db):
    ws = workspace_create(name="New", slug="new-shop", actor=SYSTEM)
    assert ws.quiet_hours == DEFAULT_QUIET_HOURS == {"marketing": {"start": "21:00", "end": "08:00"}}


def test_a_marketing_send_at_23_waits_until_8_and_a_transactional_one_goes_at_once(workspace, send):
    _rules(workspace, quiet_hours={"marketing": {"start": "21:00", "end": "08:00"}})
    customer = identified(send, workspace, name="花子")
    inapp_communication(workspace, key="promo", topic="marketing")
    inapp_communication(workspace, key="receipt", topic="transactional")
    with time_machine.travel(dt.datetime(2026, 12, 3, 23, 0, tzinfo=JST), tick=False) as traveller:
        promo = send_create(workspace=workspace, communication="promo", customer=customer, actor=SYSTEM)
        receipt = send_create(workspace=workspace, communication="receipt", customer=customer, actor=SYSTEM)
        assert send_status(promo) == "scheduled"
        assert promo.due_at == dt.datetime(2026, 12, 4, 8, 0, tzinfo=JST)
        assert not promo.deliveries.exists()
        assert receipt.deliveries.count() == 1
        work()
        assert send_status(Send.objects.get(pk=receipt.pk)) == "delivered"
        traveller.move_to(dt.datetime(2026, 12, 4, 7, 59, tzinfo=JST))
        work()
        assert not Delivery.objects.filter(send=promo).exists()
        traveller.move_to(dt.datetime(2026, 12, 4, 8, 0, tzinfo=JST))
        work()
    assert send_status(Send.objects.get(pk=promo.pk)) == "delivered"
    apply_all(workspace)
    delayed = Event.objects.get(workspace=workspace, event="Message Delayed")
    assert delayed.properties["reason"] == "quiet_hours" and delayed.properties["due_at"].startswith("2026-12-03T23:00")


def test_quiet_hours_are_the_customers_time_zone(workspace, send):
    _rules(workspace, quiet_hours={"marketing": {"start": "21:00", "end": "08:00"}})
    london = identified(send, workspace, user_id="u-london", timezone="Europe/London")
    inapp_communication(workspace, key="promo", topic="marketing")
    # 23:00 in Tokyo is 14:00 in London.
    with time_machine.travel(dt.datetime(2026, 12, 3, 23, 0, tzinfo=JST), tick=False):
        s = send_create(workspace=workspace, communication="promo", customer=london, actor=SYSTEM)
    assert send_status(s) == "queued"
    with time_machine.travel(dt.datetime(2026, 12, 4, 7, 0, tzinfo=JST), tick=False):  # 22:00 in London
        s = send_create(workspace=workspace, communication="promo", customer=london, actor=SYSTEM)
    assert s.status == "scheduled" and s.due_at == dt.datetime(2026, 12, 4, 8, 0, tzinfo=dt.UTC)


def test_drop_skips_a_send_inside_the_window(workspace, send):
    _rules(workspace, quiet_hours={"marketing": {"start": "21:00", "end": "08:00", "action": "drop"}})
    customer = identified(send, workspace)
    inapp_communication(workspace, key="promo", topic="marketing")
    with time_machine.travel(dt.datetime(2026, 12, 3, 22, 0, tzinfo=JST), tick=False):
        s = send_create(workspace=workspace, communication="promo", customer=customer, actor=SYSTEM)
    assert s.status == "skipped" and s.attempts.get().reason == "quiet_hours"


def test_no_marketing_on_a_japanese_public_holiday_when_asked(workspace, send):
    _rules(workspace, holidays="jp", quiet_hours={"marketing": {"start": "21:00", "end": "08:00"}})
    customer = identified(send, workspace)
    inapp_communication(workspace, key="promo", topic="marketing")
    # 2026-11-23 is 勤労感謝の日 (Labour Thanksgiving Day).
    with time_machine.travel(dt.datetime(2026, 11, 23, 12, 0, tzinfo=JST), tick=False) as traveller:
        s = send_create(workspace=workspace, communication="promo", customer=customer, actor=SYSTEM)
        assert s.status == "scheduled" and s.due_at == dt.datetime(2026, 11, 24, 0, 0, tzinfo=JST)
        traveller.move_to(dt.datetime(2026, 11, 24, 0, 0, tzinfo=JST))
        work()
        s.refresh_from_db()
        assert s.status == "scheduled" and s.due_at == dt.datetime(2026, 11, 24, 8, 0, tzinfo=JST)  # then night
        traveller.move_to(dt.datetime(2026, 11, 24, 8, 0, tzinfo=JST))
        work()
    assert send_status(Send.objects.get(pk=s.pk)) == "delivered"
    apply_all(workspace)
    reasons = [e.properties["reason"] for e in Event.objects.filter(event="Message Delayed").order_by("id")]
    assert reasons == ["holiday", "quiet_hours"]


def test_the_third_marketing_message_of_a_day_moves_on_or_is_skipped(workspace, send):
    _rules(workspace, frequency_caps=[{"topic": "marketing", "channel": "in_app", "max": 2, "per": "day"}])
    customer = identified(send, workspace, email="hanako@example.jp", consent_email_marketing=True)
    communication_create(
        workspace=workspace, key="promo", name="Promo", topic="marketing", actor=SYSTEM,
        variants=[
            {"channel": "in_app", "locale": "ja", "title": "セール", "body": "本日限り"},
            {"channel": "webhook", "locale": "ja", "payload": '{"x": 1}'},
        ],
    )
    first = [send_create(workspace=workspace, communication="promo", customer=customer, actor=SYSTEM,
                         channel="in_app") for _ in range(2)]
    assert all(s.status == "queued" for s in first)
    third = send_create(workspace=workspace, communication="promo", customer=customer, actor=SYSTEM, channel="in_app")
    assert third.status == "skipped"
    (attempt,) = third.attempts.all()
    assert (attempt.reason, attempt.detail) == ("capped", "at most 2 marketing messages on in_app a day")
    # With a policy, the capped channel is skipped and the next one is tried.
    policy = {"steps": [{"channel": "in_app"}, {"channel": "webhook"}]}
    fourth = send_create(workspace=workspace, communication="promo", customer=customer, actor=SYSTEM, policy=policy)
    assert [(a.channel, a.status, a.reason) for a in fourth.attempts.order_by("step")] == [
        ("in_app", "skipped", "capped"),
        ("webhook", "skipped", "no_address"),  # no webhook channel configured here: the policy ran out
    ]
    # A day later the cap has room again (a rolling 24 hours).
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=1, minutes=1), tick=False):
        later = send_create(workspace=workspace, communication="promo", customer=customer, actor=SYSTEM,
                            channel="in_app")
    assert later.status == "queued"


def test_the_rules_are_settings_checked_naming_the_field(workspace, token):
    ok = {"quiet_hours": {"marketing": {"start": "22:00", "end": "07:30"}},
          "frequency_caps": [{"topic": "marketing", "max": 5, "per": "week"}], "holidays": "jp",
          "timezone": "Asia/Tokyo"}
    status, body = api_call("patch", "/api/v1/workspace/settings", token, ok)
    assert status == 200 and body["quiet_hours"] == ok["quiet_hours"] and body["holidays"] == "jp"
    assert body["frequency_caps"] == ok["frequency_caps"]
    for payload, field in [
        ({"quiet_hours": {"marketing": {"start": "25:00", "end": "08:00"}}}, "quiet_hours.marketing.start"),
        ({"quiet_hours": {"transactional": {"start": "21:00", "end": "08:00"}}}, "quiet_hours.transactional"),
        ({"quiet_hours": {"marketing": {"start": "21:00", "end": "08:00", "action": "x"}}},
         "quiet_hours.marketing.action"),
        ({"frequency_caps": [{"topic": "marketing", "max": 2, "per": "year"}]}, "frequency_caps[0].per"),
        ({"frequency_caps": [{"topic": "news", "max": 2, "per": "day"}]}, "frequency_caps[0].topic"),
        ({"frequency_caps": [{"topic": "marketing", "max": -1, "per": "day"}]}, "frequency_caps[0].max"),
        ({"holidays": "us"}, "holidays"),
    ]:
        status, body = api_call("patch", "/api/v1/workspace/settings", token, payload)
        assert (status, body.get("field")) == (400, field), (payload, body)
