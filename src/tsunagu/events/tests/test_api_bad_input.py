"""The REST API answers bad query parameters, ids, cursors and bodies with a 4xx naming the field, never a 5xx."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest
from django.test import Client

from tsunagu.customers.models import Customer
from tsunagu.testing.assertions import assert_names

pytestmark = pytest.mark.django_db


# -- the REST API ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/customers", {"limit": "0"}, "limit"),
        ("/api/v1/customers", {"limit": "-5"}, "limit"),
        ("/api/v1/customers", {"limit": "501"}, "limit"),
        ("/api/v1/customers", {"limit": "abc"}, "limit"),
        ("/api/v1/customers", {"limit": "1e3"}, "limit"),
        ("/api/v1/customers", {"limit": "9" * 40}, "limit"),
        ("/api/v1/customers", {"cursor": "not-a-cursor"}, "cursor"),
        ("/api/v1/customers", {"cursor": "WzEsMl0"}, "cursor"),
        ("/api/v1/customers", {"cursor": "WyJ4Il0"}, "cursor"),
        ("/api/v1/customers", {"cursor": "!!!"}, "cursor"),
        ("/api/v1/sources", {"limit": "0"}, "limit"),
        ("/api/v1/sources", {"cursor": "%%%"}, "cursor"),
    ],
)
def test_api_bad_query_params(api, path, params, field):
    status, body = api.get(path, **params)
    assert_names(status, body, 400, field)


def cursor_of(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize("last_id", [10**30, 2**63, -1, 0, True, 1.5, None])
def test_api_cursor_with_an_id_out_of_range(api, last_id):
    status, body = api.get("/api/v1/customers", cursor=cursor_of([last_id]))
    assert_names(status, body, 400, "cursor")


def test_api_timeline_bad_cursors(api, send):
    send("/v1/track", {"userId": "u1", "event": "X"})
    customer_id = Customer.objects.get().pk
    for cursor in [
        "garbage",
        cursor_of([1]),
        cursor_of(["not a date", 1]),
        cursor_of(["2026-01-01T00:00:00Z", "x"]),
        cursor_of(["0001-01-01T00:00:00+14:00", 5]),
        cursor_of(["2026-01-01T00:00:00Z", 2**70]),
        cursor_of(["2026-01-01T00:00:00Z", True]),
    ]:
        status, body = api.get(f"/api/v1/customers/{customer_id}/events", cursor=cursor)
        assert_names(status, body, 400, "cursor")
    status, body = api.get(f"/api/v1/customers/{customer_id}/events", limit="zero")
    assert_names(status, body, 400, "limit")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/customers/987654",
        "/api/v1/customers/987654/events",
        "/api/v1/customers/987654/merges",
    ],
)
def test_api_unknown_customer(api, path):
    status, body = api.get(path)
    assert_names(status, body, 404, "customer_id")
    assert "987654" in body["message"]


def test_api_unknown_source(api):
    status, body = api.get("/api/v1/sources/424242")
    assert_names(status, body, 404, "source_id")
    status, body = api.post("/api/v1/sources/424242/rotate-key")
    assert_names(status, body, 404, "source_id")


@pytest.mark.parametrize("customer_id", ["9" * 30, "-1", "0"])
@pytest.mark.parametrize("suffix", ["", "/events", "/merges"])
def test_api_customer_ids_out_of_range(api, customer_id, suffix):
    status, body = api.get(f"/api/v1/customers/{customer_id}{suffix}")
    assert_names(status, body, 404, "customer_id")


@pytest.mark.parametrize("customer_id", ["abc", "1.5", "1e3", "%20"])
@pytest.mark.parametrize("suffix", ["", "/events", "/merges"])
def test_api_non_numeric_customer_id(api, customer_id, suffix):
    status, body = api.get(f"/api/v1/customers/{customer_id}{suffix}")
    assert_names(status, body, 400, "customer_id")
    assert "integer" in body["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": 5}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "POS", "channel": "fax"}, "channel"),
        ({"name": "POS", "channel": ["web"]}, "channel"),
        ({"name": "Web\x00"}, "name"),
        ({"name": "Web", "channel": "web\x00"}, "channel"),
    ],
)
def test_api_create_source_bad_body(api, body, field):
    status, answer = api.post("/api/v1/sources", body)
    assert_names(status, answer, 400, field)


def test_api_create_source_malformed_json(api):
    response = Client().post("/api/v1/sources", b"{name:", content_type="application/json", headers=api.headers)
    assert response.status_code == 400, response.content
    assert orjson.loads(response.content)["message"]


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"email": "a\x00b@example.com"}, "NUL"),
        ({"phone": "090\x001234"}, "NUL"),
        ({"user_id": "u\x00"}, "NUL"),
        ({"anonymous_id": "\x00"}, "NUL"),
        ({"q": "山田\x00"}, "NUL"),
        ({"email": "x" * 10_000}, "1000 characters"),
    ],
)
def test_api_filters_with_values_a_database_refuses(api, params, why):
    status, body = api.get("/api/v1/customers", **params)
    (field,) = params
    assert_names(status, body, 400, field)
    assert why in body["message"], body
