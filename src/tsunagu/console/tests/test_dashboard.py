"""The dashboard counts today's events in the workspace's time zone (Asia/Tokyo), by channel and by source."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine

from tsunagu.core.permissions import SYSTEM
from tsunagu.events.services import source_create

pytestmark = pytest.mark.django_db

UTC = dt.UTC


def stat(html, name):
    return int(re.search(rf'data-testid="{name}">([\d,]+)<', html).group(1).replace(",", ""))


def bars(html, heading_id):
    section = html.split(f'id="{heading_id}"', 1)[1].split("</section>", 1)[0]
    return [
        (re.sub(r"<[^>]+>", "", label).strip(), int(value.replace(",", "")))
        for label, value in re.findall(
            r'<span class="bar-label">(.*?)</span>\s*<span class="bar-track".*?<span class="bar-value">([\d,]+)</span>',
            section,
            flags=re.S,
        )
    ]


def test_today_starts_at_midnight_in_tokyo_not_utc(client_en, send, workspace):
    store = source_create(workspace=workspace, name="Ginza store", channel="store", actor=SYSTEM)
    # 14:30 UTC on 1 March is 23:30 in Tokyo: still "yesterday" once Tokyo passes midnight.
    with time_machine.travel(dt.datetime(2026, 3, 1, 14, 30, tzinfo=UTC), tick=False):
        send("/v1/track", {"userId": "u1", "event": "Late"})
    with time_machine.travel(dt.datetime(2026, 3, 1, 15, 30, tzinfo=UTC), tick=False):  # 00:30 JST, 2 March
        send("/v1/track", {"userId": "u1", "event": "Early", "context": {"channel": "line"}})
        send("/v1/track", {"userId": "u1", "event": "Early 2", "context": {"channel": "line"}})
        send("/v1/track", {"userId": "u2", "event": "Visit"}, write_key=store.write_key)
        html = client_en.get("/w/shop-a/").content.decode()
    assert stat(html, "events-today") == 3
    assert stat(html, "event-count") == 4
    assert stat(html, "customer-count") == 2
    assert "2026-03-02" in html
    assert bars(html, "by-channel") == [("LINE", 2), ("Store", 1)]
    assert bars(html, "by-source") == [("Website", 2), ("Ginza store", 1)]


def test_bar_widths_are_relative_to_the_largest(client_en, send):
    for _ in range(4):
        send("/v1/track", {"userId": "u1", "event": "A"})
    send("/v1/track", {"userId": "u1", "event": "B", "context": {"channel": "email"}})
    html = client_en.get("/w/shop-a/").content.decode()
    widths = re.findall(r'bar-fill ch-fill-(\w+)" style="width: ([\d.]+)%"', html)
    assert widths == [("web", "100.0"), ("email", "25.0")]


def test_empty_workspace(client_en):
    html = client_en.get("/w/shop-a/").content.decode()
    assert stat(html, "events-today") == 0
    assert "No events yet today." in html
    assert "No customers yet." in html


def test_recent_customers_link_to_their_profiles(client_en, hanako):
    html = client_en.get("/w/shop-a/").content.decode()
    assert f'href="/w/shop-a/customers/{hanako.pk}/"' in html
    assert "ヤマダ ハナコ" in html
