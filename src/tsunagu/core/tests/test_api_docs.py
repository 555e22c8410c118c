"""The REST API's docs page (/api/v1/docs) loads Swagger UI from this server, not from a CDN: it works
offline and runs no third-party script on the console's origin."""

from __future__ import annotations

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_docs_page_references_only_same_origin_urls() -> None:
    page = Client().get("/api/v1/docs")
    assert page.status_code == 200
    html = page.content.decode()
    urls = re.findall(r'(?:src|href)="([^"]*)"', html)
    scripts = re.findall(r'<script[^>]*\bsrc="([^"]*)"', html)
    assert any(u.endswith("swagger-ui-bundle.js") for u in scripts), scripts
    foreign = [u for u in urls if not u.startswith("/") or u.startswith("//")]
    assert not foreign, f"not same-origin: {foreign}"


def test_the_swagger_files_it_references_are_served() -> None:
    html = Client().get("/api/v1/docs").content.decode()
    assets = [u for u in re.findall(r'(?:src|href)="(/static/[^"]*)"', html) if u.endswith((".js", ".css"))]
    assert len(assets) >= 3, assets  # the bundle, the initialiser, the stylesheet
    for url in assets:
        response = Client().get(url)
        assert response.status_code == 200, url
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert body, url
    bundle = next(u for u in assets if u.endswith("swagger-ui-bundle.js"))
    assert b"SwaggerUIBundle" in b"".join(Client().get(bundle).streaming_content)


def test_the_openapi_schema_it_renders_is_served() -> None:
    assert Client().get("/api/v1/openapi.json").status_code == 200
