"""The segments API: create with a count and warnings, read, members page by page, change, delete; evaluate a
rule without saving it; the JSON Schema; bad rules answered 400 with the node's path, never a 5xx; roles and
workspaces."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.test import Client

from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import apikey_create
from tsunagu.customers.models import Customer

pytestmark = pytest.mark.django_db


def _call(api: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    response = getattr(api.client, method)(path, orjson.dumps(body) if body is not None else None,
                                           content_type="application/json", headers=api.headers)
    return response.status_code, orjson.loads(response.content) if response.content else None


@pytest.fixture
def shoppers(send: Any) -> None:
    for i, tier in enumerate(["gold", "gold", "silver", "ゴールド"]):
        send("/v1/identify", {"userId": f"u{i}", "traits": {"loyaltyTier": tier, "city": "東京"}})
    for _ in range(2):
        send("/v1/track", {"userId": "u0", "event": "Order Completed", "properties": {"revenue": 6000}})


def test_create_read_members_change_and_delete(api: Any, shoppers: None) -> None:
    status, body = api.post("/api/v1/segments", {"key": "gold", "name": "Gold",
                                                 "rule": {"trait": "loyaltyTier", "op": "eq", "value": "gold"}})
    assert status == 201, body
    assert body == {"key": "gold", "count": 2, "warnings": []}
    status, body = api.get("/api/v1/segments/gold")
    assert (status, body["count"], body["name"]) == (200, 2, "Gold")
    status, page = api.get("/api/v1/segments/gold/members", limit=1)
    assert status == 200 and len(page["items"]) == 1 and page["next"]
    status, rest = api.get("/api/v1/segments/gold/members", limit=1, cursor=page["next"])
    ids = {page["items"][0]["customer_id"], rest["items"][0]["customer_id"]}
    assert ids == set(Customer.objects.filter(user_id__in=["u0", "u1"]).values_list("pk", flat=True))
    assert rest["next"] is None
    status, body = _call(api, "put", "/api/v1/segments/gold", {"rule": {"trait": "loyaltyTier", "op": "eq_folded",
                                                                        "value": "ごーるど"}})
    assert (status, body["count"]) == (200, 1)  # ゴールド, kana-folded
    status, _ = _call(api, "delete", "/api/v1/segments/gold")
    assert status == 204
    assert api.get("/api/v1/segments/gold")[0] == 404


def test_unknown_names_are_warnings_with_the_closest_known(api: Any, shoppers: None) -> None:
    status, body = api.post("/api/v1/segments", {"key": "typo", "name": "Typo", "rule": {"all": [
        {"trait": "loyaltyTeir", "op": "exists"},
        {"event": "Order Complete"},
    ]}})
    assert status == 201
    by_name = {w["name"]: w for w in body["warnings"]}
    assert by_name["loyaltyTeir"]["suggestions"][0] == "loyaltyTier"
    assert by_name["Order Complete"]["suggestions"] == ["Order Completed"]


def test_evaluate_counts_or_matches_without_saving(api: Any, shoppers: None) -> None:
    rule = {"all": [{"trait": "city", "op": "eq", "value": "東京"},
                    {"event": "Order Completed", "count": {"op": "gte", "value": 2}}]}
    assert api.post("/api/v1/rules/evaluate", {"rule": rule}) == (200, {"count": 1, "warnings": []})
    u0 = Customer.objects.get(user_id="u0").pk
    u1 = Customer.objects.get(user_id="u1").pk
    assert api.post("/api/v1/rules/evaluate", {"rule": rule, "customer_id": u0}) == (200, {"match": True})
    assert api.post("/api/v1/rules/evaluate", {"rule": rule, "customer_id": u1}) == (200, {"match": False})
    assert api.get("/api/v1/segments")[1]["items"] == []


def test_the_json_schema_is_served(api: Any) -> None:
    status, schema = api.get("/api/v1/rules/schema.json")
    assert status == 200
    assert set(schema["$defs"]) >= {"all", "any", "not", "trait", "computed", "segment", "consent", "event"}
    assert "eq_folded" in schema["$defs"]["trait"]["properties"]["op"]["enum"]


BAD_RULES = [
    ({"all": [{"trait": "a", "op": "eq", "value": 1}, {"trait": "b", "op": "bogus", "value": 1}]}, "$.all[1].op"),
    ({"event": "Order Completed", "where": [{"property": "revenue", "op": "gte", "value": "lots"}]},
     "$.event.where[0].value"),
    ({"all": []}, "$.all"),
    ({"trait": "tier", "op": "exists", "value": 1}, "$.value"),
    ({"trait": "tier", "op": "between", "value": [5, 1]}, "$.value"),
    ({"trait": "tier", "op": "in", "value": "gold"}, "$.value"),
    ({"event": "X", "count": {"op": "gte", "value": -1}}, "$.count.value"),
    ({"event": "X", "within": {"days": 0}}, "$.within.days"),
    ({"event": "X", "within": {"since": "yesterday"}}, "$.within.since"),
    ({"trait": "$nope", "op": "exists"}, "$.trait"),
    ({"trait": "$last_seen", "op": "eq", "value": "x"}, "$.op"),
    ({"any": [{"not": {"trait": "a", "op": "eq"}}]}, "$.any[0].not.value"),
    ({"trait": "a", "computed": "b", "op": "exists"}, "$"),
    ({"trait": 'a."b', "op": "exists"}, "$.trait"),
    ({"consent": {"channel": "email", "topic": "spam"}}, "$.consent.topic"),
    ([1, 2], "$"),
    ("gold", "$"),
]


@pytest.mark.parametrize(("rule", "path"), BAD_RULES)
def test_a_bad_rule_is_a_400_naming_the_node(api: Any, rule: Any, path: str) -> None:
    for url, body in (("/api/v1/rules/evaluate", {"rule": rule}),
                      ("/api/v1/segments", {"key": "bad", "name": "Bad", "rule": rule})):
        status, answer = api.post(url, body)
        assert status == 400, answer
        assert answer["field"].replace("$.event.", "$.") == path.replace("$.event.", "$."), answer


def test_absurd_depth_and_size_are_refused_not_crashed(api: Any) -> None:
    for depth in (20, 5000, 100_000):
        raw = '{"rule": ' + '{"not": ' * depth + '{"trait": "a", "op": "exists"}' + "}" * depth + "}"
        response = api.client.post("/api/v1/rules/evaluate", raw, content_type="application/json",
                                   headers=api.headers)
        assert response.status_code == 400, (depth, response.content[:200])
    wide = {"any": [{"trait": "a", "op": "exists"}] * 5000}
    status, body = api.post("/api/v1/rules/evaluate", {"rule": wide})
    assert status == 400 and "at most" in body["message"]


def test_a_segment_that_reaches_itself_is_refused(api: Any) -> None:
    assert api.post("/api/v1/segments", {"key": "a", "name": "A", "rule": {"segment": "a"}})[0] == 400
    assert api.post("/api/v1/segments", {"key": "a", "name": "A", "rule": {"trait": "x", "op": "exists"}})[0] == 201
    assert api.post("/api/v1/segments", {"key": "b", "name": "B", "rule": {"segment": "a"}})[0] == 201
    status, body = _call(api, "put", "/api/v1/segments/a", {"rule": {"any": [{"segment": "b"}]}})
    assert (status, body["field"]) == (400, "rule")
    # And a segment in use cannot be deleted from under the one that reads it.
    status, body = _call(api, "delete", "/api/v1/segments/a")
    assert status == 409 and "b" in body["message"]


def test_bad_keys_names_and_a_taken_key(api: Any) -> None:
    rule = {"trait": "x", "op": "exists"}
    assert api.post("/api/v1/segments", {"key": "Has Space", "name": "n", "rule": rule})[1]["field"] == "key"
    assert api.post("/api/v1/segments", {"key": "ok", "name": " ", "rule": rule})[1]["field"] == "name"
    assert api.post("/api/v1/segments", {"key": "ok", "name": "n", "rule": rule})[0] == 201
    assert api.post("/api/v1/segments", {"key": "ok", "name": "n", "rule": rule})[0] == 409
    assert api.get("/api/v1/segments/ok/members", cursor="!!")[0] == 400
    assert api.get("/api/v1/segments/ok/members", limit=0)[0] == 400


def test_a_viewer_reads_but_does_not_write(workspace: Any, api: Any) -> None:
    rule = {"trait": "x", "op": "exists"}
    assert api.post("/api/v1/segments", {"key": "s", "name": "S", "rule": rule})[0] == 201
    _, token = apikey_create(workspace=workspace, name="viewer", role="viewer", actor=SYSTEM)
    viewer = type(api)(token)
    assert viewer.get("/api/v1/segments/s")[0] == 200
    assert viewer.post("/api/v1/rules/evaluate", {"rule": rule})[0] == 200
    assert viewer.post("/api/v1/segments", {"key": "t", "name": "T", "rule": rule})[0] == 403
    assert _call(viewer, "put", "/api/v1/segments/s", {"name": "New"})[0] == 403
    assert _call(viewer, "delete", "/api/v1/segments/s")[0] == 403


def test_one_workspace_cannot_see_another(api: Any, other_workspace: Any, send: Any) -> None:
    rule = {"trait": "x", "op": "exists"}
    assert api.post("/api/v1/segments", {"key": "s", "name": "S", "rule": rule})[0] == 201
    send("/v1/identify", {"userId": "mine", "traits": {"x": 1}})
    _, token = apikey_create(workspace=other_workspace, name="other", actor=SYSTEM)
    other = type(api)(token)
    assert other.get("/api/v1/segments/s")[0] == 404
    assert other.get("/api/v1/segments/s/members")[0] == 404
    assert other.get("/api/v1/segments")[1]["items"] == []
    assert other.post("/api/v1/rules/evaluate", {"rule": rule})[1]["count"] == 0
    mine = Customer.objects.get(user_id="mine").pk
    assert other.post("/api/v1/rules/evaluate", {"rule": rule, "customer_id": mine})[0] == 404
    assert Client().get("/api/v1/segments").status_code == 401
