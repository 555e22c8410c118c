"""The served subscribe snippet and service worker in headless Chromium: a click subscribes with the
channel's VAPID key and posts the subscription, and a push shows the notification.

A real ``pushManager.subscribe`` needs the browser vendor's push service on the internet, so the page's
PushManager is replaced by one that records its arguments and answers a subscription made by the loopback
push stand-in; everything else (permission, service worker registration through the site's one-line worker,
the POST, the push event) is the browser's own. The push is delivered through the DevTools protocol.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tsunagu.messaging.channels.webpush import vapid_keys_generate
from tsunagu.testing.browser import launched
from tsunagu.testing.standins.push import PushService

pytestmark = [pytest.mark.browser]

STATIC = Path(__file__).resolve().parents[1] / "static" / "messaging"

PAGE = """<!doctype html><meta charset="utf-8"><title>shop</title>
<button id="go" data-tsunagu-push>通知を受け取る</button>
<script src="/static/messaging/subscribe.js" data-vapid-public-key="{key}"
        data-subscribe-url="/m/push/wstoken/subscribe" data-service-worker="/tsunagu-sw.js"></script>"""

# A 1x1 transparent PNG.
ICON = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)

# Stands in for the browser vendor's push service at subscribe time only.
FAKE_PUSH_MANAGER = """
window.__subscribeCalls = [];
const fake = %s;
PushManager.prototype.getSubscription = async function () { return null; };
PushManager.prototype.subscribe = async function (options) {
  window.__subscribeCalls.push({
    userVisibleOnly: options.userVisibleOnly,
    key: Array.from(new Uint8Array(options.applicationServerKey)),
  });
  return { options: options, toJSON: () => fake, unsubscribe: async () => true };
};
localStorage.setItem("ajs_anonymous_id", JSON.stringify("anon-42"));
"""



class _Site:
    """The customer's website on loopback: the page, its one-line worker, tsunagu's static files, and the
    subscribe endpoint (recording what it is sent)."""

    def __init__(self, vapid_public_key: str) -> None:
        self.posts: list[Any] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/":
                    self._send(200, PAGE.format(key=vapid_public_key).encode(), "text/html; charset=utf-8")
                elif self.path == "/tsunagu-sw.js":
                    self._send(200, b'importScripts("/static/messaging/sw.js");', "text/javascript")
                elif self.path == "/icon.png":
                    self._send(200, ICON, "image/png")
                elif self.path in ("/static/messaging/sw.js", "/static/messaging/subscribe.js"):
                    self._send(200, (STATIC / self.path.rsplit("/", 1)[1]).read_bytes(), "text/javascript")
                else:
                    self._send(404, b"", "text/plain")

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                content_type = self.headers.get("Content-Type")
                site.posts.append({"path": self.path, "type": content_type, "body": json.loads(body)})
                self._send(201, b"{}", "application/json")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> _Site:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with launched() as browser:
        yield browser


def _poll(check: Any, *, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_subscribe_then_a_push_shows_the_notification(chromium: Any) -> None:
    _private, public = vapid_keys_generate()
    with PushService() as push, _Site(public) as site:
        fake = push.subscribe(application_server_key=public).info
        context = chromium.new_context()
        context.grant_permissions(["notifications"], origin=site.url)
        context.add_init_script(FAKE_PUSH_MANAGER % json.dumps(fake))
        page = context.new_page()
        page.goto(site.url + "/")
        # Permission is already granted here, so loading the page sends the subscription again (kept fresh);
        # a click on the button subscribes too.
        [posted] = _poll(lambda: site.posts)
        page.click("#go")
        _poll(lambda: len(site.posts) == 2)
        assert site.posts[1] == posted
        assert posted["path"] == "/m/push/wstoken/subscribe"
        assert posted["type"] == "application/json"
        assert posted["body"] == {"subscription": fake, "anonymous_id": "anon-42"}
        call = page.evaluate("window.__subscribeCalls")[0]
        assert call["userVisibleOnly"] is True
        assert bytes(call["key"]) == base64.urlsafe_b64decode(public + "=")

        script_url = page.evaluate("navigator.serviceWorker.ready.then(r => r.active.scriptURL)")
        assert script_url == site.url + "/tsunagu-sw.js"
        cdp = context.new_cdp_session(page)
        registrations: list[Any] = []
        cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: registrations.extend(e["registrations"]))
        cdp.send("ServiceWorker.enable")
        # page.evaluate lets Playwright dispatch the protocol's events while we wait.
        [registration_id] = _poll(
            lambda: page.evaluate("0") or {r["registrationId"] for r in registrations if not r.get("isDeleted")}
        )
        first = {"title": "発送しました", "body": "ご注文 #42", "url": "/orders/42", "icon": "", "key": "dlv_7"}
        second = {"title": "お届けしました", "body": "ご注文 #42", "url": "", "icon": "/icon.png", "key": "dlv_8"}
        # The same delivery twice is one notification (tagged with its key). Pushes are handled in order and
        # the second waits for its icon, so once it shows, both copies of the first were handled.
        for data in (first, first, second):
            cdp.send(
                "ServiceWorker.deliverPushMessage",
                {"origin": site.url + "/", "registrationId": registration_id, "data": json.dumps(data)},
            )
        def notifications_once_the_last_is_shown() -> Any:
            shown = page.evaluate(
                """navigator.serviceWorker.ready.then(r => r.getNotifications()).then(ns => ns.map(n => ({
                    title: n.title, body: n.body, icon: n.icon, tag: n.tag, url: n.data && n.data.url})))"""
            )
            return shown if any(n["title"] == "お届けしました" for n in shown) else None

        shown = _poll(notifications_once_the_last_is_shown)
        assert shown == [
            {"title": "発送しました", "body": "ご注文 #42", "icon": "", "tag": "dlv_7", "url": "/orders/42"},
            {"title": "お届けしました", "body": "ご注文 #42", "icon": f"{site.url}/icon.png", "tag": "dlv_8",
             "url": ""},
        ]
        context.close()


# sw.js run in a page against a stand-in of the worker's global scope: a notification cannot be clicked
# from a test, so its click handler is called as the browser would call it.
CLICK = """async ([source, url, openTabs]) => {
  const handlers = {};
  const calls = [];
  const scope = {
    location: new URL("https://shop.example.jp/sw.js"),
    addEventListener: (type, fn) => { handlers[type] = fn; },
    skipWaiting: () => {},
    clients: {
      claim: async () => {},
      matchAll: async () => openTabs.map((tabUrl) => ({
        url: tabUrl, focus: async () => { calls.push(["focus", tabUrl]); },
      })),
      openWindow: async (target) => { calls.push(["open", target]); },
    },
  };
  new Function("self", source)(scope);
  const waits = [];
  let closed = false;
  handlers.notificationclick({
    notification: { data: { url: url }, close: () => { closed = true; } },
    waitUntil: (promise) => waits.push(promise),
  });
  await Promise.all(waits);
  return { closed: closed, calls: calls };
}"""


@pytest.mark.parametrize(
    ("url", "open_tabs", "calls"),
    [
        ("/orders/42", [], [["open", "https://shop.example.jp/orders/42"]]),
        ("https://other.example/x?y=1", [], [["open", "https://other.example/x?y=1"]]),
        ("/orders/42", ["https://shop.example.jp/orders/42"], [["focus", "https://shop.example.jp/orders/42"]]),
        ("/orders/42", ["https://shop.example.jp/"], [["open", "https://shop.example.jp/orders/42"]]),
        ("", [], []),
        ("javascript:alert(1)", [], []),
    ],
)
def test_a_click_on_the_notification_opens_its_url(
    chromium: Any, url: str, open_tabs: list[str], calls: list[list[str]]
) -> None:
    page = chromium.new_page()
    try:
        result = page.evaluate(CLICK, [(STATIC / "sw.js").read_text(), url, open_tabs])
    finally:
        page.close()
    assert result == {"closed": True, "calls": calls}
