"""Segments and personas in headless Chromium against a real ``tsunagu up``, in Japanese and English: build a
segment with the builder and watch the live count follow each edit (an error shown at its node path, a
sample of members), save it and see its members, reach a member's 360° page and see the segment there,
then describe the segment as a persona with a picture and read its figures.

No page may ask another host, answer >= 400 or log a console error (a Content-Security-Policy violation is
one): ``Session`` checks it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tsunagu.console.tests.test_browser import screenshot
from tsunagu.console.tests.test_messaging_browser import PASSWORD, Session, _post
from tsunagu.console.tests.test_segments_views import png
from tsunagu.testing.browser import CHROMIUM, launched, unavailable

pytestmark = [pytest.mark.browser, pytest.mark.live]

LABELS = {
    "ja-JP": {"nav": "セグメント", "new": "新しいセグメント", "save": "セグメントを保存", "personas": "ペルソナ",
              "new_persona": "新しいペルソナ", "save_persona": "ペルソナを保存", "saved": "保存しました: 1 人。",
              "matches": "人が該当", "web": "ウェブ"},
    "en-US": {"nav": "Segments", "new": "New segment", "save": "Save segment", "personas": "Personas",
              "new_persona": "New persona", "save_persona": "Save persona", "saved": "Saved: 1 members.",
              "matches": "customer matches", "web": "Web"},
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: Any) -> Any:
    from tsunagu.testing.live import LiveServer

    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    server = LiveServer(data_dir=tmp_path_factory.mktemp("segments-live"))
    try:
        write_key, token, _slug = server.provision(name="Shop", slug="shop")
        server.cli("createuser", "mika", "--password", PASSWORD, "--workspace", "shop", "--role", "owner")
        server.start()
        for user_id, traits in (("u-hanako", {"lastName": "山田", "firstName": "花子", "plan": "gold"}),
                                ("u-jiro", {"lastName": "田中", "firstName": "次郎", "plan": "gold"}),
                                ("u-ichiro", {"lastName": "鈴木", "firstName": "一郎", "plan": "silver"})):
            _post(f"{server.url}/v1/identify", {"userId": user_id, "traits": traits}, write_key)
        _post(f"{server.url}/v1/track", {"userId": "u-hanako", "event": "Order Completed",
                                         "properties": {"revenue": 4980}}, write_key)
        server.wait_applied(token)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(shop: Any) -> Any:
    with launched() as browser:
        yield browser


@pytest.mark.parametrize("locale", ["ja-JP", "en-US"])
def test_build_a_segment_see_its_members_and_describe_it_as_a_persona(browser: Any, shop: Any, locale: str,
                                                                     tmp_path: Path) -> None:
    from playwright.sync_api import expect

    labels, lang = LABELS[locale], locale[:2]
    s = Session(browser, shop, locale)
    page = s.page
    page.get_by_role("navigation", name=None).get_by_role("link", name=labels["nav"], exact=True).first.click()
    page.wait_for_url(f"{shop.url}/w/shop/segments/")
    page.get_by_role("link", name=labels["new"]).click()
    page.fill("#seg-name", f"Gold {lang}")
    page.fill("#seg-key", f"gold-{lang}")
    preview = page.get_by_test_id("preview")
    # The blank condition is not a rule yet: the error names its node.
    expect(preview.get_by_test_id("preview-error")).to_contain_text("$.all[0].trait")
    count = page.get_by_test_id("live-count")
    page.fill('[name="r.0:name"]', "plan")
    page.fill('[name="r.0:value"]', "gold")
    expect(count).to_have_text("2")
    page.fill('[name="r.0:value"]', "silver")
    expect(count).to_have_text("1")
    expect(preview.get_by_test_id("sample")).to_contain_text("一郎")
    page.fill('[name="r.0:value"]', "gold")
    expect(count).to_have_text("2")

    # A second condition: an event, added by the root group's button (the editor is drawn again).
    page.locator('[id="n-r"] > .rule-children > .rule-add [data-testid="add-event"]').click()
    event_name = page.locator('[name="r.1:name"]')
    expect(event_name).to_be_visible()
    event_name.fill("Order Completed")
    expect(count).to_have_text("1")
    expect(preview).to_contain_text(labels["matches"])
    expect(preview.get_by_test_id("sample")).to_contain_text("花子")
    page.select_option('[name="r.1:count_op"]', "gte")
    page.fill('[name="r.1:count_value"]', "x")
    expect(preview.get_by_test_id("preview-error")).to_contain_text("$.all[1].count.value")
    page.fill('[name="r.1:count_value"]', "2")
    expect(count).to_have_text("0")
    page.select_option('[name="r.1:count_op"]', "")
    expect(count).to_have_text("1")
    screenshot(page, tmp_path, f"segment-builder-{locale}.png")

    page.get_by_role("button", name=labels["save"]).click()
    page.wait_for_url(f"{shop.url}/w/shop/segments/s/gold-{lang}/")
    expect(page.get_by_text(labels["saved"])).to_be_visible()
    expect(page.get_by_test_id("member-count")).to_have_text("1")
    members = page.get_by_test_id("members")
    expect(members).to_contain_text("花子")
    expect(page.get_by_test_id("rule-words")).to_contain_text("Order Completed")
    screenshot(page, tmp_path, f"segment-page-{locale}.png")

    members.get_by_role("link").first.click()
    page.wait_for_url(f"{shop.url}/w/shop/customers/**")
    expect(page.get_by_test_id("customer-segments")).to_contain_text(f"Gold {lang}")

    page.goto(f"{shop.url}/w/shop/segments/personas/")
    page.select_option("#persona-seg", f"gold-{lang}")
    page.get_by_role("button", name=labels["new_persona"]).click()
    page.wait_for_url(f"{shop.url}/w/shop/segments/personas/gold-{lang}/edit")
    page.fill("#p-desc", "週末にまとめ買いする常連")
    page.fill("#p-goals", "送料を抑えたい\nポイントを貯めたい")
    page.fill("#p-pains", "配送が遅い")
    page.check('input[name="preferred_channels"][value="line"]')
    picture = tmp_path / "persona.png"
    picture.write_bytes(png(8, 8))
    page.set_input_files("#p-pic", str(picture))
    page.get_by_role("button", name=labels["save_persona"]).click()
    page.wait_for_url(f"{shop.url}/w/shop/segments/personas/gold-{lang}/")
    pic = page.get_by_test_id("picture")
    expect(pic).to_be_visible()
    assert pic.evaluate("img => img.naturalWidth") == 8  # the uploaded image, decoded by the browser
    expect(page.get_by_test_id("size")).to_have_text("1")
    expect(page.get_by_test_id("share")).to_have_text("33.3%")
    expect(page.get_by_test_id("spend")).to_have_text("4,980")
    expect(page.get_by_test_id("top-channels")).to_contain_text(labels["web"])
    expect(page.get_by_test_id("goals")).to_contain_text("ポイントを貯めたい")
    expect(page.get_by_test_id("trend-today")).to_have_text("1")
    screenshot(page, tmp_path, f"persona-{locale}.png")
    page.goto(f"{shop.url}/w/shop/segments/personas/")
    expect(page.get_by_test_id("personas")).to_contain_text(f"Gold {lang}")
    s.close()
