"""The segments benchmark's dataset: profiles and a web shop's events, bulk-loaded by raw ``executemany``
into the migrated schema (the documented bulk path of ``bench/README.md``), built once per (size, seed,
schema of the loaded tables) and cached under the temporary directory so that reruns skip it.

What is loaded, in one workspace:

- ``customers_customer``: one profile per customer (``u0000042``), with traits a shop keeps —
  ``loyaltyTier`` (bronze/silver/gold/platinum, higher tiers for the more active customers), ``prefecture``
  (weighted by population), ``age``, ``gender``, ``newsletter``, ``lastName`` and ``email`` — and the
  activity columns (``first_seen``, ``last_seen``, ``event_count``, ``channels``) consistent with its events;
- ``customers_identity``: the ``user_id`` and the ``email`` of each profile;
- ``events_event``: page views, ``Product Viewed`` / ``Product Added`` / ``Checkout Started`` (product,
  category, price) and ``Order Completed`` (order id, ``revenue`` in yen, ``category``, currency), spread
  over two years up to the build time. Activity per customer is skewed (log-normal weights: most customers
  have a handful of events, a few have hundreds), each customer active from a first-seen time onwards, more
  often recently. Rows are stored in time order (ids ascending with time, as the applier stores them):
  the events are drawn per customer into a compact staging table, then read back sorted by time;
- ``segments_computedtrait`` / ``segments_computedvalue``: the computed trait ``total_spent`` (sum of
  ``revenue`` over every ``Order Completed``), declared by SQL and given one value row per customer with at
  least one order — what a backfill of a ``sum`` writes (a customer without a row has the value 0) —
  computed here from the generated orders.

Secondary indexes of the loaded tables are dropped first and rebuilt after the load (``CREATE INDEX`` from
the schema's own statements), so the load writes each B-tree once, in order. Not loaded: dedup keys
(the generated events are older than the dedup window) and the ingest log (nothing is pending).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import random
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

VERSION = 1  # of the generator: part of the cache key
LOADED = ("customers_customer", "customers_identity", "events_event", "segments_computedtrait",
          "segments_computedvalue")
DAYS = 730
ISO = "%Y-%m-%d %H:%M:%S.%f"

TIERS = ["bronze", "silver", "gold", "platinum"]
# (prefecture, weight ~ population in 100,000s)
PREFECTURES = [("東京都", 140), ("神奈川県", 92), ("大阪府", 88), ("愛知県", 75), ("埼玉県", 73), ("千葉県", 63),
               ("兵庫県", 54), ("北海道", 51), ("福岡県", 51), ("静岡県", 36), ("茨城県", 28), ("広島県", 28),
               ("京都府", 26), ("宮城県", 23), ("新潟県", 22), ("長野県", 20), ("岐阜県", 20), ("栃木県", 19),
               ("群馬県", 19), ("岡山県", 19), ("福島県", 18), ("三重県", 18), ("熊本県", 17), ("鹿児島県", 16),
               ("沖縄県", 15), ("滋賀県", 14), ("山口県", 13), ("愛媛県", 13), ("奈良県", 13), ("長崎県", 13),
               ("青森県", 12), ("岩手県", 12), ("石川県", 11), ("大分県", 11), ("宮崎県", 11), ("山形県", 10),
               ("富山県", 10), ("秋田県", 9), ("香川県", 9), ("和歌山県", 9), ("佐賀県", 8), ("山梨県", 8),
               ("福井県", 7), ("徳島県", 7), ("高知県", 7), ("島根県", 6), ("鳥取県", 5)]
FAMILY = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田", "山田", "佐々木",
          "山口", "松本", "井上", "木村", "林", "斎藤", "清水"]
CATEGORIES = ["fashion", "food", "electronics", "home", "beauty", "sports", "books", "kids"]
PAGES = [("/", "トップ"), ("/sale", "セール"), ("/category", "カテゴリ"), ("/search", "検索"), ("/cart", "カート"),
         ("/mypage", "マイページ"), ("/guide", "ご利用ガイド")]
# Kinds of event: 0 page, 1 Product Viewed, 2 Product Added, 3 Checkout Started, 4 Order Completed.
KINDS = [0, 1, 2, 3, 4]
KIND_WEIGHTS = [45, 28, 10, 5, 12]
TRACK_NAMES = {1: "Product Viewed", 2: "Product Added", 3: "Checkout Started", 4: "Order Completed"}
CONTEXT = json.dumps({"library": {"name": "analytics-python", "version": "2.3.3"}, "locale": "ja-JP"})


def cache_root() -> Path:
    return Path(tempfile.gettempdir()) / "tsunagu-bench-segments"


def schema_key(db: Path, *, profiles: int, events: int, seed: int) -> str:
    """What the cached database depends on: the sizes, the seed, this generator, and the schema of the
    tables it loads (their CREATE statements on a freshly migrated database)."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            f"SELECT type, name, sql FROM sqlite_master WHERE tbl_name IN ({','.join('?' * len(LOADED))}) "  # noqa: S608
            "ORDER BY type, name", LOADED).fetchall()
    finally:
        conn.close()
    text = json.dumps([VERSION, profiles, events, seed, rows])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cached(key: str, *, profiles: int, events: int) -> Path | None:
    path = cache_root() / f"{profiles}-{events}-{key}"
    return path if (path / "meta.json").exists() and (path / "tsunagu.sqlite3").exists() else None


def store(db: Path, meta: dict[str, Any], key: str) -> Path:
    """Copy a freshly built database into the cache (written under a temporary name, then renamed, so an
    interrupted copy is never taken for a dataset)."""
    final = cache_root() / f"{meta['profiles']}-{meta['events']}-{key}"
    tmp = final.with_name(final.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(db, tmp / "tsunagu.sqlite3")
    (tmp / "meta.json").write_text(json.dumps(meta))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def _secondary_indexes(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return conn.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "  # noqa: S608
        f"AND tbl_name IN ({','.join('?' * len(LOADED))})", LOADED).fetchall()


def _weights(rng: random.Random, n: int, total: int) -> list[int]:
    """Events per customer: log-normal activity (sigma 1.3), scaled to add up to ``total`` exactly."""
    w = [rng.lognormvariate(0.0, 1.3) for _ in range(n)]
    scale = total / sum(w)
    counts = [int(x * scale) for x in w]
    short = total - sum(counts)
    # The remainder to the largest fractional parts would need a sort; random customers, weighted by
    # activity only through the loop's draw, are as good for a benchmark.
    while short > 0:
        i = rng.randrange(n)
        counts[i] += 1
        short -= 1
    return counts


def build(db: Path, *, workspace_id: int, source_id: int, profiles: int, events: int, seed: int,
          progress: bool = True) -> dict[str, Any]:
    """Fill the migrated database ``db`` (its workspace and source exist); returns what was built (the
    meta stored with the cache: sizes, the dataset's time, generation rates)."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    now_ts = now.timestamp()
    span = DAYS * 86400.0
    conn = sqlite3.connect(db, timeout=60, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")  # setup only: nothing here is timed against a durability target
    conn.execute("PRAGMA cache_size=-1048576")
    conn.execute("PRAGMA temp_store=FILE")  # the sort of the staging table spills to disk, not to RAM
    indexes = _secondary_indexes(conn)
    for name, _sql in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    t0 = time.monotonic()
    counts = _weights(rng, profiles, events)
    order = sorted(range(profiles), key=counts.__getitem__)
    # The tier follows activity (the top 5% by events are mostly platinum, ...), with noise.
    rank = [0] * profiles
    for r, i in enumerate(order):
        rank[i] = r
    del order
    conn.execute("CREATE TEMP TABLE stage (ts REAL, cust INTEGER, kind INTEGER, amount INTEGER, cat INTEGER)")
    prefs = [p for p, _ in PREFECTURES]
    pref_w = [w for _, w in PREFECTURES]
    first_id = (conn.execute("SELECT COALESCE(MAX(id), 0) FROM customers_customer").fetchone()[0]) + 1
    spent: dict[int, int] = {}
    cust_rows: list[tuple[Any, ...]] = []
    ident_rows: list[tuple[Any, ...]] = []
    stage_rows: list[tuple[Any, ...]] = []
    shown = t0
    conn.execute("BEGIN")
    for i in range(profiles):
        cid = first_id + i
        n = counts[i]
        q = rank[i] / profiles + rng.gauss(0, 0.08)
        tier = TIERS[3 if q > 0.95 else 2 if q > 0.8 else 1 if q > 0.5 else 0]
        # Active from a first-seen time (older customers more common), more events recently.
        start = now_ts - span * (1.0 - rng.random() ** 1.5)
        life = now_ts - start
        first = last = start
        total = 0
        for k in range(n):
            ts = start + life * (rng.random() ** 0.6) if k else start
            kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
            amount = 0
            if kind == 4:
                amount = int(rng.lognormvariate(8.4, 0.7)) // 10 * 10 + 500
                total += amount
            elif kind:
                amount = rng.randrange(5, 300) * 100
            stage_rows.append((ts, cid, kind, amount, rng.randrange(len(CATEGORIES))))
            last = max(last, ts)
        if total:
            spent[cid] = total
        age = rng.randint(18, 79)
        family = FAMILY[rng.randrange(len(FAMILY))]
        traits = {"loyaltyTier": tier, "prefecture": rng.choices(prefs, pref_w)[0], "age": age,
                  "gender": rng.choice(["female", "male", "other"]), "newsletter": rng.random() < 0.6,
                  "lastName": family, "email": f"c{i}@example.jp"}
        ms = int(start * 1000)
        first_s = _iso(first) if n else None
        last_s = _iso(last) if n else None
        created = _iso(start)
        cust_rows.append((cid, f"u{i:07d}", f"c{i}@example.jp", family, family, f"{family} c{i}@example.jp u{i:07d}",
                          json.dumps(traits, ensure_ascii=False), json.dumps(dict.fromkeys(traits, ms)),
                          json.dumps({"web": int(last * 1000)}), first_s, last_s, n, created, last_s or created))
        ident_rows.append((cid, "user_id", f"u{i:07d}", created))
        ident_rows.append((cid, "email", f"c{i}@example.jp", created))
        if len(stage_rows) >= 200_000 or i == profiles - 1:
            conn.executemany(
                "INSERT INTO customers_customer (id, workspace_id, user_id, email, phone, family_name, given_name, "  # noqa: S608 - ids of this process
                "family_kana, given_kana, display_name, search_text, traits, trait_times, channels, first_seen, "
                f"last_seen, event_count, created_at, updated_at) VALUES (?, {workspace_id}, ?, ?, '', ?, '', '', "
                "'', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", cust_rows)
            conn.executemany(
                "INSERT INTO customers_identity (workspace_id, customer_id, type, value, first_seen, "  # noqa: S608 - ids of this process
                f"source_message_id) VALUES ({workspace_id}, ?, ?, ?, ?, '')", ident_rows)
            conn.executemany("INSERT INTO stage VALUES (?, ?, ?, ?, ?)", stage_rows)
            cust_rows, ident_rows, stage_rows = [], [], []
            conn.execute("COMMIT")
            conn.execute("BEGIN")
            if progress and (time.monotonic() - shown >= 15 or i == profiles - 1):
                shown = time.monotonic()
                print(f"    drew {i + 1:,} profiles ({time.monotonic() - t0:.0f} s)", flush=True)
    conn.execute("COMMIT")
    del counts, rank
    drawn = time.monotonic() - t0

    # Time order: read the staging table back sorted (SQLite's external sort: bounded memory).
    t1 = time.monotonic()
    rows: list[tuple[Any, ...]] = []
    written = 0
    conn.execute("BEGIN")
    cursor = conn.execute("SELECT ts, cust, kind, amount, cat FROM stage ORDER BY ts")
    insert = (
        "INSERT INTO events_event (workspace_id, source_id, message_id, type, event, name, user_id, anonymous_id, "  # noqa: S608 - ids of this process
        "group_id, previous_id, customer_id, channel, timestamp, original_timestamp, sent_at, received_at, "
        f"properties, traits, context) VALUES ({workspace_id}, {source_id}, ?, ?, ?, ?, ?, '', '', '', ?, 'web', ?, "
        f"NULL, NULL, ?, ?, '{{}}', '{CONTEXT}')"
    )
    order_no = 10_000_000
    getbits = rng.getrandbits
    while True:
        batch = cursor.fetchmany(10_000)
        if not batch:
            break
        for ts, cust, kind, amount, cat in batch:
            stamp = _iso(ts)
            user = f"u{cust - first_id:07d}"
            category = CATEGORIES[cat]
            if kind == 0:
                path, title = PAGES[cat % len(PAGES)]
                rows.append((f"{getbits(128):032x}", "page", "", title, user, cust, stamp, stamp,
                             f'{{"path": "{path}", "title": "{title}"}}'))
                continue
            if kind == 4:
                order_no += 1
                props = (f'{{"order_id": "{order_no}", "revenue": {amount}, "currency": "JPY", '
                         f'"category": "{category}"}}')
            else:
                props = f'{{"product_id": "p{amount // 100 + cat * 300}", "category": "{category}", "price": {amount}}}'
            rows.append((f"{getbits(128):032x}", "track", TRACK_NAMES[kind], "", user, cust, stamp, stamp, props))
        conn.executemany(insert, rows)
        written += len(rows)
        rows = []
        if written % 1_000_000 < 10_000:
            conn.execute("COMMIT")
            conn.execute("BEGIN")
            if progress:
                print(f"    stored {written:,} events in time order ({time.monotonic() - t1:.0f} s)", flush=True)
    conn.execute("COMMIT")
    conn.execute("DROP TABLE stage")
    stored = time.monotonic() - t1

    t2 = time.monotonic()
    stamp = _iso(now_ts)
    cur = conn.execute(
        "INSERT INTO segments_computedtrait (workspace_id, key, name, aggregate, event, event_type, property, "
        "\"where\", within, created_at, backfilled_at, refreshed_at) VALUES (?, 'total_spent', 'Total spent', "
        "'sum', 'Order Completed', 'track', 'revenue', '[]', NULL, ?, ?, ?)", (workspace_id, stamp, stamp, stamp))
    trait_id = cur.lastrowid
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO segments_computedvalue (workspace_id, trait_id, customer_id, value, num, state, updated_at) "  # noqa: S608 - ids of this process
        f"VALUES ({workspace_id}, {trait_id}, ?, ?, ?, '{{}}', '{stamp}')",
        ((cid, str(total), float(total)) for cid, total in spent.items()))
    conn.execute("COMMIT")
    computed = time.monotonic() - t2
    del spent

    t3 = time.monotonic()
    for name, sql in indexes:
        conn.execute(sql)
        if progress:
            print(f"    index {name} ({time.monotonic() - t3:.0f} s)", flush=True)
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    indexed = time.monotonic() - t3
    conn.close()
    seconds = time.monotonic() - t0
    return {"profiles": profiles, "events": events, "seed": seed, "now": now.isoformat(),
            "workspace_id": workspace_id, "computed_trait_id": trait_id, "seconds": seconds,
            "draw_seconds": drawn, "store_seconds": stored, "computed_seconds": computed,
            "index_seconds": indexed, "rate": events / seconds, "bytes": db.stat().st_size,
            "built_at": dt.datetime.now(dt.UTC).isoformat()}


def _iso(ts: float) -> str:
    """Epoch seconds as Django stores an aware datetime on SQLite (UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``)."""
    whole = math.floor(ts)
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(whole))}.{int((ts - whole) * 1e6):06d}"
