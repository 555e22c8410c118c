"""The customer list says how many customers there are, or how many match the search."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db


def total(client, **params):
    page = client.get("/w/shop-a/customers/", params).content.decode()
    return re.search(r'data-testid="customer-total">(.*?)<', page).group(1)


def test_total_of_all_and_of_a_search(client_en, client_ja, send, monkeypatch):
    from tsunagu.console import views

    monkeypatch.setattr(views, "CUSTOMERS_PER_PAGE", 2)  # the total counts every page, not this one
    for i in range(5):
        send("/v1/identify", {"userId": f"p{i}", "traits": {"lastNameKana": "ヤマダ" if i < 3 else "スズキ"}})
    assert total(client_en) == "5 customers"
    assert total(client_en, q="やまだ") == "3 customers match"
    assert total(client_en, q="わたなべ") == "0 customers match"
    assert total(client_ja) == "5 人の顧客"
    assert total(client_ja, q="やまだ") == "3 人が一致"


def test_one_customer_is_singular(client_en, hanako):
    assert total(client_en) == "1 customer"
