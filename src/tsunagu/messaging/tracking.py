"""Email opens and clicks: links rewritten through a redirect, a 1x1 pixel, and the judgement of whether a
hit came from a person or a machine. Pure functions; the views that serve ``/m/o/…`` and ``/m/c/…`` and
record the events call them.

A token carries the delivery key (and a click's target) and an HMAC-SHA256 of them under a key derived
from the site's secret key (``links.token_sign``), so neither the delivery it names nor a click's target
can be forged: the redirect is not an open redirect. Tokens signed with ``django.core.signing`` (links in
messages sent before) stay valid: ``tracking_parse`` reads both.

Machine hits are *flagged*, not dropped, so the archive keeps them and reports can count people. What is
known, and what the rules below rest on:

- Apple Mail Privacy Protection (iOS 15, macOS 12 and later) downloads every remote image of a message
  through Apple's proxies soon after the message reaches the mailbox, whether or not it is read. Those
  requests carry the bare user agent ``Mozilla/5.0`` and come from Apple's relay egress (Apple's own
  17.0.0.0/8 among them; the relay also egresses through partner CDNs, so the user agent is the firmer
  signal). An MPP "open" says the message arrived, not that it was read.
- Link scanners at corporate gateways (Microsoft Defender Safe Links, Mimecast, Proofpoint, Barracuda, …)
  fetch every link at delivery: often with a HEAD request, a library or headless-browser user agent, or a
  vendor name, and within seconds of the send. A person needs longer than two seconds to receive, open and
  click.
- Gmail's and Yahoo's image proxies (``GoogleImageProxy``, ``YahooMailProxy``) fetch when the person
  opens the message: those are human opens.
"""

from __future__ import annotations

import base64
import html as html_lib
import ipaddress
import re
from collections.abc import Iterable

from django.core import signing

from tsunagu.messaging.links import token_sign, token_verify

SALT = "tsunagu.messaging.tracking"

# A person cannot receive, open and act on a message faster than this after it was handed to the relay.
MACHINE_SECONDS = 2.0

# The user agent Apple's Mail Privacy Protection proxy sends, exactly.
APPLE_MPP_USER_AGENT = "Mozilla/5.0"
APPLE_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("17.0.0.0/8", "2620:149::/32", "2403:300::/32"))

# Lower-case fragments of user agents that are not a person's mail client or browser.
_MACHINE_AGENTS = re.compile(
    r"bot\b|crawl|spider|slurp|scanner|headless|phantomjs|preview|facebookexternalhit|"
    r"python-requests|python-urllib|python-httpx|aiohttp|curl/|wget/|go-http-client|java/|okhttp|"
    r"libwww-perl|apache-httpclient|httpclient|node-fetch|axios/|"
    r"safelinks|microsoft office existence discovery|microsoft office protocol discovery|"
    r"barracuda|mimecast|proofpoint|ironport|forcepoint|trendmicro|trend micro|symantec|messagelabs|"
    r"sophos|fireeye|trellix|zscaler|fortinet"
)

_ANCHOR = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_HREF = re.compile(r"""((?<![\w-])href\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)
_NOTRACK = re.compile(r"\bdata-notrack\b", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def _open_token(key: str) -> str:
    # ``key.signature``: one HMAC (a few µs) where ``django.core.signing`` took ~30-60 µs a token, most of
    # the cost of tracking a message's links (docs/performance.md).
    return f"{key}.{token_sign('o', key)}"


def _click_token(key: str, url: str) -> str:
    target = base64.urlsafe_b64encode(url.encode("utf-8")).rstrip(b"=").decode("ascii")
    return f"{key}.{target}.{token_sign('c', key, url)}"


def open_url(*, base_url: str, key: str) -> str:
    """The pixel's URL for the delivery ``key``."""
    return f"{base_url.rstrip('/')}/m/o/{_open_token(key)}.gif"


def click_url(*, base_url: str, key: str, url: str) -> str:
    """The redirect's URL for a click on ``url`` in the delivery ``key``."""
    return f"{base_url.rstrip('/')}/m/c/{_click_token(key, url)}"


def html_with_tracking(
    html: str, *, base_url: str, key: str, unsubscribe_url: str = "", skip: Iterable[str] = ()
) -> str:
    """``html`` with its http(s) links sent through ``{base_url}/m/c/{token}`` and a 1x1 pixel
    ``{base_url}/m/o/{token}.gif`` before ``</body>``.

    Left as they are: mailto:, tel: and other non-web links, anchors with a ``data-notrack`` attribute, the
    unsubscribe link (``unsubscribe_url``, and any link whose URL says "unsubscribe": one-click unsubscribe
    must not depend on the redirect, and a scanner following it must not count as a click), and the URLs in
    ``skip``."""
    base = base_url.rstrip("/")
    untracked = set(skip)
    if unsubscribe_url:
        untracked.add(unsubscribe_url)

    def rewrite_anchor(anchor: re.Match[str]) -> str:
        tag = anchor.group(0)
        if _NOTRACK.search(tag):
            return tag
        href = _HREF.search(tag)
        if href is None:
            return tag
        raw = next(v for v in href.group(2, 3, 4) if v is not None)
        url = html_lib.unescape(raw).strip()
        if not url.lower().startswith(("http://", "https://")) or url in untracked or "unsubscribe" in url.lower():
            return tag
        tracked = f'{href.group(1)}"{base}/m/c/{_click_token(key, url)}"'
        return tag[: href.start()] + tracked + tag[href.end() :]

    rewritten = _ANCHOR.sub(rewrite_anchor, html)
    pixel = (
        f'<img src="{base}/m/o/{_open_token(key)}.gif" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0" />'
    )
    ends = list(_BODY_END.finditer(rewritten))
    if not ends:
        return rewritten + pixel
    at = ends[-1].start()
    return rewritten[:at] + pixel + rewritten[at:]


def tracking_parse(token: str) -> tuple[str, str | None]:
    """(delivery key, click target or None for an open) of a token from a tracking URL (a trailing
    ``.gif`` is allowed). Raises ``django.core.signing.BadSignature`` for a token we did not sign or that
    was altered."""
    if token.endswith(".gif"):
        token = token[:-4]
    if ":" not in token:  # ours: "key.signature" (an open) or "key.target.signature" (a click)
        return _parse(token)
    payload = signing.loads(token, salt=SALT)  # a token of django.core.signing: "payload:signature"
    if (
        not isinstance(payload, list)
        or len(payload) not in (1, 2)
        or not all(isinstance(part, str) for part in payload)
    ):
        raise signing.BadSignature("not a tracking token")
    return payload[0], payload[1] if len(payload) == 2 else None


def _parse(token: str) -> tuple[str, str | None]:
    rest, _, signature = token.rpartition(".")
    key, dot, target = rest.rpartition(".")
    if dot and target and token_verify(signature, "c", key, url := _decode(target)):
        return key, url
    if rest and token_verify(signature, "o", rest):
        return rest, None
    raise signing.BadSignature("not a tracking token")


def _decode(target: str) -> str:
    try:
        return base64.urlsafe_b64decode(target + "=" * (-len(target) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return ""


def _apple_address(ip: str | None) -> bool:
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in APPLE_NETWORKS)


def _machine_agent(user_agent: str) -> bool:
    return not user_agent or _MACHINE_AGENTS.search(user_agent.lower()) is not None


def open_is_machine(*, user_agent: str | None, ip: str | None, seconds_after_send: float | None) -> bool:
    """True when the pixel was fetched by a machine rather than shown to a person: Apple Mail Privacy
    Protection (its ``Mozilla/5.0`` user agent, or Apple's network), a scanner's or library's user agent,
    no user agent, or a fetch within ``MACHINE_SECONDS`` of the send."""
    agent = (user_agent or "").strip()
    if agent == APPLE_MPP_USER_AGENT or _apple_address(ip):
        return True
    if _machine_agent(agent):
        return True
    return seconds_after_send is not None and seconds_after_send < MACHINE_SECONDS


def click_is_machine(*, user_agent: str | None, method: str, seconds_after_send: float | None) -> bool:
    """True when a tracked link was followed by a link scanner rather than a person: anything but a GET
    (scanners probe with HEAD), a scanner's, library's or bare ``Mozilla/5.0`` user agent, no user agent,
    or a click within ``MACHINE_SECONDS`` of the send."""
    if method.upper() != "GET":
        return True
    agent = (user_agent or "").strip()
    if agent == APPLE_MPP_USER_AGENT or _machine_agent(agent):
        return True
    return seconds_after_send is not None and seconds_after_send < MACHINE_SECONDS
