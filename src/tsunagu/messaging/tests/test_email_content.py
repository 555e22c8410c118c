"""What the email channel makes of a variant (MJML, inlined CSS, generated text) and of a config."""

from __future__ import annotations

from typing import Any

import pytest

from tsunagu.core.errors import ValidationError
from tsunagu.messaging.channels.email import Channel, html_to_text

MJML = """<mjml>
  <mj-head>
    <mj-preview>今だけ送料無料</mj-preview>
    <mj-style>.price { letter-spacing: 2px; }</mj-style>
  </mj-head>
  <mj-body>
    <mj-section><mj-column>
      <mj-text font-size="20px">冬のセール</mj-text>
      <mj-text css-class="price">¥1,980 から</mj-text>
      <mj-button href="https://shop.example.jp/sale">セール会場へ</mj-button>
    </mj-column></mj-section>
  </mj-body>
</mjml>"""


def test_mjml_is_compiled_css_inlined_and_text_generated() -> None:
    content = Channel.finish({"subject": "冬のセール", "mjml": MJML})
    assert set(content) == {"subject", "html", "text"}
    html = content["html"]
    assert "<mj-" not in html and "<table" in html
    # The class rule from <mj-style> now sits in the element's own style attribute.
    price_cell = html.split("¥1,980")[0].rsplit("<td", 1)[1]
    assert 'class="price"' in price_cell and "letter-spacing: 2px" in price_cell
    assert "<style>.price" not in html and "letter-spacing" not in html.split("</head>")[0]
    # Media queries stay (responsive layout), remote stylesheets were neither fetched nor inlined.
    assert "@media" in html
    text = content["text"]
    assert "冬のセール" in text
    assert "セール会場へ (https://shop.example.jp/sale)" in text
    assert "今だけ送料無料" not in text  # the hidden preheader is for the inbox list, not the text part
    assert "<" not in text


def test_html_is_inlined_and_a_written_text_part_is_kept() -> None:
    content = Channel.finish(
        {
            "subject": "  Your order  ",
            "html": "<html><head><style>p.note { font-weight: bold }</style></head>"
            '<body><p class="note">Thanks</p></body></html>',
            "text": "Thanks, written by hand.",
        }
    )
    assert content["subject"] == "Your order"
    assert '<p class="note" style="font-weight: bold;">Thanks</p>' in content["html"]
    assert content["text"] == "Thanks, written by hand."


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ({"html": "<p>x</p>"}, "subject"),
        ({"subject": "x"}, "HTML or MJML"),
        ({"subject": "x", "mjml": "<mjml><mj-body><mj-section>"}, "MJML"),
    ],
)
def test_unsendable_variants_are_refused_with_a_reason(variant: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Channel.finish(variant)


def test_text_from_html_is_readable() -> None:
    html = """<html><head><title>T</title><style>p{color:red}</style></head><body>
      <div style="display:none">preheader</div>
      <h1>Order&nbsp;#123 &amp; more</h1>
      <p>Hello<br>Tanaka</p>
      <ul><li>Tea</li><li>Cup</li></ul>
      <ol><li>Pay</li><li>Wait</li></ol>
      <p><a href="https://example.com/track">Track it</a> or mail
         <a href="mailto:help@example.jp">help@example.jp</a>.
         <a href="https://example.com/">https://example.com/</a></p>
      <table><tr><td>Item</td><td>¥500</td></tr><tr><td>Total</td><td>¥500</td></tr></table>
      <hr><p>Footer</p></body></html>"""
    assert html_to_text(html) == (
        "Order\xa0#123 & more\n"
        "\n"
        "Hello\n"
        "Tanaka\n"
        "\n"
        "- Tea\n"
        "- Cup\n"
        "\n"
        "1. Pay\n"
        "2. Wait\n"
        "\n"
        "Track it (https://example.com/track) or mail help@example.jp. https://example.com/\n"
        "\n"
        "Item ¥500\n"
        "Total ¥500\n"
        "\n"
        "----------------------------------------\n"
        "\n"
        "Footer\n"
    )


def test_text_from_sloppy_html_keeps_words_and_links() -> None:
    assert (
        html_to_text('<p>Hello <b>World</b>! <a href="https://u.jp/x">unclosed')
        == "Hello World! unclosed (https://u.jp/x)\n"
    )
    assert html_to_text("<style>p{}</style><p>ok</p><script>if (a<b) {}</script>") == "ok\n"
    assert html_to_text('<a href="https://x.jp/"><img src="l.png" alt="ロゴ"></a>') == "ロゴ (https://x.jp/)\n"


GOOD = {"host": "smtp.example.jp", "port": 587, "security": "starttls", "from_email": "shop@example.jp"}


def test_a_good_config_is_normalised() -> None:
    cleaned = Channel.clean_config({**GOOD, "port": "587", "security": "STARTTLS", "username": "u", "password": "p"})
    assert cleaned["port"] == 587 and cleaned["security"] == "starttls"
    assert set(Channel.secret_fields) == {"password", "bounce_password", "bounce_webhook_secret"}


def test_a_bounce_mailbox_is_configured_with_defaults() -> None:
    cleaned = Channel.clean_config(
        {
            **GOOD,
            "bounce_protocol": "IMAP",
            "bounce_host": "imap.example.jp",
            "bounce_username": "b",
            "bounce_password": "p",
        }
    )
    mailbox = Channel(cleaned).bounce_mailbox()
    assert mailbox is not None
    assert (mailbox["protocol"], mailbox["port"], mailbox["security"], mailbox["delete"]) == ("imap", 993, "tls", False)
    assert Channel(Channel.clean_config(GOOD)).bounce_mailbox() is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"port": 0}, "config.port"),
        ({"port": 70000}, "config.port"),
        ({"port": True}, "config.port"),
        ({"security": "ssl"}, "config.security"),
        ({"from_email": "shop"}, "config.from_email"),
        ({"from_email": "a b@example.jp"}, "config.from_email"),
        ({"reply_to": "nobody"}, "config.reply_to"),
        ({"from_name": "Shop\r\nBcc: x@example.org"}, "config.from_name"),
        ({"username": "u"}, "config.password"),
        ({"timeout": -1}, "config.timeout"),
        ({"connections": 0}, "config.connections"),
        ({"connections": 21}, "config.connections"),
        ({"connections": "4"}, "config.connections"),
        ({"host": ""}, "config.host"),
        ({"region": "ap"}, "config.region"),
        ({"bounce_host": "imap.example.jp"}, "config.bounce_protocol"),
        ({"bounce_protocol": "pop3", "bounce_host": "h", "bounce_username": "u"}, "config.bounce_password"),
        (
            {"bounce_protocol": "nntp", "bounce_host": "h", "bounce_username": "u", "bounce_password": "p"},
            "config.bounce_protocol",
        ),
        ({"bounce_webhook_secret": "not base64!"}, "config.bounce_webhook_secret"),
    ],
)
def test_bad_config_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Channel.clean_config({**GOOD, **change})
    assert caught.value.field == field


def _built(content: dict[str, Any]) -> bytes:
    from tsunagu.messaging.channels.base import Message

    channel = Channel(Channel.clean_config(GOOD))
    return channel.build(
        Message(key="k1", channel_type="email", topic="transactional", address="a@example.com", content=content)
    )[0]


def test_each_part_takes_the_lightest_safe_transfer_encoding() -> None:
    import email
    import email.policy

    raw = _built({"subject": "Café", "text": "Plain ASCII only.", "html": "<p>Un café crème, s'il vous plaît</p>"})
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    plain, html = list(msg.iter_parts())
    assert plain["Content-Transfer-Encoding"] == "7bit"
    assert html["Content-Transfer-Encoding"] == "quoted-printable"
    assert html.get_content() == "<p>Un café crème, s'il vous plaît</p>"
    japanese = _built({"subject": "件名", "text": "日本語の本文です。" * 20, "html": "<p>本文</p>"})
    parts = list(email.message_from_bytes(japanese, policy=email.policy.default).iter_parts())
    assert parts[0]["Content-Transfer-Encoding"] == "base64"
    assert parts[0].get_content() == "日本語の本文です。" * 20
    # Nothing needs 8BITMIME, and no line is longer than SMTP allows.
    assert raw.isascii() and japanese.isascii()
    assert max(len(line) for line in japanese.split(b"\r\n")) <= 78


def test_a_long_quoted_printable_line_is_broken_with_crlf() -> None:
    import email
    import email.policy

    # One line (no line end for b2a_qp to copy), long enough to be broken, a "." right after the break.
    text = "é" + "x" * 74 + ".tracked.link"
    raw = _built({"subject": "s", "text": text, "html": "<p>x</p>"})
    assert b"\n" not in raw.replace(b"\r\n", b"")  # every line end is CRLF: SMTP dot-stuffs every line
    plain = next(email.message_from_bytes(raw, policy=email.policy.default).iter_parts())
    assert plain["Content-Transfer-Encoding"] == "quoted-printable" and plain.get_content() == text


def test_the_date_header_comes_from_the_clock() -> None:
    import time_machine

    with time_machine.travel("2026-12-24 09:00:00+09:00", tick=False):
        raw = _built({"subject": "s", "text": "t", "html": "<p>t</p>"})
    assert b"\r\nDate: Thu, 24 Dec 2026 00:00:00 +0000\r\n" in raw
