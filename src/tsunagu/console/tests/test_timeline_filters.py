"""The timeline can be narrowed to one channel and to one event type; the pager keeps the filter."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db


def rows(response):
    assert response.status_code == 200
    section = response.content.decode().split('data-testid="timeline"', 1)[1].split("</ol>", 1)[0]
    return re.findall(r'<li class="tl-item">(.*?)</li>', section, flags=re.S)


def test_filter_by_channel(client_en, hanako):
    found = rows(client_en.get(f"/w/shop-a/customers/{hanako.pk}/", {"channel": "line"}))
    assert len(found) == 1 and "Message Read" in found[0]
    assert len(rows(client_en.get(f"/w/shop-a/customers/{hanako.pk}/", {"channel": "web"}))) == 3


def test_filter_by_type(client_en, hanako):
    found = rows(client_en.get(f"/w/shop-a/customers/{hanako.pk}/", {"type": "track"}))
    assert len(found) == 2 and "Message Read" in found[0] and "Order Completed" in found[1]
    found = rows(client_en.get(f"/w/shop-a/customers/{hanako.pk}/", {"type": "page"}))
    assert len(found) == 1 and "Cart" in found[0]


def test_both_filters_combine(client_en, hanako):
    found = rows(client_en.get(f"/w/shop-a/customers/{hanako.pk}/", {"type": "track", "channel": "web"}))
    assert len(found) == 1 and "Order Completed" in found[0]


def test_the_form_offers_channels_and_types_and_shows_the_choice(client_en, hanako):
    page = client_en.get(f"/w/shop-a/customers/{hanako.pk}/", {"type": "track", "channel": "line"}).content.decode()
    form = page.split('class="tl-filter"', 1)[1].split("</form>", 1)[0]
    assert '<option value="line" selected>LINE</option>' in form
    assert '<option value="track" selected>track</option>' in form
    assert '<option value="email">Email</option>' in form
    assert '<option value="identify">identify</option>' in form


def test_unknown_or_empty_filter_values(client_en, hanako):
    assert len(rows(client_en.get(f"/w/shop-a/customers/{hanako.pk}/", {"channel": "", "type": ""}))) == 4
    response = client_en.get(f"/w/shop-a/customers/{hanako.pk}/", {"channel": "fax\x00", "type": "x" * 5000})
    assert response.status_code == 200
    assert "No events match these filters." in response.content.decode()


def test_pages_keep_the_filter(client_en, hanako, send, monkeypatch):
    from tsunagu.console import views

    monkeypatch.setattr(views, "EVENTS_PER_PAGE", 1)
    first = client_en.get(f"/w/shop-a/customers/{hanako.pk}/", {"type": "track"})
    link = re.search(r'rel="next" href="\?([^"]+)"', first.content.decode()).group(1).replace("&amp;", "&")
    assert "type=track" in link
    second = rows(client_en.get(f"/w/shop-a/customers/{hanako.pk}/?{link}"))
    assert len(second) == 1 and "Order Completed" in second[0]
