"""Exporting a segment's members: CSV and JSON Lines through the API, streamed a page at a time, scoped to
the API key's workspace, with the traits asked for; bad parameters are JSON errors naming the field."""

from __future__ import annotations

import csv
import io

import orjson
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import apikey_create
from tsunagu.customers.models import Customer
from tsunagu.segments import export
from tsunagu.segments.services import segment_create

pytestmark = pytest.mark.django_db

GOLD = {"trait": "tier", "op": "eq", "value": "gold"}


def _people(workspace, n, tier="gold", start=0):
    return Customer.objects.bulk_create([
        Customer(workspace=workspace, user_id=f"u{i}", email=f"c{i}@example.jp", phone=f"+8190000000{i:02d}",
                 display_name=f"客{i}", traits={"tier": tier, "points": i * 10, "address": {"city": "渋谷"}})
        for i in range(start, start + n)
    ])


def _get(token, path, **params):
    return Client().get(path, params, headers={"Authorization": f"Bearer {token}"})


def _body(response):
    return b"".join(response.streaming_content).decode()


def test_csv_export_has_the_members_and_the_traits_asked_for(workspace, token):
    members = _people(workspace, 3)
    _people(workspace, 2, tier="silver", start=10)
    Customer.objects.filter(pk=members[1].pk).update(display_name="=HYPERLINK(\"http://x\")")
    segment_create(workspace=workspace, key="gold", name="Gold", rule=GOLD, actor=SYSTEM)
    r = _get(token, "/api/v1/segments/gold/export", format="csv", traits="points,address.city,missing")
    assert r.status_code == 200 and r.streaming
    assert r["Content-Type"] == "text/csv; charset=utf-8"
    assert r["Content-Disposition"] == 'attachment; filename="segment-gold.csv"'
    rows = list(csv.reader(io.StringIO(_body(r))))
    assert rows[0] == ["customer_id", "user_id", "email", "phone", "display_name", "entered_at", "points",
                       "address.city", "missing"]
    assert [r[0] for r in rows[1:]] == [str(c.pk) for c in members]
    first = rows[1]
    assert first[1:5] == ["u0", "c0@example.jp", "+819000000000", "客0"]
    assert first[6:] == ["0", "渋谷", ""]
    assert rows[3][6] == "20"
    assert rows[2][4] == "'=HYPERLINK(\"http://x\")"  # a formula is text in a spreadsheet


def test_jsonl_export_keeps_json_values(workspace, token):
    (one,) = _people(workspace, 1)
    segment_create(workspace=workspace, key="gold", name="Gold", rule=GOLD, actor=SYSTEM)
    r = _get(token, "/api/v1/segments/gold/export", format="jsonl", traits="points,address")
    assert r.status_code == 200 and r["Content-Type"] == "application/x-ndjson; charset=utf-8"
    (line,) = [orjson.loads(x) for x in _body(r).splitlines()]
    assert line["customer_id"] == one.pk and line["points"] == 0 and line["address"] == {"city": "渋谷"}
    assert line["entered_at"].startswith("20") and "T" in line["entered_at"]
    assert set(line) == {"customer_id", "user_id", "email", "phone", "display_name", "entered_at", "points",
                         "address"}


def test_the_export_streams_a_page_per_query(workspace, monkeypatch):
    monkeypatch.setattr(export, "PAGE", 2)
    _people(workspace, 5)
    segment, _ = segment_create(workspace=workspace, key="gold", name="Gold", rule=GOLD, actor=SYSTEM)
    chunks = export.segment_export_chunks(segment=segment, fmt="jsonl", traits=[])
    with CaptureQueriesContext(connection) as queries:
        first = next(chunks)
    assert len(first.splitlines()) == 2 and len(queries) == 1  # one page read, not the segment
    rest = list(chunks)
    assert [len(c.splitlines()) for c in rest] == [2, 1]
    ids = [orjson.loads(x)["customer_id"] for c in [first, *rest] for x in c.splitlines()]
    assert ids == sorted(ids) and len(set(ids)) == 5


def test_csv_chunks_join_into_one_file(workspace, monkeypatch):
    monkeypatch.setattr(export, "PAGE", 2)
    _people(workspace, 3)
    segment, _ = segment_create(workspace=workspace, key="gold", name="Gold", rule=GOLD, actor=SYSTEM)
    chunks = list(export.segment_export_chunks(segment=segment, fmt="csv", traits=["points"]))
    assert len(chunks) == 2
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode())))
    assert len(rows) == 4 and rows[0][-1] == "points" and [r[-1] for r in rows[1:]] == ["0", "10", "20"]


def test_an_empty_segment_exports_a_header_only(workspace, token):
    segment_create(workspace=workspace, key="gold", name="Gold", rule=GOLD, actor=SYSTEM)
    assert _body(_get(token, "/api/v1/segments/gold/export")) == (
        "customer_id,user_id,email,phone,display_name,entered_at\r\n")
    assert _body(_get(token, "/api/v1/segments/gold/export", format="jsonl")) == ""


def test_a_viewer_key_may_export_and_another_workspace_may_not(workspace, other_workspace):
    _people(workspace, 1)
    segment_create(workspace=workspace, key="gold", name="Gold", rule=GOLD, actor=SYSTEM)
    viewer = apikey_create(workspace=workspace, name="v", role="viewer", actor=SYSTEM)[1]
    assert _get(viewer, "/api/v1/segments/gold/export").status_code == 200
    other = apikey_create(workspace=other_workspace, name="o", actor=SYSTEM)[1]
    r = _get(other, "/api/v1/segments/gold/export")
    assert r.status_code == 404 and orjson.loads(r.content)["field"] == "key"
    r = Client().get("/api/v1/segments/gold/export")
    assert r.status_code == 401


@pytest.mark.parametrize(("params", "field"), [
    ({"format": "xlsx"}, "format"),
    ({"traits": "a,,b"}, "traits"),
    ({"traits": "email"}, "traits"),
    ({"traits": ",".join(f"t{i}" for i in range(51))}, "traits"),
])
def test_bad_parameters_are_json_errors(workspace, token, params, field):
    segment_create(workspace=workspace, key="gold", name="Gold", rule=GOLD, actor=SYSTEM)
    r = _get(token, "/api/v1/segments/gold/export", **params)
    assert r.status_code == 400 and not r.streaming
    assert orjson.loads(r.content)["field"] == field


def test_the_console_can_reverse_the_export_url():
    from django.urls import reverse

    assert reverse("api:segment-export", kwargs={"key": "vip"}) == "/api/v1/segments/vip/export"
