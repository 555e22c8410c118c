"""The raw reads and writes of ``segments.sql`` store and read back exactly what the ORM does: computed
values, for every kind of value a trait can have, on insert and on conflict; memberships and their history,
with the ids returned in the order given."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tsunagu.core.permissions import SYSTEM
from tsunagu.customers.models import Customer
from tsunagu.segments import sql
from tsunagu.segments.models import ComputedTrait, ComputedValue, Membership, MembershipChange, Segment
from tsunagu.segments.sql import values_read, values_upsert

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


def _segments(workspace: Any) -> tuple[Segment, Segment]:
    from tsunagu.segments.services import segment_create

    rule = {"trait": "tier", "op": "eq", "value": "gold"}
    raw, _ = segment_create(workspace=workspace, key="raw", name="Raw", rule=rule, actor=SYSTEM)
    orm, _ = segment_create(workspace=workspace, key="orm", name="ORM", rule=rule, actor=SYSTEM)
    return raw, orm


def _member_rows(segment: Segment) -> list[tuple[Any, ...]]:
    return sorted(Membership.objects.filter(segment=segment).values_list("workspace_id", "customer_id", "entered_at"))


def test_members_insert_read_and_delete_equal_the_orm(workspace):
    raw, orm = _segments(workspace)
    customers = [Customer.objects.create(workspace=workspace).pk for _ in range(7)]
    sql.members_insert(workspace_id=workspace.pk, segment_id=raw.pk, customer_ids=customers, at=NOW)
    Membership.objects.bulk_create([Membership(workspace=workspace, segment=orm, customer_id=c, entered_at=NOW)
                                    for c in customers])
    assert _member_rows(raw) == _member_rows(orm) and len(_member_rows(raw)) == 7

    asked = customers[:5] + [10**9]  # one that is nobody
    assert sql.members_read(customer_ids=asked) == {raw.pk: set(customers[:5]), orm.pk: set(customers[:5])}
    assert sql.members_read(customer_ids=asked, segment_id=orm.pk) == {orm.pk: set(customers[:5])}
    assert sql.members_read(customer_ids=[]) == {}

    sql.members_delete(segment_id=raw.pk, customer_ids=customers[1:3])
    Membership.objects.filter(segment=orm, customer_id__in=customers[1:3]).delete()
    assert _member_rows(raw) == _member_rows(orm) and len(_member_rows(raw)) == 5


def test_changes_insert_equals_the_orm_and_returns_the_ids_in_order(workspace, monkeypatch):
    monkeypatch.setattr(sql, "_RETURNING_BATCH", 3)  # several statements
    raw, orm = _segments(workspace)
    customers = [Customer.objects.create(workspace=workspace).pk for _ in range(8)]
    rows = [(c, i % 3 != 0) for i, c in enumerate(customers)]
    fields = ("workspace_id", "customer_id", "entered", "at", "reason", "published_at", "webhook_pending")
    for published_at, hook in ((None, True), (NOW, False)):
        ids = sql.changes_insert(workspace_id=workspace.pk, segment_id=raw.pk, rows=rows, at=NOW, reason="event",
                                 published_at=published_at, webhook_pending=hook)
        made = MembershipChange.objects.bulk_create([
            MembershipChange(workspace=workspace, segment=orm, customer_id=c, entered=e, at=NOW, reason="event",
                             published_at=published_at, webhook_pending=hook) for c, e in rows])
        stored = dict(MembershipChange.objects.filter(pk__in=ids).values_list("pk", "customer_id"))
        assert [stored[pk] for pk in ids] == customers
        by_orm = sorted(MembershipChange.objects.filter(pk__in=[m.pk for m in made]).values_list(*fields))
        assert sorted(MembershipChange.objects.filter(pk__in=ids).values_list(*fields)) == by_orm
