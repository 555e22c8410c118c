"""Sources: create one, rotate its key (POST with CSRF), and copy snippets that point at this server."""

from __future__ import annotations

import base64
import html
import re

import orjson
import pytest
from django.test import Client

from tsunagu.core.permissions import SYSTEM
from tsunagu.events.selectors import source_get, source_list

pytestmark = pytest.mark.django_db


def track(write_key):
    return Client().post(
        "/v1/track",
        orjson.dumps({"userId": "u1", "event": "Ping"}),
        content_type="application/json",
        headers={"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()},
    )


def test_list_shows_channel_and_write_key(client_en, source):
    body = client_en.get("/w/shop-a/sources/").content.decode()
    assert "Website" in body
    assert source.write_key in body
    assert 'class="badge ch-web">Web<' in body


def test_create_source(client_en, workspace):
    response = client_en.post("/w/shop-a/sources/", {"name": "LINE 公式アカウント", "channel": "line"})
    assert response.status_code == 302
    created = source_list(workspace=workspace).get(name="LINE 公式アカウント")
    assert created.channel == "line"
    assert response["Location"] == f"/w/shop-a/sources/{created.pk}/"
    page = client_en.get(response["Location"]).content.decode()
    assert created.write_key in page
    assert "created" in page  # the flash message
    assert track(created.write_key).status_code == 200


def test_create_rejects_bad_input_with_field_errors(client_en, workspace):
    response = client_en.post("/w/shop-a/sources/", {"name": "  ", "channel": "fax"})
    assert response.status_code == 200
    body = response.content.decode()
    assert body.count('class="field-error"') == 2
    assert not source_list(workspace=workspace).exists()


def test_rotate_key_replaces_the_key_and_the_old_one_stops_working(client_en, workspace, source):
    old = source.write_key
    assert track(old).status_code == 200
    response = client_en.post(f"/w/shop-a/sources/{source.pk}/rotate-key", follow=True)
    assert response.status_code == 200
    new = source_get(workspace=workspace, source_id=source.pk).write_key
    assert new != old
    body = response.content.decode()
    assert new in body and old not in body
    assert track(old).status_code == 401
    assert track(new).status_code == 200


def test_rotate_needs_post_and_csrf(member, workspace, source):
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    assert client.get(f"/w/shop-a/sources/{source.pk}/rotate-key").status_code == 405
    assert client.post(f"/w/shop-a/sources/{source.pk}/rotate-key").status_code == 403
    assert source_get(workspace=workspace, source_id=source.pk).write_key == source.write_key
    page = client.get(f"/w/shop-a/sources/{source.pk}/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(f"/w/shop-a/sources/{source.pk}/rotate-key", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert source_get(workspace=workspace, source_id=source.pk).write_key != source.write_key


def test_snippets_point_at_this_server_with_the_key(client_en, source, settings):
    settings.ALLOWED_HOSTS = ["cx.example.jp"]  # an operator's TSUNAGU_ALLOWED_HOSTS (default: loopback only)
    response = client_en.get(f"/w/shop-a/sources/{source.pk}/", HTTP_HOST="cx.example.jp:8443")
    body = html.unescape(response.content.decode())
    key = source.write_key
    # analytics.js: the API host is this server, and settings come inline rather than from Segment's CDN.
    assert 'apiHost: "cx.example.jp:8443/v1"' in body
    assert f'writeKey: "{key}"' in body
    assert "cdnSettings" in body
    # Python SDK and curl.
    assert f"Client('{key}', host='http://cx.example.jp:8443')" in body
    assert "curl -X POST 'http://cx.example.jp:8443/v1/track'" in body
    assert f"-u '{key}:'" in body
    # The console page itself loads nothing from another host.
    assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', response.content.decode())


@pytest.mark.parametrize("role", ["viewer", "agent", "operator"])
def test_only_owners_and_admins_change_sources(role, workspace, source):
    from tsunagu.core.services import membership_add, user_create

    user = user_create(username=f"{role}-user", password="correct-horse-battery")
    membership_add(workspace=workspace, user=user, role=role, actor=SYSTEM)
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(user)
    listing = client.get("/w/shop-a/sources/").content.decode()
    assert source.write_key in listing  # reading the key to install an SDK is allowed
    assert "Create source" not in listing
    detail = client.get(f"/w/shop-a/sources/{source.pk}/").content.decode()
    assert "Rotate key" not in detail and "Only owners and admins" in detail
    assert client.post("/w/shop-a/sources/", {"name": "X", "channel": "web"}).status_code == 403
    assert client.post(f"/w/shop-a/sources/{source.pk}/rotate-key").status_code == 403
    assert list(source_list(workspace=workspace)) == [source]
    assert source_get(workspace=workspace, source_id=source.pk).write_key == source.write_key


def test_admin_may_rotate(workspace, source):
    from tsunagu.core.services import membership_add, user_create

    user = user_create(username="admin-user", password="correct-horse-battery")
    membership_add(workspace=workspace, user=user, role="admin", actor=SYSTEM)
    client = Client()
    client.force_login(user)
    assert client.post(f"/w/shop-a/sources/{source.pk}/rotate-key").status_code == 302
    assert source_get(workspace=workspace, source_id=source.pk).write_key != source.write_key


def test_sources_are_listed_by_name_then_id(client_en, workspace):
    from tsunagu.events.services import source_create

    created = [
        source_create(workspace=workspace, name=name, channel="web", actor=SYSTEM)
        for name in ("Store", "App", "Web", "App")
    ]
    body = client_en.get("/w/shop-a/sources/").content.decode()
    listed = [int(i) for i in re.findall(r'<td><a href="/w/shop-a/sources/(\d+)/">', body)]
    store, app_1, web, app_2 = (s.pk for s in created)
    assert listed == [app_1, app_2, store, web]
