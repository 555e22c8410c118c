"""Filters that shape archived or previewed message content for the console's templates."""

from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()


def _texts(node: Any, out: list[str], limit: int = 40) -> None:
    """The ``text`` components of a Flex message, in reading order (what a chat bubble shows of it)."""
    if len(out) >= limit:
        return
    if isinstance(node, dict):
        if node.get("type") in ("text", "span") and isinstance(node.get("text"), str):
            out.append(node["text"])
        for key in ("header", "hero", "body", "footer", "contents"):
            if key in node:
                _texts(node[key], out, limit)
    elif isinstance(node, list):
        for item in node:
            _texts(item, out, limit)


@register.filter
def line_messages(content: Any) -> list[dict[str, Any]]:
    """LINE message objects (``content["messages"]``) as bubbles: text, or a Flex message's alt text, its
    texts and its JSON."""
    items = content.get("messages") if isinstance(content, dict) else None
    if not isinstance(items, list):
        return []
    out = []
    for m in items:
        if not isinstance(m, dict):
            continue
        texts: list[str] = []
        if m.get("type") == "flex":
            _texts(m.get("contents"), texts)
        out.append(
            {
                "type": str(m.get("type", "")),
                "text": str(m.get("text", "")),
                "altText": str(m.get("altText", "")),
                "texts": texts,
                "json": json.dumps(m.get("contents"), ensure_ascii=False, indent=2),
            }
        )
    return out


@register.filter
def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)
