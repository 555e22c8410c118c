"""One-click unsubscribe (RFC 8058): a GET only shows the page (scanners follow links), a POST — the page's
button or the mail client's ``List-Unsubscribe=One-Click`` — suppresses the address for that topic."""

from __future__ import annotations

import pytest
from django.test import Client

from tsunagu.core.permissions import SYSTEM
from tsunagu.messaging.links import links_for
from tsunagu.messaging.models import Consent, DeliveryEvent, Suppression
from tsunagu.messaging.services import send_create
from tsunagu.messaging.tests.helpers import identified, inapp_communication, work

pytestmark = pytest.mark.django_db


def _path(url: str) -> str:
    return url.removeprefix("http://127.0.0.1:8000")


def test_one_click_post_unsubscribes_and_a_get_does_not(workspace, send):
    customer = identified(send, workspace, name="花子")
    inapp_communication(workspace, key="promo", topic="marketing")
    inapp_communication(workspace, key="receipt", topic="transactional")
    d = send_create(workspace=workspace, communication="promo", customer=customer, actor=SYSTEM).deliveries.get()
    work()
    url = links_for(key=d.key, topic="marketing")["unsubscribe_url"]
    assert url.startswith("http://127.0.0.1:8000/m/u/")
    page = Client().get(_path(url))
    assert page.status_code == 200 and b"<form" in page.content
    assert not Suppression.objects.exists()

    answer = Client().post(_path(url), {"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    row = Suppression.objects.get()
    assert (row.address, row.topic, row.reason) == (str(customer.pk), "marketing", "unsubscribe")
    assert DeliveryEvent.objects.filter(delivery=d, status="unsubscribed").exists()
    # The next marketing message is not sent; a transactional one still is.
    consent = Consent.objects.get(customer=customer)
    assert (consent.channel, consent.topic, consent.status, consent.source) == (
        "in_app", "marketing", "revoked", "list_unsubscribe"
    )
    again = send_create(workspace=workspace, communication="promo", customer=customer, actor=SYSTEM)
    assert again.status == "skipped" and again.attempts.get().reason == "unsubscribed"
    receipt = send_create(workspace=workspace, communication="receipt", customer=customer, actor=SYSTEM)
    assert receipt.status == "queued"


def test_a_forged_or_altered_token_is_refused_and_changes_nothing(workspace, send):
    customer = identified(send, workspace)
    inapp_communication(workspace, key="promo", topic="marketing")
    d = send_create(workspace=workspace, communication="promo", customer=customer, actor=SYSTEM).deliveries.get()
    url = _path(links_for(key=d.key, topic="marketing")["unsubscribe_url"])
    for bad in (url[:-2] + ("AA" if not url.endswith("AA") else "BB"), "/m/u/" + d.key, "/m/u/x"):
        assert Client().post(bad, {"List-Unsubscribe": "One-Click"}).status_code == 404
    assert not Suppression.objects.exists()


def test_unsubscribe_links_sent_before_still_work(workspace, send):
    from django.core import signing

    customer = identified(send, workspace)
    inapp_communication(workspace, key="promo", topic="marketing")
    d = send_create(workspace=workspace, communication="promo", customer=customer, actor=SYSTEM).deliveries.get()
    old = signing.dumps(d.key, salt="tsunagu.messaging.unsubscribe", compress=False)  # the earlier token
    assert Client().post(f"/m/u/{old}", {"List-Unsubscribe": "One-Click"}).status_code == 200
    assert Suppression.objects.get().topic == "marketing"


def test_transactional_messages_have_no_unsubscribe_link(workspace):
    assert links_for(key="k", topic="transactional") == {"unsubscribe_url": "", "preferences_url": ""}


def test_the_page_speaks_japanese_and_english(workspace, send):
    customer = identified(send, workspace)
    inapp_communication(workspace, key="promo", topic="marketing")
    d = send_create(workspace=workspace, communication="promo", customer=customer, actor=SYSTEM).deliveries.get()
    url = _path(links_for(key=d.key, topic="marketing")["unsubscribe_url"])
    ja = Client().get(url, headers={"Accept-Language": "ja"}).content.decode()
    en = Client().get(url, headers={"Accept-Language": "en"}).content.decode()
    assert "配信を停止しますか" in ja and "Stop sending messages of this kind" in en
