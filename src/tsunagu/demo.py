"""The demo workspace: 「つなぐマート」, a Japanese retailer with a web shop, an app, email newsletters, a LINE
official account, stores with POS tills and a call centre.

``tsunagu demo`` (and so ``make run``) calls ``demo_load``. It is idempotent: once the ``demo`` workspace
exists it only reports the login again. The people and their behaviour are simulated with a seeded
``random.Random`` and a seeded Faker ja_JP, so every install gets the same demo (shifted to the day it is
loaded). Every event is a Segment-spec payload validated with ``parse_event`` and stored with
``events_ingest`` — the code path of ``/v1/batch`` — so the profiles, identities and merges in the demo are
exactly what the same traffic would produce through the API.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from tsunagu.core import clock
from tsunagu.core.errors import Conflict
from tsunagu.core.jobs import job_enqueue
from tsunagu.core.selectors import workspace_get
from tsunagu.core.services import apikey_create, audit_record, membership_add, user_create, workspace_create
from tsunagu.customers.selectors import customer_count
from tsunagu.events.selectors import event_count, source_list
from tsunagu.events.services import events_ingest, source_create
from tsunagu.events.validation import ParsedEvent, parse_event

DEMO_SLUG = "demo"
DEMO_NAME = "つなぐマート"
DEMO_USERNAME = "demo"
DEFAULT_PASSWORD = "tsunagu-demo"
TOKEN_FILE = "demo-api-token"
SEED = 2205
DAYS = 90
_FLUSH_AFTER = dt.timedelta(days=1)
JST = dt.timezone(dt.timedelta(hours=9), "JST")  # Japan keeps no daylight saving time

# One source per touchpoint, named as the company would (channel values of tsunagu.events.models.Channel).
SOURCES: tuple[tuple[str, str], ...] = (
    ("web", "Webサイト"),
    ("app", "公式アプリ"),
    ("email", "メールマガジン"),
    ("line", "LINE公式アカウント"),
    ("store", "店舗POS"),
    ("call_center", "コールセンター"),
)

# sku, name, category, tax-inclusive price in yen, reduced (8%) consumption-tax rate
_PRODUCTS: tuple[tuple[str, str, str, int, bool], ...] = (
    ("F-1001", "新潟県産こしひかり 5kg", "食品", 2980, True),
    ("F-1002", "北海道牛乳 1L", "食品", 248, True),
    ("F-1003", "静岡 深蒸し緑茶 100g", "食品", 980, True),
    ("F-1004", "讃岐うどん 6食入", "食品", 458, True),
    ("F-1005", "丸大豆しょうゆ 1L", "食品", 398, True),
    ("F-1006", "国産和牛 切り落とし 300g", "食品", 1980, True),
    ("F-1007", "ドリップコーヒー 20袋", "飲料", 880, True),
    ("F-1008", "天然水 2L×6本", "飲料", 598, True),
    ("D-2001", "洗濯洗剤 詰め替え 大容量", "日用品", 548, False),
    ("D-2002", "ボックスティッシュ 5箱", "日用品", 398, False),
    ("D-2003", "トイレットペーパー 12ロール", "日用品", 598, False),
    ("D-2004", "今治タオル フェイスタオル", "日用品", 880, False),
    ("K-3001", "南部鉄器 急須", "キッチン", 6800, False),
    ("K-3002", "美濃焼 マグカップ", "キッチン", 1200, False),
    ("K-3003", "三徳包丁 ステンレス", "キッチン", 4980, False),
    ("K-3004", "伊賀焼 土鍋 8号", "キッチン", 3980, False),
    ("E-4001", "ワイヤレスイヤホン", "家電", 12800, False),
    ("E-4002", "電気ケトル 1.0L", "家電", 3980, False),
    ("E-4003", "IH炊飯器 5.5合", "家電", 24800, False),
    ("E-4004", "モバイルバッテリー 10000mAh", "家電", 2980, False),
    ("A-5001", "綿100% Tシャツ", "衣料", 1490, False),
    ("A-5002", "あったかインナー", "衣料", 1290, False),
    ("A-5003", "撥水レインジャケット", "衣料", 5990, False),
    ("C-6001", "日焼け止め SPF50+", "コスメ", 1280, False),
    ("C-6002", "化粧水 しっとり 200mL", "コスメ", 1650, False),
    ("C-6003", "ハンドクリーム 柚子の香り", "コスメ", 780, False),
    ("G-7001", "京都 抹茶スイーツ詰め合わせ", "ギフト", 2700, True),
    ("G-7002", "季節のギフトセット", "ギフト", 3240, True),
)
_SEARCHES = ("米", "お茶", "タオル", "ギフト", "炊飯器", "日焼け止め", "土鍋", "コーヒー", "イヤホン", "うどん")

# store id, name, prefecture; people mostly live near their store
_STORES: tuple[tuple[str, str, str], ...] = (
    ("S01", "渋谷店", "東京都"),
    ("S02", "新宿店", "東京都"),
    ("S03", "横浜店", "神奈川県"),
    ("S04", "名古屋栄店", "愛知県"),
    ("S05", "梅田店", "大阪府"),
    ("S06", "福岡天神店", "福岡県"),
    ("S07", "札幌大通店", "北海道"),
    ("S08", "仙台店", "宮城県"),
)
_CITIES: dict[str, tuple[str, ...]] = {
    "東京都": ("渋谷区", "新宿区", "世田谷区", "杉並区", "練馬区", "目黒区", "中野区"),
    "神奈川県": ("横浜市港北区", "横浜市青葉区", "川崎市中原区", "相模原市中央区", "藤沢市"),
    "愛知県": ("名古屋市中区", "名古屋市千種区", "豊田市", "一宮市", "岡崎市"),
    "大阪府": ("大阪市北区", "大阪市中央区", "吹田市", "豊中市", "堺市堺区"),
    "福岡県": ("福岡市中央区", "福岡市博多区", "北九州市小倉北区", "久留米市"),
    "北海道": ("札幌市中央区", "札幌市北区", "旭川市", "函館市"),
    "宮城県": ("仙台市青葉区", "仙台市泉区", "石巻市"),
    "埼玉県": ("さいたま市浦和区", "川口市", "所沢市"),
    "千葉県": ("千葉市中央区", "船橋市", "柏市"),
    "兵庫県": ("神戸市中央区", "西宮市", "姫路市"),
    "京都府": ("京都市左京区", "宇治市"),
    "広島県": ("広島市中区", "福山市"),
    "静岡県": ("静岡市葵区", "浜松市中央区"),
}
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")  # RFC 2606: never a real mailbox
_EMAIL_CAMPAIGNS = (
    "週末限定セール",
    "新商品のお知らせ",
    "ポイント5倍デー",
    "会員様限定クーポン",
    "今週のおすすめ",
    "ギフト特集",
)
_LINE_CAMPAIGNS = ("LINE限定クーポン", "タイムセール速報", "店舗イベントのご案内", "友だち限定 送料無料")
_LINE_CHATS = (
    "営業時間を教えてください",
    "クーポンの使い方がわかりません",
    "注文した商品はいつ届きますか?",
    "ありがとうございました!",
)
_CALL_TOPICS = (
    "配送状況の確認",
    "返品・交換",
    "ポイントについて",
    "商品の在庫確認",
    "会員情報の変更",
    "注文のキャンセル",
)
_CALL_RESOLUTIONS = ("解決", "解決", "解決", "折り返し連絡", "エスカレーション")
_PAYMENTS_ONLINE = ("クレジットカード", "クレジットカード", "PayPay", "コンビニ払い", "代金引換")
_PAYMENTS_STORE = ("現金", "クレジットカード", "PayPay", "交通系IC", "楽天Edy")

# Hour-of-day weights (JST): evenings online, daytime in stores, office hours at the call centre.
_HOURS_ONLINE = (1, 1, 0, 0, 0, 0, 1, 2, 3, 3, 3, 3, 5, 4, 3, 3, 3, 4, 5, 6, 8, 9, 8, 4)
_HOURS_STORE = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 4, 6, 5, 4, 4, 5, 6, 6, 4, 2, 0, 0, 0)
_HOURS_CALL = (0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 6, 5, 3, 4, 5, 4, 4, 3, 0, 0, 0, 0, 0, 0)

# Expected sessions per person over the 90 days at intensity 1 (scaled by activity and intensity).
_PERSONAS: dict[str, dict[str, float]] = {
    "omni": {"web": 3.0, "app": 3.0, "store": 6.0, "call": 0.4, "chat": 0.3},
    "online": {"web": 6.0, "app": 1.0, "call": 0.4},
    "app_line": {"app": 5.0, "store": 5.0, "call": 0.3, "chat": 0.4},
    "store_only": {"store": 8.0, "call": 0.6},
    "visitor": {"web": 2.0},
}
_PERSONA_WEIGHTS = (("omni", 36), ("online", 28), ("app_line", 10), ("store_only", 16), ("visitor", 10))


@dataclass(slots=True)
class _Person:
    index: int
    persona: str
    user_id: str
    traits: dict[str, Any]
    phone: str
    weight: float
    joined: dt.datetime
    is_new: bool
    store: tuple[str, str, str]
    web_id: str | None = None
    app_id: str | None = None
    app_os: str = "ios"
    line_id: str | None = None
    line_friend_at: dt.datetime | None = None
    line_link_at: dt.datetime | None = None
    email_optin: bool = False
    web_login_after: int = 0
    app_login_after: int = 0


@dataclass(slots=True)
class _State:
    """What a person has done so far, as the simulation walks through their sessions in time order."""

    web_sessions: int = 0
    app_sessions: int = 0
    web_login_at: int = 0  # which web session logs in (a person with fewer sessions logs in on the last)
    app_login_at: int = 0
    web_known: bool = False
    app_known: bool = False
    signed_up: bool = False
    store_member: bool = False
    line_linked: bool = False
    points: int = 0
    coupons: int = 0


@dataclass(slots=True)
class _Out:
    ts: dt.datetime
    channel: str
    payload: dict[str, Any]


@dataclass(slots=True)
class _Unit:
    """One session or touch: the events drop or stay together. ``critical`` units tie identities together
    (logins, sign-ups, LINE account links) and are never dropped when fitting the requested event count."""

    events: list[_Out] = field(default_factory=list)
    critical: bool = False


class _Simulation:
    def __init__(self, *, people: int, end: dt.datetime, seed: int) -> None:
        self.end = end
        self.start = end - dt.timedelta(days=DAYS)
        self.seed = seed
        self.people = _make_people(people, start=self.start, end=end, seed=seed)

    # -- orchestration ----------------------------------------------------------------------------
    def run(self, intensity: float) -> list[_Unit]:
        self.rng = random.Random(self.seed * 7 + 1)
        self.seq = 0
        self.orders = 0
        self.calls = 0
        self.spill: list[_Unit] = []
        units: list[_Unit] = []
        campaigns = self._campaigns()
        for person in self.people:
            units.extend(self._person(person, intensity, campaigns))
        return units

    def _campaigns(self) -> list[tuple[dt.datetime, str, str, int]]:
        """Newsletters every three days and LINE pushes weekly: (time, channel, name, id)."""
        out: list[tuple[dt.datetime, str, str, int]] = []
        for day in range(1, DAYS, 3):
            at = self.start + dt.timedelta(days=day, hours=12 if day % 2 else 19)
            out.append((at, "email", _EMAIL_CAMPAIGNS[day % len(_EMAIL_CAMPAIGNS)], 1000 + day))
        for day in range(2, DAYS, 7):
            at = self.start + dt.timedelta(days=day, hours=18)
            out.append((at, "line", _LINE_CAMPAIGNS[day % len(_LINE_CAMPAIGNS)], 2000 + day))
        return out

    def _times(self, p: _Person, expected: float, hours: tuple[int, ...]) -> list[dt.datetime]:
        rng = self.rng
        n = int(expected) + (1 if rng.random() < expected - int(expected) else 0)
        span = (self.end - p.joined).total_seconds()
        out = []
        for _ in range(n):
            at = p.joined + dt.timedelta(seconds=rng.random() * span)
            day = at.astimezone(JST).replace(hour=0, minute=0, second=0, microsecond=0)
            at = day + dt.timedelta(hours=rng.choices(range(24), hours)[0], seconds=rng.randrange(3600))
            if p.joined <= at < self.end:
                out.append(at)
        return out

    def _person(self, p: _Person, intensity: float, campaigns: list[tuple[dt.datetime, str, str, int]]) -> list[_Unit]:
        rng = self.rng
        rates = _PERSONAS[p.persona]
        scale = p.weight * intensity * (self.end - p.joined).total_seconds() / (DAYS * 86400)
        plan: list[tuple[dt.datetime, str, Any]] = []
        for kind, hours in (
            ("web", _HOURS_ONLINE),
            ("app", _HOURS_ONLINE),
            ("store", _HOURS_STORE),
            ("call", _HOURS_CALL),
            ("chat", _HOURS_ONLINE),
        ):
            if kind == "web" and not p.web_id or kind == "app" and not p.app_id or kind == "chat" and not p.line_id:
                continue
            times = self._times(p, rates.get(kind, 0.0) * scale, hours)
            if not times and kind in ("web", "app", "store") and rates.get(kind, 0) >= 2.5:
                times = self._times(p, 1.0, hours) or [p.joined + (self.end - p.joined) / 2]
            plan.extend((t, kind, None) for t in times)
        reach = min(1.0, 0.35 * p.weight * intensity)
        for at, channel, name, cid in campaigns:
            if at < p.joined or rng.random() >= reach:
                continue
            if channel == "email" and p.email_optin:
                plan.append((at, "email", (name, cid)))
            elif channel == "line" and p.line_friend_at and at >= p.line_friend_at:
                plan.append((at, "line", (name, cid)))
        if p.line_friend_at and p.line_friend_at >= self.start:
            plan.append((p.line_friend_at, "line_friend", None))
        if p.line_link_at:
            plan.append((p.line_link_at, "line_link", None))
        plan.sort(key=lambda item: item[0])
        state = _State(store_member=p.persona != "store_only", points=rng.randrange(0, 3000))
        state.web_login_at = min(p.web_login_after, max(0, sum(1 for item in plan if item[1] == "web") - 1))
        state.app_login_at = min(p.app_login_after, max(0, sum(1 for item in plan if item[1] == "app") - 1))
        units: list[_Unit] = []
        handlers: dict[str, Callable[[_Person, _State, dt.datetime, Any], _Unit]] = {
            "web": self._web,
            "app": self._app,
            "store": self._store,
            "call": self._call,
            "chat": self._chat,
            "email": self._email,
            "line": self._line,
            "line_friend": self._line_friend,
            "line_link": self._line_link,
        }
        for at, kind, arg in plan:
            unit = handlers[kind](p, state, at, arg)
            units.extend(u for u in (unit, *self.spill) if u.events)
            self.spill = []
        return units

    # -- payloads ---------------------------------------------------------------------------------
    def _event(self, unit: _Unit, ts: dt.datetime, channel: str, payload: dict[str, Any]) -> dt.datetime:
        ts = min(ts, self.end - dt.timedelta(seconds=1))  # a late session must not run into the future
        self.seq += 1
        payload["messageId"] = f"demo-{self.seq:08d}"
        payload["timestamp"] = ts.astimezone(JST).isoformat(timespec="milliseconds")
        unit.events.append(_Out(ts, channel, payload))
        return ts + dt.timedelta(seconds=self.rng.randrange(8, 150))

    def _traits(self, p: _Person, state: _State) -> dict[str, Any]:
        traits = dict(p.traits)
        traits["loyaltyPoints"] = state.points
        return traits

    def _order(self, state: _State, prefix: str, products: list[tuple[str, str, str, int, bool]]) -> dict[str, Any]:
        rng = self.rng
        self.orders += 1
        lines, subtotal, tax = [], 0, 0
        for sku, name, category, price, reduced in products:
            qty = rng.choice((1, 1, 1, 2, 3))
            amount = price * qty
            rate = 8 if reduced else 10
            subtotal += amount
            tax += amount * rate // (100 + rate)
            lines.append(
                {"product_id": sku, "sku": sku, "name": name, "category": category, "price": price, "quantity": qty}
            )
        shipping = 0 if prefix == "S" or subtotal >= 5000 else 550
        points = subtotal // 100
        state.points += points
        return {
            "order_id": f"{prefix}-{self.orders:06d}",
            "total": subtotal + shipping,
            "subtotal": subtotal,
            "tax": tax,
            "shipping": shipping,
            "currency": "JPY",
            "products": lines,
            "points_earned": points,
        }

    @staticmethod
    def _product(item: tuple[str, str, str, int, bool]) -> dict[str, Any]:
        sku, name, category, price, _ = item
        return {"product_id": sku, "sku": sku, "name": name, "category": category, "price": price, "currency": "JPY"}

    def _login(
        self,
        unit: _Unit,
        p: _Person,
        state: _State,
        ts: dt.datetime,
        channel: str,
        ids: dict[str, Any],
        ctx: dict[str, Any],
    ) -> dt.datetime:
        unit.critical = True
        ids["userId"] = p.user_id
        ts = self._event(
            unit, ts, channel, {"type": "identify", **ids, "traits": self._traits(p, state), "context": ctx}
        )
        if p.is_new and not state.signed_up:
            state.signed_up = True
            ts = self._event(
                unit,
                ts,
                channel,
                {"type": "track", **ids, "event": "Signed Up", "properties": {"method": "email"}, "context": ctx},
            )
        return ts

    def _shop(
        self,
        p: _Person,
        state: _State,
        ts: dt.datetime,
        channel: str,
        ids: dict[str, Any],
        ctx: dict[str, Any],
        can_login: bool,
    ) -> None:
        """Browse products; maybe add to the cart and buy (logging in first, if not yet known). The browsing is
        a unit of its own so that fitting the event count can drop it and keep the login before it."""
        rng, unit = self.rng, _Unit()
        self.spill.append(unit)
        page_type = "page" if channel == "web" else "screen"
        if rng.random() < 0.35:
            ts = self._event(
                unit,
                ts,
                channel,
                {
                    "type": "track",
                    **ids,
                    "event": "Products Searched",
                    "properties": {"query": rng.choice(_SEARCHES)},
                    "context": ctx,
                },
            )
        viewed = rng.sample(_PRODUCTS, rng.choice((1, 1, 2, 2, 3, 4)))
        for item in viewed:
            props = {"title": item[1], "path": f"/products/{item[0]}"} if channel == "web" else {}
            ts = self._event(
                unit, ts, channel, {"type": page_type, **ids, "name": "商品詳細", "properties": props, "context": ctx}
            )
            ts = self._event(
                unit,
                ts,
                channel,
                {"type": "track", **ids, "event": "Product Viewed", "properties": self._product(item), "context": ctx},
            )
        if rng.random() >= 0.3:
            return
        basket = viewed[: rng.randint(1, len(viewed))]
        for item in basket:
            ts = self._event(
                unit,
                ts,
                channel,
                {
                    "type": "track",
                    **ids,
                    "event": "Product Added",
                    "properties": {**self._product(item), "quantity": 1},
                    "context": ctx,
                },
            )
        if rng.random() >= 0.55:
            return
        if "userId" not in ids:
            if not can_login:
                return
            ts = self._login(unit, p, state, ts, channel, ids, ctx)
            if channel == "web":
                state.web_known = True
            else:
                state.app_known = True
        value = sum(item[3] for item in basket)
        ts = self._event(
            unit,
            ts,
            channel,
            {
                "type": "track",
                **ids,
                "event": "Checkout Started",
                "properties": {"value": value, "currency": "JPY"},
                "context": ctx,
            },
        )
        if rng.random() < 0.85:
            order = self._order(state, "W" if channel == "web" else "A", basket)
            order["payment_method"] = rng.choice(_PAYMENTS_ONLINE)
            self._event(
                unit,
                ts,
                channel,
                {"type": "track", **ids, "event": "Order Completed", "properties": order, "context": ctx},
            )

    def _web(self, p: _Person, state: _State, ts: dt.datetime, campaign: Any = None) -> _Unit:
        rng, unit = self.rng, _Unit()
        ids: dict[str, Any] = {"anonymousId": p.web_id}
        ctx: dict[str, Any] = {
            "library": {"name": "analytics.js", "version": "next-1.70.0"},
            "locale": "ja-JP",
            "timezone": "Asia/Tokyo",
        }
        if campaign:
            ctx["campaign"] = {"name": campaign, "source": "newsletter", "medium": "email"}
        if state.web_known:
            ids["userId"] = p.user_id
        landing = {"path": "/", "title": f"{DEMO_NAME} 公式オンラインストア", "url": "https://shop.example.com/"}
        ts = self._event(
            unit, ts, "web", {"type": "page", **ids, "name": "トップ", "properties": landing, "context": ctx}
        )
        can_login = p.persona != "visitor"
        if can_login and not state.web_known and state.web_sessions >= state.web_login_at:
            ts = self._login(unit, p, state, ts, "web", ids, ctx)
            state.web_known = True
        elif can_login and state.web_sessions == state.web_login_at - 1:
            unit.critical = True  # the anonymous visit that the next login ties to the customer: a merge
        state.web_sessions += 1
        if rng.random() < 0.9:
            self._shop(p, state, ts, "web", ids, ctx, can_login)
        return unit

    def _app(self, p: _Person, state: _State, ts: dt.datetime, _: Any = None) -> _Unit:
        unit = _Unit()
        ios = p.app_os == "ios"
        ids: dict[str, Any] = {"anonymousId": p.app_id}
        ctx: dict[str, Any] = {
            "library": {"name": "analytics-swift" if ios else "analytics-kotlin", "version": "1.5.0"},
            "app": {"name": DEMO_NAME, "version": "3.2.0"},
            "os": {"name": "iOS" if ios else "Android", "version": "17.5" if ios else "14"},
            "locale": "ja-JP",
            "timezone": "Asia/Tokyo",
        }
        if state.app_known:
            ids["userId"] = p.user_id
        ts = self._event(
            unit,
            ts,
            "app",
            {
                "type": "track",
                **ids,
                "event": "Application Opened",
                "properties": {"from_background": self.rng.random() < 0.4},
                "context": ctx,
            },
        )
        if not state.app_known and state.app_sessions >= state.app_login_at:
            ts = self._login(unit, p, state, ts, "app", ids, ctx)
            state.app_known = True
        elif state.app_sessions == state.app_login_at - 1:
            unit.critical = True  # the anonymous app session that the next login ties to the customer
        state.app_sessions += 1
        ts = self._event(unit, ts, "app", {"type": "screen", **ids, "name": "ホーム", "context": ctx})
        self._shop(p, state, ts, "app", ids, ctx, True)
        return unit

    def _store(self, p: _Person, state: _State, ts: dt.datetime, _: Any = None) -> _Unit:
        rng, unit = self.rng, _Unit()
        ids = {"userId": p.user_id}
        store_id, store_name, _pref = p.store if rng.random() < 0.85 else rng.choice(_STORES)
        where = {"store_id": store_id, "store_name": store_name}
        if not state.store_member:
            # Joined the loyalty programme at the till: the form's name, furigana and phone become traits.
            state.store_member = True
            unit.critical = True
            traits = self._traits(p, state)
            ts = self._event(unit, ts, "store", {"type": "identify", **ids, "traits": traits})
            ts = self._event(
                unit, ts, "store", {"type": "track", **ids, "event": "Loyalty Card Issued", "properties": where}
            )
        if state.coupons and rng.random() < 0.5:
            state.coupons -= 1
            ts = self._event(
                unit,
                ts,
                "store",
                {
                    "type": "track",
                    **ids,
                    "event": "Coupon Redeemed",
                    "properties": {**where, "coupon_name": "LINE限定クーポン", "discount": 300},
                },
            )
        order = self._order(state, "S", rng.sample(_PRODUCTS, rng.choice((1, 2, 2, 3, 4, 5))))
        order.update(where, payment_method=rng.choice(_PAYMENTS_STORE))
        self._event(unit, ts, "store", {"type": "track", **ids, "event": "Order Completed", "properties": order})
        return unit

    def _call(self, p: _Person, state: _State, ts: dt.datetime, _: Any = None) -> _Unit:
        rng, unit = self.rng, _Unit()
        self.calls += 1
        call_id = f"CALL-{self.calls:06d}"
        if rng.random() < 0.5:
            ids: dict[str, Any] = {"userId": p.user_id}
            ctx: dict[str, Any] = {}
        else:
            # The caller gave no member number: the phone system knows the number, written without hyphens.
            ids = {"anonymousId": call_id.lower()}
            ctx = {"traits": {"phone": p.phone.replace("-", "")}}
        duration = rng.randint(60, 900)
        props = {"inquiry_id": call_id, "topic": rng.choice(_CALL_TOPICS), "duration_seconds": duration}
        ts = self._event(
            unit,
            ts,
            "call_center",
            {"type": "track", **ids, "event": "Call Received", "properties": props, "context": ctx},
        )
        ts += dt.timedelta(seconds=duration)
        self._event(
            unit,
            ts,
            "call_center",
            {
                "type": "track",
                **ids,
                "event": "Inquiry Closed",
                "context": ctx,
                "properties": {"inquiry_id": call_id, "resolution": rng.choice(_CALL_RESOLUTIONS)},
            },
        )
        return unit

    def _line_ids(self, p: _Person, state: _State) -> tuple[dict[str, Any], dict[str, Any]]:
        ctx = {"externalIds": [{"id": p.line_id, "type": "line_user_id", "collection": "users", "encoding": "none"}]}
        ids: dict[str, Any] = {"userId": p.user_id} if state.line_linked else {"anonymousId": p.line_id}
        return ids, ctx

    def _line_friend(self, p: _Person, state: _State, ts: dt.datetime, _: Any = None) -> _Unit:
        unit = _Unit(critical=p.line_link_at is not None)
        ids, ctx = self._line_ids(p, state)
        self._event(
            unit,
            ts,
            "line",
            {
                "type": "track",
                **ids,
                "event": "LINE Friend Added",
                "context": ctx,
                "properties": {"via": self.rng.choice(("店頭POP", "Webサイト", "アプリ"))},
            },
        )
        return unit

    def _line_link(self, p: _Person, state: _State, ts: dt.datetime, _: Any = None) -> _Unit:
        unit = _Unit(critical=True)
        _, ctx = self._line_ids(p, state)
        state.line_linked = True
        self._event(
            unit,
            ts,
            "line",
            {
                "type": "track",
                "userId": p.user_id,
                "anonymousId": p.line_id,
                "event": "LINE Account Linked",
                "context": ctx,
                "properties": {},
            },
        )
        return unit

    def _line(self, p: _Person, state: _State, ts: dt.datetime, campaign: tuple[str, int]) -> _Unit:
        rng, unit = self.rng, _Unit()
        name, cid = campaign
        ids, ctx = self._line_ids(p, state)
        props = {"campaign_id": cid, "campaign_name": name}
        ts = self._event(
            unit,
            ts,
            "line",
            {"type": "track", **ids, "event": "LINE Message Delivered", "properties": props, "context": ctx},
        )
        if rng.random() < 0.35:
            ts += dt.timedelta(minutes=rng.randrange(1, 240))
            ts = self._event(
                unit,
                ts,
                "line",
                {"type": "track", **ids, "event": "LINE Link Clicked", "properties": props, "context": ctx},
            )
            if "クーポン" in name or rng.random() < 0.3:
                state.coupons += 1
                self._event(
                    unit,
                    ts,
                    "line",
                    {
                        "type": "track",
                        **ids,
                        "event": "LINE Coupon Acquired",
                        "properties": {**props, "coupon_name": "LINE限定クーポン", "discount": 300},
                        "context": ctx,
                    },
                )
        return unit

    def _chat(self, p: _Person, state: _State, ts: dt.datetime, _: Any = None) -> _Unit:
        unit = _Unit()
        ids, ctx = self._line_ids(p, state)
        self._event(
            unit,
            ts,
            "line",
            {
                "type": "track",
                **ids,
                "event": "LINE Message Received",
                "properties": {"text": self.rng.choice(_LINE_CHATS)},
                "context": ctx,
            },
        )
        return unit

    def _email(self, p: _Person, state: _State, ts: dt.datetime, campaign: tuple[str, int]) -> _Unit:
        rng, unit = self.rng, _Unit()
        name, cid = campaign
        if rng.random() >= 0.45:
            return unit
        ids = {"userId": p.user_id}
        props = {"campaign_id": cid, "campaign_name": name, "email_subject": f"【{DEMO_NAME}】{name}"}
        ts += dt.timedelta(minutes=int(rng.expovariate(1 / 180)) + 1)
        ts = self._event(unit, ts, "email", {"type": "track", **ids, "event": "Email Opened", "properties": props})
        if rng.random() < 0.3:
            ts = self._event(
                unit,
                ts,
                "email",
                {
                    "type": "track",
                    **ids,
                    "event": "Email Link Clicked",
                    "properties": {**props, "link_url": "https://shop.example.com/sale"},
                },
            )
            if p.web_id and rng.random() < 0.7:
                landing = self._web(p, state, ts, name)
                unit.events.extend(landing.events)
                unit.critical = unit.critical or landing.critical
        return unit


def _make_people(n: int, *, start: dt.datetime, end: dt.datetime, seed: int) -> list[_Person]:
    from faker import Faker

    fake = Faker("ja_JP")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    weights = [min(6.0, math.exp(rng.gauss(0, 0.8))) for _ in range(n)]
    mean = sum(weights) / n if n else 1.0
    ranks = sorted(range(n), key=lambda i: -weights[i])
    tier_of = {}
    for pos, i in enumerate(ranks):
        share = pos / max(1, n)
        tier_of[i] = "platinum" if share < 0.05 else "gold" if share < 0.2 else "silver" if share < 0.5 else "regular"
    personas = [name for name, _ in _PERSONA_WEIGHTS]
    persona_weights = [w for _, w in _PERSONA_WEIGHTS]
    emails: set[str] = set()
    phones: set[str] = set()
    people = []
    for i in range(n):
        persona = rng.choices(personas, persona_weights)[0]
        female = rng.random() < 0.55
        family, family_kana, family_roman = fake.last_name_pair()
        given, given_kana, given_roman = fake.first_name_female_pair() if female else fake.first_name_male_pair()
        store = rng.choice(_STORES)
        prefecture = store[2] if rng.random() < 0.8 else rng.choice(sorted(_CITIES))
        while True:
            phone = f"{rng.choice(('090', '080', '070'))}-{rng.randrange(10000):04d}-{rng.randrange(10000):04d}"
            if phone not in phones:
                phones.add(phone)
                break
        while True:
            email = f"{given_roman}.{family_roman}{rng.randrange(1, 1000)}@{rng.choice(_EMAIL_DOMAINS)}".lower()
            if email not in emails:
                emails.add(email)
                break
        is_new = rng.random() < 0.25
        joined = start + dt.timedelta(seconds=rng.random() * DAYS * 0.9 * 86400) if is_new else start
        member_since = (joined if is_new else start - dt.timedelta(days=rng.randrange(30, 3000))).astimezone(JST)
        birthday = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(365 * 56))
        traits: dict[str, Any] = {
            "lastName": family,
            "firstName": given,
            "lastNameKana": family_kana,
            "firstNameKana": given_kana,
            "phone": phone,
            "birthday": birthday.isoformat(),
            "gender": "female" if female else "male",
            "prefecture": prefecture,
            "city": rng.choice(_CITIES[prefecture]),
            "loyaltyTier": tier_of[i],
            "memberSince": member_since.date().isoformat(),
            "favoriteStore": store[1],
        }
        if persona != "store_only" or rng.random() < 0.3:
            traits["email"] = email
        person = _Person(
            index=i,
            persona=persona,
            user_id=f"TM{i + 1:07d}",
            traits=traits,
            phone=phone,
            weight=weights[i] / mean,
            joined=joined,
            is_new=is_new,
            store=store,
        )
        if persona in ("omni", "online", "visitor"):
            person.web_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            person.web_login_after = rng.choice((0, 1, 1, 2, 3))
        if persona in ("omni", "app_line") or persona == "online" and rng.random() < 0.4:
            person.app_id = str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()
            person.app_os = "ios" if rng.random() < 0.65 else "android"
            person.app_login_after = rng.choice((0, 0, 1, 2))
        if persona in ("omni", "app_line") and rng.random() < 0.85 or persona == "online" and rng.random() < 0.2:
            person.line_id = "U" + f"{rng.getrandbits(128):032x}"
            span = (end - joined).total_seconds()
            before = not is_new and rng.random() < 0.6
            person.line_friend_at = (
                joined - dt.timedelta(days=30) if before else joined + dt.timedelta(seconds=rng.random() * span * 0.5)
            )
            if rng.random() < 0.6:
                person.line_link_at = person.line_friend_at + dt.timedelta(seconds=rng.random() * span * 0.4)
                person.line_link_at = max(person.line_link_at, joined + dt.timedelta(hours=1))
        person.email_optin = "email" in traits and rng.random() < 0.8
        people.append(person)
    return people


def _fit(sim: _Simulation, target: int) -> list[_Unit]:
    """Simulate at an intensity that yields a little over ``target`` events, then drop (or shorten) random
    non-critical sessions until exactly ``target`` remain (fewer only if the critical ones alone are more)."""
    # At the default rates one person makes about 45 events over the 90 days at intensity 1.
    intensity = max(0.05, min(8.0, target / (45.0 * max(1, len(sim.people)))))
    best: list[_Unit] | None = None
    best_total = 0
    for _ in range(6):
        units = sim.run(intensity)
        total = sum(len(u.events) for u in units)
        if (
            best is None
            or (total >= target and (best_total < target or total < best_total))
            or (best_total < target and total > best_total)
        ):
            best, best_total = units, total
        if total == 0 or target <= total <= 1.3 * target:
            break
        intensity *= max(0.05, min(8.0, 1.1 * target / total))
    units, total = best or [], best_total
    covered: set[str] = set()
    for unit in units:  # keep every channel in the demo, however small the load
        channels = {e.channel for e in unit.events}
        if not channels <= covered:
            unit.critical = True
            covered |= channels
    rng = random.Random(sim.seed * 7 + 2)
    optional = [i for i, u in enumerate(units) if not u.critical]
    rng.shuffle(optional)
    dropped: set[int] = set()
    for i in optional:
        if total <= target:
            break
        size = len(units[i].events)
        if total - size >= target:
            dropped.add(i)
            total -= size
    if total > target:
        for i in optional:
            if i not in dropped and len(units[i].events) > total - target:
                del units[i].events[len(units[i].events) - (total - target) :]
                total = target
                break
    return [u for i, u in enumerate(units) if i not in dropped]


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[int], None]]:
    if enabled:
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        except ImportError:
            enabled = False
    if not enabled:
        yield lambda n: None
        return
    columns = (TextColumn("[bold]デモデータ[/bold] events"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("load", total=total)
        yield lambda n: bar.advance(task, n)


def _password() -> str:
    return os.environ.get("TSUNAGU_DEMO_PASSWORD") or DEFAULT_PASSWORD


def _url() -> str:
    # `make run PORT=9000` exports PORT to its commands; `tsunagu up` defaults to TSUNAGU_PORT, then 8000.
    port = os.environ.get("TSUNAGU_PORT") or os.environ.get("PORT") or "8000"
    return f"http://127.0.0.1:{port}"


def _token_path() -> Path:
    return Path(settings.DATA_DIR) / TOKEN_FILE


def _write_token(token: str) -> str | None:
    """Keep the demo token beside the database (mode 600) so the README tour and later runs can find it."""
    path = _token_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        path.chmod(0o600)
    except OSError:
        return None
    return str(path)


def _read_token() -> str | None:
    try:
        return _token_path().read_text().strip() or None
    except OSError:
        return None


def _outcome(
    workspace: Any, *, created: bool, token: str | None, seconds: float | None, note: str = ""
) -> dict[str, Any]:
    found = {(s.channel, s.name): s.write_key for s in source_list(workspace=workspace)}
    keys = {channel: found[(channel, name)] for channel, name in SOURCES if (channel, name) in found}
    url = _url()
    password = _password()
    customers, events = customer_count(workspace=workspace), event_count(workspace=workspace)
    if created:
        head = (
            f"Loaded the demo workspace 「{workspace.name}」 ({DEMO_SLUG}): {customers:,} customers, {events:,} events"
        )
        head += f" in {seconds:.1f} s." if seconds is not None else "."
    else:
        head = f"The demo workspace 「{workspace.name}」 ({DEMO_SLUG}) is already loaded; nothing to do."
    lines = [head, f"Console:  {url}  — log in as {DEMO_USERNAME} / {password}"]
    if note:
        lines.append(note)
    if token:
        lines.append(f"API token: {token}  (also in {_token_path()})")
    else:
        lines.append(f"API token: create one with `tsunagu apikey create --workspace {DEMO_SLUG}`")
    if keys.get("web"):
        lines.append(f"Web source write key: {keys['web']}")
    return {
        "created": created,
        "workspace": DEMO_SLUG,
        "username": DEMO_USERNAME,
        "password": password,
        "api_token": token,
        "write_keys": keys,
        "customers": customers,
        "events": events,
        "seconds": round(seconds, 2) if seconds is not None else None,
        "url_hint": url,
        "message": "\n".join(lines),
    }


def demo_load(
    *, customers: int = 2000, events: int = 50000, progress: bool = False, batch_size: int | None = None
) -> dict[str, Any]:
    """Create and fill the ``demo`` workspace unless it exists; return the login, the API token and counts.

    All of it happens in one transaction, so an interrupted load leaves nothing behind and the next run
    starts again. ``batch_size`` defaults to 500 for the full demo and smaller for small loads, so that
    anonymous sessions and the logins that identify them land in different batches and merges are
    recorded as they are in production traffic.
    """
    existing = workspace_get(slug=DEMO_SLUG)
    if existing is not None:
        return _outcome(existing, created=False, token=_read_token(), seconds=None)
    started = time.monotonic()
    customers, events = max(1, customers), max(1, events)
    batch = batch_size or max(10, min(500, events // 100))
    end = clock.now().astimezone(JST).replace(hour=0, minute=0, second=0, microsecond=0)
    units = _fit(_Simulation(people=customers, end=end, seed=SEED), events)
    stream = sorted((e for u in units for e in u.events), key=lambda e: e.ts)
    note = ""
    try:
        with transaction.atomic():
            workspace = workspace_create(name=DEMO_NAME, slug=DEMO_SLUG)
            sources = {
                channel: source_create(workspace=workspace, name=name, channel=channel) for channel, name in SOURCES
            }
            User = get_user_model()
            user = User.objects.filter(username=DEMO_USERNAME).first()
            if user is None:
                user = user_create(username=DEMO_USERNAME, password=_password(), email="demo@example.com")
            else:
                note = f"User {DEMO_USERNAME!r} already existed; its password was left unchanged."
            membership_add(workspace=workspace, user=user, role="owner")
            _key, token = apikey_create(workspace=workspace, name="demo")
            received_at = clock.now()
            with _progress(progress, len(stream)) as advance:

                def send(channel: str) -> None:
                    events_ingest(source=sources[channel], events=pending[channel], received_at=received_at)
                    advance(len(pending.pop(channel)))

                # Each source sends its own batches, as each SDK would. The stream is walked in time order; a
                # source's batch goes in when it is full, and every batch once the oldest waiting event is a
                # day old, so that quiet sources (the call centre) are not all stored at the very end.
                pending: dict[str, list[ParsedEvent]] = {}
                oldest: dt.datetime | None = None
                for out in stream:
                    if oldest is not None and out.ts - oldest > _FLUSH_AFTER:
                        for channel in list(pending):
                            send(channel)
                        oldest = None
                    parsed = parse_event(out.payload, type_=None, where="", max_bytes=settings.TSUNAGU_MAX_EVENT_BYTES)
                    pending.setdefault(out.channel, []).append(parsed)
                    oldest = oldest or out.ts
                    if len(pending[out.channel]) >= batch:
                        send(out.channel)
                for channel in list(pending):
                    send(channel)
            audit_record(
                workspace=workspace,
                actor="tsunagu demo",
                action="demo.loaded",
                data={"people": customers, "events": len(stream), "seed": SEED},
            )
            job_enqueue(kind="core.optimize_database", idempotency_key="demo-optimize")
    except Conflict:
        # Another `tsunagu demo` created the workspace while we were simulating.
        existing = workspace_get(slug=DEMO_SLUG)
        if existing is None:
            raise
        return _outcome(existing, created=False, token=_read_token(), seconds=None)
    if _write_token(token) is None:
        note = (note + "\n" if note else "") + f"Could not write {_token_path()}; keep the token below."
    return _outcome(workspace, created=True, token=token, seconds=time.monotonic() - started, note=note)
