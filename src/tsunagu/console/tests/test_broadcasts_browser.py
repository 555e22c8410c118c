"""Broadcasts in headless Chromium against a real ``tsunagu up``, in Japanese and English: start one from the
form, watch it finish with its summary (a listed id that is no customer counted as such), and pause,
resume and cancel one scheduled for tomorrow."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tsunagu.console.tests.test_browser import screenshot
from tsunagu.console.tests.test_messaging_browser import PASSWORD, Session, _post
from tsunagu.testing.browser import CHROMIUM, launched, unavailable

pytestmark = [pytest.mark.browser, pytest.mark.live]

SETUP = r"""
import datetime as dt
import json
import django

django.setup()
from tsunagu.core import clock
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.selectors import workspace_get
from tsunagu.messaging.broadcasts import broadcast_create
from tsunagu.messaging.services import communication_create

ws = workspace_get(slug="shop")
communication_create(workspace=ws, key="sale", name="冬のセール", topic="service", actor=SYSTEM,
                     variants=[{"channel": "in_app", "locale": "ja", "title": "セール", "body": "{{ data.coupon }}"}])
later = {}
for lang in ("ja", "en"):
    later[lang] = broadcast_create(workspace=ws, communication="sale", name=f"tomorrow-{lang}", actor=SYSTEM,
                                   audience={"user_ids": ["u-hanako"]},
                                   send_at=clock.now() + dt.timedelta(days=1)).pk
print(json.dumps(later))
"""

LABELS = {
    "ja-JP": {"nav": "メッセージ", "sub": "一斉配信", "send": "今すぐ送信", "done": "完了",
              "unknown": "登録のない顧客: 1", "pause": "一時停止", "paused": "一時停止中", "resume": "再開",
              "scheduled": "予約済み",
              "cancel": "一斉配信を中止", "cancelled": "中止"},
    "en-US": {"nav": "Messaging", "sub": "Broadcasts", "send": "Send now", "done": "Done",
              "unknown": "Not a known customer: 1", "pause": "Pause", "paused": "Paused", "resume": "Resume",
              "scheduled": "Scheduled", "cancel": "Cancel the broadcast", "cancelled": "Cancelled"},
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: Any) -> Any:
    from tsunagu.testing.live import LiveServer

    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    server = LiveServer(data_dir=tmp_path_factory.mktemp("broadcasts-live"))
    try:
        write_key, token, _slug = server.provision(name="Shop", slug="shop")
        server.cli("createuser", "mika", "--password", PASSWORD, "--workspace", "shop", "--role", "owner")
        server.start()
        for user_id, name in (("u-hanako", "花子"), ("u-suzuki", "一郎")):
            _post(f"{server.url}/v1/identify", {"userId": user_id, "traits": {"firstName": name}}, write_key)
        server.wait_applied(token)
        done = subprocess.run(
            [sys.executable, "-c", SETUP], env=server.env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        yield {"server": server, "later": json.loads(done.stdout.strip().splitlines()[-1])}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(shop: Any) -> Any:
    with launched() as browser:
        yield browser


@pytest.mark.parametrize("locale", ["ja-JP", "en-US"])
def test_run_a_broadcast_and_control_one(browser: Any, shop: Any, locale: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    labels = LABELS[locale]
    s = Session(browser, shop["server"], locale)
    page = s.page
    page.get_by_role("link", name=labels["nav"], exact=True).click()
    page.get_by_role("navigation").get_by_role("link", name=labels["sub"], exact=True).click()
    page.wait_for_url(f"{s.server.url}/w/shop/messaging/broadcasts/")
    page.fill("#bc-name", f"now-{locale}")
    page.select_option("#bc-comm", "sale")
    page.fill("#bc-audience", "user_id,coupon\nu-hanako,A1\nu-suzuki,B2\nghost,C3\n")
    page.get_by_role("button", name=labels["send"]).click()
    status = page.get_by_test_id("status")
    deadline = time.monotonic() + 60
    while status.inner_text() != labels["done"]:  # the server's worker runs it; the page refreshes
        assert time.monotonic() < deadline, f"still {status.inner_text()!r}"
        page.wait_for_timeout(250)
        page.reload()
    summary = page.get_by_test_id("summary")
    expect(summary.locator('td[data-key="sent"]')).to_have_text("2")
    expect(summary.locator('td[data-key="pending"]')).to_have_text("0")
    expect(page.get_by_test_id("skipped")).to_contain_text(labels["unknown"])
    expect(page.get_by_test_id("actions").get_by_role("button")).to_have_count(0)  # done: nothing to do
    screenshot(page, tmp_path, f"broadcast-done-{locale}.png")

    page.goto(f"{s.server.url}/w/shop/messaging/broadcasts/{shop['later'][locale[:2]]}/")
    page.get_by_role("button", name=labels["pause"], exact=True).click()
    expect(status).to_have_text(labels["paused"])
    page.get_by_role("button", name=labels["resume"], exact=True).click()
    expect(status).to_have_text(labels["scheduled"])
    page.get_by_role("button", name=labels["cancel"], exact=True).click()
    expect(status).to_have_text(labels["cancelled"])
    expect(page.get_by_test_id("actions").get_by_role("button")).to_have_count(0)
    page.goto(f"{s.server.url}/w/shop/messaging/broadcasts/")
    row = page.get_by_test_id("broadcasts").locator("tr", has_text=f"tomorrow-{locale[:2]}")
    expect(row).to_have_attribute("data-status", "cancelled")
    s.close()
