"""The demo's personas: three of its segments described as the people a retailer's CX team talks about —
the loyal VIP, the regular drifting away, the LINE friend — each with a small drawn portrait (a PNG made
here, so the demo ships no image files)."""

from __future__ import annotations

import struct
import zlib
from typing import Any

from tsunagu.segments.personas import persona_save, picture_from_upload
from tsunagu.segments.selectors import segment_get

PERSONAS: tuple[tuple[str, dict[str, Any], tuple[int, int, int]], ...] = (
    ("vip", {
        "description": "40代、都内在住。季節ごとに新作をまとめて買い、店舗スタッフとの会話を楽しむ常連。",
        "goals": ["新作をいち早く知りたい", "自分に合う提案がほしい", "会員特典をきちんと受けたい"],
        "pain_points": ["人気商品がすぐ売り切れる", "オンラインと店舗でポイントがわかりにくい"],
        "preferred_channels": ["line", "email", "store"],
    }, (196, 150, 40)),
    ("lapsed", {
        "description": "30代、子育て中。以前は月に一度は購入していたが、ここ2か月は来店もサイト訪問もない。",
        "goals": ["時間をかけずに必要なものを買いたい", "送料をおさえたい"],
        "pain_points": ["配送日時を選べない", "メールが多くて読まなくなった"],
        "preferred_channels": ["line", "app"],
    }, (110, 130, 160)),
    ("line-friends", {
        "description": "20代、LINE公式アカウントの友だち。クーポンとセール情報をきっかけに買い物をする。",
        "goals": ["お得な情報を逃したくない", "スマホだけで完結したい"],
        "pain_points": ["クーポンの使い方がわかりにくい"],
        "preferred_channels": ["line"],
    }, (6, 199, 85)),
)


def portrait(rgb: tuple[int, int, int], size: int = 96) -> bytes:
    """A PNG: a head and shoulders in ``rgb`` on a pale disc."""
    pale = tuple(255 - (255 - c) // 6 for c in rgb)
    rows = []
    mid = size / 2
    for y in range(size):
        row = bytearray(b"\x00")  # filter type: none
        for x in range(size):
            dx, dy = x - mid + .5, y - mid + .5
            inside = dx * dx + dy * dy <= mid * mid
            head = dx * dx + (y - size * .38) ** 2 <= (size * .17) ** 2
            body = y >= size * .6 and dx * dx / (size * .3) ** 2 + (y - size * .95) ** 2 / (size * .38) ** 2 <= 1
            pixel = rgb if inside and (head or body) else pale if inside else (255, 255, 255)
            row += bytes(pixel)
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
            + chunk(b"IEND", b""))


def demo_personas(*, workspace: Any, actor: Any) -> list[str]:
    """Describe the demo's segments as personas (after ``demo_segments``); returns the segment keys."""
    done = []
    for key, fields, rgb in PERSONAS:
        persona_save(segment=segment_get(workspace=workspace, key=key), actor=actor,
                     picture=picture_from_upload(portrait(rgb)), **fields)
        done.append(key)
    return done
