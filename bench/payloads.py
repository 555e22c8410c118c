"""Realistic Segment traffic, generated deterministically from a seed.

The shapes follow what the SDKs actually send: ``segment-analytics-python`` (server side, Basic auth with
the write key, batches of up to 100 events / 500 KB with a ``sentAt``) carrying events for a web shop —
pages, product/cart/order tracks and identifies — for a pool of users, most of them known (userId plus the
anonymousId of their browser), the rest anonymous. Every messageId is a random UUID, as the SDKs make them.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

USERS = 10_000
KNOWN_SHARE = 0.6
MAX_BATCH_EVENTS = 100  # segment-analytics-python's upload_size
MAX_BATCH_BYTES = 500 * 1024

_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
)
_PAGES = (
    ("Home", "/", "トップ"),
    ("Category", "/c/outdoor", "アウトドア"),
    ("Category", "/c/kitchen", "キッチン用品"),
    ("Product", "/p/sku-{sku}", "商品詳細"),
    ("Cart", "/cart", "カート"),
    ("Checkout", "/checkout", "ご注文手続き"),
)
_TRACKS = ("Product Viewed", "Product Added", "Cart Viewed", "Checkout Started", "Order Completed", "Coupon Applied")
_PLANS = ("free", "silver", "gold", "platinum")
_PREFS = ("東京都", "大阪府", "神奈川県", "愛知県", "福岡県", "北海道")


@dataclass(frozen=True, slots=True)
class User:
    anonymous_id: str
    user_id: str | None
    email: str | None


def user(k: int) -> User:
    """User ``k`` of the pool; the same ``k`` always gives the same ids, in every process."""
    anon = str(uuid.UUID(int=(0x5EED << 96) | k, version=4))
    known = (k * 7919) % 100 < KNOWN_SHARE * 100
    return User(anon, f"u{k:06d}" if known else None, f"user{k:06d}@example.co.jp" if known else None)


def _iso(ts: dt.datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(rng: random.Random, now: dt.datetime, *, users: int = USERS, kind: str | None = None) -> dict[str, Any]:
    """One Segment event (a track, page or identify — or ``kind``) for a random user of the pool."""
    who = user(rng.randrange(users))
    roll = rng.random()
    if kind is None:
        kind = "identify" if roll < 0.1 and who.user_id else ("page" if roll < 0.55 else "track")
    ts = now - dt.timedelta(milliseconds=rng.randrange(0, 60_000))
    body: dict[str, Any] = {
        "type": kind,
        "messageId": str(uuid.uuid4()),
        "anonymousId": who.anonymous_id,
        "timestamp": _iso(ts),
        "context": {
            "library": {"name": "analytics-python", "version": "2.3.3"},
            "ip": f"203.0.113.{rng.randrange(1, 255)}",
            "userAgent": rng.choice(_AGENTS),
            "locale": "ja-JP",
            "timezone": "Asia/Tokyo",
        },
        "integrations": {},
    }
    if who.user_id:
        body["userId"] = who.user_id
    sku = rng.randrange(1, 5000)
    if kind == "page":
        name, path, title = rng.choice(_PAGES)
        path = path.format(sku=sku)
        body["name"] = name
        body["properties"] = {
            "path": path,
            "url": f"https://shop.example.co.jp{path}",
            "title": f"{title} | Example Shop",
            "referrer": rng.choice(("", "https://www.google.com/", "https://line.me/")),
            "search": "",
        }
    elif kind == "track":
        body["event"] = rng.choice(_TRACKS)
        body["properties"] = {
            "product_id": f"sku-{sku}",
            "sku": f"SKU-{sku:05d}",
            "category": rng.choice(("outdoor", "kitchen", "apparel")),
            "name": f"商品 {sku}",
            "price": round(rng.uniform(500, 30_000), 0),
            "quantity": rng.randrange(1, 4),
            "currency": "JPY",
        }
    else:
        body["traits"] = {
            "email": who.email,
            "name": f"利用者 {who.user_id}",
            "plan": rng.choice(_PLANS),
            "prefecture": rng.choice(_PREFS),
            "newsletter": rng.random() < 0.5,
        }
    return body


def batches(
    seed: int, count: int, *, users: int = USERS, now: dt.datetime | None = None, size: int = MAX_BATCH_EVENTS
) -> list[list[dict[str, Any]]]:
    """``count`` events cut into batches the way segment-analytics-python flushes them (``size`` events at
    most, 100 by default; the benchmark's throughput runs send 500 — still under the 500 KB limit)."""
    rng = random.Random(seed)
    now = now or dt.datetime.now(dt.UTC)
    out: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for _ in range(count):
        item = event(rng, now, users=users)
        item_size = len(orjson.dumps(item))
        if current and (len(current) >= size or size + item_size > MAX_BATCH_BYTES - 1024):
            out.append(current)
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        out.append(current)
    return out


def basic_auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


def http_request(path: str, body: bytes, *, write_key: str, port: int) -> bytes:
    """A complete HTTP/1.1 keep-alive request, ready for ``sendall``."""
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "User-Agent: analytics-python/2.3.3\r\n"
        "Content-Type: application/json\r\n"
        f"Authorization: {basic_auth(write_key)}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


def batch_body(items: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"batch": items, "sentAt": _iso(dt.datetime.now(dt.UTC))})
