"""The owners' page: members (add, change role, remove) and API keys (create, token shown once, revoke), in
Japanese and English; every other role gets 403, outsiders 404."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from tsunagu.core.models import ApiKey, AuditEntry, Membership
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import apikey_create, membership_add, user_create

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery"
TEAM = "/w/shop-a/team/"


@pytest.fixture
def taro(db: Any) -> Any:
    return user_create(username="taro", password=PASSWORD)


def test_owner_adds_changes_and_removes_a_member(client_en, member, taro, workspace):
    page = client_en.get(TEAM)
    assert page.status_code == 200
    assert "Members and API keys" in page.content.decode()
    response = client_en.post(f"{TEAM}members/add", {"username": "taro", "role": "agent"}, follow=True)
    assert "taro was added." in response.content.decode()
    assert Membership.objects.get(user=taro).role == "agent"
    response = client_en.post(f"{TEAM}members/taro/role", {"role": "admin"}, follow=True)
    assert "The role of taro was changed." in response.content.decode()
    assert Membership.objects.get(user=taro).role == "admin"
    client_en.post(f"{TEAM}members/taro/remove")
    assert not Membership.objects.filter(user=taro).exists()
    entries = list(AuditEntry.objects.filter(actor_user=member).values_list("action", flat=True).order_by("pk"))
    assert entries == ["member.added", "member.role_changed", "member.removed"]


def test_unknown_user_and_last_owner_are_explained(client_en, member):
    response = client_en.post(f"{TEAM}members/add", {"username": "ghost", "role": "agent"})
    assert response.status_code == 400
    assert "No user has this name" in response.content.decode()
    response = client_en.post(f"{TEAM}members/alice/role", {"role": "viewer"}, follow=True)
    assert "alice is the last owner of shop-a" in response.content.decode()
    assert Membership.objects.get(user=member).role == "owner"


def test_a_new_key_shows_its_token_once_and_revokes(client_en, member, workspace):
    response = client_en.post(f"{TEAM}keys/create", {"name": "BI tool", "role": "viewer"})
    assert response.status_code == 200
    body = response.content.decode()
    token = re.search(r'<code class="key" id="new-token">(tsk_[^<]+)</code>', body).group(1)
    key = ApiKey.objects.get(name="BI tool")
    assert key.role == "viewer" and key.token_hash == ApiKey.hash_token(token)
    # Not shown again on the next visit.
    assert token not in client_en.get(TEAM).content.decode()
    api = Client(headers={"Authorization": f"Bearer {token}"})
    assert api.get("/api/v1/customers").status_code == 200
    response = client_en.post(f"{TEAM}keys/{key.pk}/revoke", follow=True)
    assert "The API key “BI tool” was revoked." in response.content.decode()
    assert api.get("/api/v1/customers").status_code == 401
    assert AuditEntry.objects.filter(actor_user=member, action__startswith="api_key.").count() == 2


def test_a_key_of_another_workspace_is_404(client_en, other_workspace):
    foreign = apikey_create(workspace=other_workspace, name="b", actor=SYSTEM)[0]
    assert client_en.post(f"{TEAM}keys/{foreign.pk}/revoke").status_code == 404
    assert ApiKey.objects.get(pk=foreign.pk).revoked_at is None


def test_the_page_in_japanese(client_ja):
    body = client_ja.get(TEAM).content.decode()
    for text in ("メンバーと API キー", "メンバーを追加", "新しい API キー", "オーナー", "閲覧者", "ロールを変更"):
        assert text in body, text


@pytest.mark.parametrize("role", ["admin", "operator", "agent", "viewer"])
def test_everyone_but_owners_gets_403(role, workspace, taro):
    membership_add(workspace=workspace, user=taro, role=role, actor=SYSTEM)
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(taro)
    assert "Members and API keys" not in client.get("/w/shop-a/").content.decode()  # not in the navigation
    before = (AuditEntry.objects.count(), ApiKey.objects.count())
    assert client.get(TEAM).status_code == 403
    assert client.post(f"{TEAM}members/add", {"username": "taro", "role": "owner"}).status_code == 403
    assert client.post(f"{TEAM}members/taro/role", {"role": "owner"}).status_code == 403
    assert client.post(f"{TEAM}keys/create", {"name": "x", "role": "viewer"}).status_code == 403
    assert (AuditEntry.objects.count(), ApiKey.objects.count()) == before
    assert Membership.objects.get(user=taro).role == role


def test_owners_see_the_page_in_the_navigation(client_en):
    assert 'href="/w/shop-a/team/"' in client_en.get("/w/shop-a/").content.decode()


def test_outsiders_get_404(other_workspace, taro):
    membership_add(workspace=other_workspace, user=taro, role="owner", actor=SYSTEM)
    client = Client()
    client.force_login(taro)
    assert client.get(TEAM).status_code == 404
