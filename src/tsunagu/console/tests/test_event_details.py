"""Every timeline row opens onto the whole event: ids, times, properties, traits and context as pretty JSON,
escaped like any other text on the page."""

from __future__ import annotations

import html as htmllib
import json
import re

import pytest

pytestmark = pytest.mark.django_db


def details_of(page_html):
    return [
        json.loads(htmllib.unescape(m))
        for m in re.findall(r'<details class="tl-details">.*?<pre[^>]*>(.*?)</pre>', page_html, flags=re.S)
    ]


def test_each_row_has_the_full_payload_and_context(client_en, hanako, send):
    send(
        "/v1/track",
        {
            "userId": "u-hanako",
            "messageId": "m-details-1",
            "event": "Coupon Used",
            "properties": {"coupon": "SPRING", "items": [{"sku": "A-1", "qty": 2}], "note": "<b>大事</b>"},
            "context": {"page": {"url": "https://shop.example.jp/cart?x=1"}, "ip": "203.0.113.9", "locale": "ja-JP"},
            "timestamp": "2026-01-06T00:00:00Z",
        },
    )
    page = client_en.get(f"/w/shop-a/customers/{hanako.pk}/").content.decode()
    payloads = details_of(page)
    assert len(payloads) == 5  # one a row
    newest = payloads[0]
    assert newest["message_id"] == "m-details-1"
    assert newest["type"] == "track" and newest["event"] == "Coupon Used"
    assert newest["properties"]["items"] == [{"sku": "A-1", "qty": 2}]  # nested values in full
    assert newest["context"]["page"]["url"] == "https://shop.example.jp/cart?x=1"
    assert newest["context"]["ip"] == "203.0.113.9"
    assert newest["timestamp"] == "2026-01-06T00:00:00+00:00"
    assert newest["source"] == "Website"
    # Pretty-printed, non-ASCII as written, and the HTML in a property is text, not markup.
    assert "&lt;b&gt;大事&lt;/b&gt;" in page
    assert "<b>大事</b>" not in page
    assert '\n  "context": {' in htmllib.unescape(page)


def test_identify_rows_show_their_traits(client_en, hanako):
    payloads = details_of(client_en.get(f"/w/shop-a/customers/{hanako.pk}/").content.decode())
    identify = next(p for p in payloads if p["type"] == "identify")
    assert identify["traits"]["lastNameKana"] == "ヤマダ"
    assert identify["user_id"] == "u-hanako"
