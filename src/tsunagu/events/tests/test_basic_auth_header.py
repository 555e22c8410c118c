"""A Basic auth header that is not base64 — non-ASCII text included — is a 401 naming the header on every
tracking endpoint, never a 500, whatever write key the body carries."""

from __future__ import annotations

import orjson
import pytest
from django.test import Client

from tsunagu.events.models import Event

pytestmark = pytest.mark.django_db

PATHS = [
    "/v1/identify",
    "/v1/track",
    "/v1/page",
    "/v1/screen",
    "/v1/group",
    "/v1/alias",
    "/v1/batch",
    "/v1/import",
    # analytics.js's short paths and its batching paths
    "/v1/i",
    "/v1/t",
    "/v1/p",
    "/v1/s",
    "/v1/g",
    "/v1/a",
    "/v1/b",
    "/b",
]

EVENT = {"type": "track", "userId": "u1", "anonymousId": "a1", "event": "X", "groupId": "g1", "previousId": "a0"}

HEADERS = [
    "Basic 山田",
    # What a WSGI server hands over for those UTF-8 bytes: each byte read as Latin-1.
    "Basic " + "山田".encode().decode("latin-1"),
    "Basic dXNlcjo=山",
    "basic  é",
]


@pytest.mark.parametrize("header", HEADERS)
@pytest.mark.parametrize("path", PATHS)
def test_a_non_ascii_basic_header_is_a_401(source, path, header):
    event = {**EVENT, "writeKey": source.write_key}
    if path.endswith(("batch", "import")):
        payload: object = {"batch": [event], "writeKey": source.write_key}
    elif path.endswith("b"):
        payload = [event]
    else:
        payload = event
    response = Client().post(path, orjson.dumps(payload), content_type="text/plain", headers={"Authorization": header})
    body = orjson.loads(response.content)
    assert response.status_code == 401, body
    assert body == {
        "success": False,
        "code": "unauthenticated",
        "message": "Authorization header is not valid Basic auth",
        "field": "Authorization",
    }
    assert Event.objects.count() == 0
