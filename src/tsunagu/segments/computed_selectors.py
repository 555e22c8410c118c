"""Reads of computed traits: the workspace's traits, and a customer's values as the 360° page, the API and
templates see them (``{key: value}``; count, sum and distinct_count are 0 without a row, others null)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from django.db.models import Count, QuerySet

from tsunagu.core.models import Workspace
from tsunagu.segments.computed_fold import ZERO_WHEN_EMPTY
from tsunagu.segments.models import ComputedTrait, ComputedValue


def computed_trait_list(*, workspace: Workspace) -> QuerySet[ComputedTrait]:
    """The workspace's traits by key, each with ``customers``: how many customers have a value."""
    return (
        ComputedTrait.objects.filter(workspace=workspace).annotate(customers=Count("values")).order_by("key")
    )


def computed_trait_find(*, workspace: Workspace, key: str) -> ComputedTrait | None:
    return (
        ComputedTrait.objects.filter(workspace=workspace, key=key).annotate(customers=Count("values")).first()
    )


def computed_values_many(*, workspace_id: int, customer_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """{customer: {trait key: value}} for every trait of the workspace: two queries whatever the number of
    customers (up to the chunk the caller passes)."""
    ids = sorted(set(customer_ids))
    traits = list(ComputedTrait.objects.filter(workspace_id=workspace_id).values_list("pk", "key", "aggregate"))
    if not ids or not traits:
        return {cid: {} for cid in ids}
    defaults = {key: (0 if agg in ZERO_WHEN_EMPTY else None) for _, key, agg in traits}
    keys = {pk: key for pk, key, _ in traits}
    out = {cid: dict(defaults) for cid in ids}
    rows = ComputedValue.objects.filter(trait_id__in=list(keys), customer_id__in=ids)
    for trait_id, cid, value in rows.values_list("trait_id", "customer_id", "value"):
        out[cid][keys[trait_id]] = value
    return out


def computed_values_of(customer: Any) -> dict[str, Any]:
    """One customer's ``{trait key: value}`` (the profile extra ``computed``)."""
    return computed_values_many(workspace_id=customer.workspace_id, customer_ids=[customer.pk])[customer.pk]


class ComputedLazy(Mapping[str, Any]):
    """``customer.computed`` in a template context: read from the database the first time a template looks
    into it, for every customer of its batch at once, so messages that do not use it cost nothing."""

    __slots__ = ("_batch", "_customer_id")

    def __init__(self, batch: LazyBatch, customer_id: int) -> None:
        self._batch, self._customer_id = batch, customer_id

    def _values(self) -> dict[str, Any]:
        return self._batch.values(self._customer_id)

    def __getitem__(self, key: str) -> Any:
        return self._values()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())

    def __repr__(self) -> str:
        return f"ComputedLazy(customer={self._customer_id})"


class LazyBatch:
    """The customers whose template contexts were built together (a worker's claimed deliveries)."""

    def __init__(self, workspace_ids: Mapping[int, int]) -> None:
        self._workspace_of = dict(workspace_ids)  # customer -> workspace
        self._loaded: dict[int, dict[str, Any]] | None = None

    def values(self, customer_id: int) -> dict[str, Any]:
        if self._loaded is None:
            loaded: dict[int, dict[str, Any]] = {}
            by_ws: dict[int, list[int]] = {}
            for cid, ws in self._workspace_of.items():
                by_ws.setdefault(ws, []).append(cid)
            for ws, cids in by_ws.items():
                loaded.update(computed_values_many(workspace_id=ws, customer_ids=cids))
            self._loaded = loaded
        return self._loaded.get(customer_id, {})


def computed_lazy(customers: Mapping[int, int]) -> dict[int, ComputedLazy]:
    """{customer: lazy ``computed`` mapping} for customers given as {customer id: workspace id}."""
    batch = LazyBatch(customers)
    return {cid: ComputedLazy(batch, cid) for cid in customers}
