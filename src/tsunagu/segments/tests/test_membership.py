"""Segments kept in real time by the applier: entering and leaving as events are applied, with the history
and ``Segment Entered`` / ``Segment Exited`` on the customer's timeline; nested segments in one pass; merges;
consent decisions; and conditions that only time changes, at the refresh."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from tsunagu.core.permissions import SYSTEM
from tsunagu.customers.models import Customer
from tsunagu.events.models import Event
from tsunagu.segments.models import Membership, MembershipChange
from tsunagu.segments.services import segment_changes_publish, segment_create, segments_refresh
from tsunagu.testing.pipeline import apply_all

pytestmark = pytest.mark.django_db

BIG_SPENDER = {"event": "Order Completed", "where": [{"property": "revenue", "op": "gte", "value": 5000}],
               "count": {"op": "gte", "value": 2}, "within": {"days": 90}}


def _customer(user_id: str) -> Customer:
    return Customer.objects.get(user_id=user_id, merged_into__isnull=True)


def _members(key: str) -> set[str]:
    return set(Membership.objects.filter(segment__key=key).values_list("customer__user_id", flat=True))


def _timeline(customer: Customer) -> list[tuple[str, dict[str, Any]]]:
    return [(e.event, e.properties) for e in Event.objects.filter(customer=customer, event__startswith="Segment ")
            .order_by("id")]


def _order(send: Any, user: str, revenue: int, **extra: Any) -> None:
    status, _ = send("/v1/track", {"userId": user, "event": "Order Completed", "properties": {"revenue": revenue},
                                   **extra})
    assert status == 200


def test_a_customer_enters_when_the_event_that_qualifies_them_is_applied(
    workspace: Any, send: Any, django_capture_on_commit_callbacks: Any
) -> None:
    segment, _ = segment_create(workspace=workspace, key="big", name="Big spenders", rule=BIG_SPENDER, actor=SYSTEM)
    _order(send, "u1", 8000)
    _order(send, "u1", 1000)  # too small to count
    assert _members("big") == set()
    # The entry's event is stored by the applier's transaction: nothing that runs after commit is needed.
    with django_capture_on_commit_callbacks(execute=False):
        _order(send, "u1", 6000)
    assert _members("big") == {"u1"}
    segment.refresh_from_db()
    assert segment.member_count == 1
    change = MembershipChange.objects.get(segment=segment)
    assert (change.entered, change.reason) == (True, "event")
    # The applier's commit published it; the next pass of the applier put it on the timeline.
    apply_all(workspace)
    assert _timeline(_customer("u1")) == [
        ("Segment Entered", {"segment": "big", "segment_name": "Big spenders", "reason": "event"})]
    assert MembershipChange.objects.get(segment=segment).published_at is not None
    # Publishing again appends nothing twice (the changes are marked).
    assert segment_changes_publish() == 0


def test_a_customer_leaves_when_a_trait_changes_and_the_exit_is_on_the_timeline(
    workspace: Any, send: Any
) -> None:
    send("/v1/identify", {"userId": "u1", "traits": {"tier": "gold"}})
    send("/v1/identify", {"userId": "u2", "traits": {"tier": "ｇｏｌｄ"}})  # full-width: NFKC makes it gold
    segment_create(workspace=workspace, key="gold", name="Gold", rule={"trait": "tier", "op": "eq", "value": "gold"},
                   actor=SYSTEM)
    assert _members("gold") == {"u1", "u2"}
    # The first population is history, not news: no events for it.
    assert set(MembershipChange.objects.values_list("reason", flat=True)) == {"created"}
    send("/v1/identify", {"userId": "u1", "traits": {"tier": "silver"}})
    assert _members("gold") == {"u2"}
    assert [name for name, _ in _timeline(_customer("u1"))] == ["Segment Exited"]
    assert _timeline(_customer("u2")) == []
    assert segment_changes_publish() == 0  # nothing left in the outbox: the applier stored it
    exit_event = Event.objects.get(event="Segment Exited")
    change = MembershipChange.objects.get(reason="event")
    assert (exit_event.message_id, exit_event.user_id, exit_event.source.name, exit_event.channel) == (
        f"tsunagu:segment-change:{change.pk}", "u1", "tsunagu segments", "backoffice")
    assert exit_event.timestamp == change.at and change.published_at is not None


def test_a_rule_on_another_segments_entry_event_moves_in_the_same_chunk(workspace: Any, send: Any) -> None:
    segment_create(workspace=workspace, key="big", name="Big", rule=BIG_SPENDER, actor=SYSTEM)
    segment_create(workspace=workspace, key="ever-big", name="Ever big", actor=SYSTEM, rule={
        "event": "Segment Entered", "where": [{"property": "segment", "op": "eq", "value": "big"}]})
    _order(send, "u1", 7000)
    _order(send, "u1", 7000)
    assert _members("big") == {"u1"}
    assert _members("ever-big") == {"u1"}
    assert [name for name, _ in _timeline(_customer("u1"))] == ["Segment Entered", "Segment Entered"]
    # A derived event changes no profile field: the profile counts the customer's own two orders.
    assert _customer("u1").event_count == 2


def test_a_segment_of_a_segment_moves_in_the_same_pass(workspace: Any, send: Any) -> None:
    segment_create(workspace=workspace, key="big", name="Big", rule=BIG_SPENDER, actor=SYSTEM)
    segment_create(workspace=workspace, key="big-in-tokyo", name="Big in Tokyo", actor=SYSTEM,
                   rule={"all": [{"segment": "big"}, {"trait": "city", "op": "eq", "value": "東京"}]})
    send("/v1/identify", {"userId": "u1", "traits": {"city": "東京"}})
    status, _ = send("/v1/batch", {"batch": [
        {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": 9000}},
        {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": 9000}},
    ]})
    assert status == 200
    assert _members("big") == {"u1"}
    assert _members("big-in-tokyo") == {"u1"}


def test_a_profile_merged_away_leaves_quietly_and_the_survivor_is_evaluated(workspace: Any, send: Any) -> None:
    segment_create(workspace=workspace, key="big", name="Big", rule=BIG_SPENDER, actor=SYSTEM)
    _order(send, "u1", 7000)
    status, _ = send("/v1/track", {"anonymousId": "a1", "event": "Order Completed", "properties": {"revenue": 7000},
                                   "context": {"traits": {"email": "hanako@example.jp"}}})
    assert status == 200
    assert _members("big") == set()
    # One identify links the anonymous profile to u1: both orders are now u1's.
    send("/v1/identify", {"userId": "u1", "anonymousId": "a1"})
    assert _members("big") == {"u1"}


def test_a_consent_decision_moves_segments_that_ask_for_it(workspace: Any, send: Any) -> None:
    from tsunagu.messaging.consent import consent_set

    send("/v1/identify", {"userId": "u1", "traits": {"email": "hanako@example.jp"}})
    segment_create(workspace=workspace, key="optin", name="Opted in", actor=SYSTEM,
                   rule={"consent": {"channel": "email", "topic": "marketing"}})
    assert _members("optin") == set()
    customer = _customer("u1")
    consent_set(customer=customer, channel="email", topic="marketing", status="granted", source="api", actor=SYSTEM)
    assert _members("optin") == {"u1"}
    consent_set(customer=customer, channel="", topic="marketing", status="revoked", source="api", actor=SYSTEM)
    assert _members("optin") == set()
    assert list(MembershipChange.objects.order_by("id").values_list("entered", "reason")) == [
        (True, "consent"), (False, "consent")]


def test_no_order_in_90_days_becomes_true_at_the_refresh_with_time_alone(workspace: Any, send: Any) -> None:
    lapsed = {"all": [{"event": "Order Completed", "count": {"op": "gte", "value": 1}},
                      {"event": "Order Completed", "count": {"op": "eq", "value": 0}, "within": {"days": 90}}]}
    start = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False):
        _order(send, "u1", 3000, timestamp=start.isoformat())
        segment, _ = segment_create(workspace=workspace, key="lapsed", name="Lapsed", rule=lapsed, actor=SYSTEM)
        assert segment.time_dependent
        assert _members("lapsed") == set()
    with time_machine.travel(start + dt.timedelta(days=89), tick=False):
        segments_refresh(workspace=workspace)
        assert _members("lapsed") == set()
    with time_machine.travel(start + dt.timedelta(days=90, seconds=1), tick=False):
        moved = segments_refresh(workspace=workspace)
        assert moved["lapsed"].entered == {_customer("u1").pk}
        assert _members("lapsed") == {"u1"}
        change = MembershipChange.objects.filter(segment=segment).latest("id")
        assert (change.entered, change.reason) == (True, "refresh")
        # The refresh's entry reaches the timeline through the outbox and the applier, and is no more the
        # customer's activity than an entry the reaction stores: the profile still counts one order.
        assert segment_changes_publish() == 1
        apply_all(workspace)
        assert [name for name, _ in _timeline(_customer("u1"))] == ["Segment Entered"]
        assert (_customer("u1").event_count, _customer("u1").last_seen) == (1, start)


def test_the_worker_refreshes_a_workspace_once_its_interval_has_passed(
    workspace: Any, send: Any, settings: Any
) -> None:
    from tsunagu.segments.handlers import refresh_due

    settings.TSUNAGU_SEGMENT_REFRESH = 300
    start = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False):
        segment_create(workspace=workspace, key="recent", name="Recent", actor=SYSTEM,
                       rule={"event": "Order Completed", "within": {"days": 1}})
        assert refresh_due("w") == 0  # just created: refreshed now
    with time_machine.travel(start + dt.timedelta(seconds=301), tick=False):
        assert refresh_due("w") == 1
        assert refresh_due("w") == 0


def test_a_consent_given_by_identify_counts_in_the_same_chunk(workspace: Any, send: Any) -> None:
    segment_create(workspace=workspace, key="optin", name="Opted in", actor=SYSTEM,
                   rule={"consent": {"channel": "email", "topic": "marketing"}})
    # messaging's reaction records the consent; segments' runs after it, in the same transaction.
    send("/v1/identify", {"userId": "u1", "traits": {"email": "hanako@example.jp", "consent_email_marketing": True}})
    assert _members("optin") == {"u1"}


def test_the_chunk_decides_what_it_can_and_asks_the_sql_only_for_the_rest(
    workspace: Any, send: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule over traits costs no rule query in the applier; an event condition the chunk's own events
    already meet ("at least one") neither; one they cannot decide ("at least three") goes to the SQL, for
    that customer only — and the memberships come out as the SQL alone would have them."""
    from tsunagu.segments import membership

    asked: list[tuple[Any, list[int]]] = []
    real = membership.rule_member_ids

    def recording(**kwargs: Any) -> Any:
        asked.append((kwargs["rule"].node, list(kwargs["restrict"])))
        return real(**kwargs)

    for key, rule in (("gold", {"trait": "tier", "op": "eq", "value": "gold"}),
                      ("buyer", {"event": "Order Completed"}),
                      ("loyal", {"event": "Order Completed", "count": {"op": "gte", "value": 3}})):
        segment_create(workspace=workspace, key=key, name=key, rule=rule, actor=SYSTEM)
    monkeypatch.setattr(membership, "rule_member_ids", recording)
    send("/v1/identify", {"userId": "u1", "traits": {"tier": "gold"}})
    send("/v1/identify", {"userId": "u2", "traits": {"tier": "silver"}})
    assert asked == []
    _order(send, "u1", 100)
    ((node, restrict),) = asked
    assert (node.name, node.count.op, node.count.value, restrict) == ("Order Completed", "gte", 3, [_customer("u1").pk])
    assert (_members("gold"), _members("buyer"), _members("loyal")) == ({"u1"}, {"u1"}, set())
    _order(send, "u1", 100)
    _order(send, "u1", 100)
    assert _members("loyal") == {"u1"}
