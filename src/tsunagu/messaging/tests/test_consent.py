"""Consent: a marketing email needs an opt-in, and an unsubscribe — one-click, or a revocation through the
API — stops the next marketing send; transactional mail is not a matter of consent."""

from __future__ import annotations

import pytest
from django.test import Client

from tsunagu.core.permissions import SYSTEM
from tsunagu.events.models import Event
from tsunagu.messaging.consent import consent_set
from tsunagu.messaging.links import links_for
from tsunagu.messaging.models import Consent
from tsunagu.messaging.services import channel_create, communication_create, send_create
from tsunagu.messaging.tests.helpers import api_call as call
from tsunagu.messaging.tests.helpers import identified, work
from tsunagu.testing.pipeline import apply_all
from tsunagu.testing.standins.smtp import SMTPStandin

pytestmark = pytest.mark.django_db


@pytest.fixture
def smtp():
    with SMTPStandin() as server:
        yield server


def _mail(workspace, smtp, topic="marketing", key="sale"):
    if not workspace.messaging_channels.exists():
        channel_create(
            workspace=workspace, type="email", name="SMTP", actor=SYSTEM,
            config={"host": smtp.host, "port": smtp.port, "security": "none", "from_email": "info@shop.example"},
        )
    communication_create(
        workspace=workspace, key=key, name=key, topic=topic, actor=SYSTEM,
        variants=[{"channel": "email", "locale": "ja", "subject": "セール", "html": "<p>セール開催中</p>"}],
    )


def test_marketing_email_without_opt_in_is_skipped_with_an_event_and_with_it_goes(workspace, send, smtp):
    customer = identified(send, workspace, email="hanako@example.jp")
    _mail(workspace, smtp)
    s = send_create(workspace=workspace, communication="sale", customer=customer, actor=SYSTEM)
    assert s.status == "skipped" and s.attempts.get().reason == "no_consent"
    work()
    assert smtp.messages == []
    apply_all(workspace)
    skipped = Event.objects.get(workspace=workspace, customer=customer, event="Message Skipped")
    assert skipped.properties["reason"] == "no_consent" and skipped.properties["communication"] == "sale"

    consent_set(customer=customer, channel="email", topic="marketing", status="granted", source="signup_form",
                text="セール情報をメールで受け取る", actor=SYSTEM)
    s = send_create(workspace=workspace, communication="sale", customer=customer, actor=SYSTEM)
    assert s.status == "queued"
    work()
    assert len(smtp.wait_for(1)) == 1


def test_an_identify_trait_grants_consent_with_the_event_as_proof(workspace, send, smtp):
    customer = identified(send, workspace, email="hanako@example.jp", consent_email_marketing=True)
    row = Consent.objects.get(customer=customer)
    assert (row.channel, row.topic, row.status, row.source) == ("email", "marketing", "granted", "identify")
    _mail(workspace, smtp)
    assert send_create(workspace=workspace, communication="sale", customer=customer, actor=SYSTEM).status == "queued"
    # Revoked for every channel by a later identify: the later decision is in force.
    identified(send, workspace, consent_marketing=False)
    s = send_create(workspace=workspace, communication="sale", customer=customer, actor=SYSTEM)
    assert s.attempts.get().reason == "unsubscribed"


def test_rfc8058_one_click_stops_the_next_marketing_send_but_not_a_receipt(workspace, send, smtp):
    customer = identified(send, workspace, email="hanako@example.jp", consent_email_marketing=True)
    _mail(workspace, smtp)
    _mail(workspace, smtp, topic="transactional", key="receipt")
    first = send_create(workspace=workspace, communication="sale", customer=customer, actor=SYSTEM)
    work()
    (mail,) = smtp.wait_for(1)
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    delivery = first.deliveries.get()
    url = links_for(key=delivery.key, topic="marketing")["unsubscribe_url"]
    answer = Client().post("/" + url.split("/", 3)[3], {"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    again = send_create(workspace=workspace, communication="sale", customer=customer, actor=SYSTEM)
    assert again.status == "skipped" and again.attempts.get().reason == "unsubscribed"
    receipt = send_create(workspace=workspace, communication="receipt", customer=customer, actor=SYSTEM)
    assert receipt.status == "queued"
    history = list(Consent.objects.filter(customer=customer).order_by("at", "id").values_list("status", "source"))
    assert history == [("granted", "identify"), ("revoked", "list_unsubscribe")]


def test_the_consents_api_records_decisions_with_their_history(
    workspace, send, token, django_capture_on_commit_callbacks
):
    customer = identified(send, workspace, email="hanako@example.jp")
    path = f"/api/v1/customers/{customer.pk}/consents"
    with django_capture_on_commit_callbacks(execute=True):  # the timeline events go after commit
        status, body = call("put", path, token, {"channel": "email", "topic": "marketing", "status": "granted",
                                                 "source": "store_signup", "text": "メールでお知らせを受け取る"})
        assert status == 200, body
        status, body = call("put", path, token, {"channel": "email", "topic": "marketing", "status": "revoked",
                                                 "source": "call_centre"})
    status, body = call("get", path, token)
    (item,) = body["items"]
    assert (item["channel"], item["topic"], item["status"], item["source"]) == (
        "email", "marketing", "revoked", "call_centre"
    )
    assert [h["status"] for h in item["history"]] == ["revoked", "granted"]
    assert item["history"][1]["text"] == "メールでお知らせを受け取る"
    for payload, field in [
        ({"channel": "fax", "topic": "marketing", "status": "granted", "source": "x"}, "channel"),
        ({"channel": "email", "topic": "transactional", "status": "granted", "source": "x"}, "topic"),
        ({"channel": "email", "topic": "marketing", "status": "maybe", "source": "x"}, "status"),
        ({"channel": "email", "topic": "marketing", "status": "granted", "source": " "}, "source"),
    ]:
        status, body = call("put", path, token, payload)
        assert (status, body.get("field")) == (400, field), (payload, body)
    assert call("get", "/api/v1/customers/999999/consents", token)[0] == 404
    apply_all(workspace)
    names = list(Event.objects.filter(customer=customer, event__startswith="Consent").values_list("event", flat=True))
    assert sorted(names) == ["Consent Granted", "Consent Revoked"]
