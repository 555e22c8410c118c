"""REST endpoints of broadcasts: create one, list them, follow one's progress, pause, resume, cancel."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from tsunagu.messaging.broadcasts import (
    broadcast_cancel,
    broadcast_create,
    broadcast_get,
    broadcast_list,
    broadcast_pause,
    broadcast_resume,
    broadcast_summary,
)

router = Router(tags=["broadcasts"])


class BroadcastIn(Schema):
    communication: str = Field(..., max_length=100)
    # Exactly one of customer_ids, user_ids, csv, segment: checked by the service, which names the bad entry.
    audience: Any
    policy: Any = None
    send_at: Any = None  # ISO 8601 with a time zone; none: now
    data: Any = None
    name: str = Field("", max_length=200)


class BroadcastCreated(Schema):
    id: int
    status: str


class BroadcastSummary(Schema):
    total: int
    expanded: int
    sends: int
    sent: int
    delivered: int
    failed_over: int
    skipped: dict[str, int]
    undeliverable: int
    cancelled: int
    pending: int
    by_channel: dict[str, int]


class BroadcastOut(Schema):
    id: int
    name: str
    communication: str
    status: str
    send_at: dt.datetime
    total: int
    progress: float  # recipients expanded into sends, 0 to 1
    segment: str | None = None  # a segment audience: its key (members are listed when expansion starts)
    policy: dict[str, Any] | None
    actor: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    summary: BroadcastSummary | None = None


class BroadcastList(Schema):
    items: list[BroadcastOut]


def _out(b: Any, *, summary: bool) -> dict[str, Any]:
    return {
        "id": b.pk,
        "name": b.name,
        "communication": b.communication.key,
        "status": b.status,
        "send_at": b.send_at,
        "total": b.total,
        "progress": round(b.cursor / b.total, 4) if b.total else (0.0 if _waiting_snapshot(b) else 1.0),
        "segment": b.audience_segment or None,
        "policy": b.policy,
        "actor": b.actor,
        "created_at": b.created_at,
        "started_at": b.started_at,
        "finished_at": b.finished_at,
        "summary": broadcast_summary(b) if summary else None,
    }


def _waiting_snapshot(b: Any) -> bool:
    return bool(b.audience_segment) and b.snapshot_at is None


def _get(request: HttpRequest, broadcast_id: int) -> Any:
    return broadcast_get(workspace=request.auth, broadcast_id=broadcast_id)  # type: ignore[attr-defined]


@router.post("/broadcasts", response={201: BroadcastCreated}, summary="Send a communication to a list of customers")
def create_broadcast(request: HttpRequest, payload: BroadcastIn) -> Status[Any]:
    b = broadcast_create(
        workspace=request.auth,  # type: ignore[attr-defined]
        communication=payload.communication,
        audience=payload.audience,
        policy=payload.policy,
        send_at=payload.send_at,
        data=payload.data,
        name=payload.name,
        actor=request.api_key,  # type: ignore[attr-defined]
    )
    return Status(201, {"id": b.pk, "status": b.status})


@router.get("/broadcasts", response=BroadcastList, summary="The workspace's broadcasts, newest first")
def list_broadcasts(request: HttpRequest, limit: int = 50) -> dict[str, Any]:
    rows = broadcast_list(workspace=request.auth, limit=limit)  # type: ignore[attr-defined]
    return {"items": [_out(b, summary=False) for b in rows]}


@router.get("/broadcasts/{broadcast_id}", response=BroadcastOut, summary="A broadcast: status, progress, summary")
def get_broadcast(request: HttpRequest, broadcast_id: int) -> dict[str, Any]:
    return _out(_get(request, broadcast_id), summary=True)


@router.post("/broadcasts/{broadcast_id}/pause", response=BroadcastOut, summary="Hold what has not gone out")
def pause_broadcast(request: HttpRequest, broadcast_id: int) -> dict[str, Any]:
    b = broadcast_pause(broadcast=_get(request, broadcast_id), actor=request.api_key)  # type: ignore[attr-defined]
    return _out(_get(request, b.pk), summary=True)


@router.post("/broadcasts/{broadcast_id}/resume", response=BroadcastOut, summary="Go on where it was paused")
def resume_broadcast(request: HttpRequest, broadcast_id: int) -> dict[str, Any]:
    b = broadcast_resume(broadcast=_get(request, broadcast_id), actor=request.api_key)  # type: ignore[attr-defined]
    return _out(_get(request, b.pk), summary=True)


@router.post("/broadcasts/{broadcast_id}/cancel", response=BroadcastOut, summary="End what has not gone out")
def cancel_broadcast(request: HttpRequest, broadcast_id: int) -> dict[str, Any]:
    b = broadcast_cancel(broadcast=_get(request, broadcast_id), actor=request.api_key)  # type: ignore[attr-defined]
    return _out(_get(request, b.pk), summary=True)
