"""Phones show in the national format people read (090-1234-5678) beside the stored E.164."""

from __future__ import annotations

import re

import pytest

from tsunagu.customers.normalize import phone_national

pytestmark = pytest.mark.django_db


def test_national_format_helper():
    assert phone_national("+819012345678") == "090-1234-5678"
    assert phone_national("+81312345678") == "03-1234-5678"
    assert phone_national("+14155550123") == "+1 415-555-0123"  # a foreign number keeps its country code
    assert phone_national("") == ""
    assert phone_national("not a phone") == ""


def test_customer_page_shows_both(client_en, hanako):
    page = client_en.get(f"/w/shop-a/customers/{hanako.pk}/").content.decode()
    assert re.search(r"\+819012345678</span>\s*<span[^>]*>090-1234-5678</span>", page)


def test_customer_list_shows_both(client_en, hanako):
    page = client_en.get("/w/shop-a/customers/").content.decode()
    assert re.search(r"\+819012345678</span>\s*<span[^>]*>090-1234-5678</span>", page)
