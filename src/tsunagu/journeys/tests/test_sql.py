"""``journeys.sql`` writes what the ORM writes: the engine's flush through ``rows_update``/``rows_insert``
leaves the same rows as ``bulk_update``/``bulk_create`` of the same objects (dates, JSON with Japanese text,
nulls, foreign keys), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.db import connection
from django.db.models import JSONField

from tsunagu.core import clock
from tsunagu.core.permissions import SYSTEM
from tsunagu.customers.models import Customer
from tsunagu.journeys import sql
from tsunagu.journeys.engine import FLUSHED
from tsunagu.journeys.models import Journey, JourneyVersion, Run, RunHistory, TraitUpdate
from tsunagu.journeys.services import journey_create, journey_publish

pytestmark = pytest.mark.django_db

DEFINITION = {"entry": {"api": True}, "steps": [{"id": "mark", "type": "update_traits", "traits": {"a": 1}}]}


def _runs(workspace: Any, journey: Journey, version: JourneyVersion, prefix: str) -> list[Run]:
    now = clock.now().replace(second=0, microsecond=0)  # the two sets are made at the same instant
    return [Run.objects.create(workspace=workspace, journey=journey, version=version,
                               customer=Customer.objects.create(workspace=workspace, user_id=f"{prefix}{i}"),
                               step="mark", due_at=now, locked_by="w", lease_until=now, context={"steps": {}},
                               entered_at=now, updated_at=now)
            for i in range(3)]


def _change(runs: list[Run], now: dt.datetime) -> None:
    for i, run in enumerate(runs):
        run.status = [Run.Status.COMPLETED, Run.Status.WAITING, Run.Status.FAILED][i]
        run.step, run.step_state, run.visits = f"s{i}", "waiting" if i == 1 else "", i + 1
        run.due_at = None if i != 1 else now + dt.timedelta(hours=i)
        run.context = {"steps": {"mark": {"outcome": "記録済み", "n": i, "nested": [1, None, {"x": "ｶﾅ"}]}}}
        run.locked_by, run.lease_until, run.updated_at = "", None, now
        run.ended_at = now if i != 1 else None


def _row(obj: Any, *, skip: tuple[str, ...] = ("id",)) -> dict[str, Any]:
    """The row as stored (read with SQL, not through the fields' converters): the same text for a date, not
    merely a value that reads back equal; for JSON the same JSON value (orjson writes no spaces), its text
    parsed here by the standard library, not by what the code under test reads with."""
    meta = obj._meta
    json_columns = {f.column for f in meta.concrete_fields if isinstance(f, JSONField)}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {meta.db_table} WHERE {meta.pk.column} = %s", [obj.pk])  # noqa: S608
        names = [c[0] for c in cursor.description]
        values = dict(zip(names, cursor.fetchone(), strict=True))
    return {k: json.loads(v) if k in json_columns and isinstance(v, str) else v
            for k, v in values.items() if k not in skip}


@pytest.fixture
def journey(workspace: Any) -> tuple[Journey, JourneyVersion]:
    journey = journey_create(workspace=workspace, key="sql", name="SQL", definition=DEFINITION, actor=SYSTEM)
    version = journey_publish(journey=journey, actor=SYSTEM)
    return journey, version


def test_rows_update_writes_what_bulk_update_writes(workspace: Any, journey: Any) -> None:
    now = clock.now().replace(microsecond=123456)
    orm, raw = _runs(workspace, *journey, "orm-"), _runs(workspace, *journey, "raw-")
    _change(orm, now)
    _change(raw, now)
    Run.objects.bulk_update(orm, list(FLUSHED))
    sql.rows_update(Run, raw, FLUSHED)
    for a, b in zip(orm, raw, strict=True):
        assert _row(b, skip=("id", "customer_id")) == _row(a, skip=("id", "customer_id"))
        assert Run.objects.get(pk=b.pk).context["steps"]["mark"]["outcome"] == "記録済み"
        assert _row(b)["status"] != Run.Status.ACTIVE  # the update happened


def test_rows_insert_writes_what_bulk_create_writes(workspace: Any, journey: Any) -> None:
    now = clock.now().replace(microsecond=654321)
    journey_row, _ = journey
    orm_runs, raw_runs = _runs(workspace, *journey, "orm-"), _runs(workspace, *journey, "raw-")

    def history(runs: list[Run]) -> list[RunHistory]:
        return [RunHistory(run_id=r.pk, journey_id=journey_row.pk, step="mark", action="step", at=now,
                           outcome={"outcome": "recorded", "traits": ["名前"]} if i else None, actor="")
                for i, r in enumerate(runs)]

    def traits(runs: list[Run]) -> list[TraitUpdate]:
        return [TraitUpdate(workspace_id=workspace.pk, customer_id=r.customer_id, message_id=f"m-{i}",
                            traits={"tier": "ゴールド"}, created_at=now) for i, r in enumerate(runs)]

    RunHistory.objects.bulk_create(history(orm_runs))
    sql.rows_insert(RunHistory, history(raw_runs))
    TraitUpdate.objects.bulk_create(traits(orm_runs))
    sql.rows_insert(TraitUpdate, traits(raw_runs))
    for orm_run, raw_run in zip(orm_runs, raw_runs, strict=True):
        a = _row(RunHistory.objects.get(run_id=orm_run.pk), skip=("id", "run_id"))
        b = _row(RunHistory.objects.get(run_id=raw_run.pk), skip=("id", "run_id"))
        assert b == a
    orm_traits = list(TraitUpdate.objects.filter(customer_id__in=[r.customer_id for r in orm_runs])
                      .order_by("id").values("message_id", "traits", "created_at", "published_at", "workspace_id"))
    raw_traits = list(TraitUpdate.objects.filter(customer_id__in=[r.customer_id for r in raw_runs])
                      .order_by("id").values("message_id", "traits", "created_at", "published_at", "workspace_id"))
    assert raw_traits == orm_traits and len(raw_traits) == 3
    assert raw_traits[0]["created_at"] == now


def test_history_insert_writes_what_bulk_create_writes(workspace: Any, journey: Any) -> None:
    now = clock.now().replace(microsecond=654321)
    later = now.replace(microsecond=0)  # a second instant, and one whose text has no fraction
    journey_row, _ = journey
    orm_runs, raw_runs = _runs(workspace, *journey, "orm-"), _runs(workspace, *journey, "raw-")
    outcomes = [None, {"outcome": "送信済み", "n": 1.5, "ok": True, "list": [1, None]}, {}]

    RunHistory.objects.bulk_create([
        RunHistory(run_id=r.pk, journey_id=journey_row.pk, step=f"s{i}", action="step", at=now if i else later,
                   outcome=outcomes[i], actor="user 山田" if i == 2 else "")
        for i, r in enumerate(orm_runs)
    ])
    sql.history_insert([
        sql.HistoryRow(r.pk, journey_row.pk, f"s{i}", "step", now if i else later, outcomes[i],
                       "user 山田" if i == 2 else "")
        for i, r in enumerate(raw_runs)
    ])
    for orm_run, raw_run in zip(orm_runs, raw_runs, strict=True):
        a = _row(RunHistory.objects.get(run_id=orm_run.pk), skip=("id", "run_id"))
        b = _row(RunHistory.objects.get(run_id=raw_run.pk), skip=("id", "run_id"))
        assert b == a
    # No outcome is SQL NULL, as the ORM writes it, not JSON null.
    assert RunHistory.objects.filter(run_id=raw_runs[0].pk, outcome__isnull=True).exists()
    assert RunHistory.objects.get(run_id=raw_runs[0].pk).at == later


def test_history_for_runs_writes_what_bulk_create_writes(workspace: Any) -> None:
    journey = journey_create(workspace=workspace, key="h", name="h", definition=DEFINITION, actor=SYSTEM)
    version = journey_publish(journey=journey, actor=SYSTEM)
    runs = _runs(workspace, journey, version, "h")
    Run.objects.filter(pk=runs[2].pk).update(status=Run.Status.COMPLETED)  # ended: no row for it
    at = clock.now().replace(microsecond=123456)
    outcome = {"scope": "journey", "誰": "山田"}
    live = [r for r in runs[:2]]
    RunHistory.objects.bulk_create([RunHistory(run=r, journey=journey, step=r.step, action="orm", at=at,
                                               outcome=outcome, actor="user 山田") for r in live])
    written = sql.history_for_runs(journey_id=journey.pk, exclude=sorted(Run.ENDED), action="sql", at=at,
                                   outcome=outcome, actor="user 山田")
    assert written == 2

    def stored(action: str) -> list[tuple[Any, ...]]:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT run_id, journey_id, step, at, outcome, actor FROM {RunHistory._meta.db_table} "  # noqa: S608
                           "WHERE action = %s ORDER BY run_id", [action])
            return cursor.fetchall()

    assert stored("sql") == stored("orm") and len(stored("sql")) == 2


def test_awaits_read_returns_what_the_orm_filter_returns(workspace: Any, journey: Any) -> None:
    """By customers and names, and scoped to one journey's runs (a replay's); runs awaiting nothing never."""
    j, version = journey
    other = journey_create(workspace=workspace, key="other", name="o", definition=DEFINITION, actor=SYSTEM)
    other_version = journey_publish(journey=other, actor=SYSTEM)
    runs = _runs(workspace, j, version, "a") + _runs(workspace, other, other_version, "b")
    for i, run in enumerate(runs):
        run.awaits, run.step = ["Order", "Open", ""][i % 3], f"w{i}"
    Run.objects.bulk_update(runs, ["awaits", "step"])
    customers = sorted({r.customer_id for r in runs})

    def orm(names: list[str], customer_ids: list[int], journey_id: int | None = None) -> list[Any]:
        qs = Run.objects.filter(customer_id__in=customer_ids, awaits__in=names)
        if journey_id is not None:
            qs = qs.filter(journey_id=journey_id)
        return sorted(qs.values_list("id", "customer_id", "awaits", "step", "version_id"))

    for names, ids, journey_id in ((["Order"], customers, None), (["Order", "Open"], customers[1:4], None),
                                   (["Order", "Open"], customers, other.pk), (["Nothing"], customers, None),
                                   (["", "Order"], customers, None)):
        got = sorted(sql.awaits_read(customer_ids=ids, names=names, journey_id=journey_id))
        assert got == orm([n for n in names if n], ids, journey_id), (names, ids, journey_id)
    assert len(orm(["Order", "Open"], customers)) == 4
    assert {r[4] for r in sql.awaits_read(customer_ids=customers, names=["Order", "Open"])} == {
        version.pk, other_version.pk}


def test_runs_read_returns_what_the_orm_returns(workspace: Any, journey: Any) -> None:
    """Every field as the ORM's query gives it — instants with and without a fraction, nulls, booleans both
    ways, JSON with Japanese text — in id order; ``locked_by`` keeps only that worker's."""
    now = clock.now().replace(microsecond=123456)
    runs = _runs(workspace, *journey, "read-")
    _change(runs, now)
    runs[0].held, runs[1].locked_by, runs[1].lease_until = True, "w2", now.replace(microsecond=0)
    runs[2].goal_at, runs[2].goal_until = now, now + dt.timedelta(days=3)
    runs[2].context["big"] = 2 ** 70  # past orjson's integers: json reads it
    Run.objects.bulk_update(runs, [*FLUSHED, "held", "goal_at", "goal_until"])
    ids = [r.pk for r in reversed(runs)]
    names = [f.attname for f in Run._meta.concrete_fields]

    def fields(rows: list[Run]) -> list[dict[str, Any]]:
        return [{n: getattr(r, n) for n in names} for r in rows]

    got = sql.runs_read(ids=ids)
    assert fields(got) == fields(list(Run.objects.filter(pk__in=ids).order_by("pk")))
    assert [r.pk for r in got] == sorted(ids)
    assert got[0].held is True and got[1].held is False
    assert got[1].lease_until == now.replace(microsecond=0) and got[1].lease_until.tzinfo is not None
    assert got[2].context["big"] == 2 ** 70 and got[0].context["steps"]["mark"]["nested"][2] == {"x": "ｶﾅ"}
    assert not got[0]._state.adding  # saved rows, as the ORM's: ``save()`` updates them
    got[0].entry_key = "saved"
    got[0].save(update_fields=["entry_key"])
    assert Run.objects.get(pk=got[0].pk).entry_key == "saved" and Run.objects.count() == len(runs)
    assert got[1].journey == journey[0] and got[1].customer.user_id == "read-1"  # relations load on demand
    assert [r.pk for r in sql.runs_read(ids=ids, locked_by="w2")] == [runs[1].pk]
    assert sql.runs_read(ids=[]) == []
