"""The console in headless Chromium against a real ``tsunagu web`` loaded with the demo: log in, search a
customer by furigana, open the 360° page and read the timeline — in Japanese and in English.

Set TSUNAGU_SCREENSHOT_DIR to keep the screenshots of the 360° page for a look.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import jaconv
import pytest

from tsunagu.testing.browser import launched

pytestmark = [pytest.mark.browser, pytest.mark.live]



@pytest.fixture
def browser() -> Any:
    with launched() as browser:
        yield browser


def api_get(server: Any, token: str, path: str, **params: Any) -> Any:
    url = f"{server.url}/api/v1{path}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


@pytest.fixture
def demo(live_server_factory: Any) -> dict[str, Any]:
    """A live server with the demo workspace and one demo customer who has furigana and events."""
    server = live_server_factory("demo")
    server.cli("migrate")
    outcome = json.loads(server.cli("demo", "--customers", "40", "--events", "400", "--quiet", "--json").stdout)
    server.start()
    customers = api_get(server, outcome["api_token"], "/customers", limit=200)["items"]
    with_kana = [c for c in customers if c["family_kana"] and c["given_kana"] and c["event_count"] >= 2]
    assert with_kana, "the demo should have customers with furigana and events"
    # The customer whose family-name kana is shared by the fewest others, so the search result is small.
    kana_counts: dict[str, int] = {}
    for c in with_kana:
        kana_counts[c["family_kana"]] = kana_counts.get(c["family_kana"], 0) + 1
    target = min(with_kana, key=lambda c: (kana_counts[c["family_kana"]], -c["event_count"], c["id"]))
    return {"server": server, "outcome": outcome, "customer": target}


def screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    keep = os.environ.get("TSUNAGU_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / name)
    return path


LABELS = {
    "ja-JP": {
        "lang": "ja",
        "dashboard": "ダッシュボード",
        "events_today": "本日のイベント",
        "customers": "顧客",
        "search": "検索",
        "timeline": "タイムライン",
        "identities": "識別子",
        "profile": "プロフィール",
    },
    "en-US": {
        "lang": "en",
        "dashboard": "Dashboard",
        "events_today": "Events today",
        "customers": "Customers",
        "search": "Search",
        "timeline": "Timeline",
        "identities": "Identities",
        "profile": "Profile",
    },
}


@pytest.mark.parametrize("locale", ["ja-JP", "en-US"])
def test_login_search_by_kana_and_read_the_timeline(browser: Any, demo: dict[str, Any], locale: str, tmp_path: Path):
    server, outcome, target = demo["server"], demo["outcome"], demo["customer"]
    labels = LABELS[locale]
    context = browser.new_context(locale=locale, viewport={"width": 1360, "height": 900})
    page = context.new_page()
    # Nothing the console loads may come from another host.
    foreign: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) else foreign.append(r.url))
    # Nor may anything it loads fail (a missing favicon was a 404 and a warning in the log on every page).
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    page.goto(f"{server.url}/w/demo/customers/")
    assert page.url.startswith(f"{server.url}/login/")  # login required
    assert page.locator("html").get_attribute("lang") == labels["lang"]
    page.fill("input[name=username]", outcome["username"])
    page.fill("input[name=password]", outcome["password"])
    page.locator("form button[type=submit].btn-primary").click()
    page.wait_for_url(f"{server.url}/w/demo/customers/")

    page.get_by_role("link", name=labels["dashboard"]).click()
    page.wait_for_url(f"{server.url}/w/demo/")
    assert page.locator("html").get_attribute("lang") == labels["lang"]
    assert page.get_by_text(labels["events_today"], exact=True).is_visible()
    total = int(page.get_by_test_id("event-count").inner_text().replace(",", ""))
    assert total == outcome["events"]

    # Search by furigana written differently from how it is stored: hiragana in Japanese, half-width
    # katakana in English — both must find the customer stored with full-width katakana.
    kana = target["family_kana"] + target["given_kana"]
    query = jaconv.kata2hira(kana) if locale == "ja-JP" else jaconv.z2h(kana, kana=True)
    assert query != kana
    page.get_by_role("link", name=labels["customers"], exact=True).click()
    page.fill("input[name=q]", query)
    page.get_by_role("button", name=labels["search"], exact=True).click()
    page.wait_for_url("**/customers/?q=*")
    link = page.locator(f'a.cust-link[href="/w/demo/customers/{target["id"]}/"]')
    assert link.count() == 1
    link.click()
    page.wait_for_url(f"{server.url}/w/demo/customers/{target['id']}/")

    # The 360° page: name with furigana, the profile, identities and the timeline.
    assert page.locator("h1.profile-name").inner_text() == target["display_name"]
    assert page.locator(".furigana").inner_text().endswith(f"{target['family_kana']} {target['given_kana']}")
    for heading in (labels["profile"], labels["identities"], labels["timeline"]):
        assert page.get_by_role("heading", name=heading, exact=True).is_visible()
    rows = page.locator("[data-testid=timeline] .tl-item")
    # The newest 50 of the timeline, which holds the customer's events (event_count) and the segment events
    # tsunagu adds (not the customer's activity, so not in event_count).
    timeline = api_get(server, outcome["api_token"], f"/customers/{target['id']}/events", limit=50)["items"]
    own = [e for e in timeline if not e["message_id"].startswith("tsunagu:segment-change:")]
    assert rows.count() == len(timeline) and len(timeline) >= min(target["event_count"], 50)
    assert len(own) == min(target["event_count"], 50) or len(timeline) == 50
    first_time = rows.first.locator("time").get_attribute("datetime")
    last_time = rows.last.locator("time").get_attribute("datetime")
    assert first_time >= last_time  # newest first (ISO 8601 with the same offset sorts as text)
    assert first_time.endswith("+09:00")  # shown in the workspace's time zone
    api_events = api_get(server, outcome["api_token"], f"/customers/{target['id']}/events", limit=1)["items"]
    assert rows.first.locator(".badge").get_attribute("class").endswith(f"ch-{api_events[0]['channel']}")
    assert page.locator("[data-testid=identities] li").count() >= 1
    shot = screenshot(page, tmp_path, f"customer-360-{locale}.png")
    assert shot.stat().st_size > 10_000

    if locale == "en-US":
        # The switcher overrides the browser's English for this user, on the page they are on.
        page.get_by_role("button", name="日本語").click()
        page.wait_for_load_state()
        assert page.url == f"{server.url}/w/demo/customers/{target['id']}/"
        assert page.locator("html").get_attribute("lang") == "ja"
        assert page.get_by_role("heading", name="タイムライン", exact=True).is_visible()
        page.reload()
        assert page.locator("html").get_attribute("lang") == "ja"

    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert context.request.get(f"{server.url}{icon}").status == 200
    assert failed == []
    assert foreign == []
    context.close()


def test_python_snippet_from_the_source_page_sends_to_this_server(
    browser: Any, demo: dict[str, Any], tmp_path: Path
) -> None:
    """Copy the Python snippet the console shows and run it: the events arrive in the demo workspace."""
    server, outcome = demo["server"], demo["outcome"]
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.goto(f"{server.url}/login/")
    page.fill("input[name=username]", outcome["username"])
    page.fill("input[name=password]", outcome["password"])
    page.locator("form button[type=submit].btn-primary").click()
    page.wait_for_url(f"{server.url}/w/demo/")
    page.get_by_role("link", name="Sources", exact=True).click()
    web_key = outcome["write_keys"]["web"]
    page.locator("tr", has_text=web_key).get_by_role("link").click()
    assert page.get_by_test_id("write-key").inner_text() == web_key
    code = page.locator("#snippet-python").inner_text()
    context.close()
    assert f"host='{server.url}'" in code

    script = tmp_path / "snippet.py"
    script.write_text(code, encoding="utf-8")
    subprocess.run([sys.executable, str(script)], check=True, timeout=60, capture_output=True)
    found = api_get(server, outcome["api_token"], "/customers", user_id="user-123")["items"]
    assert len(found) == 1
    assert found[0]["family_kana"] == "ヤマダ"
    assert found[0]["event_count"] == 2
