"""Consent on the customer's 360° page: the decisions in force on the profile, the history with its proof
(source, wording, time, who), and an agent recording a decision; viewers read only; Japanese and English."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.test import Client

from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import membership_add, user_create
from tsunagu.messaging.consent import consent_set
from tsunagu.messaging.models import Consent

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 1, 5, 0, 0, tzinfo=dt.UTC)


def history(page: str) -> list[tuple[str, str, str, str]]:
    return re.findall(r'<tr data-channel="(\w+)" data-topic="(\w+)" data-status="(\w+)" data-source="(\w+)">', page)


def member_client(workspace: Any, name: str, role: str) -> Client:
    user = user_create(username=name, password=PASSWORD)
    membership_add(workspace=workspace, user=user, role=role, actor=SYSTEM)
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(user)
    return client


@pytest.fixture
def decided(hanako: Any) -> Any:
    consent_set(customer=hanako, channel="email", topic="marketing", status="granted", source="api", actor=SYSTEM,
                text="メールマガジンを受け取る（会員登録フォーム）", at=T0)
    consent_set(customer=hanako, channel="", topic="marketing", status="revoked", source="preference_page",
                actor=SYSTEM, text="すべて配信停止", at=T0 + dt.timedelta(days=1))
    return hanako


def test_the_360_page_shows_the_decisions_in_force(client_en: Any, client_ja: Any, decided: Any) -> None:
    page = client_en.get(f"/w/shop-a/customers/{decided.pk}/").content.decode()
    card = re.search(r'data-testid="consent-card">(.*?)</section>', page, re.S).group(1)
    rows = re.findall(r'<tr data-channel="(\w+)" data-topic="(\w+)" data-status="(\w+)">', card)
    assert rows == [("all", "marketing", "revoked"), ("email", "marketing", "granted")]
    assert "Every channel" in card and "Preference page" in card
    ja = client_ja.get(f"/w/shop-a/customers/{decided.pk}/").content.decode()
    assert "すべてのチャネル" in ja and "撤回" in ja and "配信設定ページ" in ja


def test_a_customer_without_decisions_is_told_the_defaults(client_en: Any, hanako: Any) -> None:
    page = client_en.get(f"/w/shop-a/customers/{hanako.pk}/").content.decode()
    assert 'data-testid="no-consents"' in page and "needs an opt-in" in page


def test_the_consent_tab_shows_the_history_with_its_proof(client_en: Any, client_ja: Any, decided: Any) -> None:
    page = client_en.get(f"/w/shop-a/customers/{decided.pk}/consent/").content.decode()
    assert history(page) == [
        ("all", "marketing", "revoked", "preference_page"), ("email", "marketing", "granted", "api")
    ]
    assert "メールマガジンを受け取る（会員登録フォーム）" in page and "すべて配信停止" in page
    # Times in the workspace's zone.
    assert '<time datetime="2026-01-06T09:00:00+09:00">2026-01-06 09:00:00</time>' in page
    assert page.count(">system<") == 2
    ja = client_ja.get(f"/w/shop-a/customers/{decided.pk}/consent/").content.decode()
    assert "同意・撤回を記録" in ja and "履歴" in ja and "文言" in ja


def test_an_agent_records_a_decision_with_its_wording(workspace: Any, hanako: Any) -> None:
    agent = member_client(workspace, "kenji", "agent")
    path = f"/w/shop-a/customers/{hanako.pk}/consent/"
    answer = agent.post(path, {"channel": "sms", "topic": "marketing", "status": "granted",
                               "text": "電話で SMS のキャンペーン案内を希望（2026-01-05 受付）"})
    assert answer.status_code == 302 and answer["Location"] == path
    row = Consent.objects.get()
    assert (row.channel, row.topic, row.status, row.source, row.actor) == (
        "sms", "marketing", "granted", "console", "user kenji")
    assert row.text == "電話で SMS のキャンペーン案内を希望（2026-01-05 受付）"
    page = agent.get(path).content.decode()
    assert history(page) == [("sms", "marketing", "granted", "console")]
    assert "The decision is recorded." in page and ">user kenji<" in page


def test_a_bad_decision_is_refused_beside_its_field(client_en: Any, hanako: Any) -> None:
    path = f"/w/shop-a/customers/{hanako.pk}/consent/"
    answer = client_en.post(path, {"channel": "all", "topic": "transactional", "status": "granted", "text": "x"})
    assert answer.status_code == 400
    assert 'data-field="topic">must be &#x27;marketing&#x27; or &#x27;service&#x27;</p>' in answer.content.decode()
    answer = client_en.post(path, {"channel": "fax", "topic": "service", "status": "revoked", "text": "kept"})
    page = answer.content.decode()
    assert answer.status_code == 400 and 'data-field="channel">must be one of' in page
    assert ">kept</textarea>" in page  # what was typed stays
    assert not Consent.objects.exists()


def test_a_viewer_reads_but_cannot_record(workspace: Any, decided: Any) -> None:
    viewer = member_client(workspace, "yui", "viewer")
    path = f"/w/shop-a/customers/{decided.pk}/consent/"
    page = viewer.get(path).content.decode()
    assert len(history(page)) == 2 and 'data-testid="consent-form"' not in page
    before = Consent.objects.count()
    assert viewer.post(path, {"channel": "all", "topic": "service", "status": "revoked"}).status_code == 403
    assert Consent.objects.count() == before


def test_another_workspaces_customer_is_not_found(client_en: Any, other_workspace: Any, send: Any) -> None:
    from tsunagu.customers.models import Customer

    other = Customer.objects.create(workspace=other_workspace, display_name="他社")
    assert client_en.get(f"/w/shop-a/customers/{other.pk}/consent/").status_code == 404
    assert client_en.post(f"/w/shop-a/customers/{other.pk}/consent/", {"topic": "service"}).status_code == 404
