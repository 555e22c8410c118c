"""Browsers: analytics.js posts text/plain JSON with the writeKey in the body, to one-letter paths (and a
bare array to /b when batching), from another origin — so the tracking API must answer CORS."""

from __future__ import annotations

import orjson
import pytest
from django.test import Client

from tsunagu.events.models import Event
from tsunagu.testing.pipeline import apply_all

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("path", "body", "type_"),
    [
        ("/v1/t", {"anonymousId": "a1", "event": "Clicked"}, "track"),
        ("/v1/p", {"anonymousId": "a1", "name": "Home"}, "page"),
        ("/v1/i", {"anonymousId": "a1", "userId": "u1"}, "identify"),
        ("/v1/s", {"anonymousId": "a1", "name": "Cart"}, "screen"),
        ("/v1/g", {"anonymousId": "a1", "groupId": "g1"}, "group"),
        ("/v1/a", {"userId": "u1", "previousId": "a1"}, "alias"),
    ],
)
def test_analytics_js_short_paths(source, path, body, type_):
    response = Client().post(
        path,
        orjson.dumps({**body, "writeKey": source.write_key}),
        content_type="text/plain",
        headers={"Origin": "https://shop.example.jp"},
    )
    assert response.status_code == 200, response.content
    assert response["Access-Control-Allow-Origin"] == "*"
    apply_all(source.workspace)
    assert Event.objects.get().type == type_


def test_batching_mode_posts_a_bare_array_to_b(source):
    events = [
        {"type": "page", "anonymousId": "a1", "name": "Home", "writeKey": source.write_key},
        {"type": "track", "anonymousId": "a1", "event": "Viewed", "writeKey": source.write_key},
    ]
    response = Client().post("/b", orjson.dumps(events), content_type="text/plain")
    assert response.status_code == 200, response.content
    apply_all(source.workspace)
    assert sorted(Event.objects.values_list("type", flat=True)) == ["page", "track"]


def test_bare_array_without_write_key_is_refused(source):
    response = Client().post("/b", orjson.dumps([{"type": "page", "anonymousId": "a1"}]), content_type="text/plain")
    assert response.status_code == 401
    assert orjson.loads(response.content)["field"] == "writeKey"
    assert not Event.objects.exists()


def test_cors_preflight(source):
    response = Client().options(
        "/v1/batch",
        headers={
            "Origin": "https://shop.example.jp",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert "Authorization" in response["Access-Control-Allow-Headers"]
