"""Members and API keys over the REST API: scoped to the token's workspace, role-checked, audited; the token
is shown once; revoked keys answer 401."""

from __future__ import annotations

from typing import Any

import pytest

from tsunagu.conftest import ApiClient
from tsunagu.core.models import AuditEntry, Membership
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import apikey_create, membership_add, user_create

pytestmark = pytest.mark.django_db
API = "/api/v1"


@pytest.fixture
def owner_api(workspace: Any) -> ApiClient:
    return ApiClient(apikey_create(workspace=workspace, name="owner", role="owner", actor=SYSTEM)[1])


@pytest.fixture
def people(workspace: Any, other_workspace: Any) -> None:
    hanako = user_create(username="hanako", password="correct-horse-battery")
    membership_add(workspace=workspace, user=hanako, role="owner", actor=SYSTEM)
    user_create(username="taro", password="correct-horse-battery")
    jiro = user_create(username="jiro", password="correct-horse-battery")
    membership_add(workspace=other_workspace, user=jiro, role="owner", actor=SYSTEM)


def test_members_add_list_change_remove(owner_api, people, workspace):
    status, body = owner_api.post(f"{API}/members", {"username": "taro", "role": "agent"})
    assert status == 201 and (body["username"], body["role"]) == ("taro", "agent")
    status, body = owner_api.get(f"{API}/members")
    assert [(m["username"], m["role"]) for m in body["items"]] == [("hanako", "owner"), ("taro", "agent")]
    response = owner_api.client.patch(
        f"{API}/members/taro", '{"role": "operator"}', content_type="application/json", headers=owner_api.headers
    )
    assert response.status_code == 200 and response.json()["role"] == "operator"
    response = owner_api.client.delete(f"{API}/members/taro", headers=owner_api.headers)
    assert response.status_code == 204
    assert list(Membership.objects.filter(workspace=workspace).values_list("user__username", flat=True)) == ["hanako"]
    entries = AuditEntry.objects.filter(action__startswith="member.", actor_kind="api_key").values_list(
        "action", flat=True
    )
    assert sorted(entries) == ["member.added", "member.removed", "member.role_changed"]


def test_member_errors(owner_api, people):
    assert owner_api.post(f"{API}/members", {"username": "nobody", "role": "agent"})[1]["error"] == "not_found"
    status, body = owner_api.post(f"{API}/members", {"username": "taro", "role": "emperor"})
    assert status == 400 and body["field"] == "role"
    status, body = owner_api.post(f"{API}/members", {"username": "hanako", "role": "agent"})
    assert status == 409
    # Another workspace's member is not found here, and is not touched.
    response = owner_api.client.delete(f"{API}/members/jiro", headers=owner_api.headers)
    assert response.status_code == 404
    assert Membership.objects.filter(user__username="jiro").exists()
    # The last owner stays.
    response = owner_api.client.delete(f"{API}/members/hanako", headers=owner_api.headers)
    assert response.status_code == 409 and "last owner" in response.json()["message"]


def test_keys_create_list_revoke(owner_api, workspace, other_workspace):
    status, created = owner_api.post(f"{API}/api-keys", {"name": "reporting", "role": "viewer"})
    assert status == 201
    assert created["token"].startswith(f"tsk_{created['prefix']}_") and created["role"] == "viewer"
    viewer = ApiClient(created["token"])
    assert viewer.get(f"{API}/customers")[0] == 200
    status, listed = owner_api.get(f"{API}/api-keys")
    assert [(k["name"], k["role"]) for k in listed["items"]] == [("reporting", "viewer"), ("owner", "owner")]
    assert all("token" not in k and "token_hash" not in k for k in listed["items"])
    # The default role of a key made over the API is admin, as on the CLI.
    assert owner_api.post(f"{API}/api-keys", {"name": "ci"})[1]["role"] == "admin"
    status, body = owner_api.post(f"{API}/api-keys/{created['id']}/revoke")
    assert status == 200 and body["revoked_at"] is not None
    status, body = viewer.get(f"{API}/customers")
    assert status == 401 and body["error"] == "unauthenticated"
    foreign = apikey_create(workspace=other_workspace, name="b", actor=SYSTEM)[0]
    assert owner_api.post(f"{API}/api-keys/{foreign.pk}/revoke")[0] == 404
    assert owner_api.get(f"{API}/api-keys")[1]["items"][0]["name"] == "ci"
