"""How the console shows a message's content by channel (preview and archive share one template): email in a
sandboxed iframe that may not run scripts, SMS with its length and segments, LINE as chat bubbles, in-app as a
card. Content dicts as the channel modules produce them; no channel is imported."""

from __future__ import annotations

import html
import re

from django.template.loader import render_to_string
from django.utils import translation


def show(channel: str, content: dict, lang: str = "en") -> str:
    with translation.override(lang):
        return render_to_string("console/messaging/_content.html", {"channel": channel, "content": content})


def test_email_is_an_iframe_sandboxed_without_scripts_and_escaped_into_srcdoc():
    page = show(
        "email",
        {
            "subject": "ご注文の配送",
            "html": '<p class="x">こんにちは</p><script>alert("x")</script>',
            "text": "こんにちは",
        },
    )
    frame = re.search(r"<iframe ([^>]*)></iframe>", page)
    assert frame is not None
    attrs = frame.group(1)
    assert re.search(r"(^| )sandbox( |$)", attrs)  # the bare attribute: every restriction applies
    assert "allow-scripts" not in attrs and "allow-same-origin" not in attrs
    srcdoc = re.search(r'srcdoc="([^"]*)"', attrs).group(1)
    # The HTML is inside the attribute, escaped: it cannot close the attribute or the iframe.
    assert html.unescape(srcdoc) == '<p class="x">こんにちは</p><script>alert("x")</script>'
    assert "<script>" not in page
    assert '<dd data-testid="email-subject">ご注文の配送</dd>' in page
    assert "Plain text part" in page


def test_sms_shows_length_segments_and_encoding():
    page = show("sms", {"text": "配送しました", "length": 6, "segments": 1, "encoding": "UCS-2"})
    assert '<p class="bubble bubble-in" data-testid="sms-text">配送しました</p>' in page
    assert "6 characters · 1 segment(s) · UCS-2" in page
    ja = show("sms", {"text": "x" * 200, "length": 200, "segments": 2, "encoding": "GSM-7"}, lang="ja")
    assert "200 文字 · 2 通分 · GSM-7" in ja


def test_line_text_and_flex_are_chat_bubbles():
    flex = {
        "type": "flex",
        "altText": "ご注文を発送しました",
        "contents": {
            "type": "bubble",
            "body": {
                "type": "box",
                "layout": "vertical",
                "contents": [{"type": "text", "text": "発送のお知らせ"}, {"type": "text", "text": "<b>明日</b>お届け"}],
            },
        },
    }
    page = show("line", {"messages": [{"type": "text", "text": "こんにちは\n山田様"}, flex], "text": "こんにちは"})
    bubbles = re.findall(r'<(?:p|div) class="bubble bubble-line[^"]*">', page)
    assert len(bubbles) == 2
    assert '<p class="bubble bubble-line">こんにちは\n山田様</p>' in page
    assert '<p class="flex-alt">ご注文を発送しました</p>' in page
    assert "<p>発送のお知らせ</p>" in page and "<p>&lt;b&gt;明日&lt;/b&gt;お届け</p>" in page
    assert "&quot;layout&quot;: &quot;vertical&quot;" in page  # the Flex JSON, escaped, for a look


def test_in_app_is_a_card_and_unknown_channels_show_json():
    page = show(
        "in_app",
        {
            "title": "配送",
            "body": "一行目\n二行目",
            "url": "https://shop.example/o/1",
            "button": {"label": "注文を見る"},
        },
    )
    assert '<h3 class="inapp-title">配送</h3>' in page
    assert "一行目<br>二行目" in page and "注文を見る" in page
    hook = show("webhook", {"payload": {"order": "<1>"}})
    assert "&quot;order&quot;: &quot;&lt;1&gt;&quot;" in hook
