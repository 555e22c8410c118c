"""The console search box takes any text: a NUL character (``%00`` in the URL) or a huge query is not an
error (it was a 500 on PostgreSQL), and the rule lives in the selector, not in the view."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db


def found_ids(response):
    return [int(i) for i in re.findall(r'href="/w/shop-a/customers/(\d+)/"', response.content.decode())]


def test_nul_in_the_query_string_is_ignored(client_en, hanako):
    response = client_en.get("/w/shop-a/customers/?q=%E5%B1%B1%E7%94%B0%00")  # 山田 + NUL
    assert response.status_code == 200
    assert found_ids(response) == [hanako.pk]
    # The box shows what will be searched for, without the NUL.
    assert 'value="山田"' in response.content.decode()


def test_nul_in_a_phone_query(client_en, hanako):
    response = client_en.get("/w/shop-a/customers/", {"q": "090-1234-5678\x00"})
    assert response.status_code == 200
    assert found_ids(response) == [hanako.pk]


def test_a_huge_query_answers(client_en, hanako):
    response = client_en.get("/w/shop-a/customers/", {"q": "ヤマダ " * 3000})
    assert response.status_code == 200
    assert found_ids(response) == [hanako.pk]
