"""A send drawn as its chain of attempts: on the customer's Messages tab, on the page of a message it made
and on its own page — channel, status, the reason code translated (ja and en), times —, a delayed send's
status and due time; and the overview's counts of sends skipped, delayed or moved on by reason."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
import time_machine

from tsunagu.core.permissions import SYSTEM
from tsunagu.messaging.services import channel_create, communication_create, send_create

pytestmark = pytest.mark.django_db

# 23:00 in Tokyo: inside the default marketing quiet hours (21:00–08:00).
LATE = dt.datetime(2026, 1, 5, 14, 0, tzinfo=dt.UTC)
EMAIL = {"channel": "email", "locale": "ja", "subject": "発送のお知らせ", "html": "<p>発送しました</p>"}


@pytest.fixture
def sends(workspace: Any, hanako: Any) -> dict[str, Any]:
    """Three sends to 花子 at 23:00 JST: LINE → SMS → email (no LINE or SMS channel: made by email), a
    marketing email without opt-in (skipped), a marketing in-app message (delayed until 08:00)."""
    workspace.quiet_hours = {"marketing": {"start": "21:00", "end": "08:00"}}
    workspace.save(update_fields=["quiet_hours"])
    smtp = {"host": "127.0.0.1", "port": 2525, "security": "none", "from_email": "info@shop.example"}
    channel_create(workspace=workspace, type="email", name="SMTP", config=smtp, actor=SYSTEM)
    variants = [{"channel": "line", "locale": "ja", "text": "発送しました"},
                {"channel": "sms", "locale": "ja", "text": "発送しました"}, EMAIL]
    communication_create(workspace=workspace, key="shipped", name="発送", topic="transactional", variants=variants,
                         actor=SYSTEM)
    communication_create(workspace=workspace, key="news", name="ニュース", topic="marketing",
                         variants=[{**EMAIL, "subject": "ニュース"}], actor=SYSTEM)
    communication_create(workspace=workspace, key="sale", name="セール", topic="marketing",
                         variants=[{"channel": "in_app", "locale": "ja", "title": "セール", "body": "本日"}],
                         actor=SYSTEM)
    with time_machine.travel(LATE, tick=False):
        return {key: send_create(workspace=workspace, communication=key, customer=hanako, actor=SYSTEM)
                for key in ("shipped", "news", "sale")}


def chains(page: str) -> list[list[tuple[str, str, str]]]:
    """Each chain on the page as [(channel, status, reason)]."""
    out = []
    for block in re.findall(r'<ol class="chain".*?</ol>', page, re.S):
        steps = re.findall(r'data-channel="(\w+)" data-status="(\w+)"(?: data-reason="(\w+)")?', block)
        out.append(steps)
    return out


def test_the_customers_messages_tab_draws_each_send_as_its_chain(client_ja: Any, client_en: Any, hanako: Any,
                                                                sends: dict[str, Any]) -> None:
    with time_machine.travel(LATE + dt.timedelta(minutes=1), tick=False):
        ja = client_ja.get(f"/w/shop-a/customers/{hanako.pk}/messages/").content.decode()
        en = client_en.get(f"/w/shop-a/customers/{hanako.pk}/messages/").content.decode()
    # Newest first: sale (delayed), news (skipped), shipped.
    assert chains(ja) == [
        [],
        [("email", "skipped", "no_consent")],
        [("line", "skipped", "no_address"), ("sms", "skipped", "no_address"), ("email", "queued", "")],
    ]
    sale = re.search(rf'data-testid="send-{sends["sale"].pk}">(.*?)</div>', ja, re.S).group(1)
    assert '<span class="status st-scheduled" data-testid="send-status">予約済み</span>' in sale
    # Due when the quiet hours end: 08:00 the next morning, in the workspace's time zone.
    assert '<time datetime="2026-01-06T08:00:00+09:00">2026-01-06 08:00</time>' in sale
    for text in ("同意なし", "宛先なし", "スキップ"):
        assert text in ja, text
    assert "No consent" in en and "No address" in en and ">Skipped<" in en and ">Scheduled<" in en
    assert "no line channel is configured" in en  # the engine's detail, beside the code's label


def test_a_messages_page_and_the_sends_page_show_the_chain(client_en: Any, sends: dict[str, Any]) -> None:
    shipped = sends["shipped"]
    delivery = shipped.deliveries.get()
    page = client_en.get(f"/w/shop-a/messaging/archive/{delivery.pk}/").content.decode()
    assert chains(page) == [[("line", "skipped", "no_address"), ("sms", "skipped", "no_address"),
                             ("email", "queued", "")]]
    assert f'href="/w/shop-a/messaging/sends/{shipped.pk}/"' in page
    own = client_en.get(f"/w/shop-a/messaging/sends/{shipped.pk}/").content.decode()
    assert chains(own) == chains(page)
    assert '<time datetime="2026-01-05T23:00:00+09:00">2026-01-05 23:00:00</time>' in own
    assert client_en.get("/w/shop-a/messaging/sends/999999/").status_code == 404


def test_another_workspaces_send_is_not_found(client_en: Any, other_workspace: Any, sends: dict[str, Any]) -> None:
    from tsunagu.core.services import membership_add

    membership_add(workspace=other_workspace, user=client_en.get("/").wsgi_request.user, role="owner", actor=SYSTEM)
    assert client_en.get(f"/w/shop-b/messaging/sends/{sends['shipped'].pk}/").status_code == 404


def test_the_overview_counts_sends_by_reason(client_ja: Any, client_en: Any, sends: dict[str, Any]) -> None:
    with time_machine.travel(LATE + dt.timedelta(hours=1), tick=False):
        en = client_en.get("/w/shop-a/messaging/").content.decode()
        ja = client_ja.get("/w/shop-a/messaging/").content.decode()
    rows = re.findall(r'<tr data-reason="(\w+)"><th scope="row">([^<]+)</th><td class="num">(\d+)</td>'
                      r'<td class="num">(\d+)</td><td class="num">(\d+)</td></tr>', en)
    # In the order the checks run; the shipped send counts once for no_address though two steps had it.
    assert rows == [("no_address", "No address", "1", "0", "0"), ("no_consent", "No consent", "1", "0", "0"),
                    ("quiet_hours", "Quiet hours", "0", "1", "0")]
    assert "1 send is waiting" in en
    assert '<th scope="row">配信を控える時間帯</th>' in ja
    # A week later the counts are empty; the delayed send still waits (the worker has not run).
    with time_machine.travel(LATE + dt.timedelta(days=8), tick=False):
        later = client_en.get("/w/shop-a/messaging/").content.decode()
    assert 'data-reason=' not in later and "Nothing was skipped, delayed or moved on." in later
