"""Failover and consent in the console, in headless Chromium against a real ``tsunagu up``, in Japanese and
English: the policy editor saves a LINE → SMS → email policy with a wait (the wait choices following the
channel) and shows a validation error beside its step; the 360° page shows the consent history and an
agent records a decision; the customer's preference page round-trip (no login); a send drawn as its chain
of attempts with the reasons translated.

No page may ask another host, answer >= 400 or log a console error (a Content-Security-Policy violation is
one): ``Session`` checks it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tsunagu.console.tests.test_browser import screenshot
from tsunagu.console.tests.test_messaging_browser import Session, _post
from tsunagu.testing.browser import CHROMIUM, launched, unavailable

pytestmark = [pytest.mark.browser, pytest.mark.live]

SETUP = r"""
import datetime as dt
import json
import django

django.setup()
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.selectors import workspace_get
from tsunagu.customers.selectors import customer_list
from tsunagu.messaging.consent import consent_set
from tsunagu.messaging.links import preferences_token
from tsunagu.messaging.services import channel_create, communication_create, send_create

ws = workspace_get(slug="shop")
people = {u: customer_list(workspace=ws, user_id=u).get() for u in ("u-hanako", "u-pref-ja", "u-pref-en")}
# An SMTP account that no test reaches (every email here is skipped for want of an opt-in), and in-app.
channel_create(workspace=ws, type="email", name="SMTP", actor=SYSTEM,
               config={"host": "127.0.0.1", "port": 9, "security": "none", "from_email": "info@shop.example"})
channel_create(workspace=ws, type="in_app", name="アプリ内", config={}, actor=SYSTEM)
variants = [
    {"channel": "line", "locale": "ja", "text": "LINE 発送しました"},
    {"channel": "sms", "locale": "ja", "text": "SMS 発送しました"},
    {"channel": "email", "locale": "ja", "subject": "発送のお知らせ", "html": "<p>発送しました</p>"},
]
for lang in ("ja", "en"):
    communication_create(workspace=ws, key=f"policy-{lang}", name=f"Policy {lang}", topic="transactional",
                         variants=variants, actor=SYSTEM)
in_app = {"channel": "in_app", "locale": "ja", "title": "セールのお知らせ", "body": "本日限り"}
communication_create(workspace=ws, key="campaign", name="キャンペーン", topic="marketing",
                     variants=[*variants, in_app],
                     policy={"steps": [{"channel": c} for c in ("line", "sms", "email", "in_app")]}, actor=SYSTEM)
hanako = people["u-hanako"]
consent_set(customer=hanako, channel="email", topic="service", status="granted", source="api", actor=SYSTEM,
            text="会員規約に同意（お知らせメール）", at=dt.datetime(2026, 1, 5, 0, 0, tzinfo=dt.UTC))
consent_set(customer=hanako, channel="line", topic="marketing", status="revoked", source="preference_page",
            actor=SYSTEM, text="「キャンペーン・お得な情報」をLINEで受け取らない",
            at=dt.datetime(2026, 1, 6, 0, 0, tzinfo=dt.UTC))
# Sent by day in Tokyo, so quiet hours do not hold it: LINE and SMS have no address, email no opt-in.
send = send_create(workspace=ws, communication="campaign", customer=hanako, actor=SYSTEM,
                   at=dt.datetime(2026, 1, 7, 3, 0, tzinfo=dt.UTC))
print(json.dumps({"hanako": hanako.pk, "send": send.pk,
                  "pref": {lang: preferences_token(people[f"u-pref-{lang}"].pk) for lang in ("ja", "en")},
                  "pref_ids": {lang: people[f"u-pref-{lang}"].pk for lang in ("ja", "en")}}))
"""

LABELS = {
    "ja-JP": {
        "lang": "ja", "saved": "バージョン 2 として保存しました。", "twice": "sms is already an earlier step",
        "record": "記録", "recorded": "記録しました。", "granted": "同意", "withdrawn": "撤回",
        "pref_title": "配信設定", "pref_saved": "設定を保存しました。", "other": "English",
        "no_address": "宛先なし", "no_consent": "同意なし", "skipped": "スキップ", "delivered": "配信済み",
        "api": "API", "preference_page": "配信設定ページ", "console": "コンソール",
    },
    "en-US": {
        "lang": "en", "saved": "Saved as version 2.", "twice": "sms is already an earlier step",
        "record": "Record", "recorded": "The decision is recorded.", "granted": "Granted", "withdrawn": "Withdrawn",
        "pref_title": "Message preferences", "pref_saved": "Your choices are saved.", "other": "日本語",
        "no_address": "No address", "no_consent": "No consent", "skipped": "Skipped", "delivered": "Delivered",
        "api": "API", "preference_page": "Preference page", "console": "Console",
    },
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: Any) -> Any:
    from tsunagu.testing.live import LiveServer

    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    server = LiveServer(data_dir=tmp_path_factory.mktemp("consent-live"))
    try:
        write_key, token, _slug = server.provision(name="Shop", slug="shop")
        server.cli("createuser", "mika", "--password", "correct-horse-battery", "--workspace", "shop",
                   "--role", "owner")
        server.start()
        for user_id, traits in (
            ("u-hanako", {"lastName": "山田", "firstName": "花子", "email": "hanako@example.jp"}),
            ("u-pref-ja", {"lastName": "佐藤", "email": "sato@example.jp", "locale": "ja-JP"}),
            ("u-pref-en", {"lastName": "Smith", "email": "smith@example.com", "locale": "en"}),
        ):
            _post(f"{server.url}/v1/identify", {"userId": user_id, "traits": traits}, write_key)
        server.wait_applied(token)
        done = subprocess.run(
            [sys.executable, "-c", SETUP], env=server.env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        yield {"server": server, **json.loads(done.stdout.strip().splitlines()[-1])}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(shop: Any) -> Any:
    with launched() as browser:
        yield browser


@pytest.mark.parametrize("locale", ["ja-JP", "en-US"])
def test_the_policy_editor_saves_line_sms_email_with_a_wait(browser: Any, shop: Any, locale: str,
                                                            tmp_path: Path) -> None:
    from playwright.sync_api import expect

    labels = LABELS[locale]
    s = Session(browser, shop["server"], locale)
    page = s.page
    page.goto(f"{s.server.url}/w/shop/messaging/c/policy-{labels['lang']}/")
    policy = page.get_by_test_id("policy")
    # LINE reports neither delivery nor reads: its step offers no wait.
    page.select_option("#p0-channel", "line")
    expect(policy.get_by_test_id("no-reports-0")).to_be_visible()
    page.select_option("#p1-channel", "sms")
    expect(page.locator("#p1-wait option")).to_have_count(3)  # sent is enough, delivered, read
    page.select_option("#p1-wait", "delivered")
    page.fill("#p1-amount", "10")
    page.select_option("#p1-unit", "minutes")
    page.select_option("#p2-channel", "email")
    expect(page.locator("#p2-wait option[value=delivered]")).to_have_count(0)  # email reports reads only
    expect(page.locator("#p2-wait option[value=read]")).to_have_count(1)
    expect(page.locator("#p1-amount")).to_have_value("10")  # the section came back as it was filled
    page.select_option("#f-late", "cancel")
    page.get_by_test_id("save").click()
    page.wait_for_url(f"{s.server.url}/w/shop/messaging/c/policy-{labels['lang']}/")
    expect(page.locator(".message-success")).to_have_text(labels["saved"])
    expect(page.locator("#p0-channel")).to_have_value("line")
    expect(page.locator("#p1-channel")).to_have_value("sms")
    expect(page.locator("#p1-wait")).to_have_value("delivered")
    expect(page.locator("#p1-amount")).to_have_value("10")
    expect(page.locator("#p1-unit")).to_have_value("minutes")
    expect(page.locator("#p2-channel")).to_have_value("email")
    expect(page.locator("#f-late")).to_have_value("cancel")
    screenshot(page, tmp_path, f"policy-editor-{locale}.png")

    # SMS twice: the services refuse it, and the error stands beside the step that repeats it.
    page.select_option("#p2-channel", "sms")
    expect(page.locator("#p2-wait option")).to_have_count(3)
    page.get_by_test_id("save").click()
    expect(page.locator('[data-field="policy.steps[2]"]')).to_have_text(labels["twice"])
    expect(page.locator("#p2-channel")).to_have_value("sms")
    # The refused save answers 400, as it must (and Chromium logs that): those two, and nothing else.
    refused = [f"400 {s.server.url}/w/shop/messaging/c/policy-{labels['lang']}/",
               "console Failed to load resource: the server responded with a status of 400 (Bad Request)"]
    assert sorted(p for p in s.problems if "400" in p) == sorted(refused)
    s.problems = [p for p in s.problems if p not in refused]
    s.close()


@pytest.mark.parametrize("locale", ["ja-JP", "en-US"])
def test_the_360_page_shows_the_consent_history_and_records_a_decision(browser: Any, shop: Any, locale: str,
                                                                      tmp_path: Path) -> None:
    from playwright.sync_api import expect

    labels = LABELS[locale]
    s = Session(browser, shop["server"], locale)
    page = s.page
    page.goto(f"{s.server.url}/w/shop/customers/{shop['hanako']}/")
    card = page.get_by_test_id("consent-card")
    expect(card.locator('tr[data-channel="line"][data-topic="marketing"] .status')).to_have_text(labels["withdrawn"])
    expect(card.locator('tr[data-channel="email"][data-topic="service"] .status')).to_have_text(labels["granted"])
    page.get_by_test_id("tab-consent").click()
    page.wait_for_url(f"**/customers/{shop['hanako']}/consent/")
    rows = page.locator("[data-testid=consent-history] tbody tr")
    before = rows.count()
    assert before >= 2
    last = rows.nth(before - 1)  # newest first: the oldest decision is the last row
    expect(last).to_contain_text("会員規約に同意（お知らせメール）")
    expect(last).to_contain_text(labels["api"])
    expect(last.locator("time")).to_have_attribute("datetime", "2026-01-05T09:00:00+09:00")
    expect(rows.nth(before - 2)).to_contain_text(labels["preference_page"])

    wording = f"店頭で SMS のお知らせを希望 ({locale})"
    page.select_option("#c-topic", "service")
    page.select_option("#c-channel", "sms")
    page.select_option("#c-status", "granted")
    page.fill("#c-text", wording)
    page.get_by_test_id("record").click()
    expect(page.locator(".message-success")).to_have_text(labels["recorded"])
    expect(rows).to_have_count(before + 1)
    newest = rows.first
    expect(newest).to_contain_text(wording)
    expect(newest).to_contain_text(labels["console"])
    expect(newest).to_contain_text("user mika")
    screenshot(page, tmp_path, f"consent-history-{locale}.png")
    s.close()


@pytest.mark.parametrize("locale", ["ja-JP", "en-US"])
def test_the_preference_page_round_trip(browser: Any, shop: Any, locale: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    labels, lang = LABELS[locale], LABELS[locale]["lang"]
    server = shop["server"]
    # The customer's own browser: no login, and the browser's language is the other one (the page follows
    # the customer's locale trait).
    context = browser.new_context(locale="en-US" if lang == "ja" else "ja-JP")
    page = context.new_page()
    problems: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) else problems.append(f"foreign {r.url}"))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("console", lambda m: problems.append(f"console {m.text}") if m.type == "error" else None)
    path = f"{server.url}/m/p/{shop['pref'][lang]}"
    page.goto(path)
    assert page.locator("html").get_attribute("lang") == lang
    expect(page.locator("h1")).to_have_text(labels["pref_title"])
    email = page.get_by_test_id("marketing-email")
    expect(email).not_to_be_checked()  # marketing email needs an opt-in
    expect(page.get_by_test_id("service-email")).to_be_checked()
    email.check()
    page.get_by_test_id("service-in_app").uncheck()
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("saved")).to_have_text(labels["pref_saved"])
    expect(page.get_by_test_id("marketing-email")).to_be_checked()
    expect(page.get_by_test_id("service-in_app")).not_to_be_checked()
    screenshot(page, tmp_path, f"preferences-{locale}.png")

    page.get_by_test_id("switch-language").click()
    assert page.locator("html").get_attribute("lang") == ("en" if lang == "ja" else "ja")
    expect(page.get_by_test_id("switch-language")).to_have_text("日本語" if lang == "ja" else "English")
    page.goto(path)
    page.get_by_test_id("unsubscribe-all").click()
    expect(page.get_by_test_id("saved")).to_be_visible()
    assert page.locator("input[type=checkbox]:checked").count() == 0
    context.close()
    assert problems == []

    # The console shows each change with its source and the wording the customer saw.
    s = Session(browser, server, locale)
    s.page.goto(f"{server.url}/w/shop/customers/{shop['pref_ids'][lang]}/")
    s.page.get_by_test_id("tab-consent").click()
    rows = s.page.locator("[data-testid=consent-history] tbody tr[data-source=preference_page]")
    expect(rows).to_have_count(4)  # marketing email on, service in-app off, then every channel off for both
    expect(rows.nth(3)).to_contain_text("「キャンペーン・お得な情報」をメールで受け取る" if lang == "ja"
                                        else "Receive “News and offers” by Email")
    s.close()


@pytest.mark.parametrize("locale", ["ja-JP", "en-US"])
def test_a_send_is_drawn_as_its_chain_of_attempts(browser: Any, shop: Any, locale: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    labels = LABELS[locale]
    s = Session(browser, shop["server"], locale)
    page = s.page
    page.goto(f"{s.server.url}/w/shop/customers/{shop['hanako']}/messages/")
    block = page.get_by_test_id(f"send-{shop['send']}")
    steps = block.locator(".chain-step")
    # The worker delivers the in-app message on its own clock: reload until it has.
    deadline = time.monotonic() + 30
    while steps.nth(3).get_attribute("data-status") != "delivered":
        assert time.monotonic() < deadline, "the in-app message was not delivered in 30 s"
        page.reload()
    expect(steps).to_have_count(4)
    assert [steps.nth(i).get_attribute("data-channel") for i in range(4)] == ["line", "sms", "email", "in_app"]
    assert [steps.nth(i).get_attribute("data-reason") for i in range(3)] == ["no_address", "no_address", "no_consent"]
    for i, reason in enumerate(("no_address", "no_address", "no_consent")):
        expect(steps.nth(i).locator(".chain-reason")).to_have_text(labels[reason])
        expect(steps.nth(i).locator(".status")).to_have_text(labels["skipped"])
    expect(steps.nth(3).locator(".status")).to_have_text(labels["delivered"])
    expect(steps.nth(0).locator("time").first).to_have_attribute("datetime", "2026-01-07T12:00:00+09:00")
    screenshot(page, tmp_path, f"send-chain-{locale}.png")
    block.get_by_role("link", name=f"#{shop['send']}").first.click()
    page.wait_for_url(f"**/messaging/sends/{shop['send']}/")
    expect(page.locator("[data-testid=chain] .chain-step")).to_have_count(4)
    expect(page.get_by_test_id("send-status")).to_have_text(labels["delivered"])
    s.close()
