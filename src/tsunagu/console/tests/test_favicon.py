"""Every page links a favicon served from the console's static files, so browsers do not ask for a missing
/favicon.ico on every page (a 404 and a warning in the log each time)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_pages_link_a_favicon_that_is_served(client_en):
    for url in ["/w/shop-a/", "/w/shop-a/customers/", "/w/shop-a/sources/"]:
        page = client_en.get(url).content.decode()
        href = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page).group(1)
        assert href.startswith("/static/console/favicon")
    response = Client().get(href)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/svg+xml")
    assert b"<svg" in b"".join(response.streaming_content if response.streaming else [response.content])


def test_the_login_page_links_it_too():
    assert 'rel="icon"' in Client().get("/login/").content.decode()
