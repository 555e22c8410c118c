"""REST endpoints of sources and customer timelines."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Status

from tsunagu.core.errors import NotFound, ValidationError
from tsunagu.core.pagination import page_by_id_desc, page_by_time_desc
from tsunagu.customers.selectors import customer_get
from tsunagu.events.models import Event
from tsunagu.events.schemas import EventPage, IngestionOut, SourceIn, SourceOut, SourcePage
from tsunagu.events.selectors import customer_timeline, ingestion_status, source_get, source_list
from tsunagu.events.services import source_create, source_rotate_key

router = Router(tags=["events"])


def event_item(e: Event) -> dict[str, Any]:
    """Track events carry ``event``, page/screen ``name``; properties or traits by type, as Segment."""
    return {
        "id": e.pk,
        "message_id": e.message_id,
        "type": e.type,
        "event": e.event if e.type == "track" else None,
        "name": e.name if e.type in ("page", "screen") else None,
        "channel": e.channel,
        "timestamp": e.timestamp,
        "received_at": e.received_at,
        "source_id": e.source_id,
        "properties": e.properties if e.type in ("track", "page", "screen") else None,
        "traits": e.traits if e.type in ("identify", "group") else None,
        "context": e.context,
    }


@router.get("/customers/{customer_id}/events", response=EventPage, summary="A customer's timeline, newest first")
def customer_events(
    request: HttpRequest, customer_id: int, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    customer = customer_get(workspace=request.auth, customer_id=customer_id)  # type: ignore[attr-defined]
    if customer is None:
        raise NotFound(f"customer {customer_id} not found", field="customer_id")
    rows, next_cursor = page_by_time_desc(customer_timeline(customer=customer), limit=limit, cursor=cursor)
    return {"items": [event_item(e) for e in rows], "next": next_cursor}


@router.get("/sources", response=SourcePage, summary="List sources")
def list_sources(request: HttpRequest, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
    items, next_cursor = page_by_id_desc(source_list(workspace=request.auth), limit=limit, cursor=cursor)  # type: ignore[attr-defined]
    return {"items": items, "next": next_cursor}


@router.post("/sources", response={201: SourceOut}, summary="Create a source")
def create_source(request: HttpRequest, payload: SourceIn) -> Status[Any]:
    for field in ("name", "channel"):
        if "\x00" in getattr(payload, field):
            # PostgreSQL cannot store U+0000 in text: a 400 naming the field, not a database error.
            raise ValidationError(f"{field}: must not contain the NUL character (U+0000)", field=field)
    source = source_create(
        workspace=request.auth,  # type: ignore[attr-defined]
        name=payload.name,
        channel=payload.channel,
        actor=request.api_key,  # type: ignore[attr-defined]
    )
    return Status(201, source)


@router.get("/sources/{source_id}", response=SourceOut, summary="One source")
def get_source(request: HttpRequest, source_id: int) -> Any:
    source = source_get(workspace=request.auth, source_id=source_id)  # type: ignore[attr-defined]
    if source is None:
        raise NotFound(f"source {source_id} not found", field="source_id")
    return source


@router.post("/sources/{source_id}/rotate-key", response=SourceOut, summary="Rotate a source's write key")
def rotate_source_key(request: HttpRequest, source_id: int) -> Any:
    source = source_get(workspace=request.auth, source_id=source_id)  # type: ignore[attr-defined]
    if source is None:
        raise NotFound(f"source {source_id} not found", field="source_id")
    return source_rotate_key(source=source, actor=request.api_key)  # type: ignore[attr-defined]


@router.get("/ingestion", response=IngestionOut, summary="The ingestion pipeline's backlog for this workspace")
def ingestion(request: HttpRequest) -> dict[str, Any]:
    return ingestion_status(workspace_id=request.auth.pk)  # type: ignore[attr-defined]
