"""LINE content: text, Flex (an object or its JSON), alt text, and clear errors for what LINE refuses."""

from __future__ import annotations

import json

import pytest

from tsunagu.messaging.channels.line import Channel

CAROUSEL = {"type": "carousel", "contents": [
    {"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": [
        {"type": "text", "text": "返金のご案内"},
        {"type": "button", "action": {"type": "uri", "label": "詳細を見る", "uri": "https://example.jp/r"}},
    ]}},
    {"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": [
        {"type": "text", "contents": [{"type": "span", "text": "配送"}, {"type": "span", "text": "状況"}]},
    ]}},
]}


def test_text() -> None:
    assert Channel.finish({"text": "こんにちは"}) == {"messages": [{"type": "text", "text": "こんにちは"}],
                                                   "text": "こんにちは"}


@pytest.mark.parametrize("flex", [CAROUSEL, json.dumps(CAROUSEL, ensure_ascii=False)])
def test_flex_object_or_json(flex: object) -> None:
    finished = Channel.finish({"flex": flex, "alt_text": "返金のご案内です"})
    assert finished["messages"] == [{"type": "flex", "altText": "返金のご案内です", "contents": CAROUSEL}]
    # The archive's text: the alt text and every word the message shows.
    assert finished["text"] == "返金のご案内です\n返金のご案内\n詳細を見る\n配送\n状況"
    assert Channel.summary(finished) == ("", finished["text"])


def test_a_whole_flex_message_is_taken_as_well() -> None:
    finished = Channel.finish({"flex": {"type": "flex", "altText": "お知らせ", "contents": CAROUSEL}})
    assert finished["messages"] == [{"type": "flex", "altText": "お知らせ", "contents": CAROUSEL}]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ({"flex": '{"type": "bubble",', "alt_text": "a"}, "flex is not valid JSON: .*line 1, column"),
        ({"flex": "[1, 2]", "alt_text": "a"}, "flex must be a JSON object"),
        ({"flex": {"type": "bubblex"}, "alt_text": "a"}, "bubble or a carousel"),
        ({"flex": {"type": "carousel", "contents": []}, "alt_text": "a"}, "1 to 12 bubbles"),
        ({"flex": {"type": "bubble", "body": {"type": "box", "contents": []}}, "alt_text": "a"},
         "not a valid Flex message: .*layout"),
        ({"flex": {"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": [{"type": "nope"}]}},
          "alt_text": "a"}, "not a valid Flex message: .*nope"),
        ({"flex": {"type": "bubble"}}, "alt_text is required with flex"),
        ({"flex": {"type": "bubble"}, "alt_text": "x" * 1501}, "alt_text is longer than 1500"),
        ({"text": "あ" * 5001}, "longer than 5000"),
        ({"text": "  "}, "needs text or flex"),
    ],
)
def test_refused_content(content: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Channel.finish(content)
