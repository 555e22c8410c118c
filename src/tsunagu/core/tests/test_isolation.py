"""One workspace cannot read or change another's data, through any endpoint — including endpoints added
after this test was written: the paths are read from the API's own OpenAPI schema and URL patterns."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from django.test import Client

from tsunagu.api import api as ninja_api
from tsunagu.core.errors import NotFound
from tsunagu.core.models import ApiKey
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import apikey_create, apikey_revoke, membership_add, user_create
from tsunagu.customers.models import Customer, Merge
from tsunagu.events.models import Event, Source
from tsunagu.events.services import source_create
from tsunagu.messaging.broadcasts import broadcast_create
from tsunagu.messaging.delivery import Runner
from tsunagu.messaging.services import channel_create, communication_create, send_create
from tsunagu.testing.pipeline import apply_all
from tsunagu.testing.standins.smtp import SMTPStandin

pytestmark = pytest.mark.django_db

API = "/api/v1"
# Routes of the API that are not endpoints over workspace data: the schema and its viewer.
NOT_ENDPOINTS = {"openapi.json", "docs", ""}
# A body each write endpoint accepts, keyed by path template; others are sent ``{}``.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/v1/sources"): {"name": "Created by A"},
    ("post", "/api/v1/api-keys"): {"name": "made by A", "role": "viewer"},
    ("post", "/api/v1/members"): {"username": "newcomer", "role": "viewer"},
    ("patch", "/api/v1/members/{username}"): {"role": "admin"},
    ("post", "/api/v1/channels"): {"type": "in_app", "name": "Inbox created"},
    ("patch", "/api/v1/channels/{channel_id}"): {"name": "Renamed"},
    ("post", "/api/v1/communications"): {
        "key": "created",
        "name": "Created",
        "topic": "service",
        "variants": [{"channel": "in_app", "locale": "ja", "title": "t", "body": "b"}],
    },
    ("put", "/api/v1/communications/{key}"): {
        "variants": [{"channel": "in_app", "locale": "ja", "title": "v2 {{ customer.name }}", "body": "b"}]
    },
    # Tenant AAA's communication and user: the walks that send act as AAA.
    ("post", "/api/v1/sends"): {"communication": "notice-aaa", "user_id": "user-AAA"},
    ("patch", "/api/v1/workspace/settings"): {"default_locale": "en"},
    ("put", "/api/v1/customers/{customer_id}/consents"): {
        "channel": "email", "topic": "marketing", "status": "granted", "source": "isolation walk"
    },
    ("post", "/api/v1/broadcasts"): {"communication": "notice-aaa", "audience": {"user_ids": ["user-AAA"]}},
    ("post", "/api/v1/segments"): {"key": "created", "name": "Created", "rule": {"trait": "name", "op": "exists"}},
    ("put", "/api/v1/segments/{key}"): {"name": "Renamed"},
    ("post", "/api/v1/rules/evaluate"): {"rule": {"trait": "name", "op": "exists"}},
    ("post", "/api/v1/computed-traits"): {"key": "created", "aggregate": "count", "event": "Order Completed"},
    ("post", "/api/v1/journeys"): {"key": "created", "name": "Created", "definition": {
        "entry": {"api": True}, "steps": [{"id": "bye", "type": "exit"}]}},
    ("put", "/api/v1/journeys/{key}"): {"definition": {
        "entry": {"api": True}, "reentry": {"policy": "per_entry_key", "entry_key": "data.n"},
        "steps": [{"id": "wait", "type": "wait", "seconds": 60}]}},
    ("post", "/api/v1/journeys/{key}/dry-run"): {"days": 7},
    ("post", "/api/v1/journeys/{key}/runs"): {"user_id": "user-AAA", "data": {"n": "walk"}},
    ("post", "/api/v1/journey-runs/{run_id}/evaluations"): {"name": "csat", "value": 5},
    ("post", "/api/v1/journeys/{key}/migrate"): {"from_version": 1, "to_version": 2},
}
# A journey (under the communication's key, like the segment) whose run waits an hour.
JOURNEY = {"entry": {"api": True}, "reentry": {"policy": "per_entry_key", "entry_key": "data.n"},
           "steps": [{"id": "wait", "type": "wait", "seconds": 3600}, {"id": "bye", "type": "exit"}]}


@dataclass
class Tenant:
    tag: str
    token: str
    write_key: str
    source_id: int
    customer_id: int
    merged_away_id: int
    key_id: int
    member: str
    markers: list[str]
    channel_id: int = 0
    communication_key: str = ""
    send_id: int = 0
    message_id: int = 0
    email_id: int = 0
    broadcast_id: int = 0
    run_id: int = 0

    def path_value(self, name: str) -> Any:
        """The id of this tenant's object that fills a path parameter. A new parameter name must be taught
        here, so that no endpoint escapes the isolation walk."""
        values = {
            "customer_id": self.customer_id,
            "source_id": self.source_id,
            "key_id": self.key_id,
            "username": self.member,
            "channel_id": self.channel_id,
            "key": self.communication_key,
            "send_id": self.send_id,
            "message_id": self.message_id,
            "email_id": self.email_id,
            "broadcast_id": self.broadcast_id,
            "run_id": self.run_id,
        }
        assert name in values, f"path parameter {name!r} has no object to fill it with: add it to Tenant.path_value"
        return values[name]


def basic(key: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def populate(workspace: Any, tag: str) -> Tenant:
    """A source, a customer with every kind of identity, a merge, and an API key — all marked with ``tag``."""
    source = source_create(workspace=workspace, name=f"Source-{tag}", channel="web", actor=SYSTEM)
    client = Client()
    headers = {"Authorization": basic(source.write_key)}

    def post(path: str, body: dict[str, Any]) -> None:
        response = client.post(path, orjson.dumps(body), content_type="application/json", headers=headers)
        assert response.status_code == 200, response.content
        apply_all(workspace)  # one applier transaction per request, so the alias below is a recorded merge

    post("/v1/page", {"anonymousId": f"anon-{tag}-1", "name": f"Page-{tag}"})
    post(
        "/v1/track", {"anonymousId": f"anon-{tag}-2", "event": f"Event-{tag}", "properties": {"secret": f"prop-{tag}"}}
    )
    post(
        "/v1/identify",
        {
            "userId": f"user-{tag}",
            "anonymousId": f"anon-{tag}-1",
            "traits": {"email": f"mail-{tag}@example.com", "phone": "03-1234-5678", "name": f"Name-{tag}"},
        },
    )
    # Joins the second device's profile into the known customer: a merge to list.
    post("/v1/alias", {"userId": f"user-{tag}", "previousId": f"anon-{tag}-2"})
    customer = Customer.objects.get(workspace=workspace, merged_into__isnull=True)
    merged_away = Customer.objects.get(workspace=workspace, merged_into=customer)
    assert Merge.objects.filter(into=customer).exists()
    key, token = apikey_create(workspace=workspace, name=f"key-{tag}", role="owner", actor=SYSTEM)
    # A member to change and remove, and a second owner, so that removing the member is not refused.
    member = user_create(username=f"member-{tag}", password="correct-horse-battery")
    membership_add(workspace=workspace, user=member, role="operator", actor=SYSTEM)
    owner = user_create(username=f"owner-{tag}", password="correct-horse-battery")
    membership_add(workspace=workspace, user=owner, role="owner", actor=SYSTEM)
    # Messaging: a channel, a communication, an in-app message and an email delivered to the customer.
    channel = channel_create(workspace=workspace, type="in_app", name=f"Inbox-{tag}", config={}, actor=SYSTEM)
    comm, _ = communication_create(
        workspace=workspace,
        key=f"notice-{tag.lower()}",
        name=f"Notice-{tag}",
        topic="service",
        actor=SYSTEM,
        variants=[
            {
                "channel": "in_app",
                "locale": "ja",
                "title": "Notice-{{ customer.traits.name }}",
                "body": "Hello {{ customer.traits.name }}",
            },
            {
                "channel": "email",
                "locale": "ja",
                "subject": "Mail {{ customer.traits.name }}",
                "html": "<p>Hello {{ customer.traits.name }}</p>",
            },
        ],
    )
    sent = send_create(workspace=workspace, communication=comm.key, customer=customer, actor=SYSTEM, channel="in_app")
    with SMTPStandin() as smtp:
        channel_create(
            workspace=workspace,
            type="email",
            name=f"Mail-{tag}",
            actor=SYSTEM,
            config={"host": smtp.host, "port": smtp.port, "security": "none", "from_email": "shop@example.com"},
        )
        mailed = send_create(
            workspace=workspace, communication=comm.key, customer=customer, actor=SYSTEM, channel="email"
        )
        Runner(worker_id=f"populate-{tag}").run_due()
    message = sent.deliveries.get()
    assert message.status == "delivered" and mailed.deliveries.get().status == "sent"
    from tsunagu.messaging.consent import consent_set

    consent_set(customer=customer, channel="email", topic="marketing", status="granted", source=f"Consent-{tag}",
                actor=SYSTEM, event=False)
    # A segment under the communication's key: ``{key}`` in a path names either, so both are walked.
    from tsunagu.segments.services import segment_create

    segment_create(workspace=workspace, key=comm.key, name=f"Segment-{tag}", actor=SYSTEM,
                   rule={"trait": "name", "op": "eq", "value": f"Name-{tag}"},
                   webhook_url=f"https://hooks.example.com/Hook-{tag}")
    # And a computed trait under the same key.
    from tsunagu.segments.computed import computed_trait_create

    computed_trait_create(workspace=workspace, key=comm.key, name=f"Computed-{tag}", aggregate="count",
                          event=f"Event-{tag}", actor=SYSTEM)
    tenant = Tenant(
        tag=tag,
        token=token,
        write_key=source.write_key,
        source_id=source.pk,
        customer_id=customer.pk,
        merged_away_id=merged_away.pk,
        key_id=key.pk,
        member=member.username,
        markers=[
            source.write_key,
            f"Source-{tag}",
            f"anon-{tag}-1",
            f"anon-{tag}-2",
            f"user-{tag}",
            f"mail-{tag}@example.com",
            f"Page-{tag}",
            f"Event-{tag}",
            f"prop-{tag}",
            f"Name-{tag}",
            f"member-{tag}",
            f"owner-{tag}",
            f"key-{tag}",
            f"Notice-{tag}",
            f"Inbox-{tag}",
            f"Consent-{tag}",
            f"Segment-{tag}",
            f"Hook-{tag}",
            f"Computed-{tag}",
            f"Journey-{tag}",
            f"Data-{tag}",
        ],
    )
    tenant.channel_id, tenant.communication_key = channel.pk, comm.key
    tenant.send_id, tenant.message_id = sent.pk, message.pk
    tenant.email_id = mailed.deliveries.get().pk
    tenant.broadcast_id = broadcast_create(
        workspace=workspace, communication=comm.key, audience={"user_ids": [f"user-{tag}"]}, actor=SYSTEM
    ).pk
    tenant.run_id = _journey(workspace, comm.key, tag, customer.pk)
    return tenant


def _journey(workspace: Any, key: str, tag: str, customer_id: int) -> int:
    """A journey published twice (so runs can be migrated) with one run waiting at its first step."""
    from tsunagu.journeys.engine import runs_run_due
    from tsunagu.journeys.services import journey_create, journey_publish, journey_update, run_start

    journey = journey_create(workspace=workspace, key=key, name=f"Journey-{tag}", definition=JOURNEY, actor=SYSTEM)
    journey_publish(journey=journey, actor=SYSTEM)
    run = run_start(journey=journey, customer_id=customer_id, data={"n": f"Data-{tag}"}, actor=SYSTEM)
    journey_update(journey=journey, definition=JOURNEY, actor=SYSTEM)
    journey_publish(journey=journey, actor=SYSTEM)
    runs_run_due(worker_id=f"populate-{tag}")
    return run.pk


@pytest.fixture
def tenants(workspace: Any, other_workspace: Any) -> tuple[Tenant, Tenant]:
    # A user of no workspace yet, for the walk's POST /members.
    user_create(username="newcomer", password="correct-horse-battery")
    return populate(workspace, "AAA"), populate(other_workspace, "BBB")


def operations() -> list[tuple[str, str, list[str], list[str]]]:
    """(method, path template, path parameter names, query parameter names) of every documented operation."""
    response = Client().get(f"{API}/openapi.json")
    assert response.status_code == 200
    schema = orjson.loads(response.content)
    ops = []
    for path, item in schema["paths"].items():
        for method, op in item.items():
            params = op.get("parameters", [])
            ops.append(
                (
                    method,
                    path,
                    [p["name"] for p in params if p["in"] == "path"],
                    [p["name"] for p in params if p["in"] == "query"],
                )
            )
    return ops


def test_every_routed_endpoint_is_in_the_schema():
    """The walk below is driven by the schema, so an endpoint hidden from it would escape: forbid that."""
    documented = {path.removeprefix(API + "/") for _, path, _, _ in operations()}
    routed = set()
    for pattern in ninja_api.urls[0]:
        route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
        if route not in NOT_ENDPOINTS:
            routed.add(route)
    assert routed, "no API routes found"
    assert routed <= documented, f"routes missing from the OpenAPI schema: {sorted(routed - documented)}"
    # And the schema knows every method the routers serve.
    served = {
        (method.lower(), f"{API}{prefix.rstrip('/')}{path}".replace("//", "/"))
        for prefix, router in ninja_api._routers
        for path, view in router.path_operations.items()
        for op in view.operations
        for method in op.methods
    }
    listed = {(method, path) for method, path, _, _ in operations()}
    assert served <= listed, f"operations missing from the schema: {sorted(served - listed)}"


def fill(path: str, params: list[str], tenant: Tenant) -> str:
    for name in params:
        path = path.replace("{" + name + "}", str(tenant.path_value(name)))
    assert "{" not in path, f"unfilled path parameter in {path}"
    return path


def body_for(method: str, path: str) -> dict[str, Any]:
    """The body BODIES gives the operation that ``path`` (with its ids filled in) belongs to."""
    for (m, template), body in BODIES.items():
        if m == method and re.fullmatch(re.sub(r"\\{\w+\\}", "[^/]+", re.escape(template)), path):
            return body
    return {}


def call(
    method: str,
    path: str,
    token: str | None,
    *,
    query: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> tuple[int, Any, Any]:
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    client = Client()
    if method == "get":
        response = client.get(path, query or {}, headers=all_headers)
    else:
        body = body if body is not None else body_for(method, path)
        response = getattr(client, method)(
            path, orjson.dumps(body), content_type="application/json", headers=all_headers
        )
    # JSON, except where an endpoint answers a file (JSON Lines, an .eml): then its text.
    raw = b"".join(response.streaming_content) if getattr(response, "streaming", False) else response.content
    if not raw:
        parsed = None
    elif response.get("Content-Type", "").startswith("application/json"):
        parsed = orjson.loads(raw)
    else:
        parsed = raw.decode()
    return response.status_code, parsed, response


def leaks(body: Any, tenant: Tenant, path: str = "") -> list[str]:
    text = orjson.dumps(body).decode()
    found = [m for m in tenant.markers if m in text]
    # Ids are compared where a list holds customers or sources: ids of other tables may be equal by chance.
    ids = (
        {tenant.customer_id, tenant.merged_away_id, tenant.source_id}
        if path.endswith(("customers", "sources"))
        else set()
    )
    for item in (body or {}).get("items", []) if isinstance(body, dict) else []:
        if item.get("id") in ids:
            found.append(f"id {item['id']}")
        # A segment's members are customer ids only.
        if path.endswith("/members") and item.get("customer_id") == tenant.customer_id:
            found.append(f"customer_id {item['customer_id']}")
    return found


def query_values(names: list[str], tenant: Tenant, path: str = "") -> list[dict[str, Any]]:
    """Query strings that would select the tenant's data if scoping were missing: one per filter."""
    by_name = {
        "segment": tenant.communication_key,
        "email": f"mail-{tenant.tag}@example.com",
        "phone": "+81312345678",
        "user_id": f"user-{tenant.tag}",
        "anonymous_id": f"anon-{tenant.tag}-2",
        "q": f"Name-{tenant.tag}",
        "channel": "in_app",
        "status": "waiting" if path.endswith("/runs") else "delivered",
        "communication": tenant.communication_key,
        "since": "2000-01-01T00:00:00Z",
        "until": "2100-01-01T00:00:00Z",
        "customer_id": tenant.customer_id,
        "locale": "ja",
        "version": 1,
        "format": "csv",
        "traits": "name",
    }
    variants: list[dict[str, Any]] = [{}]
    for name in names:
        if name in ("limit", "cursor"):
            continue
        variants.append({name: by_name.get(name, tenant.markers[0])})
    return variants


def test_every_get_endpoint_hides_the_other_workspace(tenants):
    a, b = tenants
    visited = set()
    for method, template, path_params, query_params in operations():
        if method != "get":
            continue
        for ids_of in (b,) if path_params else (None,):
            path = fill(template, path_params, ids_of) if ids_of else template
            for query in query_values(query_params, b, template):
                # Control: B itself reads its data through the same request, so the ids and filters are real.
                status, body, _ = call("get", path, b.token, query=query)
                assert status == 200, (path, query, body)
                if path_params or query:
                    assert leaks(body, b, path), f"B's own request {path} {query} shows none of B's data: {body}"
                # With A's token: not found, or a page without any of B's data.
                status, body, _ = call("get", path, a.token, query=query)
                # An endpoint naming one of B's objects does not find it; a list finds nothing of B's.
                assert status == (404 if path_params else 200), (path, query, status, body)
                if status == 404:
                    assert body["error"] == "not_found"
                assert not leaks(body, b, path), f"A's token read B's data at {path} {query}: {leaks(body, b, path)}"
                visited.add(template)
    gets = {template for method, template, _, _ in operations() if method == "get"}
    assert visited == gets, f"GET endpoints not visited: {sorted(gets - visited)}"
    assert len(gets) >= 6


def test_a_merged_away_id_of_the_other_workspace_is_not_followed(tenants):
    a, b = tenants
    for suffix in ("", "/events", "/merges"):
        status, body, _ = call("get", f"{API}/customers/{b.merged_away_id}{suffix}", a.token)
        assert status == 404, body
        # B follows its own merged id to the live profile.
        status, body, _ = call("get", f"{API}/customers/{b.merged_away_id}{suffix}", b.token)
        assert status == 200, body


def test_list_endpoints_show_the_callers_own_data(tenants):
    a, b = tenants
    status, body, _ = call("get", f"{API}/customers", a.token)
    assert [item["id"] for item in body["items"]] == [a.customer_id]
    status, body, _ = call("get", f"{API}/sources", a.token)
    assert [item["id"] for item in body["items"]] == [a.source_id]


def test_write_endpoints_with_the_other_workspaces_ids_are_404(tenants):
    a, b = tenants
    writes = [(m, t, p) for m, t, p, _ in operations() if m != "get"]
    with_ids = [(m, t, p) for m, t, p in writes if p]
    assert with_ids, "expected write endpoints that name an object (rotate-key)"
    before = {s.pk: s.write_key for s in Source.objects.all()}
    for method, template, params in with_ids:
        status, body, _ = call(method, fill(template, params, b), a.token)
        assert status == 404, (method, template, body)
        assert not leaks(body, b)
    assert {s.pk: s.write_key for s in Source.objects.all()} == before, "B's data changed through A's token"
    # Write endpoints without ids act on the caller's own workspace only.
    for method, template, _ in [w for w in writes if not w[2]]:
        status, body, _ = call(method, template, a.token)
        # Each of them creates something (PATCH of the settings changes the caller's own); evaluating a rule
        # reads, and counts A's customers only.
        if template.endswith("/rules/evaluate"):
            assert (status, body["count"]) == (200, 1), body
            continue
        assert status == (200 if method == "patch" else 201), (method, template, body)
    assert Source.objects.filter(workspace__slug="shop-b").count() == 1


def test_rotating_a_key_through_the_owner_works_and_the_old_key_is_refused(tenants, send):
    a, b = tenants
    status, body, _ = call("post", f"{API}/sources/{b.source_id}/rotate-key", b.token)
    assert status == 200
    assert body["write_key"] != b.write_key
    status, answer = send("/v1/track", {"userId": "u", "event": "X"}, write_key=b.write_key)
    assert status == 401, answer
    status, answer = send("/v1/track", {"userId": "u", "event": "late"}, write_key=body["write_key"])
    assert status == 200, answer


BAD_AUTH: list[tuple[str, dict[str, str]]] = [
    ("no header", {}),
    ("unknown token", {"Authorization": "Bearer tsk_00000000_not-a-real-token"}),
    ("not our format", {"Authorization": "Bearer hello"}),
    ("empty bearer", {"Authorization": "Bearer "}),
    ("basic instead of bearer", {"Authorization": "Basic dXNlcjpwYXNz"}),
    ("bare token", {"Authorization": "tsk_00000000_x"}),
    ("very long", {"Authorization": "Bearer tsk_" + "x" * 5000}),
]


def test_every_endpoint_refuses_bad_credentials(tenants):
    a, _ = tenants
    seen = set()
    for method, template, params, _ in operations():
        path = fill(template, params, a)
        for label, headers in BAD_AUTH:
            status, body, response = call(method, path, None, headers=headers)
            assert status == 401, (label, method, path, body)
            assert response["WWW-Authenticate"] == "Bearer"
            assert body["error"] == "unauthenticated"
            assert not leaks(body, a)
        # The token in the query string is not a credential.
        status, _, _ = call(method, path, None, query={"token": a.token, "api_key": a.token})
        assert status == 401
        seen.add((method, template))
    assert len(seen) == len(operations())


def test_a_revoked_token_is_refused_everywhere(tenants, workspace):
    a, _ = tenants
    key, token = apikey_create(workspace=workspace, name="short-lived", actor=SYSTEM)
    assert call("get", f"{API}/customers", token)[0] == 200
    apikey_revoke(workspace=workspace, key_id=key.pk, actor=SYSTEM)
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    for method, template, params, _ in operations():
        status, body, _ = call(method, fill(template, params, a), token)
        assert status == 401, (method, template, body)
    # Other keys of the workspace keep working.
    assert call("get", f"{API}/customers", a.token)[0] == 200


def test_revoking_is_scoped_to_the_workspace(tenants, workspace, other_workspace):
    a, b = tenants
    key_b = ApiKey.objects.get(workspace=other_workspace)
    with pytest.raises(NotFound):
        apikey_revoke(workspace=workspace, key_id=key_b.pk, actor=SYSTEM)
    assert call("get", f"{API}/customers", b.token)[0] == 200


# -- the tracking API -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch", "/v1/identify", "/v1/page", "/v1/alias", "/v1/import"])
def test_tracking_with_an_unknown_write_key_is_401(tenants, send, path):
    before = Event.objects.count()
    status, body = send(
        path,
        {"userId": "u", "event": "x", "previousId": "p", "batch": [{"type": "track", "userId": "u", "event": "x"}]},
        write_key="unknown-key",
    )
    assert status == 401, body
    assert body["field"] == "writeKey"
    assert Event.objects.count() == before


def test_a_write_key_stores_into_its_own_workspace_only(tenants, send, workspace, other_workspace):
    a, b = tenants
    a_events = Event.objects.filter(workspace=workspace).count()
    status, _ = send(
        "/v1/batch",
        {
            "batch": [
                {
                    "type": "identify",
                    "userId": "user-AAA",
                    "traits": {"email": "mail-AAA@example.com"},
                    "messageId": "from-b-1",
                }
            ]
        },
        write_key=b.write_key,
    )
    assert status == 200
    # Written with B's key: in B, even though it names A's customer — and it creates a B customer instead.
    stored = Event.objects.get(message_id="from-b-1")
    assert stored.workspace_id == other_workspace.pk
    assert Customer.objects.get(pk=stored.customer_id).workspace_id == other_workspace.pk
    assert Event.objects.filter(workspace=workspace).count() == a_events
    assert Customer.objects.get(pk=a.customer_id).event_count == 4
    # A's API does not see it; B's does.
    status, body, _ = call("get", f"{API}/customers", a.token, query={"user_id": "user-AAA"})
    assert [c["id"] for c in body["items"]] == [a.customer_id]
    status, body, _ = call("get", f"{API}/customers/{a.customer_id}/events", a.token)
    assert "from-b-1" not in {e["message_id"] for e in body["items"]}
    status, body, _ = call("get", f"{API}/customers", b.token, query={"user_id": "user-AAA"})
    assert [c["id"] for c in body["items"]] == [stored.customer_id]


def test_the_same_message_id_in_two_workspaces_is_two_events(tenants, send):
    a, b = tenants
    for key in (a.write_key, b.write_key):
        assert send("/v1/track", {"userId": "shared", "event": "X", "messageId": "same-id"}, write_key=key)[0] == 200
    assert Event.objects.filter(message_id="same-id").count() == 2


def test_basic_auth_key_wins_over_a_body_key(tenants, send, other_workspace):
    a, b = tenants
    status, _ = send(
        "/v1/track", {"userId": "u", "event": "X", "messageId": "hdr", "writeKey": a.write_key}, write_key=b.write_key
    )
    assert status == 200
    assert Event.objects.get(message_id="hdr").workspace_id == other_workspace.pk
