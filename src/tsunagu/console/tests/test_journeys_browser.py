"""Journeys in headless Chromium against a real ``tsunagu up``, in Japanese and English: build a journey in
the builder (the drawing follows the JSON, an error is shown with its field and its step turns red, fixed,
saved, published); read the monitoring of a journey whose runs the server's engine moved (the funnel and the
split's results); open one run's path and pause then resume it (the page and the API agree).

The data is made with the journeys services in the server's own database (a script run with its
environment); the server's worker executes the runs. ``Session`` fails on any answer >= 400, another host
asked or a console error (a Content-Security-Policy violation is one)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tsunagu.console.tests.test_browser import api_get, screenshot
from tsunagu.console.tests.test_messaging_browser import PASSWORD, Session, _post
from tsunagu.testing.browser import CHROMIUM, launched, unavailable

pytestmark = [pytest.mark.browser, pytest.mark.live]

USERS = [f"u-{i}" for i in range(6)]
# Every run ends up waiting (an event for an hour on path A, a day on path B), so each can be paused.
FLOW = {
    "entry": {"api": True},
    "goal": {"event": "Order Completed", "within": {"days": 3}},
    "steps": [
        {"id": "hello", "type": "send", "communication": "notice"},
        {"id": "ab", "type": "split", "paths": [{"percent": 50, "next": "wait_order", "name": "A"},
                                                {"percent": 50, "next": "later", "name": "B"}]},
        {"id": "wait_order", "type": "wait_for_event", "event": "Order Completed", "timeout_seconds": 3600,
         "on_event": "exit", "on_timeout": "check"},
        {"id": "later", "type": "wait", "seconds": 86400, "next": "check"},
        {"id": "check", "type": "branch", "rule": {"journey": "entry.data.plan", "op": "eq", "value": "gold"},
         "then": "thank", "else": "exit"},
        {"id": "thank", "type": "update_traits", "traits": {"welcomed": True}},
    ],
}
SETUP = r"""
import json, sys
import django

django.setup()
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.selectors import workspace_get
from tsunagu.customers.selectors import customer_list
from tsunagu.journeys.services import journey_create, journey_publish, run_start
from tsunagu.messaging.services import communication_create

ws = workspace_get(slug="shop")
communication_create(workspace=ws, key="notice", name="お知らせ", topic="service", actor=SYSTEM,
                     variants=[{"channel": "in_app", "locale": "ja", "title": "ようこそ", "body": "こんにちは"}])
journey = journey_create(workspace=ws, key="welcome", name="ようこそジャーニー", definition=json.loads(sys.argv[1]),
                         actor=SYSTEM)
journey_publish(journey=journey, actor=SYSTEM)
runs = [run_start(journey=journey, actor=SYSTEM, customer_id=customer_list(workspace=ws, user_id=uid).get().pk).pk
        for uid in json.loads(sys.argv[2])]
print(json.dumps(runs))
"""

LABELS = {
    "ja-JP": {"nav": "ジャーニー", "new": "新しいジャーニー", "save": "下書きを保存", "publish": "保存して公開",
              "saved": "下書きを保存しました。", "published": "バージョン 1 として公開しました。", "active": "有効",
              "monitoring": "モニタリング", "pause": "実行を一時停止", "resume": "実行を再開",
              "paused": "一時停止中", "waiting": "待機中"},
    "en-US": {"nav": "Journeys", "new": "New journey", "save": "Save draft", "publish": "Save and publish",
              "saved": "Draft saved.", "published": "Published as version 1.", "active": "Active",
              "monitoring": "Monitoring", "pause": "Pause run", "resume": "Resume run",
              "paused": "Paused", "waiting": "Waiting"},
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: Any) -> Any:
    from tsunagu.testing.live import LiveServer

    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    server = LiveServer(data_dir=tmp_path_factory.mktemp("journeys-live"))
    try:
        write_key, token, _slug = server.provision(name="Shop", slug="shop")
        server.cli("createuser", "mika", "--password", PASSWORD, "--workspace", "shop", "--role", "owner")
        server.start()
        for i, uid in enumerate(USERS):
            _post(f"{server.url}/v1/identify", {"userId": uid, "traits": {"firstName": f"客{i}"}}, write_key)
        # The definition may only name events the workspace has received.
        _post(f"{server.url}/v1/track", {"userId": "seed", "event": "Order Completed"}, write_key)
        server.wait_applied(token)
        done = subprocess.run([sys.executable, "-c", SETUP, json.dumps(FLOW), json.dumps(USERS)], env=server.env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        runs = json.loads(done.stdout.strip().splitlines()[-1])
        deadline = time.monotonic() + 60
        while True:  # the server's worker moves every run to its wait
            page = api_get(server, token, "/journeys/welcome/runs", status="waiting", limit=100)
            if len(page["items"]) == len(USERS):
                break
            assert time.monotonic() < deadline, page
            time.sleep(0.25)
        yield {"server": server, "token": token, "runs": runs}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(shop: Any) -> Any:
    with launched() as browser:
        yield browser


def _definition(communication: str) -> str:
    return json.dumps({"entry": {"api": True}, "steps": [
        {"id": "greet", "type": "send", "communication": communication},
        {"id": "split", "type": "split", "paths": [{"percent": 50, "next": "wait"}, {"percent": 50, "next": "exit"}]},
        {"id": "wait", "type": "wait", "seconds": 3600},
    ]}, indent=2)


@pytest.mark.parametrize("locale", ["ja-JP", "en-US"])
def test_build_monitor_and_control_a_run(browser: Any, shop: Any, locale: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    labels, lang = LABELS[locale], locale[:2]
    server = shop["server"]
    s = Session(browser, server, locale)
    page = s.page
    page.on("dialog", lambda dialog: dialog.accept())  # the publish button asks first
    page.get_by_role("navigation").get_by_role("link", name=labels["nav"], exact=True).first.click()
    page.wait_for_url(f"{server.url}/w/shop/journeys/")
    page.get_by_role("link", name=labels["new"]).click()
    page.fill("#jn-name", f"Build {lang}")
    page.fill("#jn-key", f"build-{lang}")
    svg = page.get_by_test_id("journey-svg")

    # A communication the workspace lacks: the error names the field, the step is red in the drawing.
    page.fill("#jn-definition", _definition("nope"))
    expect(page.get_by_test_id("definition-error")).to_contain_text("definition.steps[greet].communication")
    expect(svg.locator('g.jf-error[data-step="greet"]')).to_have_count(1)
    expect(svg.locator("g.jf-error")).to_have_count(1)
    expect(svg.locator('g.jf-node[data-step="split"]')).to_have_count(1)
    screenshot(page, tmp_path, f"journey-builder-error-{locale}.png")

    page.fill("#jn-definition", _definition("notice"))
    expect(page.get_by_test_id("definition-ok")).to_be_visible()
    expect(svg.locator("g.jf-error")).to_have_count(0)
    for step in ("greet", "split", "wait"):
        expect(svg.locator(f'g.jf-node[data-step="{step}"]')).to_have_count(1)
    expect(svg.locator('g.jf-edge[data-from="split"][data-to="wait"]')).to_have_count(1)
    expect(svg.locator('g.jf-edge[data-from="split"][data-to="exit:split:1"]')).to_have_count(1)
    screenshot(page, tmp_path, f"journey-builder-{locale}.png")

    page.get_by_role("button", name=labels["save"]).click()
    page.wait_for_url(f"{server.url}/w/shop/journeys/j/build-{lang}/")
    expect(page.locator(".messages .message-success")).to_have_text(labels["saved"])
    page.get_by_role("button", name=labels["publish"]).click()
    expect(page.locator(".messages .message-success")).to_have_text(labels["published"])
    expect(page.get_by_test_id("journey-status")).to_have_text(labels["active"])
    assert api_get(server, shop["token"], f"/journeys/build-{lang}")["version"] == 1

    # Monitoring of the journey the engine ran: everyone sent, split, and waiting.
    page.goto(f"{server.url}/w/shop/journeys/j/welcome/monitor")
    funnel = page.get_by_test_id("funnel")
    expect(funnel.locator('tr[data-step="hello"] [data-key="reached"]')).to_have_text(str(len(USERS)))
    expect(funnel.locator('tr[data-step="hello"] [data-key="completed"]')).to_have_text(str(len(USERS)))
    expect(page.get_by_test_id("entries")).to_have_text(str(len(USERS)))
    split = page.locator('[data-testid="split"][data-step="ab"]')
    runs_by_path = {p: split.locator(f'tr[data-path="{p}"] [data-key="runs"]') for p in ("A", "B")}
    counts = [int(cell.inner_text()) if cell.count() else 0 for cell in runs_by_path.values()]
    assert sum(counts) == len(USERS), counts
    waiting = [funnel.locator(f'tr[data-step="{s}"] [data-key="now"]').inner_text() for s in ("wait_order", "later")]
    assert sum(int(n) for n in waiting) == len(USERS)
    screenshot(page, tmp_path, f"journey-monitor-{locale}.png")

    # One run's path: pause it, then resume it.
    run_id = shop["runs"][0 if lang == "ja" else 1]
    page.goto(f"{server.url}/w/shop/journeys/j/welcome/runs/")
    page.locator(f'tr[data-run="{run_id}"] [data-testid="run-link"]').click()
    page.wait_for_url(f"{server.url}/w/shop/journeys/j/welcome/runs/{run_id}/")
    status = page.get_by_test_id("run-status")
    expect(status).to_have_text(labels["waiting"])
    expect(page.get_by_test_id("history")).to_contain_text("hello")
    page.get_by_role("button", name=labels["pause"]).click()
    expect(status).to_have_text(labels["paused"])
    assert api_get(server, shop["token"], f"/journey-runs/{run_id}")["status"] == "paused"
    expect(page.get_by_test_id("history").locator('tr[data-action="paused"] [data-key="actor"]')).to_have_text(
        "user mika")
    page.get_by_role("button", name=labels["resume"]).click()
    expect(status).to_have_text(labels["waiting"])
    assert api_get(server, shop["token"], f"/journey-runs/{run_id}")["status"] == "waiting"
    screenshot(page, tmp_path, f"journey-run-{locale}.png")
    s.close()
