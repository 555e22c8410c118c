"""The preference page (``/m/p/<token>``): a forged token learns nothing and changes nothing; the customer's
choices are consent decisions with their source and the wording shown, on the timeline; a revoked
marketing email consent skips the next marketing email (reason ``unsubscribed``); Japanese and English."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import signing
from django.test import Client

from tsunagu.core.permissions import SYSTEM
from tsunagu.messaging.consent import consent_set
from tsunagu.messaging.links import links_for, preferences_token, unsubscribe_token
from tsunagu.messaging.models import Consent
from tsunagu.messaging.selectors import send_attempts
from tsunagu.messaging.services import channel_create, communication_create, send_create
from tsunagu.messaging.tests.helpers import identified
from tsunagu.testing.pipeline import apply_all

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(workspace: Any, send: Any) -> Any:
    """花子 with an email address, an SMTP and an SMS channel, and a marketing email communication; no quiet
    hours (the suite runs at any hour)."""
    workspace.quiet_hours = {}
    workspace.save(update_fields=["quiet_hours"])
    customer = identified(send, workspace, name="山田 花子", email="hanako@example.jp", phone="+819012345678")
    smtp = {"host": "127.0.0.1", "port": 2525, "security": "none", "from_email": "info@shop.example"}
    channel_create(workspace=workspace, type="email", name="SMTP", config=smtp, actor=SYSTEM)
    sms = {"provider": "twilio", "account_sid": "AC" + "0" * 32, "auth_token": "t" * 32, "from_number": "+15005550006"}
    channel_create(workspace=workspace, type="sms", name="SMS", config=sms, actor=SYSTEM)
    variant = {"channel": "email", "locale": "ja", "subject": "セール", "text": "本日限り {{ unsubscribe_url }}",
               "html": "<p>本日限り <a href=\"{{ unsubscribe_url }}\">配信停止</a></p>"}
    communication_create(workspace=workspace, key="sale", name="Sale", topic="marketing", variants=[variant],
                         actor=SYSTEM)
    return customer


def page_path(customer: Any) -> str:
    return f"/m/p/{preferences_token(customer.pk)}"


def csrf_client(path: str, lang: str = "ja") -> tuple[Client, str]:
    """A client that loaded the page (and so holds its CSRF cookie), and the page's CSRF token."""
    client = Client(enforce_csrf_checks=True, headers={"Accept-Language": lang})
    body = client.get(path).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    assert token is not None, body
    return client, token.group(1)


def checked(body: str) -> set[str]:
    return set(re.findall(r'name="([a-z_]+-[a-z_]+)" value="1" checked', body))


def test_every_message_links_the_page_of_its_customer(shop: Any) -> None:
    links = links_for(key="k", topic="marketing", customer_id=shop.pk)
    assert links["preferences_url"] == "http://127.0.0.1:8000" + page_path(shop)


def test_a_forged_or_altered_token_gets_a_page_that_tells_nothing(shop: Any) -> None:
    good = page_path(shop)
    forged = [
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        f"/m/p/{shop.pk}",
        # Another customer's id under this customer's signature.
        "/m/p/" + preferences_token(shop.pk + 1).split(".")[0] + "." + preferences_token(shop.pk).split(".")[1],
        # An unsubscribe token's signature of the same text is not a preference page's.
        "/m/p/" + unsubscribe_token(str(shop.pk)),
        "/m/p/" + signing.dumps(shop.pk, salt="another purpose"),
        "/m/p/" + preferences_token(999999),  # ours, but no such customer
    ]
    for path in forged:
        for method in ("get", "post"):
            response = getattr(Client(), method)(path, {"action": "unsubscribe_all"})
            assert response.status_code == 404, path
            body = response.content.decode()
            assert "hanako" not in body and "山田" not in body and "Shop A" not in body
            assert "<form" not in body
    assert not Consent.objects.exists()


def test_a_page_link_in_a_message_sent_before_still_opens(shop: Any) -> None:
    # Earlier messages linked tokens of Django's signing ("payload:signature"); they stay valid.
    old = signing.dumps(shop.pk, salt="tsunagu.messaging.preferences", compress=False)
    assert ":" in old and old != preferences_token(shop.pk)
    response = Client().get(f"/m/p/{old}")
    assert response.status_code == 200
    assert "<form" in response.content.decode()


def test_the_post_needs_the_pages_csrf_token(shop: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    assert client.post(page_path(shop), {"action": "unsubscribe_all"}).status_code == 403
    assert not Consent.objects.exists()


def test_choices_are_recorded_with_their_source_and_wording_and_reach_the_timeline(
    shop: Any, django_capture_on_commit_callbacks: Any
) -> None:
    path = page_path(shop)
    client, csrf = csrf_client(path)
    before = checked(client.get(path).content.decode())
    # Marketing email and SMS need an opt-in (特定電子メール法): shown unchecked; the rest is on.
    assert before == {"marketing-all", "service-all", "service-email", "service-sms"}

    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(path + "?lang=ja", {
            "csrfmiddlewaretoken": csrf, "action": "save", "marketing-all": "1", "marketing-email": "1",
            "service-all": "1", "service-email": "1",  # service SMS unticked
        })
    assert answer.status_code == 302 and answer["Location"] == f"{path}?lang=ja&saved=1"
    rows = list(Consent.objects.order_by("id").values("channel", "topic", "status", "source", "text", "actor"))
    assert rows == [
        {"channel": "email", "topic": "marketing", "status": "granted", "source": "preference_page",
         "text": "「キャンペーン・お得な情報」をメールで受け取る", "actor": "system"},
        {"channel": "sms", "topic": "service", "status": "revoked", "source": "preference_page",
         "text": "「サービスのお知らせ」をSMSで受け取らない", "actor": "system"},
    ]
    after = client.get(answer["Location"]).content.decode()
    assert checked(after) == {"marketing-all", "marketing-email", "service-all", "service-email"}
    assert "設定を保存しました" in after

    apply_all()
    from tsunagu.events.selectors import customer_timeline_page

    events, _ = customer_timeline_page(customer=shop, limit=20, cursor=None)
    names = [(e.event, e.properties.get("channel"), e.properties.get("source")) for e in events]
    assert ("Consent Granted", "email", "preference_page") in names
    assert ("Consent Revoked", "sms", "preference_page") in names


def test_unticking_every_channel_revokes_the_topic_everywhere(shop: Any) -> None:
    path = page_path(shop)
    client, csrf = csrf_client(path, "en")
    # The channel boxes come back ticked as shown (no script unticks them): left as they were, they record nothing.
    client.post(path + "?lang=en", {"csrfmiddlewaretoken": csrf, "action": "save", "marketing-all": "1",
                                    "service-email": "1", "service-sms": "1"})
    row = Consent.objects.get()
    assert (row.channel, row.topic, row.status) == ("", "service", "revoked")
    assert row.text == "Do not receive “Service notices”"
    assert checked(client.get(path + "?lang=en").content.decode()) == {"marketing-all"}


def test_a_channel_ticked_with_every_channel_unticked_is_kept(shop: Any) -> None:
    path = page_path(shop)
    client, csrf = csrf_client(path, "en")
    # Marketing off everywhere, but SMS marketing newly ticked: the later decision wins for SMS.
    client.post(path + "?lang=en", {"csrfmiddlewaretoken": csrf, "action": "save", "marketing-sms": "1",
                                    "service-all": "1", "service-email": "1", "service-sms": "1"})
    rows = list(Consent.objects.order_by("id").values_list("channel", "topic", "status"))
    assert rows == [("", "marketing", "revoked"), ("sms", "marketing", "granted")]
    assert checked(client.get(path).content.decode()) == {"marketing-sms", "service-all", "service-email",
                                                          "service-sms"}


def test_unsubscribe_from_all_revokes_marketing_and_service(shop: Any) -> None:
    consent_set(customer=shop, channel="email", topic="marketing", status="granted", source="api", actor=SYSTEM)
    path = page_path(shop)
    client, csrf = csrf_client(path, "en")
    client.post(path + "?lang=en", {"csrfmiddlewaretoken": csrf, "action": "unsubscribe_all", "marketing-email": "1"})
    rows = list(Consent.objects.filter(source="preference_page").values_list("channel", "topic", "status"))
    assert rows == [("", "marketing", "revoked"), ("", "service", "revoked")]
    assert checked(client.get(path).content.decode()) == set()


def test_a_revoked_marketing_email_consent_skips_the_next_marketing_send(shop: Any, workspace: Any) -> None:
    path = page_path(shop)
    client, csrf = csrf_client(path)
    client.post(path, {"csrfmiddlewaretoken": csrf, "action": "save", "marketing-all": "1", "marketing-email": "1",
                       "service-all": "1", "service-email": "1", "service-sms": "1"})
    first = send_create(workspace=workspace, communication="sale", customer=shop, actor=SYSTEM)
    assert [(a["channel"], a["status"], a["reason"]) for a in send_attempts(first)] == [("email", "queued", None)]

    client.post(path, {"csrfmiddlewaretoken": csrf, "action": "save", "marketing-all": "1",
                       "service-all": "1", "service-email": "1", "service-sms": "1"})
    second = send_create(workspace=workspace, communication="sale", customer=shop, actor=SYSTEM)
    second.refresh_from_db()
    assert second.status == "skipped"
    assert [(a["channel"], a["status"], a["reason"]) for a in send_attempts(second)] == [
        ("email", "skipped", "unsubscribed")
    ]
    assert not second.deliveries.exists()


def test_the_page_speaks_the_customers_language_else_the_workspaces(shop: Any, workspace: Any, send: Any) -> None:
    path = page_path(shop)
    # No locale trait: the workspace's default (ja), whatever the browser asks for.
    ja = Client(headers={"Accept-Language": "en"}).get(path).content.decode()
    assert '<html lang="ja">' in ja and "配信設定" in ja and "キャンペーン・お得な情報" in ja and "メール" in ja
    assert 'href="?lang=en"' in ja and "Message preferences" not in ja
    en = Client().get(path + "?lang=en").content.decode()
    assert '<html lang="en">' in en and "Message preferences" in en and "News and offers" in en
    assert "Unsubscribe from all" in en and 'href="?lang=ja"' in en and "配信設定" not in en

    identified(send, workspace, locale="en-US")  # the same user (u-1), now with a locale trait
    assert '<html lang="en">' in Client(headers={"Accept-Language": "ja"}).get(path).content.decode()


def test_the_page_is_private_and_not_cached(shop: Any) -> None:
    response = Client().get(page_path(shop))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"] and response["Referrer-Policy"] == "same-origin"
    assert "<style" not in response.content.decode() and "<script" not in response.content.decode()
