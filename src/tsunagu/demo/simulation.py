"""The simulation: each person's sessions across channels over 90 days, as Segment payloads, fitted to the
requested event count."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from typing import Any

from tsunagu.demo.catalog import (
    _CALL_RESOLUTIONS,
    _CALL_TOPICS,
    _EMAIL_CAMPAIGNS,
    _HOURS_CALL,
    _HOURS_ONLINE,
    _HOURS_STORE,
    _LINE_CAMPAIGNS,
    _LINE_CHATS,
    _PAYMENTS_ONLINE,
    _PAYMENTS_STORE,
    _PERSONAS,
    _PRODUCTS,
    _SEARCHES,
    _STORES,
    DAYS,
    DEMO_NAME,
    JST,
)
from tsunagu.demo.people import _make_people, _Out, _Person, _State, _Unit


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
                # The cart's own id (the number of the event that starts its checkout: no draw of the rng,
                # so the rest of the simulation is unchanged); the abandoned-cart journey enters per cart.
                "properties": {"cart_id": f"cart-{self.seq + 1:08d}", "value": value, "currency": "JPY"},
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
