"""Open and click tracking: rewritten links, the pixel, signed tokens, and machine hits flagged."""

from __future__ import annotations

import base64
import re

import pytest
from django.core import signing

from tsunagu.messaging.links import unsubscribe_key, unsubscribe_token
from tsunagu.messaging.tracking import click_is_machine, html_with_tracking, open_is_machine, tracking_parse

BASE = "https://cx.example.jp"
HTML = """<html><body>
<p><a href="https://shop.example.jp/item?id=1&amp;ref=mail" class="btn">商品を見る</a></p>
<p><a class="x" href='http://example.com/plain'>plain</a> <A HREF=https://example.com/bare>bare</A></p>
<p><a href="mailto:help@example.jp">mail us</a> <a href="tel:+81312345678">call</a></p>
<p><a href="https://cx.example.jp/m/u/tok123">配信停止</a> <a href="https://other.example/unsubscribe?u=1">stop</a></p>
<p><a data-notrack href="https://shop.example.jp/private">private</a> <a name="top">anchor</a></p>
</body></html>"""


def hrefs(html: str) -> list[str]:
    return re.findall(r"""href=["']([^"']*)["']""", html, re.IGNORECASE)


def test_web_links_go_through_the_redirect_and_a_pixel_is_added() -> None:
    out = html_with_tracking(HTML, base_url=BASE + "/", key="dlv-1", unsubscribe_url="https://cx.example.jp/m/u/tok123")
    links = hrefs(out)
    tracked = [h for h in links if h.startswith(f"{BASE}/m/c/")]
    assert len(tracked) == 3
    # The target is the real URL (entities decoded), carried in the signed token.
    assert [tracking_parse(h.rsplit("/", 1)[1]) for h in tracked] == [
        ("dlv-1", "https://shop.example.jp/item?id=1&ref=mail"),
        ("dlv-1", "http://example.com/plain"),
        ("dlv-1", "https://example.com/bare"),
    ]
    for untouched in (
        "mailto:help@example.jp",
        "tel:+81312345678",
        "https://cx.example.jp/m/u/tok123",
        "https://other.example/unsubscribe?u=1",
        "https://shop.example.jp/private",
    ):
        assert untouched in links
    assert 'class="btn"' in out and "商品を見る" in out
    pixels = re.findall(r'<img src="([^"]+)" width="1" height="1"', out)
    assert len(pixels) == 1 and pixels[0].startswith(f"{BASE}/m/o/") and pixels[0].endswith(".gif")
    assert out.index(pixels[0]) < out.index("</body>")
    assert tracking_parse(pixels[0].rsplit("/", 1)[1]) == ("dlv-1", None)


def test_html_without_a_body_gets_the_pixel_at_the_end() -> None:
    out = html_with_tracking("<p>hi</p>", base_url=BASE, key="k")
    assert out.startswith("<p>hi</p><img src=")


def test_a_forged_or_altered_token_is_refused() -> None:
    out = html_with_tracking('<a href="https://shop.example.jp/">x</a>', base_url=BASE, key="k1")
    token = hrefs(out)[0].rsplit("/", 1)[1]
    with pytest.raises(signing.BadSignature):
        tracking_parse(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    forged = signing.dumps(["k1", "https://evil.example/"], salt="something else", compress=True)
    with pytest.raises(signing.BadSignature):
        tracking_parse(forged)
    with pytest.raises(signing.BadSignature):
        tracking_parse("garbage")


MPP = "Mozilla/5.0"
IPHONE_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"


@pytest.mark.parametrize(
    ("user_agent", "ip", "seconds", "machine"),
    [
        (MPP, "203.0.113.9", 600, True),  # Apple's MPP proxy user agent
        (IPHONE_MAIL, "17.58.100.7", 600, True),  # from Apple's network
        (IPHONE_MAIL, "::ffff:17.58.100.7", 600, True),
        (IPHONE_MAIL, "2620:149:a:1::10", 600, True),
        (IPHONE_MAIL, "198.51.100.20", 600, False),  # a person's iPhone without MPP
        (GMAIL_PROXY, "66.249.84.1", 600, False),  # Gmail fetches when the person opens
        (CHROME, "198.51.100.20", 1.0, True),  # fetched as the message arrived
        (CHROME, "198.51.100.20", None, False),
        ("", "198.51.100.20", 600, True),
        ("python-requests/2.32.3", "198.51.100.20", 600, True),
        ("Barracuda Sentinel (EE)", "198.51.100.20", 600, True),
    ],
)
def test_machine_opens(user_agent: str, ip: str, seconds: float | None, machine: bool) -> None:
    assert open_is_machine(user_agent=user_agent, ip=ip, seconds_after_send=seconds) is machine


@pytest.mark.parametrize(
    ("user_agent", "method", "seconds", "machine"),
    [
        (CHROME, "GET", 3600, False),
        (IPHONE_MAIL, "get", 45, False),
        (CHROME, "HEAD", 3600, True),  # scanners probe with HEAD
        (CHROME, "GET", 0.8, True),  # a scanner at delivery: no person clicks that fast
        (MPP, "GET", 3600, True),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0",
            "GET",
            60,
            True,
        ),
        ("Microsoft Office Existence Discovery", "GET", 60, True),
        ("Go-http-client/1.1", "GET", 60, True),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "GET", 60, True),
        (None, "GET", 60, True),
    ],
)
def test_machine_clicks(user_agent: str | None, method: str, seconds: float, machine: bool) -> None:
    assert click_is_machine(user_agent=user_agent, method=method, seconds_after_send=seconds) is machine


def _old_token(payload: list[str]) -> str:
    # How links were signed before the HMAC tokens (django.core.signing); messages already sent carry them.
    return signing.dumps(payload, salt="tsunagu.messaging.tracking", compress=True)


def test_links_in_messages_sent_before_still_work() -> None:
    assert tracking_parse(_old_token(["k1", "https://shop.example.jp/a"])) == ("k1", "https://shop.example.jp/a")
    assert tracking_parse(_old_token(["k1"]) + ".gif") == ("k1", None)


def test_a_token_cannot_be_turned_into_another() -> None:
    out = html_with_tracking('<a href="https://shop.example.jp/a">x</a>', base_url=BASE, key="k1")
    click = hrefs(out)[0].rsplit("/", 1)[1]
    pixel = re.findall(r'<img src="[^"]+/m/o/([^"]+)"', out)[0]
    key, target, signature = click.split(".")
    assert key == "k1" and pixel == f"k1.{pixel.split('.')[1]}.gif"
    # Another target under the same signature, another delivery's key, an open's signature on a click.
    evil = base64.urlsafe_b64encode(b"https://evil.example/").rstrip(b"=").decode()
    for forged in (f"k1.{evil}.{signature}", f"k2.{target}.{signature}", f"k1.{target}.{pixel.split('.')[1]}",
                   f"k2.{pixel.split('.')[1]}"):
        with pytest.raises(signing.BadSignature):
            tracking_parse(forged)
    # An unsubscribe token (the same form, key.signature) is not an open token.
    with pytest.raises(signing.BadSignature):
        tracking_parse(unsubscribe_token("k1"))


def test_tokens_survive_a_rotation_of_the_secret_key(settings) -> None:
    out = html_with_tracking('<a href="https://shop.example.jp/a">x</a>', base_url=BASE, key="k1")
    click = hrefs(out)[0].rsplit("/", 1)[1]
    unsubscribe = unsubscribe_token("k1")
    old = settings.SECRET_KEY
    settings.SECRET_KEY = "a new secret key " * 3
    with pytest.raises(signing.BadSignature):
        tracking_parse(click)
    assert unsubscribe_key(unsubscribe) is None
    settings.SECRET_KEY_FALLBACKS = [old]
    assert tracking_parse(click) == ("k1", "https://shop.example.jp/a")
    assert unsubscribe_key(unsubscribe) == "k1"
