"""The 360° page: profile, traits, identities, merges and the cross-channel timeline in the workspace's time."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db


def timeline_rows(html):
    section = html.split('data-testid="timeline"', 1)[1].split("</ol>", 1)[0]
    return re.findall(r'<li class="tl-item">(.*?)</li>', section, flags=re.S)


def test_profile_shows_names_furigana_and_e164_phone(client_en, hanako):
    html = client_en.get(f"/w/shop-a/customers/{hanako.pk}/").content.decode()
    assert "山田 花子" in html
    assert "ヤマダ ハナコ" in html
    assert "+819012345678" in html
    assert "hanako@example.jp" in html
    assert "u-hanako" in html


def test_identities_list_shows_every_identity(client_en, hanako):
    html = client_en.get(f"/w/shop-a/customers/{hanako.pk}/").content.decode()
    table = html.split('data-testid="identities"', 1)[1].split("</ul>", 1)[0]
    for type_, value in [("user_id", "u-hanako"), ("email", "hanako@example.jp"), ("phone", "+819012345678")]:
        assert re.search(rf">{type_}<.*?>{re.escape(value)}<", table, flags=re.S), type_


def test_traits_table(client_en, hanako):
    html = client_en.get(f"/w/shop-a/customers/{hanako.pk}/").content.decode()
    assert re.search(r">plan</th>\s*<td[^>]*>gold</td>", html)


def test_timeline_is_newest_first_across_channels_in_tokyo_time(client_en, hanako):
    html = client_en.get(f"/w/shop-a/customers/{hanako.pk}/").content.decode()
    rows = timeline_rows(html)
    assert len(rows) == 4
    # 02:00Z is 11:00 JST; 20:00Z on the 4th is 05:00 JST on the 5th.
    assert "11:00:00" in rows[0] and "Message Read" in rows[0] and "ch-line" in rows[0]
    # Properties are summarised in key order: JSON spellings for literals, sizes for nested values, the
    # rest elided.
    assert "campaign: null · extra: 1 · meta: {…} · read: true …" in rows[0]
    assert "10:00:00" in rows[1] and "Order Completed" in rows[1] and "revenue: 4980" in rows[1]
    assert "09:00:00" in rows[2] and ">identify<" in rows[2]
    assert "05:00:00" in rows[3] and "Cart" in rows[3] and ">page<" in rows[3]
    # All four fall on 5 January in Tokyo, though the page view was on the 4th in UTC.
    assert html.count('class="tl-day"') == 1
    assert "2026-01-05" in html


def test_last_activity_per_channel(client_en, hanako):
    html = client_en.get(f"/w/shop-a/customers/{hanako.pk}/").content.decode()
    section = html.split('id="h-channels"', 1)[1].split("</section>", 1)[0]
    assert re.search(r"ch-line[^>]*>LINE</span><time[^>]*>2026-01-05 11:00<", section)
    assert re.search(r"ch-web[^>]*>Web</span><time[^>]*>2026-01-05 10:00<", section)


def test_timeline_pages_with_an_older_link(client_en, hanako, send, monkeypatch):
    from tsunagu.console import views

    monkeypatch.setattr(views, "EVENTS_PER_PAGE", 3)
    first = client_en.get(f"/w/shop-a/customers/{hanako.pk}/").content.decode()
    assert len(timeline_rows(first)) == 3
    cursor = re.search(r'href="\?cursor=([^"]+)"', first).group(1)
    older = client_en.get(f"/w/shop-a/customers/{hanako.pk}/?cursor={cursor}").content.decode()
    rows = timeline_rows(older)
    assert len(rows) == 1 and "Cart" in rows[0]
    assert 'href="?cursor=' not in older  # no page after the last


def test_merges_are_listed_and_a_merged_id_redirects(client_en, send, workspace):
    from tsunagu.customers.selectors import customer_list

    send("/v1/identify", {"userId": "u1", "traits": {"name": "山田 太郎"}})
    send("/v1/page", {"anonymousId": "phone-app", "name": "Top"})
    send("/v1/track", {"anonymousId": "phone-app", "event": "Coupon Viewed", "context": {"channel": "app"}})
    known = customer_list(workspace=workspace, user_id="u1").get()
    anonymous = customer_list(workspace=workspace, anonymous_id="phone-app").get()
    assert known.pk != anonymous.pk
    send("/v1/identify", {"userId": "u1", "anonymousId": "phone-app", "messageId": "tie-1"})

    html = client_en.get(f"/w/shop-a/customers/{known.pk}/").content.decode()
    section = html.split('id="h-merges"', 1)[1].split("</section>", 1)[0]
    link = f'<a href="/w/shop-a/customers/{anonymous.pk}/">#{anonymous.pk}</a>'
    assert f"Profile {link} was merged into this one" in section
    assert "2 events moved" in section
    # The anonymous profile's events now sit on the known customer's timeline.
    assert "Coupon Viewed" in html and "ch-app" in html
    # The old id keeps working: it leads to the profile it was merged into.
    response = client_en.get(f"/w/shop-a/customers/{anonymous.pk}/")
    assert response.status_code == 302
    assert response["Location"] == f"/w/shop-a/customers/{known.pk}/"


def test_profile_without_anything_renders(client_en, send, workspace):
    from tsunagu.customers.selectors import customer_list

    send("/v1/track", {"anonymousId": "anon-x", "event": "Viewed"})
    customer = customer_list(workspace=workspace).get()
    html = client_en.get(f"/w/shop-a/customers/{customer.pk}/").content.decode()
    assert f"Customer #{customer.pk}" in html
    assert "No traits." in html and "No merges." in html
    assert len(timeline_rows(html)) == 1


def test_unknown_customer_is_404(client_en, hanako):
    assert client_en.get(f"/w/shop-a/customers/{hanako.pk + 1000}/").status_code == 404


def test_a_damaged_timeline_cursor_shows_the_newest_events(client_en, hanako):
    response = client_en.get(f"/w/shop-a/customers/{hanako.pk}/", {"cursor": "garbage"})
    assert response.status_code == 200
    rows = timeline_rows(response.content.decode())
    assert len(rows) == 4 and "Message Read" in rows[0]
