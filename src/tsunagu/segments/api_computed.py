"""REST endpoints of computed traits: declare (backfilled at once), list, read, delete.

Thin: the services check roles and input; every endpoint is scoped to the token's workspace.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from tsunagu.core.errors import NotFound
from tsunagu.segments.computed import computed_trait_create, computed_trait_delete
from tsunagu.segments.computed_selectors import computed_trait_find, computed_trait_list

router = Router(tags=["computed traits"])


class ComputedTraitIn(Schema):
    key: str = Field(..., max_length=1000)
    aggregate: str = Field(..., max_length=100)
    event: str = Field(..., max_length=1000)
    event_type: str = Field("track", max_length=100)
    property: str = Field("", max_length=1000)
    name: str = Field("", max_length=1000)
    # Checked by the service, which names the node at fault (``where[0].op``, ``within.days``).
    where: Any = None
    within: Any = None


class ComputedTraitOut(Schema):
    key: str
    name: str
    aggregate: str
    event: str
    event_type: str
    property: str
    where: list[Any]
    within: dict[str, Any] | None
    customers: int  # how many customers have a value
    created_at: dt.datetime
    backfilled_at: dt.datetime | None
    refreshed_at: dt.datetime | None


class ComputedTraitList(Schema):
    items: list[ComputedTraitOut]


def _ws(request: HttpRequest) -> Any:
    return request.auth  # type: ignore[attr-defined]


def _get(request: HttpRequest, key: str) -> Any:
    trait = computed_trait_find(workspace=_ws(request), key=key)
    if trait is None:
        raise NotFound(f"computed trait {key!r} not found", field="key")
    return trait


@router.post("/computed-traits", response={201: ComputedTraitOut}, summary="Declare a computed trait (backfilled now)")
def create_computed_trait(request: HttpRequest, payload: ComputedTraitIn) -> Status[Any]:
    trait = computed_trait_create(
        workspace=_ws(request),
        actor=request.api_key,  # type: ignore[attr-defined]
        key=payload.key,
        aggregate=payload.aggregate,
        event=payload.event,
        event_type=payload.event_type,
        property=payload.property,
        where=payload.where,
        within=payload.within,
        name=payload.name,
    )
    return Status(201, _get(request, trait.key))


@router.get("/computed-traits", response=ComputedTraitList, summary="The workspace's computed traits")
def list_computed_traits(request: HttpRequest) -> dict[str, Any]:
    return {"items": list(computed_trait_list(workspace=_ws(request)))}


@router.get("/computed-traits/{key}", response=ComputedTraitOut, summary="One computed trait")
def get_computed_trait(request: HttpRequest, key: str) -> Any:
    return _get(request, key)


@router.delete("/computed-traits/{key}", response={204: None}, summary="Delete a computed trait and its values")
def delete_computed_trait(request: HttpRequest, key: str) -> Status[None]:
    computed_trait_delete(trait=_get(request, key), actor=request.api_key)  # type: ignore[attr-defined]
    return Status(204, None)
