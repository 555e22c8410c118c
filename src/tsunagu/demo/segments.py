"""The demo's segments: the groups a Japanese retailer's CX team defines first — VIPs, repeat buyers,
customers drifting away, LINE friends, cart abandoners, opted-in subscribers — each a rule over the demo's
own traits and events, kept by the applier from then on."""

from __future__ import annotations

from typing import Any

from tsunagu.segments.computed import computed_trait_create
from tsunagu.segments.services import segment_create

# The figures a CX team asks of every customer first, kept by the applier from their orders.
COMPUTED: tuple[dict[str, Any], ...] = (
    {"key": "orders_90d", "name": "90日の購入回数", "aggregate": "count", "event": "Order Completed",
     "within": {"days": 90}},
    {"key": "total_spent", "name": "累計購入金額", "aggregate": "sum", "event": "Order Completed", "property": "total"},
    {"key": "last_order_at", "name": "最終購入日時", "aggregate": "max", "event": "Order Completed",
     "property": "$timestamp"},
    {"key": "rfm", "name": "RFM", "aggregate": "rfm", "event": "Order Completed", "property": "total"},
)

SEGMENTS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("vip", "VIP（プラチナ・ゴールド会員）", "会員ランクがプラチナかゴールドのお客さま。",
     {"trait": "loyaltyTier", "op": "in", "value": ["platinum", "gold"]}),
    ("repeat-buyers", "リピーター", "半年で3回以上ご購入のお客さま（店舗・オンライン）。",
     {"event": "Order Completed", "count": {"op": "gte", "value": 3}, "within": {"days": 180}}),
    ("lapsed", "休眠しかけ", "以前ご購入があり、この60日はご購入のないお客さま。",
     {"all": [{"event": "Order Completed"},
              {"event": "Order Completed", "count": {"op": "eq", "value": 0}, "within": {"days": 60}}]}),
    ("line-friends", "LINE友だち", "LINE公式アカウントでつながっているお客さま。",
     {"trait": "$channels", "op": "contains", "value": "line"}),
    ("cart-abandoners", "カゴ落ち（7日）", "7日以内に購入手続きを始めて、購入に至らなかったお客さま。",
     {"all": [{"event": "Checkout Started", "within": {"days": 7}},
              {"event": "Order Completed", "count": {"op": "eq", "value": 0}, "within": {"days": 7}}]}),
    ("tokyo-app", "東京のアプリ利用者", "東京都にお住まいで、アプリを使っているお客さま。",
     {"all": [{"trait": "prefecture", "op": "eq", "value": "東京都"},
              {"trait": "$channels", "op": "contains", "value": "app"}]}),
    ("email-optin", "メルマガ購読者", "メールでのお知らせに同意いただいたお客さま。",
     {"consent": {"channel": "email", "topic": "marketing"}}),
    ("big-spenders", "高額購入者", "累計3万円以上ご購入のお客さま。",
     {"computed": "total_spent", "op": "gte", "value": 30000}),
    ("vip-at-risk", "離反リスクのあるVIP", "VIPで、この60日ご購入のないお客さま。",
     {"all": [{"segment": "vip"}, {"segment": "lapsed"}]}),
)


def demo_segments(*, workspace: Any, actor: Any) -> dict[str, int]:
    """Create the demo's computed traits and segments; returns each segment's member count."""
    for spec in COMPUTED:
        computed_trait_create(workspace=workspace, actor=actor, **spec)
    counts = {}
    for key, name, description, rule in SEGMENTS:
        segment, _warnings = segment_create(workspace=workspace, key=key, name=name, description=description,
                                            rule=rule, actor=actor)
        counts[key] = segment.member_count
    return counts
