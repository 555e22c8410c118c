"""REST endpoints of segments and the rule language (docs/api.md): segments with their counts and members,
evaluating a rule without saving it, and the language's JSON Schema."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Status

from tsunagu.core.errors import ValidationError
from tsunagu.core.pagination import check_limit, decode_cursor, encode_cursor
from tsunagu.segments.rule import rule_parse
from tsunagu.segments.rule.schema import rule_json_schema
from tsunagu.segments.schemas import (
    MemberPage,
    RuleCount,
    RuleEvaluateIn,
    RuleMatch,
    SegmentIn,
    SegmentList,
    SegmentOut,
    SegmentPatch,
    SegmentSaved,
)
from tsunagu.segments.selectors import rule_count, rule_match, rule_warnings, segment_get, segment_list, segment_members
from tsunagu.segments.services import segment_create, segment_delete, segment_update

router = Router(tags=["segments"])


def _out(segment: Any) -> dict[str, Any]:
    return {
        "key": segment.key, "name": segment.name, "description": segment.description, "rule": segment.rule,
        "count": segment.member_count, "time_dependent": segment.time_dependent, "webhook_url": segment.webhook_url,
        "refreshed_at": segment.refreshed_at, "created_at": segment.created_at, "updated_at": segment.updated_at,
    }


@router.post("/segments", response={201: SegmentSaved}, summary="Create a segment; its members are counted at once")
def create_segment(request: HttpRequest, payload: SegmentIn) -> Status[Any]:
    segment, warnings = segment_create(
        workspace=request.auth, key=payload.key, name=payload.name, rule=payload.rule,  # type: ignore[attr-defined]
        description=payload.description, webhook_url=payload.webhook_url, actor=request.api_key,  # type: ignore[attr-defined]
    )
    return Status(201, {"key": segment.key, "count": segment.member_count, "warnings": warnings})


@router.get("/segments", response=SegmentList, summary="The workspace's segments")
def list_segments(request: HttpRequest) -> dict[str, Any]:
    return {"items": [_out(s) for s in segment_list(workspace=request.auth)]}  # type: ignore[attr-defined]


@router.get("/segments/{key}", response=SegmentOut, summary="One segment with its member count")
def get_segment(request: HttpRequest, key: str) -> dict[str, Any]:
    return _out(segment_get(workspace=request.auth, key=key))  # type: ignore[attr-defined]


@router.put("/segments/{key}", response=SegmentSaved, summary="Change a segment (a new rule re-evaluates everyone)")
def put_segment(request: HttpRequest, key: str, payload: SegmentPatch) -> dict[str, Any]:
    segment = segment_get(workspace=request.auth, key=key)  # type: ignore[attr-defined]
    segment, warnings = segment_update(
        segment=segment, name=payload.name, rule=payload.rule, description=payload.description,
        webhook_url=payload.webhook_url, actor=request.api_key,  # type: ignore[attr-defined]
    )
    return {"key": segment.key, "count": segment.member_count, "warnings": warnings}


@router.delete("/segments/{key}", response={204: None}, summary="Delete a segment")
def delete_segment(request: HttpRequest, key: str) -> Status[Any]:
    segment_delete(segment=segment_get(workspace=request.auth, key=key), actor=request.api_key)  # type: ignore[attr-defined]
    return Status(204, None)


@router.get("/segments/{key}/members", response=MemberPage,
            summary="A segment's members (customer ids, by id) and when each entered")
def get_members(request: HttpRequest, key: str, limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
    segment = segment_get(workspace=request.auth, key=key)  # type: ignore[attr-defined]
    check_limit(limit)
    after = 0
    if cursor:
        (after,) = decode_cursor(cursor, 1)
        if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after < 2**63:
            raise ValidationError("cursor is not valid", field="cursor")
    rows = segment_members(segment=segment, after=after, limit=limit + 1)
    items = [{"customer_id": c, "entered_at": at} for c, at in rows[:limit]]
    return {"items": items, "next": encode_cursor([rows[limit - 1][0]]) if len(rows) > limit else None}


@router.post("/rules/evaluate", response={200: RuleCount | RuleMatch},
             summary="Evaluate a rule without saving it: a count, or whether one customer matches")
def evaluate_rule(request: HttpRequest, payload: RuleEvaluateIn) -> dict[str, Any]:
    workspace = request.auth  # type: ignore[attr-defined]
    parsed = rule_parse(payload.rule)
    if payload.customer_id is not None:
        return {"match": rule_match(workspace=workspace, rule=parsed, customer_id=payload.customer_id)}
    return {"count": rule_count(workspace=workspace, rule=parsed),
            "warnings": rule_warnings(workspace=workspace, parsed=parsed)}


@router.get("/rules/schema.json", summary="The rule language as a JSON Schema")
def rules_schema(request: HttpRequest) -> dict[str, Any]:
    return rule_json_schema()
