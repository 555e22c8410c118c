"""The archive's indexed search returns exactly what an ORM filter with icontains returns, page by page,
on a generated archive of Japanese and English messages (case, width and script variants included)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from django.db.models import Q

from tsunagu.core import clock
from tsunagu.messaging.archive import archive_search, grams
from tsunagu.messaging.models import Delivery
from tsunagu.messaging.tests.factories import make_communication, make_customer, make_delivery

WORDS = [
    "返金", "配送", "配送状況", "ご注文", "発送", "お届け", "キャンセル", "ポイント", "会員", "ﾎﾟｲﾝﾄ",
    "東京都", "株式会社", "ありがとうございます", "の", "を", "Refund", "refund", "REFUND", "shipping",
    "Shipped", "order", "ORDER-10293", "a", "ok", "Straße", "STRASSE", "ΣΟΦΙΑΣ", "σοφίας", "Ｔシャツ",
    "tシャツ", "Ｒｅｆｕｎｄ", "3月5日", "12345678", "iPhone15", "50%", "100_000", "café", "naïve",
    "e\u0301", "İstanbul", "ǅ", "Ⅻ", "㍿", "👍", "\t", "  ", "、", "。", "!", "\\", "_", "%",
]
CHANNELS = ["email", "sms", "line", "in_app"]
STATUSES = ["sent", "delivered", "failed", "bounced"]


def _text(rng: random.Random) -> str:
    sep = ["", "", " ", "、", "\n", "-"]
    return "".join(rng.choice(WORDS) + rng.choice(sep) for _ in range(rng.randint(0, 12)))


def _expected(workspace: Any, q: str | None, **f: Any) -> list[int]:
    """The reference, written independently of the module: the ORM's own filters."""
    qs = Delivery.objects.filter(workspace=workspace)
    if q:
        qs = qs.filter(Q(subject__icontains=q) | Q(body_text__icontains=q))
    if f.get("customer_id"):
        qs = qs.filter(customer_id=f["customer_id"])
    if f.get("channel"):
        qs = qs.filter(channel_type=f["channel"])
    if f.get("status"):
        qs = qs.filter(status=f["status"])
    if f.get("communication_key"):
        qs = qs.filter(communication__key=f["communication_key"])
    if f.get("since"):
        qs = qs.filter(created_at__gte=f["since"])
    if f.get("until"):
        qs = qs.filter(created_at__lt=f["until"])
    return list(qs.order_by("-id").values_list("id", flat=True))


def _all_pages(workspace: Any, q: str | None, limit: int, **f: Any) -> list[int]:
    out: list[int] = []
    before = None
    while True:
        page = archive_search(workspace=workspace, q=q, limit=limit, before_id=before, **f)
        assert len(page) <= limit
        out += [d.pk for d in page]
        if len(page) < limit:
            return out
        before = page[-1].pk


@pytest.fixture
def archive(workspace: Any, other_workspace: Any) -> dict[str, Any]:
    rng = random.Random(7)
    customers = [make_customer(workspace=workspace, email=f"c{i}@example.com") for i in range(4)]
    comms = [make_communication(workspace=workspace, key=k) for k in ("order-shipped", "refund-done")]
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    times = []
    for _ in range(240):
        # Not monotonic in id: creation times jump back and forth, as a moved clock or an import makes them.
        at = start + dt.timedelta(hours=rng.randint(0, 24 * 20))
        times.append(at)
        make_delivery(
            workspace=workspace, subject=_text(rng)[:500], body_text=_text(rng),
            customer=rng.choice([*customers, None]), communication=rng.choice(comms),
            channel_type=rng.choice(CHANNELS), status=rng.choice(STATUSES), created_at=at,
        )
    # Another workspace's messages with the same words must never appear.
    other_comm = make_communication(workspace=other_workspace, key="order-shipped")
    for _ in range(40):
        make_delivery(workspace=other_workspace, subject=_text(rng), body_text=_text(rng), communication=other_comm)
    return {"customers": customers, "comms": comms, "times": sorted(times), "rng": rng}


def _queries(rng: random.Random, texts: list[str]) -> list[str]:
    qs = [w for w in WORDS if w.strip()] + ["返金 配送", "送状", "配送状", "ご注文の", "efun", "ORDER", "ｏｒｄｅｒ",
                                         "3456", "ιασ", "ss", "ß", "\\_", "%_", "ﾎﾟｲ", "ポイ", "状況 ", "xyz"]
    for _ in range(120):  # substrings of stored texts, in their own case and in another
        t = rng.choice(texts)
        if len(t) < 2:
            continue
        i = rng.randrange(len(t) - 1)
        s = t[i : i + rng.randint(1, 9)]
        qs.append(s if rng.random() < 0.6 else s.swapcase())
    return [q for q in qs if q.strip() and "\x00" not in q]


def test_every_query_returns_what_icontains_returns(workspace: Any, archive: dict[str, Any]) -> None:
    rng = archive["rng"]
    rows = Delivery.objects.filter(workspace=workspace).values_list("subject", "body_text")
    texts = [t for pair in rows for t in pair]
    checked = with_grams = nonempty = 0
    for q in _queries(rng, texts):
        expected = _expected(workspace, q.strip())
        got = [d.pk for d in archive_search(workspace=workspace, q=q, limit=200)]
        assert got == expected[:200], q
        checked += 1
        with_grams += bool(grams(q))
        nonempty += bool(expected)
    # The comparison covered the index (queries with grams) and the fallback, on queries that match.
    assert checked > 150 and with_grams > 100 and nonempty > 100


def test_filters_and_pages_match_the_orm(workspace: Any, archive: dict[str, Any]) -> None:
    rng = archive["rng"]
    times = archive["times"]
    combos: list[dict[str, Any]] = [
        {"channel": "line"}, {"status": "bounced"}, {"customer_id": archive["customers"][1].pk},
        {"communication_key": "refund-done"}, {"since": times[60]}, {"until": times[200]},
        {"since": times[30], "until": times[90], "channel": "email"},
        {"communication_key": "refund-done", "status": "sent", "channel": "sms"},
    ]
    for f in combos:
        for q in ("返金", "配送状況", "order", "の", "ok", None, "ΣΟΦ"):
            expected = _expected(workspace, q, **f)
            for limit in (1, 7, 50):
                assert _all_pages(workspace, q, limit, **f) == expected, (q, f, limit)
    # and random combinations
    for _ in range(40):
        f = {k: v for k, v in {
            "channel": rng.choice([None, *CHANNELS]), "status": rng.choice([None, *STATUSES]),
            "customer_id": rng.choice([None, archive["customers"][0].pk]),
            "since": rng.choice([None, times[rng.randrange(240)]]),
        }.items() if v is not None}
        q = rng.choice(["返金", "配送", "refund", "Σ", "ｒｅｆｕｎｄ", "キャンセル", "ご注文", None])
        assert _all_pages(workspace, q, 5, **f) == _expected(workspace, q, **f), (q, f)


def test_an_unknown_communication_finds_nothing(workspace: Any, archive: dict[str, Any]) -> None:
    assert archive_search(workspace=workspace, q="返金", communication_key="no-such") == []
    assert archive_search(workspace=workspace, communication_key="no-such") == []


def test_results_move_with_the_clock_of_creation(workspace: Any) -> None:
    """since/until use created_at: inclusive and exclusive."""
    t0 = clock.now()
    a = make_delivery(workspace=workspace, subject="返金のご案内", created_at=t0)
    b = make_delivery(workspace=workspace, subject="返金完了", created_at=t0 + dt.timedelta(seconds=1))
    assert [d.pk for d in archive_search(workspace=workspace, q="返金", since=t0)] == [b.pk, a.pk]
    assert [d.pk for d in archive_search(workspace=workspace, q="返金", until=t0 + dt.timedelta(seconds=1))] == [a.pk]
    assert [d.pk for d in archive_search(workspace=workspace, q="返金", since=t0 + dt.timedelta(seconds=1))] == [b.pk]
