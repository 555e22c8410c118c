"""The console's messaging pages through Django's test client: the editor saves through the services (errors
beside their field, warnings after save), the live preview renders the unsaved variant, versions diff, channel
settings never give a secret back, the archive searches, a delivery shows its states, and roles and
workspaces are respected."""

from __future__ import annotations

import re
import sys
import types
from typing import Any

import pytest
from django.test import Client

from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import membership_add, user_create
from tsunagu.messaging.channels.base import ChannelBase
from tsunagu.messaging.delivery import Runner
from tsunagu.messaging.models import Channel, Communication
from tsunagu.messaging.selectors import channel_config
from tsunagu.messaging.services import channel_create, communication_create, send_create

pytestmark = pytest.mark.django_db

from .conftest import PASSWORD  # noqa: E402

A = "/w/shop-a/messaging"


def in_app(title: str, body: str, locale: str = "ja") -> dict[str, Any]:
    return {"channel": "in_app", "locale": locale, "title": title, "body": body}


def editor_post(key: str, title: str, body: str, **extra: str) -> dict[str, str]:
    return {
        "key": key,
        "name": "Shipped",
        "topic": "transactional",
        "variant_count": "1",
        "v0-channel": "in_app",
        "v0-locale": "ja",
        "v0-title": title,
        "v0-body": body,
        "action": "save",
        **extra,
    }


@pytest.fixture
def shipped(workspace: Any) -> Any:
    comm, _ = communication_create(
        workspace=workspace,
        key="order-shipped",
        name="発送のお知らせ",
        topic="transactional",
        variants=[in_app("配送のお知らせ", "{{ customer.family_name }}様、ご注文を配送しました。")],
        actor=SYSTEM,
    )
    return comm


@pytest.fixture
def delivered(workspace: Any, hanako: Any, shipped: Any) -> Any:
    """Two messages to 花子: one about delivery (配送), one about a refund; the worker has run both."""
    communication_create(
        workspace=workspace,
        key="refund",
        name="返金",
        topic="transactional",
        variants=[in_app("返金のご案内", "返金を受け付けました。")],
        actor=SYSTEM,
    )
    first = send_create(workspace=workspace, communication="order-shipped", customer=hanako, actor=SYSTEM)
    send_create(workspace=workspace, communication="refund", customer=hanako, actor=SYSTEM)
    assert Runner(worker_id="test").run_due() == 2
    return first.deliveries.get()


def user_with_role(workspace: Any, name: str, role: str, lang: str = "en") -> Client:
    user = user_create(username=name, password=PASSWORD)
    membership_add(workspace=workspace, user=user, role=role, actor=SYSTEM)
    client = Client(headers={"Accept-Language": lang})
    client.force_login(user)
    return client


def body(response: Any) -> str:
    return response.content.decode()


# --- navigation and languages ------------------------------------------------------------------------


def test_menu_entry_and_pages_in_japanese_and_english(client_ja, client_en, shipped):
    ja = body(client_ja.get(f"{A}/"))
    assert re.search(r'aria-current="page">メッセージ</a>', ja)
    assert "コミュニケーション" in ja and "発送のお知らせ" in ja
    en = body(client_en.get(f"{A}/"))
    assert re.search(r'aria-current="page">Messaging</a>', en)
    assert "New communication" in en
    for path in ("/channels/", "/archive/", "/new", "/c/order-shipped/", "/c/order-shipped/versions"):
        assert client_ja.get(A + path).status_code == 200, path
    assert "チャネル" in body(client_ja.get(f"{A}/channels/"))
    assert "アーカイブ" in body(client_ja.get(f"{A}/archive/"))


# --- the editor ---------------------------------------------------------------------------------------


def test_create_saves_version_one_and_shows_warnings(client_en, hanako):
    response = client_en.post(f"{A}/new", editor_post("welcome", "Hello {{ customer.nickname }}", "Welcome"))
    assert response.status_code == 302 and response["Location"] == f"{A}/c/welcome/"
    comm = Communication.objects.get(key="welcome")
    assert comm.current_version == 1
    page = body(client_en.get(response["Location"]))
    assert "Saved as version 1." in page
    assert re.search(r'message-warning">[^<]*customer\.nickname[^<]*undefined', page)


def test_a_syntax_error_is_shown_beside_its_field(client_en, hanako):
    response = client_en.post(f"{A}/new", editor_post("bad", "ok", "line one\n{{ customer.family_name "))
    assert response.status_code == 400
    error = re.search(r'data-field="v0-body">([^<]+)<', body(response))
    assert error and "line 2" in error.group(1)
    assert not Communication.objects.filter(key="bad").exists()
    # The operator's text is kept in the form.
    assert "line one\n{{ customer.family_name </textarea>" in body(response)


def test_invalid_json_and_bad_key_are_named(client_en, hanako):
    bad_json = client_en.post(f"{A}/new", editor_post("b1", "t", "b", **{"v0-button": "{label: 1"}))
    assert bad_json.status_code == 400
    assert re.search(r'data-field="v0-button">Not valid JSON', body(bad_json))
    bad_key = client_en.post(f"{A}/new", editor_post("Bad Key!", "t", "b"))
    assert bad_key.status_code == 400
    assert re.search(r'data-field="key">must be lower-case', body(bad_key))


def test_add_variant_and_edit_makes_a_new_version(client_en, shipped):
    added = client_en.post(
        f"{A}/c/order-shipped/",
        {**editor_post("order-shipped", "a", "b"), "action": "add", "new_channel": "in_app", "new_locale": "en"},
    )
    assert added.status_code == 200
    assert 'name="v1-channel" value="in_app"' in body(added) and 'name="v1-locale" value="en"' in body(added)
    shipped.refresh_from_db()
    assert shipped.current_version == 1  # adding a variant saves nothing
    post = {
        **editor_post("order-shipped", "配送のお知らせ", "<b>届きます</b>"),
        "variant_count": "2",
        "v1-channel": "in_app",
        "v1-locale": "en",
        "v1-title": "Shipped",
        "v1-body": "On its way",
    }
    assert client_en.post(f"{A}/c/order-shipped/", post).status_code == 302
    shipped.refresh_from_db()
    assert shipped.current_version == 2
    diff = body(client_en.get(f"{A}/c/order-shipped/versions?a=1&b=2"))
    assert '<span class="diff-add">+&lt;b&gt;届きます&lt;/b&gt;</span>' in diff
    assert '<span class="diff-del">-{{ customer.family_name }}様、ご注文を配送しました。</span>' in diff
    # Fields in the channel's order on both databases (jsonb keeps no key order).
    assert re.findall(r'<h3 class="diff-title">([^<]+)</h3>', diff) == [
        "Name",
        "In-app / ja · Body",
        "In-app / en (added)",
        "In-app / en · Title",
        "In-app / en · Body",
    ]


def test_removing_a_variant(client_en, shipped):
    post = {
        **editor_post("order-shipped", "a", "b"),
        "variant_count": "2",
        "v1-channel": "in_app",
        "v1-locale": "en",
        "v1-title": "x",
        "v1-body": "y",
        "v0-delete": "1",
    }
    assert client_en.post(f"{A}/c/order-shipped/", post).status_code == 302
    version = shipped.versions.get(number=2)
    assert [(v["locale"], v["title"]) for v in version.variants] == [("en", "x")]


# --- the live preview ---------------------------------------------------------------------------------


def test_preview_renders_the_unsaved_variant_for_the_chosen_customer(client_ja, hanako, shipped):
    form = {
        **editor_post("order-shipped", "{{ customer.family_name }}様へ", "未保存の本文"),
        "preview_customer": str(hanako.pk),
        "preview_variant": "0",
    }
    page = body(client_ja.post(f"{A}/preview", form))
    assert '<h3 class="inapp-title">山田様へ</h3>' in page
    assert "未保存の本文" in page
    shipped.refresh_from_db()
    assert shipped.current_version == 1


def test_preview_escapes_customer_data_and_reports_template_errors(client_en, send, hanako):
    send("/v1/identify", {"userId": "u-hanako", "traits": {"nickname": "<img src=x onerror=alert(1)>"}})
    ok = body(
        client_en.post(
            f"{A}/preview", {**editor_post("k", "{{ customer.nickname }}", "b"), "preview_customer": str(hanako.pk)}
        )
    )
    assert "<img src=x" not in ok and "&lt;img src=x onerror=alert(1)&gt;" in ok
    bad = body(client_en.post(f"{A}/preview", editor_post("k", "{% if %}", "b")))
    assert 'data-testid="preview-error"' in bad and "variant in_app/ja" in bad


def test_customer_picker_searches_by_email_and_name(client_en, hanako):
    by_email = body(client_en.get(f"{A}/picker", {"customer_q": "hanako@example.jp"}))
    assert f'<option value="{hanako.pk}">' in by_email
    by_name = body(client_en.get(f"{A}/picker", {"customer_q": "やまだ"}))
    assert f'<option value="{hanako.pk}">' in by_name
    none = body(client_en.get(f"{A}/picker", {"customer_q": "nobody-here"}))
    assert "No customer matches." in none


# --- channels -----------------------------------------------------------------------------------------


class FakeLine(ChannelBase):
    """A channel with secrets and webhooks, standing in for a provider module this test does not need."""

    type = "line"
    required_fields = ("channel_access_token", "channel_secret")
    optional_fields = ("base_url",)
    secret_fields = ("channel_access_token", "channel_secret")
    webhooks = ("events",)
    variant_fields = ("text", "flex", "alt_text")


@pytest.fixture
def fake_line(monkeypatch):
    module = types.ModuleType("tsunagu.messaging.channels.line")
    module.Channel = FakeLine  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tsunagu.messaging.channels.line", module)


def test_in_app_channel_create_toggle_delete(client_ja, workspace):
    page = body(client_ja.get(f"{A}/channels/"))
    assert "チャネルはまだありません" in page
    response = client_ja.post(f"{A}/channels/", {"type": "in_app", "name": "アプリ内", "action": "create"})
    assert response.status_code == 302
    channel = Channel.objects.get(workspace=workspace, name="アプリ内")
    page = body(client_ja.get(response["Location"]))
    assert 'data-testid="no-webhooks"' in page and 'type="password"' not in page
    client_ja.post(f"{A}/channels/{channel.pk}/toggle")
    channel.refresh_from_db()
    assert channel.enabled is False
    duplicate = client_ja.post(f"{A}/channels/", {"type": "in_app", "name": "アプリ内", "action": "create"})
    assert duplicate.status_code == 400 and re.search(r'data-field="name">a channel with this name', body(duplicate))
    client_ja.post(f"{A}/channels/{channel.pk}/delete")
    assert not Channel.objects.filter(pk=channel.pk).exists()


def test_secrets_are_never_shown_and_kept_when_left_empty(client_en, workspace, fake_line):
    form = client_en.get(f"{A}/channels/", {"type": "line"})
    assert 'type="password" id="config-channel_secret"' in body(form)
    missing = client_en.post(
        f"{A}/channels/", {"type": "line", "name": "LINE", "action": "create", "config-channel_access_token": "tok"}
    )
    assert missing.status_code == 400
    assert re.search(r'data-field="config-channel_secret">is required', body(missing))
    assert "tok" not in re.findall(r'value="([^"]*)"', body(missing))
    created = client_en.post(
        f"{A}/channels/",
        {
            "type": "line",
            "name": "LINE",
            "action": "create",
            "config-channel_access_token": "TOKEN-s3cret",
            "config-channel_secret": "SECRET-s3cret",
        },
    )
    channel = Channel.objects.get(name="LINE")
    page = body(client_en.get(created["Location"]))
    assert "s3cret" not in page
    assert 'data-testid="secret-held-channel_secret"' in page
    assert re.search(rf"http://testserver/m/in/{channel.webhook_token}/events</code>", page)
    # Saving with the secret fields empty keeps both; a new value replaces one.
    saved = client_en.post(
        f"{A}/channels/{channel.pk}/",
        {"name": "LINE 公式", "config-channel_secret": "", "config-channel_access_token": "NEW-TOKEN"},
    )
    assert saved.status_code == 302
    channel.refresh_from_db()
    assert channel.name == "LINE 公式"
    assert channel_config(channel) == {"channel_access_token": "NEW-TOKEN", "channel_secret": "SECRET-s3cret"}
    assert "NEW-TOKEN" not in body(client_en.get(f"{A}/channels/{channel.pk}/"))


def test_send_a_test_shows_the_send_and_links_its_delivery(client_en, workspace, hanako, shipped):
    channel = channel_create(workspace=workspace, type="in_app", name="App", config={}, actor=SYSTEM)
    page = body(client_en.get(f"{A}/channels/{channel.pk}/"))
    assert '<option value="order-shipped">' in page
    response = client_en.post(
        f"{A}/channels/{channel.pk}/test", {"communication": "order-shipped", "customer": str(hanako.pk)}
    )
    assert response.status_code == 302
    send_id = int(response["Location"].rsplit("send=", 1)[1])
    page = body(client_en.get(response["Location"]))
    delivery = hanako.deliveries.get()
    assert f"Test send #{send_id}" in page
    assert f'href="{A}/archive/{delivery.pk}/"' in page
    unknown = client_en.post(
        f"{A}/channels/{channel.pk}/test", {"communication": "nope", "customer": str(hanako.pk)}, follow=True
    )
    assert "no communication with key" in body(unknown)


# --- the archive and deliveries -----------------------------------------------------------------------


def test_archive_searches_a_two_character_japanese_word(client_ja, delivered):
    page = body(client_ja.get(f"{A}/archive/", {"q": "配送"}))
    assert "配送のお知らせ" in page and "返金のご案内" not in page
    page = body(client_ja.get(f"{A}/archive/", {"q": "返金"}))
    assert "返金のご案内" in page and "配送のお知らせ" not in page
    page = body(client_ja.get(f"{A}/archive/", {"communication": "refund", "status": "delivered"}))
    assert "返金のご案内" in page and "配送のお知らせ" not in page
    assert "メッセージはありません" in body(client_ja.get(f"{A}/archive/", {"status": "failed"}))


def test_archive_dates_are_days_in_the_workspace_time_zone(client_en, delivered):
    import zoneinfo

    from django.utils import timezone

    day = timezone.localtime(delivered.created_at, zoneinfo.ZoneInfo("Asia/Tokyo")).date()
    same = body(client_en.get(f"{A}/archive/", {"since": day.isoformat(), "until": day.isoformat()}))
    assert "配送のお知らせ" in same
    before = body(client_en.get(f"{A}/archive/", {"until": (day.replace(year=day.year - 1)).isoformat()}))
    assert "配送のお知らせ" not in before
    bad = client_en.get(f"{A}/archive/", {"since": "31/12/2026"})
    assert bad.status_code == 200 and "Enter a date as YYYY-MM-DD." in body(bad)
    order = body(client_en.get(f"{A}/archive/", {"since": day.isoformat(), "until": "2000-01-01"}))
    assert "must not be after until" in order


def test_archive_pages_by_keyset(client_en, delivered, monkeypatch):
    from tsunagu.console import views_channels

    monkeypatch.setattr(views_channels, "MESSAGES_PER_PAGE", 1)
    first = body(client_en.get(f"{A}/archive/"))
    assert "返金のご案内" in first and "配送のお知らせ" not in first  # newest first
    cursor = re.search(r'rel="next" href="\?cursor=([^"]+)"', first).group(1)
    second = body(client_en.get(f"{A}/archive/?cursor={cursor}"))
    assert "配送のお知らせ" in second and "返金のご案内" not in second
    assert 'rel="next"' not in second


def test_delivery_page_shows_the_message_and_its_states(client_ja, delivered, hanako):
    page = body(client_ja.get(f"{A}/archive/{delivered.pk}/"))
    assert '<h3 class="inapp-title">配送のお知らせ</h3>' in page
    assert "山田様、ご注文を配送しました。" in page
    states = re.findall(r'data-status="(\w+)">\s*<time datetime="([^"]+)"', page)
    assert [s for s, _ in states] == ["queued", "sent", "delivered"]
    assert all(at.endswith("+09:00") for _, at in states)
    assert f'href="/w/shop-a/customers/{hanako.pk}/" data-testid="delivery-customer"' in page
    assert "配信済み" in page


def test_customer_page_has_a_messages_tab(client_en, delivered, hanako):
    page = body(client_en.get(f"/w/shop-a/customers/{hanako.pk}/"))
    assert f'href="/w/shop-a/customers/{hanako.pk}/messages/"' in page
    tab = body(client_en.get(f"/w/shop-a/customers/{hanako.pk}/messages/"))
    assert "配送のお知らせ" in tab and "返金のご案内" in tab
    assert 'aria-current="page" data-testid="tab-messages"' in tab
    # The archive narrowed to this customer, searchable from there.
    archive = body(client_en.get(f"{A}/archive/", {"customer": hanako.pk, "q": "返金"}))
    assert "返金のご案内" in archive and "配送のお知らせ" not in archive
    assert f'name="customer" value="{hanako.pk}"' in archive


# --- roles and workspaces -----------------------------------------------------------------------------


def test_a_viewer_reads_but_cannot_change_anything(workspace, hanako, shipped):
    viewer = user_with_role(workspace, "vera", "viewer")
    channel = channel_create(workspace=workspace, type="in_app", name="App", config={}, actor=SYSTEM)
    editor = body(viewer.get(f"{A}/c/order-shipped/"))
    assert "your role may not change it" in editor and 'data-testid="save"' not in editor
    assert viewer.post(f"{A}/c/order-shipped/", editor_post("order-shipped", "x", "y")).status_code == 403
    assert viewer.post(f"{A}/new", editor_post("new-one", "x", "y")).status_code == 403
    shipped.refresh_from_db()
    assert shipped.current_version == 1 and not Communication.objects.filter(key="new-one").exists()
    assert "New channel" not in body(viewer.get(f"{A}/channels/"))
    assert viewer.post(f"{A}/channels/", {"type": "in_app", "name": "X", "action": "create"}).status_code == 403
    assert viewer.post(f"{A}/channels/{channel.pk}/toggle").status_code == 403
    assert viewer.post(f"{A}/channels/{channel.pk}/delete").status_code == 403
    assert (
        viewer.post(
            f"{A}/channels/{channel.pk}/test", {"communication": "order-shipped", "customer": str(hanako.pk)}
        ).status_code
        == 403
    )
    channel.refresh_from_db()
    assert channel.enabled and not hanako.deliveries.exists()
    # Reading is allowed, the preview too (it records nothing).
    assert viewer.post(f"{A}/preview", editor_post("k", "t", "b")).status_code == 200
    assert viewer.get(f"{A}/archive/").status_code == 200


def test_an_operator_edits_communications_but_not_channels(workspace, shipped):
    operator = user_with_role(workspace, "otto", "operator")
    assert operator.post(f"{A}/c/order-shipped/", editor_post("order-shipped", "x", "y")).status_code == 302
    assert operator.post(f"{A}/channels/", {"type": "in_app", "name": "X", "action": "create"}).status_code == 403


def test_another_workspaces_rows_are_not_found(client_en, workspace, other_workspace, delivered):
    b_comm, _ = communication_create(
        workspace=other_workspace, key="b-only", name="B", topic="service", variants=[in_app("B", "B")], actor=SYSTEM
    )
    b_channel = channel_create(workspace=other_workspace, type="in_app", name="B", config={}, actor=SYSTEM)
    for path in (f"{A}/c/b-only/", f"{A}/c/b-only/versions", f"{A}/channels/{b_channel.pk}/"):
        assert client_en.get(path).status_code == 404, path
    for path in (
        f"{A}/channels/{b_channel.pk}/toggle",
        f"{A}/channels/{b_channel.pk}/delete",
        f"{A}/channels/{b_channel.pk}/test",
    ):
        assert client_en.post(path).status_code == 404, path
    assert client_en.get("/w/shop-b/messaging/").status_code == 404
    assert client_en.get(f"/w/shop-b/messaging/archive/{delivered.pk}/").status_code == 404
    # The other workspace's messages are not in this archive, and its customers not in this picker.
    outsider = user_with_role(other_workspace, "bob", "owner")
    assert "配送のお知らせ" not in body(outsider.get("/w/shop-b/messaging/archive/"))
    assert outsider.get(f"/w/shop-b/messaging/archive/{delivered.pk}/").status_code == 404
    assert b_channel.enabled and b_comm.current_version == 1


def test_preview_and_test_send_do_not_reach_another_workspaces_customer(
    client_en, send, hanako, other_workspace, workspace, shipped
):
    from tsunagu.customers.selectors import customer_list
    from tsunagu.events.services import source_create

    b_source = source_create(workspace=other_workspace, name="B web", channel="web", actor=SYSTEM)
    send("/v1/identify", {"userId": "u-b", "traits": {"lastName": "別人"}}, write_key=b_source.write_key)
    b_customer = customer_list(workspace=other_workspace, user_id="u-b").get()
    page = body(
        client_en.post(
            f"{A}/preview",
            {**editor_post("k", "{{ customer.family_name }}", "b"), "preview_customer": str(b_customer.pk)},
        )
    )
    assert "別人" not in page and '<h3 class="inapp-title">山田</h3>' in page  # the sample customer instead
    assert "別人" not in body(client_en.get(f"{A}/picker", {"customer_q": "別人"}))
    channel = channel_create(workspace=workspace, type="in_app", name="App", config={}, actor=SYSTEM)
    refused = client_en.post(
        f"{A}/channels/{channel.pk}/test",
        {"communication": "order-shipped", "customer": str(b_customer.pk)},
        follow=True,
    )
    assert "Choose a customer to send the test to." in body(refused)
    assert not b_customer.deliveries.exists()
