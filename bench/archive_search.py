"""``python -m bench archive`` (or ``python -m bench.archive_search``): the message archive's search.

On a fresh SQLite database (migrated, the embedded default), 1,000,000 archived deliveries (``--quick``:
100,000) of 10,000 customers are bulk-loaded by raw ``executemany`` — Japanese and English messages of
email, SMS, LINE and in-app from realistic templates (orders, shipping, refunds, campaigns), two years of
creation times — and indexed with the archive's own grams (``messaging.archive.sqlite_row``). Then each
query kind runs ``--runs`` times with varied terms through ``archive_search`` (the function the API and the
console call, rows loaded as ``Delivery`` objects), beside baselines measured in the same run on the same
database: a plain indexed lookup of a customer's latest messages and ``icontains`` (``LIKE '%…%'``) without
the index. Median and p99 per kind; the results go to the "Archive search" section of
``docs/performance.md`` (kept when the ingestion benchmark rewrites the rest).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 200.0

FAMILY = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田", "山田", "佐々木",
          "山口", "松本", "井上", "木村", "林", "斎藤", "清水", "Smith", "Johnson", "Brown", "Garcia", "Miller"]
PRODUCTS = ["オーガニックコットンTシャツ", "ステンレスタンブラー", "ワイヤレスイヤホン", "北海道産じゃがいも 5kg",
            "抹茶ラテセット", "ランニングシューズ 26.5cm", "加湿器", "電動歯ブラシ", "Organic Cotton Tee",
            "Stainless Tumbler", "Wireless Earbuds", "Matcha Latte Set", "ノートPC スタンド", "羽毛布団 シングル"]
# (communication key, channel, subject, body); {n} name, {o} order number, {p} product, {d} date, {y} amount.
TEMPLATES = [
    ("order-confirmed", "email", "【ご注文確認】ご注文ありがとうございます（注文番号 {o}）",
     "{n} 様\n\nこの度はご注文いただき誠にありがとうございます。以下の内容でご注文を承りました。\n\n"
     "注文番号：{o}\n商品：{p}\nお支払い金額：{y}円（税込）\n\n発送準備が整い次第、改めてご連絡いたします。"
     "ご不明な点がございましたら、カスタマーサポートまでお問い合わせください。"),
    ("order-shipped", "email", "商品を発送しました（注文番号 {o}）",
     "{n} 様\n\nご注文の商品を本日発送いたしました。配送状況は下記の追跡番号からご確認いただけます。\n"
     "商品：{p}\nお届け予定日：{d}\n配送業者：ヤマト運輸\n\n配送に関するお問い合わせは配送業者へお願いいたします。"),
    ("order-shipped", "sms", "",
     "【ショップ】{n}様 ご注文{o}を発送しました。お届け予定{d}。配送状況はアプリでご確認ください。"),
    ("order-shipped", "line", "",
     "{n}さん、ご注文の{p}を発送しました📦 お届け予定は{d}です。配送状況はこちらから確認できます。"),
    ("refund-done", "email", "返金手続き完了のお知らせ（注文番号 {o}）",
     "{n} 様\n\nご依頼いただいた返金の手続きが完了しました。返金額：{y}円\n"
     "クレジットカードへの返金は、カード会社により反映まで1〜2か月かかる場合がございます。"),
    ("refund-done", "line", "", "{n}さん、注文{o}の返金（{y}円）が完了しました。反映まで数日かかる場合があります。"),
    ("delivery-delayed", "email", "【重要】配送遅延のお詫び",
     "{n} 様\n\n大雪の影響により、ご注文{o}の配送に遅れが生じております。お届けは{d}以降となる見込みです。"
     "ご迷惑をおかけし大変申し訳ございません。"),
    ("campaign-winter", "email", "冬のポイント10倍キャンペーン開催中！",
     "{n} 様\n\nいつもご利用ありがとうございます。期間中のお買い物でポイントが10倍。{p}など人気商品も対象です。"
     "会員様限定のクーポンもご用意しました。"),
    ("campaign-winter", "in_app", "ポイント10倍キャンペーン", "期間限定！{p}も対象。今すぐチェック"),
    ("order-shipped-en", "email", "Your order {o} has shipped",
     "Hi {n},\n\nGood news: your order {o} ({p}) is on its way. Estimated delivery: {d}.\n"
     "Track your shipping status in your account. Thank you for shopping with us!"),
    ("refund-done-en", "email", "Your refund for order {o} is complete",
     "Hi {n},\n\nWe have processed your refund of {y} JPY for order {o}. It may take 5-10 business days to "
     "appear on your statement."),
    ("password-reset", "email", "パスワード再設定のご案内",
     "{n} 様\n\nパスワード再設定のリクエストを受け付けました。下記のリンクから24時間以内に再設定してください。"
     "お心当たりのない場合は、このメールを破棄してください。"),
    ("review-request", "line", "", "{n}さん、{p}はいかがでしたか？レビューを投稿すると100ポイントプレゼント🎁"),
]
WEIGHTS = [12, 14, 8, 10, 4, 3, 2, 12, 6, 6, 2, 4, 5]
STATUSES = ["sent"] * 30 + ["delivered"] * 60 + ["failed"] * 4 + ["bounced"] * 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench archive", description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=1_000_000, help="archived deliveries loaded (default 1,000,000)")
    p.add_argument("--customers", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=40, help="timed runs per query kind (default 40)")
    p.add_argument("--quick", action="store_true", help="100,000 messages, 15 runs per kind; prints only")
    p.add_argument("--write", action="store_true", help="write the doc even with --quick")
    p.add_argument("--no-write", action="store_true", help="print the results only")
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the data directory (printed)")
    p.add_argument("--reuse", type=Path, help="measure again on a data directory kept by --keep (no load)")
    p.add_argument("--reindex", action="store_true", help="with --reuse: rebuild the index first (new grams)")
    return p


def load_avg() -> float:
    return os.getloadavg()[0]


def _setup(data_dir: Path) -> None:
    os.environ["TSUNAGU_DATA_DIR"] = str(data_dir)
    os.environ.pop("TSUNAGU_DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsunagu.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _fill(args: argparse.Namespace, db: Path) -> dict[str, Any]:
    """Raw bulk load (the benchmark's setup, not measured against a target): customers, communications,
    sends, deliveries, and the index rows computed by the archive's own code."""
    from tsunagu.core.models import Workspace
    from tsunagu.core.permissions import SYSTEM
    from tsunagu.core.services import workspace_create
    from tsunagu.messaging.archive import sqlite_row

    ws: Workspace = workspace_create(name="Bench", slug="bench", actor=SYSTEM)
    rng = random.Random(args.seed)
    conn = sqlite3.connect(db, timeout=60)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")  # setup only: nothing here is timed against a durability target
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    start = now - dt.timedelta(days=730)
    iso = "%Y-%m-%d %H:%M:%S.%f"
    conn.executemany(
        "INSERT INTO customers_customer (workspace_id, user_id, email, phone, family_name, given_name, family_kana, "
        "given_kana, display_name, search_text, traits, trait_times, channels, event_count, created_at, updated_at) "
        "VALUES (?, ?, ?, '', ?, '', '', '', ?, '', '{}', '{}', '{}', 0, ?, ?)",
        [(ws.pk, f"u{i}", f"c{i}@example.jp", FAMILY[i % len(FAMILY)], FAMILY[i % len(FAMILY)],
          start.strftime(iso), start.strftime(iso)) for i in range(args.customers)],
    )
    first_customer = conn.execute(
        "SELECT MIN(id) FROM customers_customer WHERE workspace_id = ?", (ws.pk,)).fetchone()[0]
    comm_ids: dict[str, tuple[int, int]] = {}
    for key in dict.fromkeys(t[0] for t in TEMPLATES):
        cur = conn.execute(
            "INSERT INTO messaging_communication (workspace_id, key, name, topic, current_version, created_at, "
            "updated_at) VALUES (?, ?, ?, 'transactional', 1, ?, ?)", (ws.pk, key, key, start.strftime(iso),
                                                                       start.strftime(iso)))
        comm = cur.lastrowid
        cur = conn.execute(
            "INSERT INTO messaging_communicationversion (communication_id, number, name, topic, variants, "
            "created_by, created_at) VALUES (?, 1, ?, 'transactional', '[]', '', ?)", (comm, key, start.strftime(iso)))
        assert comm is not None and cur.lastrowid is not None
        comm_ids[key] = (comm, cur.lastrowid)
    conn.commit()

    span = (now - start).total_seconds()
    chunk = 10_000
    rare_orders: list[str] = []
    t0 = time.monotonic()
    index_seconds = 0.0
    next_id = 1
    for base in range(0, args.messages, chunk):
        n = min(chunk, args.messages - base)
        sends, deliveries, index_rows = [], [], []
        for j in range(n):
            i = base + j
            key, channel, subj, body = rng.choices(TEMPLATES, WEIGHTS)[0]
            cust = first_customer + rng.randrange(args.customers)
            order = f"{rng.randrange(10**7, 10**8)}"
            when = start + dt.timedelta(seconds=span * (i + rng.random()) / args.messages)
            vals = {"n": FAMILY[cust % len(FAMILY)], "o": order, "p": rng.choice(PRODUCTS),
                    "d": f"{rng.randint(1, 12)}月{rng.randint(1, 28)}日", "y": f"{rng.randint(5, 500) * 100:,}"}
            subject, text = subj.format(**vals), body.format(**vals)
            if "{o}" in body and len(rare_orders) < 200 and rng.random() < 0.002:
                rare_orders.append(order)
            comm, version = comm_ids[key]
            stamp = when.strftime(iso)
            did = next_id + j
            sends.append((did, ws.pk, comm, version, cust, channel, stamp, stamp))
            status = rng.choice(STATUSES)
            address = f"c{cust}@example.jp" if channel == "email" else f"+8190{cust:08d}"
            content = f'{{"subject": {_json(subject)}, "text": {_json(text)}}}'
            deliveries.append((did, ws.pk, did, channel, cust, comm, version, address, f"{rng.getrandbits(128):032x}",
                               content, subject, text, status, stamp, stamp, stamp, stamp))
            index_rows.append(_Row(did, ws.pk, channel, comm, when, subject, text))
        conn.executemany(
            "INSERT INTO messaging_send (id, workspace_id, communication_id, version_id, customer_id, channel, data, "
            "status, actor, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, '{}', 'sent', '', ?, ?)", sends)
        conn.executemany(
            "INSERT INTO messaging_delivery (id, workspace_id, send_id, channel_type, customer_id, communication_id, "
            "version_id, topic, locale, address, key, content, headers, subject, body_text, status, reason, "
            "provider_id, attempts, locked_by, due_at, created_at, sent_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, "
            "'transactional', 'ja', ?, ?, ?, '{}', ?, ?, ?, '', '', 1, '', ?, ?, ?, ?)", deliveries)
        t1 = time.monotonic()
        conn.executemany("INSERT INTO messaging_archive_index(rowid, tokens) VALUES (?, ?)",
                         [sqlite_row(r) for r in index_rows])
        index_seconds += time.monotonic() - t1
        conn.commit()
        next_id += n
        if (base // chunk) % 10 == 9:
            print(f"    loaded {base + n:,} messages ({time.monotonic() - t0:.0f} s)", flush=True)
    t1 = time.monotonic()
    conn.execute("INSERT INTO messaging_archive_index(messaging_archive_index) VALUES ('optimize')")
    conn.commit()
    optimize_seconds = time.monotonic() - t1
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.commit()
    pages = conn.execute("SELECT SUM(pgsize) FROM dbstat WHERE name LIKE 'messaging_archive_index%'").fetchone()[0] \
        if _has_dbstat(conn) else None
    conn.close()
    return {"workspace": ws, "first_customer": first_customer, "rare_orders": rare_orders,
            "load_seconds": time.monotonic() - t0, "index_seconds": index_seconds,
            "optimize_seconds": optimize_seconds, "index_bytes": pages, "db_bytes": db.stat().st_size,
            "start": start, "now": now}


@dataclasses.dataclass(slots=True)
class _Row:
    """What the index reads of a delivery, for rows inserted without the ORM."""

    pk: int
    workspace_id: int
    channel_type: str
    communication_id: int
    created_at: dt.datetime
    subject: str
    body_text: str


def _reindex(db: Path) -> float:
    """Index every delivery again (after a change of the grams), the way ``_fill`` does; seconds taken."""
    from tsunagu.messaging.archive import sqlite_row

    t0 = time.monotonic()
    conn = sqlite3.connect(db, timeout=60)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("INSERT INTO messaging_archive_index(messaging_archive_index) VALUES ('delete-all')")
    last = 0
    while True:
        rows = conn.execute(
            "SELECT id, workspace_id, channel_type, communication_id, created_at, subject, body_text "
            "FROM messaging_delivery WHERE id > ? ORDER BY id LIMIT 10000", (last,)).fetchall()
        if not rows:
            break
        conn.executemany("INSERT INTO messaging_archive_index(rowid, tokens) VALUES (?, ?)", [
            sqlite_row(_Row(r[0], r[1], r[2], r[3], dt.datetime.fromisoformat(r[4]).replace(tzinfo=dt.UTC), r[5],
                            r[6])) for r in rows])
        conn.commit()
        last = rows[-1][0]
    conn.execute("INSERT INTO messaging_archive_index(messaging_archive_index) VALUES ('optimize')")
    conn.commit()
    conn.close()
    return time.monotonic() - t0


def _save(path: Path, ctx: dict[str, Any], args: argparse.Namespace) -> None:
    import json

    out = {k: v for k, v in ctx.items() if k not in ("workspace", "start", "now")}
    out.update(workspace=ctx["workspace"].pk, start=ctx["start"].isoformat(), now=ctx["now"].isoformat(),
               messages=args.messages, customers=args.customers)
    path.write_text(json.dumps(out))


def _restore(path: Path) -> dict[str, Any]:
    import json

    from tsunagu.core.models import Workspace

    ctx: dict[str, Any] = json.loads(path.read_text())
    ctx["workspace"] = Workspace.objects.get(pk=ctx["workspace"])
    ctx["start"], ctx["now"] = dt.datetime.fromisoformat(ctx["start"]), dt.datetime.fromisoformat(ctx["now"])
    return ctx


def _has_dbstat(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1 FROM dbstat LIMIT 1").fetchall()
        return True
    except sqlite3.Error:
        return False


def _json(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)


def _time(fn: Callable[[], Any], runs: int) -> tuple[list[float], int]:
    fn()  # warm: compiled statements, the first pages
    out, rows = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        rows = len(fn())
        out.append((time.perf_counter() - t) * 1000)
    return out, rows


def _p99(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]


def measure(args: argparse.Namespace, ctx: dict[str, Any]) -> list[dict[str, Any]]:
    from tsunagu.messaging.archive import archive_search
    from tsunagu.messaging.models import Delivery

    ws = ctx["workspace"]
    rng = random.Random(args.seed + 1)
    cust = lambda: ctx["first_customer"] + rng.randrange(args.customers)  # noqa: E731
    two = ["返金", "配送", "発送", "注文", "会員", "遅延", "加湿", "抹茶", "布団", "予定"]
    long = ["配送状況", "ご注文ありがとうございます", "返金の手続き", "ポイント10倍", "ワイヤレスイヤホン",
            "大雪の影響"]
    english = ["refund", "shipping", "Wireless", "statement", "tumbler", "order"]
    span = ctx["now"] - ctx["start"]

    def month() -> dict[str, Any]:
        since = ctx["start"] + span * rng.random() * 0.9
        return {"since": since, "until": since + dt.timedelta(days=30)}

    tenth: dict[str, int | None] = {}
    for q in two:  # where the 10th page of 50 starts, found before the timing
        before = None
        for _ in range(9):
            page = archive_search(workspace=ws, q=q, before_id=before)
            before = page[-1].pk if page else before
        tenth[q] = before

    kinds: list[tuple[str, Callable[[], Any], bool]] = [
        ("baseline: a customer's latest 50, plain indexed ORM lookup",
         lambda: list(Delivery.objects.filter(workspace=ws, customer_id=cust()).defer("raw")
                      .order_by("-pk")[:50]), True),
        ("baseline: `icontains` scan (`LIKE '%…%'`), a two-character word, newest 50",
         lambda: list(Delivery.objects.filter(workspace=ws, body_text__icontains=rng.choice(two)).defer("raw")
                      .order_by("-pk")[:50]), True),
        ("baseline: `icontains` scan (`LIKE '%…%'`), an order number (one message)",
         lambda: list(Delivery.objects.filter(workspace=ws, body_text__icontains=rng.choice(ctx["rare_orders"]))
                      .defer("raw").order_by("-pk")[:50]), True),
        ("two-character Japanese word (返金, 配送, …), newest 50",
         lambda: archive_search(workspace=ws, q=rng.choice(two)), False),
        ("longer Japanese phrase (配送状況, ご注文ありがとうございます, …)",
         lambda: archive_search(workspace=ws, q=rng.choice(long)), False),
        ("English word (refund, shipping, …)", lambda: archive_search(workspace=ws, q=rng.choice(english)), False),
        ("order number (8 digits, one message)",
         lambda: archive_search(workspace=ws, q=rng.choice(ctx["rare_orders"])), False),
        ("word not in the archive (配送返金)", lambda: archive_search(workspace=ws, q="配送返金"), False),
        ("two-character word + channel LINE",
         lambda: archive_search(workspace=ws, q=rng.choice(two), channel="line"), False),
        ("two-character word + status bounced (1% of messages)",
         lambda: archive_search(workspace=ws, q=rng.choice(two), status="bounced"), False),
        ("two-character word + one month (since/until)",
         lambda: archive_search(workspace=ws, q=rng.choice(two), **month()), False),
        ("two-character word + communication",
         lambda: archive_search(workspace=ws, q="配送", communication_key="delivery-delayed"), False),
        ("two-character word + customer", lambda: archive_search(workspace=ws, q=rng.choice(two),
                                                                  customer_id=cust()), False),
        ("two-character word, 10th page (before_id)",
         lambda: archive_search(workspace=ws, **_pick_tenth(rng, tenth)), False),
        ("no text: customer", lambda: archive_search(workspace=ws, customer_id=cust()), False),
        ("no text: channel SMS", lambda: archive_search(workspace=ws, channel="sms"), False),
        ("no text: status bounced", lambda: archive_search(workspace=ws, status="bounced"), False),
        ("no text: one month", lambda: archive_search(workspace=ws, **month()), False),
    ]
    results = []
    for name, fn, baseline in kinds:
        load0 = load_avg()
        runs = max(3, args.runs // 4) if "order number (one" in name and baseline else args.runs
        times, rows = _time(fn, runs)
        r = {"name": name, "baseline": baseline, "median": statistics.median(times), "p99": _p99(times),
             "max": max(times), "runs": runs, "rows": rows, "load": (load0 + load_avg()) / 2}
        results.append(r)
        print(f"  {name:<80} median {r['median']:8.1f} ms  p99 {r['p99']:8.1f} ms  ({runs} runs, last "
              f"{rows} rows, load {r['load']:.2f})", flush=True)
    return results


def _pick_tenth(rng: random.Random, tenth: dict[str, int | None]) -> dict[str, Any]:
    q = rng.choice(sorted(tenth))
    return {"q": q, "before_id": tenth[q]}


def render(args: argparse.Namespace, ctx: dict[str, Any], results: list[dict[str, Any]]) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    worst = max(r["p99"] for r in results if not r["baseline"])
    out = [
        "## Archive search",
        "",
        f"Generated by `python -m bench archive` (`bench/archive_search.py`). Run: {now}, "
        f"{args.messages:,} archived messages of {args.customers:,} customers in one workspace, SQLite "
        f"{sqlite3.sqlite_version}, {args.runs} timed runs per query kind after one warm-up run, each through "
        "`archive_search` (rows loaded as `Delivery` objects, 50 per page). Load average beside each figure: "
        "the machine was shared with other engineers' test suites.",
        "",
        (f"Setup (not timed against a target): bulk load {ctx['load_seconds']:.0f} s (when the database was "
         f"made); the index then rebuilt with the current grams (`--reindex`) in {ctx['index_seconds']:.0f} s. "
         if ctx.get("reindexed") else
         f"Setup (not timed against a target): bulk load {ctx['load_seconds']:.0f} s, of which computing and "
         f"inserting the index rows {ctx['index_seconds']:.0f} s; FTS5 `optimize` {ctx['optimize_seconds']:.0f} s. ")
        + f"Database {ctx['db_bytes'] / 1e6:,.0f} MB"
        + (f", of which the index {ctx['index_bytes'] / 1e6:,.0f} MB." if ctx["index_bytes"] else "."),
        "",
        "| query | median ms | p99 ms | rows | load | target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        verdict = "" if r["baseline"] else ("met" if r["p99"] <= TARGET_MS else "**not met**")
        out.append(f"| {r['name']} | {r['median']:.1f} | {r['p99']:.1f} | {r['rows']} | {r['load']:.2f} | "
                   f"{'' if r['baseline'] else f'p99 <= {TARGET_MS:g} ms: '}{verdict} |")
    out += ["", f"Slowest p99 of the archive's queries: {worst:.1f} ms (target <= {TARGET_MS:g} ms: "
            f"{'met' if worst <= TARGET_MS else '**not met**'}).", "", *EXPLAIN]
    return "\n".join(out)


EXPLAIN = [
    "How to read these numbers. A text query reads, newest first, the index's lists of the deliveries that",
    "hold each of its grams and the workspace's token (and the channel's, the communication's, the period's",
    "days, months and years' when those filters are given), and keeps the deliveries in all of them whose",
    "subject or text the",
    "backend's own `icontains` SQL matches; a page stops at 50 hits. The cost is the candidates read until",
    "50 match, not the size of the archive: a common word fills its page from the newest messages, a rare",
    "one has a short list, and a filter held by the index (channel, communication, period) narrows the lists",
    "themselves. What the index does not hold is checked per candidate: a status (`bounced` is 1% of this",
    "archive, so ~100 candidates per hit) and a customer (their few messages are read through the",
    "`(customer, created_at)` index instead). The baselines: the customer lookup is the floor of loading 50",
    "`Delivery` rows; `LIKE '%…%'` without the index is fast for a common word, which the newest messages",
    "contain, and reads the whole table for a rare one (the order number) — the case the index exists for.",
    "Queries the index cannot serve (one character; two Latin letters or digits) scan like that baseline.",
    "PostgreSQL is not measured here (the loader writes SQLite directly); the same searches are proved to",
    "return the ORM's rows on PostgreSQL by the test suite. The loaded deliveries carry no `raw` bytes",
    "(the .eml): searches never read `raw` (it is deferred), but the rows are smaller than real email rows,",
    "which makes the scan baselines faster than on a real archive.",
]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.messages, args.runs = min(args.messages, 100_000), min(args.runs, 15)
    data_dir = args.reuse or Path(tempfile.mkdtemp(prefix="tsunagu-bench-archive-"))
    try:
        print(f"archive search: {args.messages:,} messages, {args.customers:,} customers, load {load_avg():.2f}",
              flush=True)
        _setup(data_dir)
        saved = data_dir / "bench-archive.json"
        if args.reuse:
            ctx = _restore(saved)
            args.messages, args.customers = ctx["messages"], ctx["customers"]
            if args.reindex:
                ctx["index_seconds"], ctx["reindexed"] = _reindex(data_dir / "tsunagu.sqlite3"), True
                _save(saved, ctx, args)
        else:
            ctx = _fill(args, data_dir / "tsunagu.sqlite3")
            _save(saved, ctx, args)
        print(f"  loaded in {ctx['load_seconds']:.0f} s (index {ctx['index_seconds']:.0f} s, optimize "
              f"{ctx['optimize_seconds']:.0f} s), database {ctx['db_bytes'] / 1e6:,.0f} MB", flush=True)
        results = measure(args, ctx)
        text = render(args, ctx, results)
        if not args.no_write and (args.write or not args.quick):
            from bench import report

            report.write_section(args.output, "archive-search", text)
            print(f"wrote {args.output}")
        else:
            print(text)
    finally:
        if args.keep or args.reuse:
            print(f"  data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
