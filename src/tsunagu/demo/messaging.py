"""The demo's communications: channels, four communications in Japanese and English, and three weeks of
archived deliveries with what became of them (delivered, opened, clicked, bounced, failed, read).

The provider channels (SMTP, Twilio, LINE) carry demo credentials and are left disabled after the history is
written, so ``make run`` never tries to reach a provider; the in-app inbox stays on, so "send a test" works
out of the box.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from tsunagu.customers.selectors import customer_list
from tsunagu.messaging.delivery import Report, delivery_report
from tsunagu.messaging.failover import send_run
from tsunagu.messaging.services import channel_create, channel_update, communication_create, send_create

CHANNELS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "email",
        "メール配信 (デモ)",
        {
            "host": "localhost",
            "port": 1025,
            "security": "none",
            "from_email": "info@tsunagu-mart.example",
            "from_name": "つなぐマート",
        },
    ),
    (
        "sms",
        "SMS (デモ)",
        {
            "provider": "twilio",
            "account_sid": "AC" + "0" * 32,
            "auth_token": "demo-token",
            "from_number": "+815012345678",
        },
    ),
    (
        "line",
        "LINE公式アカウント (デモ)",
        {"channel_access_token": "demo-access-token", "channel_secret": "demo-secret"},
    ),
    ("in_app", "アプリ内お知らせ", {}),
]

_SHIPPED_HTML_JA = """<h1>{{ customer.family_name }} {{ customer.given_name }} 様</h1>
<p>ご注文の商品を発送しました。お届けまで今しばらくお待ちください。</p>
<p>注文番号: <strong>{{ data.order_id | default: "TM-000000" }}</strong></p>
<p><a href="https://tsunagu-mart.example/orders/{{ data.order_id }}">配送状況を確認する</a></p>"""

COMMUNICATIONS: list[dict[str, Any]] = [
    {
        "key": "order-shipped",
        "name": "発送のお知らせ",
        "topic": "transactional",
        "variants": [
            {
                "channel": "email",
                "locale": "ja",
                "subject": "【つなぐマート】ご注文の商品を発送しました",
                "html": _SHIPPED_HTML_JA,
            },
            {
                "channel": "email",
                "locale": "en",
                "subject": "Your Tsunagu Mart order has shipped",
                "html": "<p>Dear {{ customer.given_name }},</p><p>Your order {{ data.order_id }} is on its way.</p>",
            },
            {
                "channel": "sms",
                "locale": "ja",
                "text": "つなぐマートです。ご注文{{ data.order_id }}を発送しました。配送状況はアプリでご確認ください。",
            },
            {
                "channel": "line",
                "locale": "ja",
                "text": "{{ customer.family_name }}様、ご注文の商品を発送しました📦 "
                "配送状況はメニューからご確認いただけます。",
            },
            {
                "channel": "in_app",
                "locale": "ja",
                "title": "発送しました",
                "body": "ご注文{{ data.order_id }}を発送しました。",
                "url": "https://tsunagu-mart.example/orders",
            },
        ],
        # LINE first; an SMS if LINE cannot be used or fails; then email. (A wait such as "delivered within
        # 10 minutes" would time out when the demo's history is replayed: its providers are switched off.)
        "policy": {"steps": [{"channel": "line"}, {"channel": "sms"}, {"channel": "email"}], "late_success": "ignore"},
    },
    {
        "key": "cart-reminder",
        "name": "カート放棄リマインド",
        "topic": "marketing",
        "variants": [
            {"channel": "line", "locale": "ja", "text": "カートに商品が残っています🛒 本日中のご注文で送料無料！"},
            {
                "channel": "email",
                "locale": "ja",
                "subject": "お買い忘れはありませんか？",
                "html": '<p>{{ customer.family_name }}様</p><p>カートに商品が残っています。<a href="https://tsunagu-mart.example/cart">カートを見る</a></p>'
                '<p><a href="{{ unsubscribe_url }}">配信停止</a></p>',
            },
        ],
    },
    {
        "key": "point-expiry",
        "name": "ポイント失効のご案内",
        "topic": "service",
        "variants": [
            {
                "channel": "line",
                "locale": "ja",
                "text": "ポイントの有効期限が近づいています。今月末までにご利用ください。",
            },
            {"channel": "sms", "locale": "ja", "text": "つなぐマート: ポイントの有効期限は今月末です。"},
            {
                "channel": "in_app",
                "locale": "ja",
                "title": "ポイント失効のお知らせ",
                "body": "今月末で失効するポイントがあります。",
            },
        ],
    },
    {
        "key": "refund-done",
        "name": "返金完了のお知らせ",
        "topic": "transactional",
        "variants": [
            {
                "channel": "email",
                "locale": "ja",
                "subject": "【つなぐマート】返金手続きが完了しました",
                "html": "<p>{{ customer.family_name }} 様</p><p>ご依頼の返金手続きが完了しました。</p>",
            },
            {"channel": "in_app", "locale": "ja", "title": "返金完了", "body": "返金手続きが完了しました。"},
        ],
    },
]

# What became of a delivery on each channel: (status, chance) reports after "sent".
_OUTCOMES: dict[str, list[tuple[str, float]]] = {
    "email": [("bounced", 0.02), ("opened", 0.45), ("clicked", 0.12)],
    "sms": [("failed", 0.04), ("delivered", 1.0)],
    "line": [("failed", 0.08)],  # the customer blocked the account: the send goes on by SMS
    "in_app": [("opened", 0.5)],
}


# Where the demo's customers gave their consent, and the wording they saw (the proof of consent).
CONSENT_SOURCES = [
    ("signup_form", "つなぐマートからのお得な情報（セール・新商品）をメールで受け取る"),
    ("store_signup", "店頭で会員登録の際、メールマガジンの受け取りに同意しました"),
    ("checkout", "ご注文完了画面: キャンペーン情報をSMSで受け取る"),
]


def _consents(people: list[Any], *, rng: random.Random, actor: Any, end: dt.datetime) -> None:
    """Six in ten customers opted in to marketing email (and some to SMS) before the messages were sent; a
    few later revoked it — the history the 360° page and the API show."""
    from tsunagu.messaging.consent import consent_set

    for customer in people:
        if not customer.email or rng.random() > 0.6:
            continue
        source, text = rng.choice(CONSENT_SOURCES[:2])
        at = end - dt.timedelta(days=rng.uniform(25, 400))
        consent_set(customer=customer, channel="email", topic="marketing", status="granted", source=source,
                    text=text, actor=actor, at=at, event=False)
        if customer.phone and rng.random() < 0.3:
            consent_set(customer=customer, channel="sms", topic="marketing", status="granted", source="checkout",
                        text=CONSENT_SOURCES[2][1], actor=actor, at=at, event=False)
        if rng.random() < 0.05:
            consent_set(customer=customer, channel="email", topic="marketing", status="revoked",
                        source="preference_page", text="メールマガジンの配信停止", actor=actor,
                        at=end - dt.timedelta(days=rng.uniform(1, 20)), event=False)


_REASONS = {
    ("email", "bounced"): "550 5.1.1 user unknown",
    ("sms", "failed"): "30003 Unreachable destination handset",
    ("line", "failed"): "400 Failed to send messages: the user has blocked the LINE Official Account",
}


def _play(delivery: Any, *, at: dt.datetime, rng: random.Random) -> dt.datetime:
    """Report what became of one message, as its provider would have; returns the time of the last report."""
    t = at + dt.timedelta(seconds=rng.uniform(1, 20))
    delivery_report(delivery=delivery, report=Report(status="sent", at=t))
    if delivery.channel_type == "in_app":
        delivery_report(delivery=delivery, report=Report(status="delivered", at=t))
    for status, chance in _OUTCOMES.get(delivery.channel_type, []):
        if rng.random() >= chance:
            continue
        t += dt.timedelta(minutes=rng.uniform(1, 600))
        reason = _REASONS.get((delivery.channel_type, status), "")
        delivery_report(delivery=delivery, report=Report(status=status, at=t, reason=reason))
        if status in ("bounced", "failed"):
            break
    return t


def _failed(delivery: Any) -> bool:
    delivery.refresh_from_db(fields=["status"])
    return delivery.status in ("failed", "bounced")


def send_play(send: Any, *, at: dt.datetime, rng: random.Random) -> None:
    """Play out one send recorded at ``at``: each message of its chain at its time; a failed or bounced one
    fails over to the next step then and there (``send_run`` at that moment), so the history is whole before
    the worker runs."""
    t = at
    for _step in range(3):
        delivery = send.deliveries.order_by("-id").first()
        if delivery is None or delivery.status != "queued":
            break  # no step could be used (no address, no opt-in): the skipped send is on record too
        t = _play(delivery, at=t, rng=rng)
        if _failed(delivery):
            send_run(send_id=send.pk, now=t + dt.timedelta(seconds=1))
            t += dt.timedelta(seconds=1)
            continue
        break


def demo_channels_off(*, workspace: Any, actor: Any) -> None:
    """Switch the provider channels off (their credentials are the demo's), so nothing tries to reach a
    provider; the in-app inbox stays on."""
    from tsunagu.messaging.selectors import channel_list

    for channel in channel_list(workspace=workspace):
        if channel.type != "in_app" and channel.enabled:
            channel_update(channel=channel, actor=actor, enabled=False)


def demo_messaging(*, workspace: Any, actor: Any, end: dt.datetime, seed: int, sends: int = 400,
                   switch_off: bool = True) -> int:
    """Create the demo's channels and communications and ``sends`` archived deliveries over the three weeks
    before ``end``. Returns the number of sends recorded. ``switch_off=False`` leaves the provider channels
    on for what the loader still replays (the journeys); it calls ``demo_channels_off`` after."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not security
    for t, n, c in CHANNELS:
        channel_create(workspace=workspace, type=t, name=n, config=c, actor=actor)
    for spec in COMMUNICATIONS:
        communication_create(workspace=workspace, actor=actor, **spec)
    people = list(customer_list(workspace=workspace).order_by("id")[:2000])
    _consents(people, rng=rng, actor=actor, end=end)
    made = 0
    for _ in range(sends if people else 0):
        customer = rng.choice(people)
        key = rng.choice(["order-shipped", "order-shipped", "cart-reminder", "point-expiry", "refund-done"])
        at = end - dt.timedelta(days=rng.uniform(0.2, 21))
        send = send_create(
            workspace=workspace,
            communication=key,
            customer=customer,
            actor=actor,
            at=at,
            data={"order_id": f"TM-{rng.randrange(100000, 999999)}"},
        )
        made += 1
        send_play(send, at=at, rng=rng)
    if switch_off:
        demo_channels_off(workspace=workspace, actor=actor)
    return made
