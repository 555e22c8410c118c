"""Sends: the customer's locale picks the variant, the first usable channel is chosen, the message is
rendered when recorded, idempotency keys dedupe, and an unreachable customer is a failed send with reasons."""

from __future__ import annotations

import pytest

from tsunagu.core.errors import NotFound, PermissionDenied, ValidationError
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import apikey_create
from tsunagu.messaging.models import Delivery, Send, SendEvent, Suppression
from tsunagu.messaging.services import channel_create, communication_create, send_create
from tsunagu.messaging.tests.helpers import identified, inapp_communication, work

pytestmark = pytest.mark.django_db


def test_the_customers_locale_picks_the_variant_and_data_fills_it(workspace, send):
    customer = identified(send, workspace, name="Hanako", locale="en-US")
    inapp_communication(workspace)
    s = send_create(
        workspace=workspace,
        communication="notice",
        customer=customer,
        actor=SYSTEM,
        data={"note": "Your order shipped"},
    )
    d = s.deliveries.get()
    assert d.status == "queued" and d.address == str(customer.pk) and d.content == {}
    work()  # the worker renders it, stores it, then sends it
    d.refresh_from_db()
    assert (d.locale, d.subject, d.body_text) == ("en", "Hello Hanako", "Your order shipped")


def test_without_a_locale_trait_the_workspace_default_is_used(workspace, send):
    customer = identified(send, workspace, name="花子")
    inapp_communication(workspace)
    d = send_create(workspace=workspace, communication="notice", customer=customer, actor=SYSTEM).deliveries.get()
    work()
    d.refresh_from_db()
    assert d.locale == "ja" and d.subject == "こんにちは 花子 様"
    workspace.default_locale = "en"
    workspace.save()
    d = send_create(workspace=workspace, communication="notice", customer=customer, actor=SYSTEM).deliveries.get()
    assert d.locale == "en"


def test_the_first_usable_channel_is_chosen_and_reasons_are_kept(workspace, send):
    customer = identified(send, workspace, name="Taro")  # no email, no phone
    communication_create(
        workspace=workspace,
        key="multi",
        name="Multi",
        topic="service",
        actor=SYSTEM,
        variants=[
            {"channel": "email", "locale": "ja", "subject": "s", "html": "<p>x</p>"},
            {"channel": "sms", "locale": "ja", "text": "x"},
            {"channel": "in_app", "locale": "ja", "title": "t", "body": "b"},
        ],
    )
    d = send_create(workspace=workspace, communication="multi", customer=customer, actor=SYSTEM).deliveries.get()
    assert d.channel_type == "in_app"
    # Only channels that cannot reach: the send fails with every reason, and that is on record.
    communication_create(
        workspace=workspace,
        key="mailonly",
        name="M",
        topic="service",
        actor=SYSTEM,
        variants=[{"channel": "email", "locale": "ja", "subject": "s", "html": "<p>x</p>"}],
    )
    s = send_create(workspace=workspace, communication="mailonly", customer=customer, actor=SYSTEM)
    # Only channels that cannot reach: the send is skipped, nothing is archived, and why is on record
    # (and on its way to the timeline as Message Skipped).
    assert s.status == "skipped" and s.ended_at is not None and not s.deliveries.exists()
    (attempt,) = s.attempts.all()
    assert (attempt.channel, attempt.status, attempt.reason) == ("email", "skipped", "no_address")
    assert attempt.detail == "no email channel is configured"
    assert SendEvent.objects.filter(send=s, kind="skipped", logged=False).exists()


def test_a_channel_asked_for_must_have_a_variant(workspace, send):
    customer = identified(send, workspace)
    inapp_communication(workspace)
    with pytest.raises(ValidationError) as err:
        send_create(workspace=workspace, communication="notice", customer=customer, actor=SYSTEM, channel="sms")
    assert err.value.field == "channel"
    with pytest.raises(NotFound) as nf:
        send_create(workspace=workspace, communication="nope", customer=customer, actor=SYSTEM)
    assert nf.value.field == "communication"
    assert not Send.objects.exists()


def test_the_same_idempotency_key_records_one_send(workspace, send):
    customer = identified(send, workspace)
    inapp_communication(workspace)
    first = send_create(
        workspace=workspace, communication="notice", customer=customer, actor=SYSTEM, idempotency_key="order-1-shipped"
    )
    again = send_create(
        workspace=workspace, communication="notice", customer=customer, actor=SYSTEM, idempotency_key="order-1-shipped"
    )
    assert first.pk == again.pk
    assert Delivery.objects.count() == 1


def test_a_viewer_cannot_send_and_an_agent_can(workspace, send):
    customer = identified(send, workspace)
    inapp_communication(workspace)
    viewer, _ = apikey_create(workspace=workspace, name="v", role="viewer", actor=SYSTEM)
    agent, _ = apikey_create(workspace=workspace, name="a", role="agent", actor=SYSTEM)
    with pytest.raises(PermissionDenied):
        send_create(workspace=workspace, communication="notice", customer=customer, actor=viewer)
    assert send_create(workspace=workspace, communication="notice", customer=customer, actor=agent).actor.startswith(
        "api key"
    )


def test_a_send_records_the_version_it_used(workspace, send):
    from tsunagu.messaging.services import communication_update

    customer = identified(send, workspace, name="N")
    comm = inapp_communication(workspace)
    s1 = send_create(workspace=workspace, communication="notice", customer=customer, actor=SYSTEM)
    communication_update(
        communication=comm, actor=SYSTEM, variants=[{"channel": "in_app", "locale": "ja", "title": "v2", "body": "b"}]
    )
    s2 = send_create(workspace=workspace, communication="notice", customer=customer, actor=SYSTEM)
    assert (s1.version.number, s2.version.number) == (1, 2)
    work()
    assert s1.deliveries.get().subject == "こんにちは N 様" and s2.deliveries.get().subject == "v2"


def test_suppressed_addresses_are_not_used(workspace, send):
    from tsunagu.messaging.services import suppression_add

    customer = identified(send, workspace)
    channel_create(workspace=workspace, type="in_app", name="inbox", config={}, actor=SYSTEM)
    inapp_communication(workspace, topic="marketing")
    suppression_add(
        workspace=workspace, channel_type="in_app", address=str(customer.pk), reason="unsubscribe", topic="marketing"
    )
    s = send_create(workspace=workspace, communication="notice", customer=customer, actor=SYSTEM)
    assert s.status == "skipped" and not s.deliveries.exists()
    assert s.attempts.get().reason == "unsubscribed"  # an unsubscribe on the suppression list
    Suppression.objects.all().delete()
    suppression_add(workspace=workspace, channel_type="in_app", address=str(customer.pk), reason="bounce")
    s = send_create(workspace=workspace, communication="notice", customer=customer, actor=SYSTEM)
    assert s.attempts.get().reason == "suppressed"
    assert work() == 0


def test_an_address_that_is_not_the_profiles_is_checked_against_the_suppression_list_too(workspace, send):
    # A webhook's URL (like a push endpoint) is the channel's, not one of the customer's addresses: the
    # batch's read of the profiles' suppressions does not hold it and it is looked up on its own.
    from tsunagu.messaging.services import suppression_add

    customer = identified(send, workspace)
    url = "https://hooks.example.jp/in"
    channel_create(workspace=workspace, type="webhook", name="CRM", config={"url": url}, actor=SYSTEM)
    communication_create(
        workspace=workspace, key="hook", name="Hook", topic="service", actor=SYSTEM,
        variants=[{"channel": "webhook", "locale": "ja", "payload": '{"id": {{ customer.id }}}'}],
    )
    assert send_create(workspace=workspace, communication="hook", customer=customer, actor=SYSTEM).status == "queued"
    suppression_add(workspace=workspace, channel_type="webhook", address=url, reason="complaint")
    s = send_create(workspace=workspace, communication="hook", customer=customer, actor=SYSTEM)
    assert s.status == "skipped" and s.attempts.get().reason == "suppressed"
