"""The messaging REST API: the contract of docs/api.md (paths, fields), secrets never returned, errors
naming the field."""

from __future__ import annotations

import orjson
import pytest

from tsunagu.core.models import AuditEntry
from tsunagu.messaging.models import Channel
from tsunagu.messaging.tests.helpers import api_call as call
from tsunagu.messaging.tests.helpers import identified, work

pytestmark = pytest.mark.django_db

INAPP = [
    {
        "channel": "in_app",
        "locale": "ja",
        "title": "{{ customer.traits.name }}さん、配送のお知らせ",
        "body": "{{ data.item }}",
    },
    {
        "channel": "in_app",
        "locale": "en",
        "title": "Shipping news for {{ customer.traits.name }}",
        "body": "{{ data.item }}",
    },
]


def test_channel_secrets_are_encrypted_and_never_returned(token, settings):
    from tsunagu.messaging.channels.base import ChannelBase

    class Secretive(ChannelBase):
        type = "in_app"
        secret_fields = ("api_secret",)
        required_fields = ("api_secret",)
        optional_fields = ("label",)
        webhooks = ("events",)

    import tsunagu.messaging.api as api_module
    import tsunagu.messaging.selectors as sel
    import tsunagu.messaging.services as svc

    orig = svc.channel_class
    for mod in (svc, api_module, sel):
        mod.channel_class = lambda t: Secretive  # type: ignore[attr-defined]
    try:
        status, body = call(
            "post",
            "/api/v1/channels",
            token,
            {"type": "in_app", "name": "Vault", "config": {"api_secret": "s3cr3t-値", "label": "x"}},
        )
        assert status == 201, body
        assert "s3cr3t" not in orjson.dumps(body).decode()
        assert body["config"] == {"label": "x"} and body["secrets_set"] == ["api_secret"]
        row = Channel.objects.get(pk=body["id"])
        assert "s3cr3t" not in row.secrets and "s3cr3t" not in orjson.dumps(row.config).decode()
        assert body["webhook_urls"] == {"events": f"http://testserver/m/in/{row.webhook_token}/events"}
        settings.TSUNAGU_PUBLIC_URL = "https://cx.example.jp"
        status, body = call("get", f"/api/v1/channels/{row.pk}", token)
        assert body["webhook_urls"]["events"].startswith("https://cx.example.jp/m/in/")
        # PATCH without the secret keeps it; audit entries never hold it.
        status, body = call("patch", f"/api/v1/channels/{row.pk}", token, {"config": {"label": "y"}})
        assert status == 200 and body["secrets_set"] == ["api_secret"] and body["config"] == {"label": "y"}
        from tsunagu.messaging.selectors import channel_config

        assert channel_config(Channel.objects.get(pk=row.pk))["api_secret"] == "s3cr3t-値"
        assert not any("s3cr3t" in orjson.dumps(a.data).decode() for a in AuditEntry.objects.all())
        status, body = call("post", "/api/v1/channels", token, {"type": "in_app", "name": "NoSecret", "config": {}})
        assert status == 400 and body["field"] == "config.api_secret"
    finally:
        for mod in (svc, api_module, sel):
            mod.channel_class = orig  # type: ignore[attr-defined]


def test_unknown_channel_types_and_config_keys_name_the_field(token):
    status, body = call("post", "/api/v1/channels", token, {"type": "fax", "name": "F", "config": {}})
    assert status == 400 and body["field"] == "type"
    status, body = call("post", "/api/v1/channels", token, {"type": "in_app", "name": "I", "config": {"x": 1}})
    assert status == 400 and body["field"] == "config.x"


def test_communications_preview_send_and_read_back(token, workspace, send):
    customer = identified(send, workspace, user_id="u-77", name="花子", email="hanako@example.jp")
    status, body = call(
        "post",
        "/api/v1/communications",
        token,
        {"key": "order-shipped", "name": "発送", "topic": "transactional", "variants": INAPP},
    )
    assert status == 201, body
    assert body["version"] == 1 and body["warnings"] == []
    status, body = call("get", f"/api/v1/communications/order-shipped/preview?customer_id={customer.pk}", token)
    assert status == 200, body
    assert body["subject"] == "花子さん、配送のお知らせ" and body["locale"] == "ja"
    status, body = call(
        "put",
        "/api/v1/communications/order-shipped",
        token,
        {"variants": INAPP[:1] + [{**INAPP[1], "title": "v2 {{ customer.traits.name }}"}]},
    )
    assert status == 200 and body["version"] == 2
    status, body = call("get", "/api/v1/communications/order-shipped/versions", token)
    assert [v["number"] for v in body["items"]] == [2, 1]

    status, body = call(
        "post",
        "/api/v1/sends",
        token,
        {"communication": "order-shipped", "email": "HANAKO@example.jp", "data": {"item": "傘"}},
    )
    assert status == 201, body
    assert body["status"] == "queued"
    send_id = body["id"]
    work()
    status, body = call("get", f"/api/v1/sends/{send_id}", token)
    assert status == 200
    (delivery,) = body["deliveries"]
    assert delivery["channel"] == "in_app" and delivery["status"] == "delivered"
    assert [e["status"] for e in delivery["events"]] == ["queued", "sent", "delivered"]
    status, body = call("get", f"/api/v1/customers/{customer.pk}/messages", token)
    assert [m["text"] for m in body["items"]] == ["傘"] and body["items"][0]["version"] == 2
    status, body = call("get", "/api/v1/messages?q=配送", token)
    assert [m["id"] for m in body["items"]] == [delivery["id"]]
    status, body = call("get", "/api/v1/messages?channel=sms", token)
    assert body["items"] == []
    status, body = call("get", "/api/v1/messages?channel=fax", token)
    assert status == 400 and body["field"] == "channel"

    status, body = call("get", f"/api/v1/customers/{customer.pk}/inbox", token)
    assert body["unread"] == 1 and body["items"][0]["title"] == "花子さん、配送のお知らせ"
    mid = body["items"][0]["id"]
    status, body = call("post", f"/api/v1/customers/{customer.pk}/inbox/{mid}/read", token)
    assert status == 200 and body["read_at"] is not None
    status, body = call("get", f"/api/v1/customers/{customer.pk}/inbox", token)
    assert body["unread"] == 0


def test_sends_name_the_field_at_fault(token, workspace, send):
    identified(send, workspace, user_id="u-1")
    call("post", "/api/v1/communications", token, {"key": "k", "name": "K", "variants": INAPP})
    cases = [
        ({"communication": "k"}, 400, "customer_id"),
        ({"communication": "k", "user_id": "u-1", "email": "a@b.c"}, 400, "customer_id"),
        ({"communication": "k", "user_id": "nobody"}, 404, "user_id"),
        ({"communication": "missing", "user_id": "u-1"}, 404, "communication"),
        ({"communication": "k", "user_id": "u-1", "channel": "sms"}, 400, "channel"),
        ({"communication": "k", "user_id": "u-1", "data": {"x": "\x00"}}, 400, "data"),
    ]
    for payload, status_code, field in cases:
        status, body = call("post", "/api/v1/sends", token, payload)
        assert (status, body.get("field")) == (status_code, field), (payload, body)


def test_workspace_settings_are_one_object_checked_and_audited(token, workspace):
    status, body = call("get", "/api/v1/workspace/settings", token)
    assert body == {
        "default_locale": "ja",
        "timezone": "Asia/Tokyo",
        "allow_private_webhooks": False,
        "message_retention_days": 0,
        "quiet_hours": {},  # the test workspace's (a new one has marketing quiet 21:00–08:00)
        "frequency_caps": [],
        "holidays": None,
    }
    status, body = call(
        "patch", "/api/v1/workspace/settings", token, {"default_locale": "en", "allow_private_webhooks": True}
    )
    assert status == 200 and body["default_locale"] == "en" and body["allow_private_webhooks"] is True
    entry = AuditEntry.objects.filter(action="workspace.settings_changed").get()
    assert entry.data["before"] == {"default_locale": "ja", "allow_private_webhooks": False}
    for payload, field in [
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"allow_private_webhooks": "yes"}, "allow_private_webhooks"),
        ({"colour": "red"}, "colour"),
        ({"message_retention_days": -1}, "message_retention_days"),
    ]:
        status, body = call("patch", "/api/v1/workspace/settings", token, payload)
        assert status == 400 and body["field"] == field, (payload, body)
