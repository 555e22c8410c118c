"""Every error of the REST API has the one documented JSON shape (docs/api.md):
``{"error": <code>, "message": …, "field"?: …}`` — an unparseable body, a wrong method, an unknown path and
an unexpected failure included."""

from __future__ import annotations

import orjson
import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def json_error(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json; charset=utf-8"
    body = orjson.loads(response.content)
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    return body


@pytest.mark.parametrize("raw", [b"{name:", b"\xff\xfe{", b'{"name": "POS"', b"[1,"])
def test_an_unparseable_body_is_invalid_and_names_the_body(api, raw):
    response = Client().post("/api/v1/sources", raw, content_type="application/json", headers=api.headers)
    body = json_error(response, 400, "invalid")
    assert body["field"] == "body"
    assert body["message"].startswith("body: ")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("delete", "/api/v1/customers", {"GET"}),
        ("post", "/api/v1/customers/1", {"GET"}),
        ("put", "/api/v1/customers/1/events", {"GET"}),
        ("get", "/api/v1/sources/1/rotate-key", {"POST"}),
        ("patch", "/api/v1/sources", {"GET", "POST"}),
    ],
)
def test_a_wrong_method_is_a_json_405_with_allow(api, method, path, allowed):
    response = getattr(Client(), method)(path, headers=api.headers)
    body = json_error(response, 405, "method_not_allowed")
    assert {m.strip() for m in response["Allow"].split(",")} == allowed
    assert method.upper() in body["message"]


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/customers/1/nope", "/api/v1/", "/api/v1/customers/"])
def test_an_unknown_path_is_a_json_404(api, path):
    body = json_error(Client().get(path, headers=api.headers), 404, "not_found")
    assert path in body["message"]
    # Without a token too: which paths exist is public (the OpenAPI document lists them).
    json_error(Client().get(path), 404, "not_found")


def test_an_unexpected_failure_is_a_json_500(api, monkeypatch):
    from tsunagu.customers import api as customers_api

    def broken(**kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(customers_api, "customer_list", broken)
    response = Client(raise_request_exception=False).get("/api/v1/customers", headers=api.headers)
    body = json_error(response, 500, "internal")
    assert "disk on fire" not in body["message"]  # internals stay in the server's log


def test_the_documented_success_path_is_unchanged(api):
    response = Client().get("/api/v1/customers", headers=api.headers)
    assert response.status_code == 200
    assert orjson.loads(response.content) == {"items": [], "next": None}
