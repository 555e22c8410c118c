"""The raw reads and writes of computed values (``segments.computed_sql``) store and read back exactly what
the ORM does, for every kind of value a trait can have, on insert and on conflict."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tsunagu.customers.models import Customer
from tsunagu.segments.computed_sql import values_read, values_upsert
from tsunagu.segments.models import ComputedTrait, ComputedValue

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 5, 1, 3, 4, 5, 678901, tzinfo=dt.UTC)
VALUES: list[Any] = [
    0, 7, -3, 2**62, 1.5, -0.1, 1e300, "本", "2026-01-10T10:00:00Z", "", True, False, None,
    {"recency": 5, "frequency": 1, "monetary": 3}, [1, "a", None], {"nested": {"k": ["v"]}},
]
STATE = {"n": 3, "f": [0.1, -1e-17], "i": 12, "x": True, "c": {'"本"': [2, 1767225600000000]}, "s": ['"a"', "1"]}


def _rows(trait: ComputedTrait) -> dict[int, tuple[Any, ...]]:
    fields = ("customer_id", "workspace_id", "value", "num", "state", "updated_at")
    return {r[0]: r[1:] for r in ComputedValue.objects.filter(trait=trait).values_list(*fields)}


def test_upsert_and_read_equal_the_orm(workspace):
    from tsunagu.segments.tests.computed_support import declare

    customers = [Customer.objects.create(workspace=workspace) for _ in VALUES]
    raw, orm = (declare(workspace, key, "count", "X") for key in ("raw", "orm"))
    rows = {c.pk: (v, {**STATE, "n": i}) for i, (c, v) in enumerate(zip(customers, VALUES, strict=True))}
    values_upsert(workspace_id=workspace.pk, trait_id=raw.pk, rows=rows, now=NOW)
    ComputedValue.objects.bulk_create([
        ComputedValue(workspace=workspace, trait=orm, customer_id=cid, value=v,
                      num=float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None,
                      state=s, updated_at=NOW)
        for cid, (v, s) in rows.items()
    ])
    assert _rows(raw) == _rows(orm)
    assert ComputedValue.objects.filter(trait=raw, value__isnull=True).count() == 1  # SQL NULL, as the ORM
    assert _rows(raw)[customers[3].pk][2] == float(2**62)
    assert values_read(trait_id=raw.pk, customer_ids=[c.pk for c in customers] + [10**9]) == rows

    # On conflict every column but the keys is replaced.
    later = NOW + dt.timedelta(hours=1)
    changed = {cid: (["changed", cid], {"n": -1}) for cid in list(rows)[:5]}
    values_upsert(workspace_id=workspace.pk, trait_id=raw.pk, rows=changed, now=later)
    for cid, (value, state) in changed.items():
        orm_row = ComputedValue.objects.get(trait=orm, customer_id=cid)
        orm_row.value, orm_row.num, orm_row.state, orm_row.updated_at = value, None, state, later
        orm_row.save()
    assert _rows(raw) == _rows(orm)
    assert ComputedValue.objects.filter(trait=raw).count() == len(VALUES)
    assert values_read(trait_id=raw.pk, customer_ids=[]) == {}
