"""API keys have roles, and the services enforce them: a viewer key is refused on EVERY write endpoint of the
OpenAPI schema (so endpoints added later are walked too), and each role may exactly what the permission table
says."""

from __future__ import annotations

from typing import Any

import pytest

from tsunagu.core.models import ApiKey, AuditEntry, Membership
from tsunagu.core.permissions import ROLE_RANK, SYSTEM
from tsunagu.core.services import apikey_create, user_create
from tsunagu.core.tests.test_isolation import call, operations, populate
from tsunagu.events.models import Source
from tsunagu.journeys.models import Evaluation, Journey, Run, RunHistory
from tsunagu.messaging.models import Consent, Delivery, Send

pytestmark = pytest.mark.django_db

API = "/api/v1"
# The least role each write endpoint needs, and what it answers when allowed. A new write endpoint must be
# added here (the first test fails until it is), so that none escapes the walk.
WRITES: dict[tuple[str, str], tuple[str, int]] = {
    ("post", f"{API}/sources"): ("admin", 201),
    ("post", f"{API}/sources/{{source_id}}/rotate-key"): ("admin", 200),
    ("post", f"{API}/api-keys"): ("admin", 201),
    ("post", f"{API}/api-keys/{{key_id}}/revoke"): ("admin", 200),
    ("post", f"{API}/members"): ("owner", 201),
    ("patch", f"{API}/members/{{username}}"): ("owner", 200),
    ("delete", f"{API}/members/{{username}}"): ("owner", 204),
    ("patch", f"{API}/workspace/settings"): ("admin", 200),
    ("post", f"{API}/channels"): ("admin", 201),
    ("patch", f"{API}/channels/{{channel_id}}"): ("admin", 200),
    ("delete", f"{API}/channels/{{channel_id}}"): ("admin", 204),
    ("post", f"{API}/communications"): ("operator", 201),
    ("put", f"{API}/communications/{{key}}"): ("operator", 200),
    ("post", f"{API}/sends"): ("agent", 201),
    ("post", f"{API}/customers/{{customer_id}}/inbox/{{message_id}}/read"): ("agent", 200),
    ("put", f"{API}/customers/{{customer_id}}/consents"): ("agent", 200),
    # Broadcasts are campaigns: operators and up (agents send one-to-one messages only).
    ("post", f"{API}/broadcasts"): ("operator", 201),
    ("post", f"{API}/broadcasts/{{broadcast_id}}/pause"): ("operator", 200),
    ("post", f"{API}/broadcasts/{{broadcast_id}}/resume"): ("operator", 200),
    ("post", f"{API}/broadcasts/{{broadcast_id}}/cancel"): ("operator", 200),
    ("post", f"{API}/computed-traits"): ("operator", 201),
    ("delete", f"{API}/computed-traits/{{key}}"): ("operator", 204),
    ("post", f"{API}/segments"): ("operator", 201),
    ("put", f"{API}/segments/{{key}}"): ("operator", 200),
    ("delete", f"{API}/segments/{{key}}"): ("operator", 204),
    ("post", f"{API}/segments/{{key}}/webhook/rotate"): ("operator", 200),
    ("post", f"{API}/journeys"): ("operator", 201),
    ("put", f"{API}/journeys/{{key}}"): ("operator", 200),
    ("post", f"{API}/journeys/{{key}}/publish"): ("operator", 200),
    ("post", f"{API}/journeys/{{key}}/pause"): ("operator", 200),
    ("post", f"{API}/journeys/{{key}}/resume"): ("operator", 200),
    ("post", f"{API}/journeys/{{key}}/migrate"): ("operator", 200),
    ("post", f"{API}/journeys/{{key}}/webhook/rotate"): ("operator", 200),
    # One customer's run: agents too (a contact-centre agent pauses a customer's reminders).
    ("post", f"{API}/journeys/{{key}}/runs"): ("agent", 201),
    ("post", f"{API}/journey-runs/{{run_id}}/pause"): ("agent", 200),
    ("post", f"{API}/journey-runs/{{run_id}}/resume"): ("agent", 200),
    ("post", f"{API}/journey-runs/{{run_id}}/cancel"): ("agent", 200),
    ("post", f"{API}/journey-runs/{{run_id}}/evaluations"): ("agent", 201),
}
# Reads sent as POST (a rule in the body): any role, nothing changes.
READS_BY_POST = {("post", f"{API}/rules/evaluate"), ("post", f"{API}/journeys/{{key}}/dry-run")}
ROLES = ["viewer", "agent", "operator", "admin", "owner"]


def write_operations() -> list[tuple[str, str, list[str]]]:
    ops = [(m, t, p) for m, t, p, _ in operations() if m != "get" and (m, t) not in READS_BY_POST]
    # Deleting the member last: the role change before it needs the member.
    return sorted(ops, key=lambda op: op[0] == "delete")


def test_every_write_endpoint_has_a_least_role():
    listed = {(m, t) for m, t, _ in write_operations()}
    assert listed == set(WRITES), f"write endpoints without a least role in WRITES: {sorted(listed - set(WRITES))}"
    assert all(role != "viewer" for role, _ in WRITES.values())


def state() -> Any:
    return (
        sorted(Source.objects.values_list("pk", "write_key")),
        sorted(ApiKey.objects.values_list("pk", "revoked_at")),
        sorted(Membership.objects.values_list("workspace_id", "user_id", "role")),
        AuditEntry.objects.count(),
        Send.objects.count(),
        sorted(Delivery.objects.values_list("pk", "read_at")),
        Consent.objects.count(),
        sorted(Run.objects.values_list("pk", "status", "version_id")),
        RunHistory.objects.count(),
        Evaluation.objects.count(),
        sorted(Journey.objects.values_list("pk", "status", "current_version")),
    )


@pytest.fixture
def tenant(workspace: Any) -> Any:
    user_create(username="newcomer", password="correct-horse-battery")
    tenant = populate(workspace, "AAA")
    # A key any admin may revoke (the tenant's own key is an owner's).
    tenant.key_id = apikey_create(workspace=workspace, name="victim", role="viewer", actor=SYSTEM)[0].pk
    return tenant


def fill(template: str, params: list[str], tenant: Any) -> str:
    for name in params:
        template = template.replace("{" + name + "}", str(tenant.path_value(name)))
    return template


def test_a_viewer_key_is_refused_by_every_write_endpoint_and_changes_nothing(tenant, workspace):
    _, token = apikey_create(workspace=workspace, name="read-only", role="viewer", actor=SYSTEM)
    before = state()
    walked = set()
    for method, template, params in write_operations():
        status, body, _ = call(method, fill(template, params, tenant), token)
        assert status == 403, (method, template, body)
        assert body["error"] == "forbidden"
        assert "viewer" in body["message"]
        walked.add((method, template))
    assert walked == set(WRITES)
    assert state() == before
    # Reads still work for a viewer.
    assert call("get", f"{API}/sources", token)[0] == 200


@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_exactly_what_the_table_says(role, tenant, workspace):
    _, token = apikey_create(workspace=workspace, name=f"{role}-key", role=role, actor=SYSTEM)
    for method, template, params in write_operations():
        least, success = WRITES[(method, template)]
        before = state()
        status, body, _ = call(method, fill(template, params, tenant), token)
        if ROLE_RANK[role] >= ROLE_RANK[least]:
            assert status == success, (role, method, template, body)
            assert state() != before, f"{method} {template} answered {status} but changed nothing"
        else:
            assert status == 403, (role, method, template, body)
            assert state() == before


def test_an_admin_key_does_every_admin_write(tenant, workspace):
    _, token = apikey_create(workspace=workspace, name="admin-key", actor=SYSTEM)  # the default role: admin
    assert ApiKey.objects.get(name="admin-key").role == "admin"
    done = []
    for method, template, params in write_operations():
        if WRITES[(method, template)][0] == "admin":
            status, body, _ = call(method, fill(template, params, tenant), token)
            assert status == WRITES[(method, template)][1], (method, template, body)
            done.append(template)
    assert len(done) == 8


def test_an_admin_key_cannot_grant_or_revoke_above_admin(tenant, workspace):
    _, token = apikey_create(workspace=workspace, name="admin-key", role="admin", actor=SYSTEM)
    status, body, _ = call("post", f"{API}/api-keys", token, body={"name": "escalate", "role": "owner"})
    assert status == 403 and body["field"] == "role", body
    owner_key = ApiKey.objects.get(name="key-AAA")
    status, body, _ = call("post", f"{API}/api-keys/{owner_key.pk}/revoke", token)
    assert status == 403, body
    assert ApiKey.objects.get(pk=owner_key.pk).revoked_at is None
    assert not ApiKey.objects.filter(name="escalate").exists()


def test_a_key_of_another_workspace_has_no_role_here(tenant, workspace, other_workspace):
    from tsunagu.core.errors import PermissionDenied
    from tsunagu.events.services import source_create

    foreign, _ = apikey_create(workspace=other_workspace, name="foreign", role="owner", actor=SYSTEM)
    with pytest.raises(PermissionDenied):
        source_create(workspace=workspace, name="Sneaky", actor=foreign)
    assert not Source.objects.filter(name="Sneaky").exists()
