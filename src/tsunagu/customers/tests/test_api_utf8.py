"""The REST API answers UTF-8 JSON as written: 山田 travels as its UTF-8 bytes, not as \\u5c71\\u7530."""

from __future__ import annotations

import orjson
import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_customer_names_are_utf8_not_escaped(api, send, workspace):
    traits = {"lastName": "山田", "lastNameKana": "ヤマダ", "name": "山田 花子"}
    send("/v1/identify", {"userId": "u-1", "traits": traits})
    response = Client().get("/api/v1/customers", {"user_id": "u-1"}, headers=api.headers)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert "山田".encode() in response.content
    assert "ヤマダ".encode() in response.content
    assert b"\\u" not in response.content
    assert orjson.loads(response.content)["items"][0]["family_name"] == "山田"


def test_a_created_source_is_answered_in_utf8(api):
    response = Client().post(
        "/api/v1/sources", orjson.dumps({"name": "銀座店", "channel": "store"}), content_type="application/json",
        headers=api.headers,
    )
    assert response.status_code == 201
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert b'"name": "\xe9\x8a\x80\xe5\xba\xa7\xe5\xba\x97"' in response.content  # 銀座店
