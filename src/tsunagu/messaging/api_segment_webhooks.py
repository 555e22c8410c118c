"""A segment's membership webhook: its signing secret and how its deliveries stand (docs/segments-out.md).
The URL itself is the segment's (``PUT /api/v1/segments/{key}`` with ``webhook_url``)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router

from tsunagu.messaging.segment_webhooks import segment_webhook_secret, segment_webhook_status
from tsunagu.segments.selectors import segment_get

router = Router(tags=["segments"])


@router.get("/segments/{key}/webhook", summary="A segment's webhook: URL, signing secret, deliveries")
def get_segment_webhook(request: HttpRequest, key: str) -> dict[str, Any]:
    """Editors of segments only (the secret verifies every batch): operators and up."""
    segment = segment_get(workspace=request.auth, key=key)  # type: ignore[attr-defined]
    secret = segment_webhook_secret(segment=segment, actor=request.api_key)  # type: ignore[attr-defined]
    return {**segment_webhook_status(segment=segment), "secret": secret}


@router.post("/segments/{key}/webhook/rotate", summary="Replace a segment's webhook signing secret")
def rotate_segment_webhook(request: HttpRequest, key: str) -> dict[str, Any]:
    segment = segment_get(workspace=request.auth, key=key)  # type: ignore[attr-defined]
    secret = segment_webhook_secret(segment=segment, actor=request.api_key, rotate=True)  # type: ignore[attr-defined]
    return {"secret": secret}
