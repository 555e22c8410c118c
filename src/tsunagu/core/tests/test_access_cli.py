"""``tsunagu member …``, ``apikey create --role / list / revoke`` and ``source list``: the shapes documented in
docs/access.md, audited as the CLI, and bad input exit 2 with one line."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tsunagu.cli import main
from tsunagu.core.models import ApiKey, AuditEntry, Membership
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import user_create, workspace_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(db: Any) -> str:
    workspace_create(name="CLI Shop", slug="cli-shop", actor=SYSTEM)
    user_create(username="hanako", password="correct-horse-battery")
    user_create(username="taro", password="correct-horse-battery")
    return "cli-shop"


def cli(capsys: Any, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys: Any, *args: str) -> Any:
    code, out, err = cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_member_add_list_role_remove(shop, capsys):
    assert cli_json(capsys, "member", "add", "--workspace", shop, "hanako", "--role", "owner") == {
        "username": "hanako",
        "role": "owner",
    }
    code, out, _ = cli(capsys, "member", "add", "--workspace", shop, "taro", "--role", "viewer")
    assert code == 0 and out == "taro is now viewer of cli-shop\n"
    listed = cli_json(capsys, "member", "list", "--workspace", shop)["items"]
    assert [(m["username"], m["role"]) for m in listed] == [("hanako", "owner"), ("taro", "viewer")]
    code, out, _ = cli(capsys, "member", "list", "--workspace", shop)
    assert out.splitlines()[0].split() == ["USERNAME", "ROLE", "SINCE"]
    assert cli_json(capsys, "member", "role", "--workspace", shop, "taro", "--role", "admin")["role"] == "admin"
    assert Membership.objects.get(user__username="taro").role == "admin"
    assert cli(capsys, "member", "remove", "--workspace", shop, "taro")[0] == 0
    assert list(Membership.objects.values_list("user__username", flat=True)) == ["hanako"]
    actions = list(AuditEntry.objects.filter(action__startswith="member.").values_list("action", "actor_kind"))
    assert actions == [
        ("member.added", "system"),
        ("member.added", "system"),
        ("member.role_changed", "system"),
        ("member.removed", "system"),
    ]
    assert AuditEntry.objects.filter(action="member.added").first().actor.startswith("tsunagu CLI (")


MEMBER_ERRORS = [
    (["member", "add", "--workspace", "cli-shop", "nobody", "--role", "viewer"], 2, "user 'nobody' not found"),
    (["member", "add", "--workspace", "cli-shop", "hanako", "--role", "emperor"], 2, "unknown role 'emperor'"),
    (["member", "add", "--workspace", "no-such-shop", "hanako", "--role", "viewer"], 2, "no-such-shop"),
    (["member", "add", "--workspace", "cli-shop", "hanako"], 2, "--role"),
    (["member", "role", "--workspace", "cli-shop", "taro", "--role", "admin"], 2, "taro is not a member"),
    (["member", "remove", "--workspace", "cli-shop", "hanako"], 1, "last owner"),
    (["member", "add", "--workspace", "cli-shop", "hanako", "--role", "admin"], 1, "already a member"),
    (["apikey", "create", "--workspace", "cli-shop", "--role", "root"], 2, "unknown role 'root'"),
    (["apikey", "revoke", "--workspace", "cli-shop", "999999"], 2, "API key 999999 not found"),
    (["apikey", "revoke", "--workspace", "cli-shop", "first"], 2, "invalid int value"),
]


@pytest.mark.parametrize(
    ("args", "code", "message"), MEMBER_ERRORS, ids=[" ".join(a[:2] + a[4:]) for a, _, _ in MEMBER_ERRORS]
)
def test_bad_input_is_one_line(shop, capsys, args, code, message):
    assert main(["member", "add", "--workspace", shop, "hanako", "--role", "owner"]) == 0
    capsys.readouterr()
    before = AuditEntry.objects.count()
    try:
        result = main(args)
    except SystemExit as exc:  # argparse refusals
        result = exc.code
    out, err = capsys.readouterr()
    assert (result, out) == (code, "")
    assert len(err.splitlines()) == 1, err
    assert message in err
    assert AuditEntry.objects.count() == before


def test_apikey_roles_list_and_revoke(shop, capsys):
    # Default role admin, and the plain output is the token alone, as before.
    code, out, _ = cli(capsys, "apikey", "create", "--workspace", shop)
    token = out.strip()
    assert code == 0 and token.startswith("tsk_") and "\n" not in token
    assert ApiKey.objects.get().role == "admin"
    viewer = cli_json(capsys, "apikey", "create", "--workspace", shop, "--name", "dashboards", "--role", "viewer")
    assert viewer["role"] == "viewer" and viewer["token"].startswith("tsk_")
    listed = cli_json(capsys, "apikey", "list", "--workspace", shop)["items"]
    assert [(k["name"], k["role"], k["revoked_at"]) for k in listed] == [
        ("dashboards", "viewer", None),
        ("cli", "admin", None),
    ]
    assert all("token" not in k for k in listed)
    assert token not in json.dumps(listed)
    # A viewer key reads, and cannot write.
    headers = {"Authorization": f"Bearer {viewer['token']}"}
    assert Client().get("/api/v1/sources", headers=headers).status_code == 200
    assert (
        Client().post("/api/v1/sources", {"name": "X"}, content_type="application/json", headers=headers).status_code
        == 403
    )
    revoked = cli_json(capsys, "apikey", "revoke", "--workspace", shop, str(viewer["id"]))
    assert revoked["revoked_at"] is not None
    assert Client().get("/api/v1/sources", headers=headers).status_code == 401
    code, out, _ = cli(capsys, "apikey", "list", "--workspace", shop)
    rows = out.splitlines()
    assert rows[0].split() == ["ID", "NAME", "ROLE", "PREFIX", "CREATED", "REVOKED"]
    assert rows[1].split()[:3] == [str(viewer["id"]), "dashboards", "viewer"] and rows[1].split()[-1] != "-"
    assert rows[2].split()[-1] == "-"


def test_source_list(shop, capsys):
    web = cli_json(capsys, "source", "create", "--workspace", shop, "--name", "Web")
    pos = cli_json(capsys, "source", "create", "--workspace", shop, "--name", "POS", "--channel", "store")
    listed = cli_json(capsys, "source", "list", "--workspace", shop)["items"]
    assert listed == [web, pos]
    code, out, _ = cli(capsys, "source", "list", "--workspace", shop)
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "CHANNEL", "WRITE", "KEY"]
    assert lines[2].split() == [str(pos["id"]), "POS", "store", pos["write_key"]]
    assert AuditEntry.objects.filter(action="source.created").count() == 2
