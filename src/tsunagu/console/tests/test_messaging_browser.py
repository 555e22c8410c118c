"""The messaging console in headless Chromium against a real ``tsunagu up``, in Japanese and English: edit a
communication and watch the live preview follow the text and the chosen customer; create a channel and read
its webhook URLs; search the archive for a two-character Japanese word and open a delivery's states.

The data is made with the messaging services in the server's own database (a script run with its
environment); the server's worker executes the deliveries.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tsunagu.console.tests.test_browser import screenshot
from tsunagu.testing.browser import CHROMIUM, launched, unavailable

pytestmark = [pytest.mark.browser, pytest.mark.live]

PASSWORD = "correct-horse-battery"
SETUP = r"""
import json
import django

django.setup()
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.selectors import workspace_get
from tsunagu.customers.selectors import customer_list
from tsunagu.messaging.delivery import Runner
from tsunagu.messaging.services import communication_create, send_create

ws = workspace_get(slug="shop")
hanako = customer_list(workspace=ws, user_id="u-hanako").get()
suzuki = customer_list(workspace=ws, user_id="u-suzuki").get()
def in_app(locale, title, body):
    return {"channel": "in_app", "locale": locale, "title": title, "body": body}
for lang in ("ja", "en"):
    communication_create(workspace=ws, key=f"welcome-{lang}", name=f"Welcome {lang}", topic="service",
                         variants=[in_app(lang, "{{ customer.family_name }}様へ", "ようこそ")], actor=SYSTEM)
communication_create(workspace=ws, key="order-shipped", name="発送のお知らせ", topic="transactional",
                     variants=[in_app("ja", "配送のお知らせ", "{{ customer.family_name }}様、ご注文を配送しました。")],
                     actor=SYSTEM)
communication_create(workspace=ws, key="refund", name="返金", topic="transactional",
                     variants=[in_app("ja", "返金のご案内", "返金を受け付けました。")], actor=SYSTEM)
shipped = send_create(workspace=ws, communication="order-shipped", customer=hanako, actor=SYSTEM)
send_create(workspace=ws, communication="refund", customer=hanako, actor=SYSTEM)
Runner(worker_id="browser-setup").run_due()  # the server's worker may have taken them first: either is fine
print(json.dumps({"hanako": hanako.pk, "suzuki": suzuki.pk, "shipped": shipped.deliveries.get().pk}))
"""


def _post(url: str, body: dict[str, Any], write_key: str) -> None:
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 - loopback test server
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Basic {auth}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200


@pytest.fixture(scope="module")
def shop(tmp_path_factory: Any) -> Any:
    from tsunagu.testing.live import LiveServer

    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    server = LiveServer(data_dir=tmp_path_factory.mktemp("messaging-live"))
    try:
        write_key, token, _slug = server.provision(name="Shop", slug="shop")
        server.cli("createuser", "mika", "--password", PASSWORD, "--workspace", "shop", "--role", "owner")
        server.start()
        for user_id, traits, at in (
            (
                "u-suzuki",
                {"lastName": "鈴木", "firstName": "一郎", "email": "suzuki@example.jp"},
                "2026-01-04T00:00:00Z",
            ),
            (
                "u-hanako",
                {"lastName": "山田", "firstName": "花子", "email": "hanako@example.jp"},
                "2026-01-05T00:00:00Z",
            ),
        ):
            _post(f"{server.url}/v1/identify", {"userId": user_id, "traits": traits, "timestamp": at}, write_key)
        server.wait_applied(token)
        done = subprocess.run(
            [sys.executable, "-c", SETUP], env=server.env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        ids = json.loads(done.stdout.strip().splitlines()[-1])
        yield {"server": server, **ids}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(shop: Any) -> Any:
    with launched() as browser:
        yield browser


class Session:
    """A logged-in page that records what must not happen: another host asked, an answer >= 400, a console
    error (a Content-Security-Policy violation is one)."""

    def __init__(self, browser: Any, server: Any, locale: str) -> None:
        self.server = server
        self.context = browser.new_context(locale=locale, viewport={"width": 1360, "height": 900})
        self.page = self.context.new_page()
        self.problems: list[str] = []
        page = self.page
        page.on("request", lambda r: None if r.url.startswith(server.url) else self.problems.append(f"foreign {r.url}"))
        page.on("response", lambda r: self.problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.on("console", lambda m: self.problems.append(f"console {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(f"pageerror {e}"))
        page.goto(f"{server.url}/login/")
        page.fill("input[name=username]", "mika")
        page.fill("input[name=password]", PASSWORD)
        page.locator("form button[type=submit].btn-primary").click()
        page.wait_for_url(f"{server.url}/w/shop/")

    def close(self) -> None:
        self.context.close()
        assert self.problems == []


LABELS = {
    "ja-JP": {
        "lang": "ja",
        "nav": "メッセージ",
        "saved": "バージョン 2 として保存しました。",
        "channels": "チャネル",
        "create": "チャネルを作成",
        "no_hooks": "このチャネルは Webhook を受信しません。",
        "archive": "アーカイブ",
        "search": "検索",
        "created": "を作成しました",
        "delivered": "配信済み",
        "history": "バージョン履歴",
    },
    "en-US": {
        "lang": "en",
        "nav": "Messaging",
        "saved": "Saved as version 2.",
        "channels": "Channels",
        "create": "Create channel",
        "no_hooks": "This channel receives no webhooks.",
        "archive": "Archive",
        "search": "Search",
        "created": "created",
        "delivered": "Delivered",
        "history": "Version history",
    },
}


@pytest.mark.parametrize("locale", ["ja-JP", "en-US"])
def test_edit_a_communication_and_watch_the_live_preview(browser: Any, shop: Any, locale: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    labels, lang = LABELS[locale], LABELS[locale]["lang"]
    s = Session(browser, shop["server"], locale)
    page = s.page
    page.get_by_role("link", name=labels["nav"], exact=True).click()
    page.locator(f'a[href="/w/shop/messaging/c/welcome-{lang}/"]').click()
    assert page.locator("html").get_attribute("lang") == lang
    preview = page.get_by_test_id("preview")
    # Loaded with the page, for the most recently seen customer: 山田花子.
    expect(preview.locator(".inapp-title")).to_have_text("山田様へ")

    # The unsaved text, re-rendered as it is typed.
    page.fill("#v0-title", "{{ customer.given_name }}さん、新着です")
    expect(preview.locator(".inapp-title")).to_have_text("花子さん、新着です")
    page.fill("#v0-body", "{{ customer.email }} 宛のお知らせ")
    expect(preview.locator(".inapp-body")).to_have_text("hanako@example.jp 宛のお知らせ")

    # Another customer, found by email in the picker.
    page.fill("#customer-q", "suzuki@example.jp")
    expect(page.locator(f'#preview-customer option[value="{shop["suzuki"]}"]')).to_have_count(1)
    expect(preview.locator(".inapp-title")).to_have_text("一郎さん、新着です")

    # A template error shows in the pane, not as a failed request.
    page.fill("#v0-title", "{% if %}")
    expect(preview.get_by_test_id("preview-error")).to_contain_text("in_app")
    page.fill("#v0-title", "{{ customer.given_name }}さん、新着です")
    expect(preview.locator(".inapp-title")).to_have_text("一郎さん、新着です")

    screenshot(page, tmp_path, f"messaging-editor-{locale}.png")
    page.get_by_test_id("save").click()
    page.wait_for_url(f"{s.server.url}/w/shop/messaging/c/welcome-{lang}/")
    expect(page.locator(".message-success")).to_have_text(labels["saved"])
    page.get_by_role("link", name=labels["history"]).click()
    expect(page.locator("[data-testid=diff] .diff-add").first).to_have_text("+{{ customer.given_name }}さん、新着です")
    s.close()


@pytest.mark.parametrize("locale", ["ja-JP", "en-US"])
def test_create_a_channel_and_read_its_webhook_urls(browser: Any, shop: Any, locale: str) -> None:
    from playwright.sync_api import expect

    labels = LABELS[locale]
    s = Session(browser, shop["server"], locale)
    page = s.page
    page.goto(f"{s.server.url}/w/shop/messaging/")
    page.get_by_role("link", name=labels["channels"], exact=True).click()
    page.select_option("#ch-type", "in_app")
    page.fill("#ch-name", f"アプリ内 {locale}")
    page.get_by_role("button", name=labels["create"]).click()
    page.wait_for_url("**/messaging/channels/*/")
    expect(page.locator(".message-success")).to_contain_text(labels["created"])
    expect(page.get_by_test_id("no-webhooks")).to_have_text(labels["no_hooks"])
    # An in-app channel has no settings, so nothing secret to show, and no password field to fill.
    assert page.locator("input[type=password]").count() == 0
    expect(page.locator("#ch-name")).to_have_value(f"アプリ内 {locale}")
    s.close()


@pytest.mark.parametrize("locale", ["ja-JP", "en-US"])
def test_search_the_archive_in_japanese_and_open_a_delivery(
    browser: Any, shop: Any, locale: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    labels = LABELS[locale]
    s = Session(browser, shop["server"], locale)
    page = s.page
    page.goto(f"{s.server.url}/w/shop/messaging/")
    page.get_by_role("link", name=labels["archive"], exact=True).click()
    page.fill("#a-q", "配送")
    page.locator("form.archive-filter").get_by_role("button", name=labels["search"], exact=True).click()
    page.wait_for_url("**/archive/?q=*")
    rows = page.locator("[data-testid=messages] tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("配送のお知らせ")
    rows.first.get_by_role("link", name="配送のお知らせ").click()
    page.wait_for_url(f"**/archive/{shop['shipped']}/")

    # The worker runs on its own clock: reload until the delivery reached its final state.
    deadline = time.monotonic() + 30
    while page.get_by_test_id("delivery-status").inner_text() != labels["delivered"]:
        assert time.monotonic() < deadline, "the delivery was not delivered in 30 s"
        page.reload()
    states = page.locator("[data-testid=states] li")
    assert [states.nth(i).get_attribute("data-status") for i in range(states.count())] == [
        "queued",
        "sent",
        "delivered",
    ]
    for i in range(states.count()):
        assert states.nth(i).locator("time").get_attribute("datetime").endswith("+09:00")
    expect(page.locator(".inapp-body")).to_have_text("山田様、ご注文を配送しました。")
    screenshot(page, tmp_path, f"messaging-delivery-{locale}.png")
    page.get_by_test_id("delivery-customer").click()
    page.wait_for_url(f"**/customers/{shop['hanako']}/")
    page.get_by_test_id("tab-messages").click()
    expect(page.locator("[data-testid=messages] tbody tr")).to_have_count(2)
    screenshot(page, tmp_path, f"messaging-customer-{locale}.png")
    s.close()
