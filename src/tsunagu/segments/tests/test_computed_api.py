"""The computed-traits API (declare, list, read, delete; roles, workspaces, bad input naming the field), the
values on ``GET /api/v1/customers/{id}`` and in templates, and segments whose rules read them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client

from tsunagu.conftest import ApiClient
from tsunagu.core.models import AuditEntry
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import apikey_create
from tsunagu.customers.models import Customer
from tsunagu.messaging.context import customer_context
from tsunagu.messaging.render import render_variant
from tsunagu.messaging.sql import customer_contexts
from tsunagu.segments.models import ComputedTrait, Membership, Segment
from tsunagu.segments.services import segment_create
from tsunagu.segments.tests.computed_support import applied_changes, send_batch, track  # noqa: F401

pytestmark = pytest.mark.django_db
ORDER = "Order Completed"
T = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def _delete(api: ApiClient, path: str) -> int:
    return Client().delete(path, headers=api.headers).status_code


def _key(workspace: Any, role: str) -> ApiClient:
    return ApiClient(apikey_create(workspace=workspace, name=role, role=role, actor=SYSTEM)[1])


def test_declare_list_read_delete(api, send, workspace, applied_changes):  # noqa: F811
    send_batch(send, [track("u1", ORDER, T, revenue=10), track("u1", ORDER, T, revenue=5),
                      track("u2", ORDER, T, revenue=7)])
    status, body = api.post("/api/v1/computed-traits", {"key": "total_spent", "aggregate": "sum", "event": ORDER,
                                                        "property": "revenue", "name": "Total spent"})
    assert status == 201, body
    assert body["key"] == "total_spent" and body["aggregate"] == "sum" and body["property"] == "revenue"
    assert body["customers"] == 2 and body["backfilled_at"] is not None and body["within"] is None
    assert body["where"] == [] and body["event_type"] == "track" and body["name"] == "Total spent"
    status, body = api.post("/api/v1/computed-traits", {
        "key": "orders_90d", "aggregate": "count", "event": ORDER, "within": {"days": 90},
        "where": [{"property": "revenue", "op": "gte", "value": 7}],
    })
    assert status == 201, body
    assert body["within"] == {"days": 90} and body["where"][0]["op"] == "gte"

    status, body = api.get("/api/v1/computed-traits")
    assert status == 200 and [t["key"] for t in body["items"]] == ["orders_90d", "total_spent"]
    status, body = api.get("/api/v1/computed-traits/total_spent")
    assert status == 200 and body["customers"] == 2
    assert AuditEntry.objects.filter(action="computed_trait.created", target="total_spent").exists()

    status, body = api.post("/api/v1/computed-traits", {"key": "total_spent", "aggregate": "count", "event": "X"})
    assert (status, body["error"], body["field"]) == (409, "conflict", "key")

    assert _delete(api, "/api/v1/computed-traits/total_spent") == 204
    assert api.get("/api/v1/computed-traits/total_spent")[0] == 404
    assert _delete(api, "/api/v1/computed-traits/total_spent") == 404
    assert AuditEntry.objects.filter(action="computed_trait.deleted", target="total_spent").exists()


def test_roles_and_workspaces(workspace, other_workspace, token):
    spec = {"key": "orders", "aggregate": "count", "event": ORDER}
    assert ApiClient(None).get("/api/v1/computed-traits")[0] == 401
    assert ApiClient("nope").post("/api/v1/computed-traits", spec)[0] == 401
    viewer, agent, operator = (_key(workspace, r) for r in ("viewer", "agent", "operator"))
    assert viewer.post("/api/v1/computed-traits", spec)[0] == 403
    assert agent.post("/api/v1/computed-traits", spec)[0] == 403
    assert operator.post("/api/v1/computed-traits", spec)[0] == 201
    assert viewer.get("/api/v1/computed-traits/orders")[0] == 200
    assert _delete(viewer, "/api/v1/computed-traits/orders") == 403
    # Another workspace's key sees none of it, and may use the same key for its own trait.
    other = _key(other_workspace, "admin")
    assert other.get("/api/v1/computed-traits/orders")[0] == 404
    assert other.get("/api/v1/computed-traits")[1] == {"items": []}
    assert _delete(other, "/api/v1/computed-traits/orders") == 404
    assert other.post("/api/v1/computed-traits", spec)[0] == 201
    assert ComputedTrait.objects.filter(key="orders").count() == 2
    assert _delete(operator, "/api/v1/computed-traits/orders") == 204
    assert ComputedTrait.objects.filter(key="orders").get().workspace == other_workspace


@pytest.mark.parametrize(("payload", "field"), [
    ({"aggregate": "count", "event": ORDER}, "key"),
    ({"key": "Bad Key", "aggregate": "count", "event": ORDER}, "key"),
    ({"key": "x", "aggregate": "median", "event": ORDER}, "aggregate"),
    ({"key": "x", "aggregate": "count", "event": "  "}, "event"),
    ({"key": "x", "aggregate": "count", "event": ORDER, "event_type": "identify"}, "event_type"),
    ({"key": "x", "aggregate": "sum", "event": ORDER}, "property"),
    ({"key": "x", "aggregate": "rfm", "event": ORDER}, "property"),
    ({"key": "x", "aggregate": "count", "event": ORDER, "property": "revenue"}, "property"),
    ({"key": "x", "aggregate": "avg", "event": ORDER, "property": "$timestamp"}, "property"),
    ({"key": "x", "aggregate": "count", "event": ORDER, "within": {"days": 0}}, "within.days"),
    ({"key": "x", "aggregate": "count", "event": ORDER, "within": {"days": "90"}}, "within.days"),
    ({"key": "x", "aggregate": "count", "event": ORDER, "within": {"weeks": 2}}, "within"),
    ({"key": "x", "aggregate": "count", "event": ORDER, "within": {"since": "yesterday"}}, "within.since"),
    ({"key": "x", "aggregate": "count", "event": ORDER, "within": {"between": ["2026-01-01"]}}, "within.between"),
    ({"key": "x", "aggregate": "count", "event": ORDER, "where": {"property": "a"}}, "where"),
    ({"key": "x", "aggregate": "count", "event": ORDER, "where": [{"property": "a", "op": "bogus", "value": 1}]},
     "where[0].op"),
    ({"key": "x", "aggregate": "count", "event": ORDER,
      "where": [{"property": "a", "op": "exists"}, {"property": "b", "op": "gt", "value": "x"}]}, "where[1].value"),
    ({"key": "x", "aggregate": ["count"], "event": ORDER}, "aggregate"),
    ({"key": "x\u0000", "aggregate": "count", "event": ORDER}, "key"),
])
def test_bad_input_is_400_naming_the_field(api, payload, field):
    status, body = api.post("/api/v1/computed-traits", payload)
    assert status == 400, body
    assert body["error"] == "invalid" and body["field"] == field, body
    assert not ComputedTrait.objects.exists()


def test_a_trait_that_a_segment_reads_cannot_be_deleted(api, send, workspace, applied_changes):  # noqa: F811
    assert api.post("/api/v1/computed-traits", {"key": "orders", "aggregate": "count", "event": ORDER})[0] == 201
    segment, _ = segment_create(workspace=workspace, key="repeat", name="Repeat buyers", actor=SYSTEM,
                                rule={"computed": "orders", "op": "gte", "value": 2})
    # The segment moves with the trait, in the applier's transaction.
    send_batch(send, [track("u1", ORDER, T)])
    u1 = Customer.objects.get(user_id="u1")
    assert not Membership.objects.filter(segment=segment).exists()
    send_batch(send, [track("u1", ORDER, T)])
    assert list(Membership.objects.filter(segment=segment).values_list("customer_id", flat=True)) == [u1.pk]

    status, body = api.post("/api/v1/computed-traits", {"key": "orders", "aggregate": "count", "event": ORDER})
    assert status == 409
    assert _delete(api, "/api/v1/computed-traits/orders") == 409
    client = Client()
    response = client.delete("/api/v1/computed-traits/orders", headers=api.headers)
    assert response.json()["details"] == {"segments": ["repeat"]}
    Segment.objects.filter(pk=segment.pk).delete()
    assert _delete(api, "/api/v1/computed-traits/orders") == 204


def test_profiles_and_templates_show_the_values(api, send, workspace, applied_changes):  # noqa: F811
    for spec in ({"key": "orders", "aggregate": "count", "event": ORDER},
                 {"key": "spent", "aggregate": "sum", "event": ORDER, "property": "revenue"},
                 {"key": "favourite", "aggregate": "most_frequent", "event": ORDER, "property": "category"}):
        assert api.post("/api/v1/computed-traits", spec)[0] == 201
    send_batch(send, [track("u1", ORDER, T, revenue=1200, category="本"),
                      track("u1", ORDER, T, revenue=800, category="本"), track("u2", "Other", T)])
    u1, u2 = (Customer.objects.get(user_id=u) for u in ("u1", "u2"))

    status, body = api.get(f"/api/v1/customers/{u1.pk}")
    assert status == 200 and body["computed"] == {"orders": 2, "spent": 2000, "favourite": "本"}
    # No matching event: counts and sums are 0, other aggregates have no value.
    assert api.get(f"/api/v1/customers/{u2.pk}")[1]["computed"] == {"orders": 0, "spent": 0, "favourite": None}

    sms = {"channel": "sms", "text": "{{ customer.computed.orders }} orders, ¥{{ customer.computed.spent }}, "
                                     "{{ customer.computed.favourite | default: 'なし' }}"}
    assert render_variant(sms, {"customer": customer_context(u1)}).content["text"] == "2 orders, ¥2000, 本"
    assert render_variant(sms, {"customer": customer_context(u2)}).content["text"] == "0 orders, ¥0, なし"
    # The worker's contexts (read in bulk) show the same, read once for the batch.
    contexts = customer_contexts({u1.pk, u2.pk})
    assert dict(contexts[u1.pk]["computed"]) == {"orders": 2, "spent": 2000, "favourite": "本"}
    assert render_variant(sms, {"customer": contexts[u2.pk]}).content["text"] == "0 orders, ¥0, なし"


def test_rules_read_the_values_in_sql_and_in_python(api, send, workspace, applied_changes):  # noqa: F811
    from tsunagu.segments.computed import computed_refresh
    from tsunagu.segments.selectors import rule_count, rule_match

    now = dt.datetime.now(dt.UTC)
    for spec in ({"key": "orders", "aggregate": "count", "event": ORDER},
                 {"key": "last_order_at", "aggregate": "max", "event": ORDER, "property": "$timestamp"},
                 {"key": "favourite", "aggregate": "most_frequent", "event": ORDER, "property": "category"},
                 {"key": "rfm", "aggregate": "rfm", "event": ORDER, "property": "revenue"}):
        assert api.post("/api/v1/computed-traits", spec)[0] == 201
    send_batch(send, [
        track("recent", ORDER, now - dt.timedelta(days=3), revenue=9000, category="本"),
        track("old", ORDER, now - dt.timedelta(days=60), revenue=100, category="服"),
        track("browser", "Product Viewed", now),
    ])
    computed_refresh(workspace=workspace)
    who = {u: Customer.objects.get(user_id=u).pk for u in ("recent", "old", "browser")}
    cases = [
        ({"computed": "last_order_at", "op": "gte", "value": {"days_ago": 30}}, {"recent"}),
        ({"computed": "orders", "op": "eq", "value": 0}, {"browser"}),
        ({"computed": "favourite", "op": "eq", "value": "本"}, {"recent"}),
        ({"computed": "rfm.monetary", "op": "gte", "value": 4}, {"recent"}),
        ({"computed": "rfm.recency", "op": "lte", "value": 2}, {"old"}),
        ({"computed": "favourite", "op": "not_exists"}, {"browser"}),
    ]
    for rule, members in cases:
        assert rule_count(workspace=workspace, rule=rule) == len(members), rule
        for user, pk in who.items():
            assert rule_match(workspace=workspace, rule=rule, customer_id=pk) is (user in members), (rule, user)
