"""A variant rendered for a customer exactly as a send renders it, and nothing recorded: the API's preview
and the console's live preview (of a saved version or of a variant still being edited)."""

from __future__ import annotations

from typing import Any

from tsunagu.messaging.context import customer_context
from tsunagu.messaging.links import links_for
from tsunagu.messaging.render import render_variant


def preview_variant(*, variant: dict[str, Any], topic: str, customer: Any, base_url: str) -> dict[str, Any]:
    """``{"channel", "locale", "subject", "text", "content"}``. Raises ``ValueError`` naming the variant
    when it cannot be rendered or sent (a limit hit, invalid JSON after rendering)."""
    links = links_for(
        key="preview", topic=topic, base_url=base_url, customer_id=customer.pk if customer is not None else None
    )
    context = {"customer": customer_context(customer), "event": {}, "data": {}, **links}
    rendered = render_variant(variant, context)
    return {
        "channel": rendered.channel,
        "locale": rendered.locale,
        "subject": rendered.subject,
        "text": rendered.text,
        "content": rendered.content,
    }
