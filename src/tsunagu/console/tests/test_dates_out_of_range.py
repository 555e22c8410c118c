"""Dates the workspace's time zone cannot hold (9999-12-31 23:59:59 UTC is past datetime.max in Tokyo) render,
in UTC and marked as such, on every console page: data already stored must never make a page answer 500."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from tsunagu.customers.models import Customer, Identity, Merge
from tsunagu.events.models import Event

pytestmark = pytest.mark.django_db

FAR = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
FAR_MS = FAR.timestamp() * 1000.0


@pytest.fixture
def far_future(hanako, workspace):
    """Hanako, with one event, her first and last seen, an identity, her LINE activity and a merge all at
    the last second of year 9999 — as an import or an SDK with a broken clock could store them — and an SMS
    activity time no datetime can hold."""
    event = Event.objects.filter(customer_id=hanako.pk, event="Order Completed").get()
    Event.objects.filter(pk=event.pk).update(timestamp=FAR, received_at=FAR, sent_at=FAR, original_timestamp=FAR)
    Customer.objects.filter(pk=hanako.pk).update(
        first_seen=FAR, last_seen=FAR, channels={**hanako.channels, "line": FAR_MS, "sms": 10.0**20}
    )
    Identity.objects.filter(customer_id=hanako.pk, type="email").update(first_seen=FAR)
    ghost = Customer.objects.create(workspace=workspace, merged_into=hanako)
    Merge.objects.create(workspace=workspace, into=hanako, other=ghost, created_at=FAR)
    return hanako


def test_dashboard_renders_a_far_future_last_seen(client_en, far_future):
    response = client_en.get("/w/shop-a/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<time datetime="9999-12-31T23:59:59+00:00">9999-12-31 23:59 UTC</time>' in html


def test_customer_list_renders_a_far_future_last_seen(client_en, far_future):
    response = client_en.get("/w/shop-a/customers/")
    assert response.status_code == 200
    assert '<time datetime="9999-12-31T23:59:59+00:00">9999-12-31 23:59 UTC</time>' in response.content.decode()


def test_customer_page_renders_every_far_future_date(client_en, far_future):
    response = client_en.get(f"/w/shop-a/customers/{far_future.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    # First seen, last seen, the LINE activity, the email's first seen and the merge.
    assert html.count(">9999-12-31 23:59 UTC</time>") == 5
    assert "ch-sms" not in html.split('id="h-channels"', 1)[1].split("</section>", 1)[0]
    # The timeline: its own day heading, the time of day in UTC; the other events stay in Tokyo time.
    assert "<h3>9999-12-31 (Fri) UTC</h3>" in html
    assert '<time class="tl-time" datetime="9999-12-31T23:59:59+00:00">23:59:59 UTC</time>' in html
    assert ">11:00:00</time>" in html


def test_a_date_in_range_is_shown_in_the_workspace_time_zone(client_en, hanako):
    html = client_en.get(f"/w/shop-a/customers/{hanako.pk}/").content.decode()
    assert '<time datetime="2026-01-05T05:00:00+09:00">2026-01-05 05:00</time>' in html  # first seen: the page view
    assert " UTC</time>" not in html


def test_the_filter_tolerates_both_ends_and_non_dates():
    from tsunagu.console.templatetags.console_dates import when

    early = dt.datetime(1, 1, 1, 0, 0, tzinfo=dt.UTC)
    with timezone.override("America/Los_Angeles"):  # 0001-01-01 00:00 UTC is before year 1 there
        assert when(early, "Y-m-d H:i") == "0001-01-01 00:00 UTC"
        assert when(early, "c") == "0001-01-01T00:00:00+00:00"
        assert when(dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC), "Y-m-d H:i") == "2026-01-05 04:00"
    assert when(None, "Y-m-d") == ""
    assert when("not a date", "Y-m-d") == ""


def test_no_console_template_uses_the_intolerant_date_filter():
    from pathlib import Path

    templates = Path(__file__).resolve().parents[1] / "templates"
    offenders = [p.name for p in templates.rglob("*.html") if "|date:" in p.read_text(encoding="utf-8")]
    assert offenders == []
