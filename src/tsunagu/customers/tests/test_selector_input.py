"""Input rules of the customer selectors, applied once where the data is read: free text loses its NUL
characters (PostgreSQL refuses U+0000 in a parameter) and is bounded in length; an exact identity value
that no stored identity can equal (a NUL, too long) matches nothing instead of reaching the database."""

from __future__ import annotations

import pytest

from tsunagu.customers.selectors import customer_find_by_identity, customer_list, customer_search

pytestmark = pytest.mark.django_db


@pytest.fixture
def yamada(send, workspace):
    send("/v1/identify", {"userId": "u-1", "traits": {"lastName": "山田", "firstName": "花子",
                                                       "email": "hanako@example.jp", "phone": "090-1234-5678"}})
    return customer_list(workspace=workspace, user_id="u-1").get()


@pytest.mark.parametrize("q", ["山田\x00", "\x00山田", "山\x00田", "山田 \x00", "hanako@example.jp\x00"])
def test_search_ignores_nul_characters(workspace, yamada, q):
    assert [c.pk for c in customer_search(workspace=workspace, q=q)] == [yamada.pk]


def test_search_of_nothing_but_nul_lists_everyone(workspace, yamada):
    assert [c.pk for c in customer_search(workspace=workspace, q="\x00\x00")] == [yamada.pk]


def test_phone_search_with_nul(workspace, yamada):
    assert [c.pk for c in customer_search(workspace=workspace, q="090-1234-5678\x00")] == [yamada.pk]


def test_search_text_is_bounded(workspace, yamada):
    # Thousands of words would each become a LIKE condition (SQLite stops at an expression depth of 1000);
    # the selector reads only the first ones, so this still finds 山田花子.
    q = "山田 花子 " * 5000
    assert [c.pk for c in customer_search(workspace=workspace, q=q)] == [yamada.pk]
    assert [c.pk for c in customer_list(workspace=workspace, q=q)] == [yamada.pk]


@pytest.mark.parametrize(
    "filters",
    [
        {"email": "hanako@example.jp\x00"},
        {"phone": "090-1234-5678\x00"},
        {"user_id": "u-1\x00"},
        {"anonymous_id": "\x00"},
        {"q": "山田\x00", "user_id": "\x00u-1"},
    ],
)
def test_exact_filters_with_nul_match_nothing(workspace, yamada, filters):
    assert list(customer_list(workspace=workspace, **filters)) == []


def test_exact_filters_are_bounded(workspace, yamada):
    assert list(customer_list(workspace=workspace, user_id="u" * 100_000)) == []
    assert list(customer_list(workspace=workspace, email="a" * 100_000 + "@example.jp")) == []


def test_identity_lookup_with_nul_or_a_huge_value(workspace, yamada):
    assert customer_find_by_identity(workspace=workspace, type_="user_id", value="u-1").pk == yamada.pk
    assert customer_find_by_identity(workspace=workspace, type_="user_id", value="u-1\x00") is None
    assert customer_find_by_identity(workspace=workspace, type_="user_id\x00", value="u-1") is None
    assert customer_find_by_identity(workspace=workspace, type_="user_id", value="u" * 100_000) is None
