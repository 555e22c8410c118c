"""One search box finds customers by name in kanji or kana of any width, by email, phone or userId."""

from __future__ import annotations

import re

import pytest

from tsunagu.core.permissions import SYSTEM

pytestmark = pytest.mark.django_db


def found_ids(client, q, slug="shop-a", **extra):
    response = client.get(f"/w/{slug}/customers/", {"q": q, **extra})
    assert response.status_code == 200
    return [int(i) for i in re.findall(rf'href="/w/{slug}/customers/(\d+)/"', response.content.decode())]


@pytest.fixture
def people(send, workspace):
    """Customers whose furigana come in katakana, hiragana and half-width katakana."""
    from tsunagu.customers.selectors import customer_list

    for user_id, traits in [
        ("k1", {"lastName": "佐藤", "lastNameKana": "さとう", "firstNameKana": "けん"}),
        ("k2", {"lastName": "鈴木", "lastNameKana": "スズキ", "firstNameKana": "ユイ"}),
        ("k3", {"lastName": "高橋", "lastNameKana": "ﾀｶﾊｼ"}),
    ]:
        send("/v1/identify", {"userId": user_id, "traits": traits})
    return {c.user_id: c.pk for c in customer_list(workspace=workspace)}


def test_katakana_query_finds_hiragana_furigana(client_en, people):
    assert found_ids(client_en, "サトウ") == [people["k1"]]


def test_hiragana_query_finds_katakana_furigana(client_en, people):
    assert found_ids(client_en, "すずき") == [people["k2"]]


def test_half_width_katakana_query_finds_both(client_en, people):
    assert found_ids(client_en, "ｻﾄｳ") == [people["k1"]]
    assert found_ids(client_en, "ｽｽﾞｷ") == [people["k2"]]


def test_half_width_furigana_is_found_by_full_width_and_hiragana(client_en, people):
    assert found_ids(client_en, "タカハシ") == [people["k3"]]
    assert found_ids(client_en, "たかはし") == [people["k3"]]


def test_full_name_in_kana_and_kanji(client_en, people):
    assert found_ids(client_en, "スズキユイ") == [people["k2"]]
    assert found_ids(client_en, "鈴木") == [people["k2"]]
    assert found_ids(client_en, "すずき ゆい") == [people["k2"]]


def test_no_match_says_so(client_en, people):
    response = client_en.get("/w/shop-a/customers/", {"q": "ワタナベ"})
    assert found_ids(client_en, "ワタナベ") == []
    assert "No customers match" in response.content.decode()


def test_exact_email_and_phone_lookup(client_en, hanako, people):
    assert found_ids(client_en, "HANAKO@example.jp") == [hanako.pk]
    # The phone was sent as 090-1234-5678; any way of writing it finds the E.164 identity.
    assert found_ids(client_en, "+81 90 1234 5678") == [hanako.pk]
    assert found_ids(client_en, "０９０１２３４５６７８") == [hanako.pk]
    assert found_ids(client_en, "090-9999-0000") == []


def test_user_id_search(client_en, hanako, people):
    assert found_ids(client_en, "u-hanako") == [hanako.pk]


def test_search_is_scoped_to_the_workspace(client_en, other_workspace, people):
    from tsunagu.events.services import source_create

    b_source = source_create(workspace=other_workspace, name="B", channel="web", actor=SYSTEM)
    import base64

    import orjson
    from django.test import Client

    Client().post(
        "/v1/identify",
        orjson.dumps({"userId": "b1", "traits": {"lastNameKana": "サトウ"}}),
        content_type="application/json",
        headers={"Authorization": "Basic " + base64.b64encode(f"{b_source.write_key}:".encode()).decode()},
    )
    assert found_ids(client_en, "サトウ") == [people["k1"]]


def test_list_is_paginated_with_a_next_link(client_en, send, monkeypatch):
    from tsunagu.console import views

    monkeypatch.setattr(views, "CUSTOMERS_PER_PAGE", 2)
    for i in range(5):
        send("/v1/identify", {"userId": f"p{i}", "traits": {"lastNameKana": "ページ"}})
    response = client_en.get("/w/shop-a/customers/", {"q": "ぺーじ"})
    first = found_ids(client_en, "ぺーじ")
    assert len(first) == 2
    cursor = re.search(r'cursor=([^"&]+)"', response.content.decode()).group(1)
    second = found_ids(client_en, "ぺーじ", cursor=cursor.replace("%3D", "="))
    assert len(second) == 2 and not set(first) & set(second)
    assert max(second) < min(first)  # newest first


def test_a_damaged_cursor_shows_the_first_page(client_en, hanako):
    assert found_ids(client_en, "", cursor="not-a-cursor!!") == [hanako.pk]
