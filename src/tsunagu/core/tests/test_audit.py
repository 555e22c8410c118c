"""Every change of configuration or credentials writes exactly one audit entry naming its actor, in the same
transaction; a change that fails writes none. The Django admin goes through the same services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from tsunagu.core.errors import Conflict, NotFound, PermissionDenied, TsunaguError, ValidationError
from tsunagu.core.models import AuditEntry
from tsunagu.core.permissions import SYSTEM, System
from tsunagu.core.services import (
    apikey_create,
    apikey_revoke,
    membership_add,
    membership_change_role,
    membership_remove,
    user_create,
    workspace_create,
)
from tsunagu.events.models import Source
from tsunagu.events.services import source_create, source_rotate_key

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"


@pytest.fixture
def owner(workspace: Any) -> Any:
    user = user_create(username="oyama", password=PASSWORD)
    membership_add(workspace=workspace, user=user, role="owner", actor=SYSTEM)
    return user


@pytest.fixture
def admin_key(workspace: Any) -> Any:
    return apikey_create(workspace=workspace, name="ops", role="admin", actor=SYSTEM)[0]


@pytest.fixture
def member(workspace: Any) -> Any:
    user = user_create(username="sato", password=PASSWORD)
    membership_add(workspace=workspace, user=user, role="viewer", actor=SYSTEM)
    return user


def entries_after(marker: int) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(pk__gt=marker).order_by("pk"))


def last_id() -> int:
    return AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def changes(workspace: Any, member: Any, source: Any, key_to_revoke: Any) -> dict[str, Callable[[Any], Any]]:
    newcomer = user_create(username="newcomer", password=PASSWORD)
    return {
        "source.created": lambda actor: source_create(workspace=workspace, name="POS", channel="store", actor=actor),
        "source.key_rotated": lambda actor: source_rotate_key(source=source, actor=actor),
        "api_key.created": lambda actor: apikey_create(workspace=workspace, name="ci", role="viewer", actor=actor),
        "api_key.revoked": lambda actor: apikey_revoke(workspace=workspace, key_id=key_to_revoke.pk, actor=actor),
        "member.added": lambda actor: membership_add(workspace=workspace, user=newcomer, role="agent", actor=actor),
        "member.role_changed": lambda actor: membership_change_role(
            workspace=workspace, user=member, role="operator", actor=actor
        ),
        "member.removed": lambda actor: membership_remove(workspace=workspace, user=member, actor=actor),
    }


@pytest.mark.parametrize("actor_kind", ["user", "api_key", "system"])
def test_each_service_writes_one_entry_naming_its_actor(actor_kind, workspace, owner, member, source):
    owner_key = apikey_create(workspace=workspace, name="owner-key", role="owner", actor=SYSTEM)[0]
    actor = {"user": owner, "api_key": owner_key, "system": System("tsunagu CLI (test)")}[actor_kind]
    victim = apikey_create(workspace=workspace, name="victim", role="viewer", actor=SYSTEM)[0]
    for action, change in changes(workspace, member, source, victim).items():
        marker = last_id()
        change(actor)
        written = entries_after(marker)
        assert [e.action for e in written] == [action]
        entry = written[0]
        assert entry.workspace_id == workspace.pk
        assert entry.actor_kind == actor_kind
        assert entry.actor_user_id == (owner.pk if actor_kind == "user" else None)
        assert entry.actor_api_key_id == (owner_key.pk if actor_kind == "api_key" else None)
        expected_label = {
            "user": "user oyama",
            "api_key": f"api key {owner_key.prefix} (owner-key)",
            "system": "tsunagu CLI (test)",
        }[actor_kind]
        assert entry.actor == expected_label
        assert entry.target


def test_workspace_create_is_audited_in_the_new_workspace(db):
    ws = workspace_create(name="New Shop", slug="new-shop", actor=System("tsunagu CLI (test)"))
    entry = AuditEntry.objects.get(workspace=ws)
    assert (entry.action, entry.actor_kind, entry.target) == ("workspace.created", "system", "new-shop")


def test_only_the_cli_and_superusers_create_workspaces(workspace, owner):
    with pytest.raises(PermissionDenied):
        workspace_create(name="Mine", slug="mine", actor=owner)
    root = user_create(username="root", password=PASSWORD, is_superuser=True)
    assert workspace_create(name="Mine", slug="mine", actor=root).slug == "mine"


def test_a_failing_service_writes_no_entry(workspace, owner, member, source, admin_key, other_workspace):
    viewer_key = apikey_create(workspace=workspace, name="viewer", role="viewer", actor=SYSTEM)[0]
    foreign_key = apikey_create(workspace=other_workspace, name="b", actor=SYSTEM)[0]
    failures: list[tuple[type[TsunaguError], Callable[[], Any]]] = [
        (ValidationError, lambda: source_create(workspace=workspace, name="Fax", channel="fax", actor=owner)),
        (PermissionDenied, lambda: source_create(workspace=workspace, name="X", actor=viewer_key)),
        (PermissionDenied, lambda: source_rotate_key(source=source, actor=member)),
        (PermissionDenied, lambda: apikey_create(workspace=workspace, role="owner", actor=admin_key)),
        (ValidationError, lambda: apikey_create(workspace=workspace, role="emperor", actor=owner)),
        (NotFound, lambda: apikey_revoke(workspace=workspace, key_id=foreign_key.pk, actor=owner)),
        (Conflict, lambda: membership_add(workspace=workspace, user=member, role="admin", actor=owner)),
        (PermissionDenied, lambda: membership_add(workspace=workspace, user=member, role="admin", actor=admin_key)),
        (Conflict, lambda: membership_change_role(workspace=workspace, user=owner, role="viewer", actor=owner)),
        (Conflict, lambda: membership_remove(workspace=workspace, user=owner, actor=SYSTEM)),
        (Conflict, lambda: workspace_create(name="Again", slug="shop-a", actor=SYSTEM)),
    ]
    before = AuditEntry.objects.count()
    rotated_key = source.write_key
    for expected, failure in failures:
        with pytest.raises(expected):
            failure()
    assert AuditEntry.objects.count() == before
    source.refresh_from_db()
    assert source.write_key == rotated_key


def test_the_audit_entry_rolls_back_with_its_change(workspace, owner):
    from django.db import transaction

    before = (AuditEntry.objects.count(), Source.objects.count())
    with pytest.raises(RuntimeError), transaction.atomic():
        source_create(workspace=workspace, name="Doomed", actor=owner)
        raise RuntimeError("the caller's transaction fails after the service")
    assert (AuditEntry.objects.count(), Source.objects.count()) == before


# -- the Django admin ---------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(db: Any) -> Client:
    root = user_create(username="root", password=PASSWORD, is_superuser=True)
    client = Client()
    client.force_login(root)
    return client


def test_the_admin_creates_sources_through_the_service(admin_client, workspace):
    for name in ("Shop front", "Second shop"):  # the second used to be a 500 (two empty write keys)
        response = admin_client.post(
            "/admin/events/source/add/", {"workspace": workspace.pk, "name": name, "channel": "web"}
        )
        assert response.status_code == 302, response.content.decode()[:2000]
        created = Source.objects.get(name=name)
        assert len(created.write_key) >= 32
        entry = AuditEntry.objects.get(action="source.created", target=name)
        assert (entry.actor_kind, entry.actor, entry.workspace_id) == ("user", "user root", workspace.pk)
    assert Source.objects.filter(workspace=workspace).count() == 2
    # The write key cannot be typed in on the change form either.
    page = admin_client.get(f"/admin/events/source/{created.pk}/change/").content.decode()
    assert 'name="write_key"' not in page


def test_the_admin_refuses_what_the_actors_role_refuses(workspace):
    from django.contrib.auth.models import Permission

    staff = user_create(username="clerk", password=PASSWORD)
    staff.is_staff = True
    staff.save()
    staff.user_permissions.set(Permission.objects.filter(codename__in=["add_source", "view_source"]))
    membership_add(workspace=workspace, user=staff, role="operator", actor=SYSTEM)
    client = Client()
    client.force_login(staff)
    response = client.post("/admin/events/source/add/", {"workspace": workspace.pk, "name": "X", "channel": "web"})
    assert response.status_code == 200  # the form again, with the refusal
    assert "may not manage sources" in response.content.decode()
    assert not Source.objects.filter(name="X").exists()
    assert not AuditEntry.objects.filter(action="source.created", target="X").exists()


def test_the_admin_creates_api_keys_and_memberships_through_the_services(admin_client, workspace):
    response = admin_client.post("/admin/core/apikey/add/", {"workspace": workspace.pk, "name": "ci", "role": "viewer"})
    assert response.status_code == 302
    key = workspace.api_keys.get(name="ci")
    assert key.role == "viewer" and len(key.token_hash) == 64
    assert AuditEntry.objects.filter(action="api_key.created", actor="user root").count() == 1
    user = user_create(username="tanaka", password=PASSWORD)
    response = admin_client.post(
        "/admin/core/membership/add/", {"workspace": workspace.pk, "user": user.pk, "role": "agent"}
    )
    assert response.status_code == 302
    assert AuditEntry.objects.filter(action="member.added", target="tanaka").count() == 1
