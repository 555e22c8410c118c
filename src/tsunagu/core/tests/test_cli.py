"""The ``tsunagu`` command: ``--json`` output scripts can rely on, and bad arguments that exit 2 with exactly
one line on stderr. Runs the installed console script in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from tsunagu.cli import main
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import workspace_create
from tsunagu.testing.live import free_port


def command() -> list[str]:
    script = Path(sys.executable).parent / "tsunagu"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tsunagu.cli"]


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command(), *args], env=env, capture_output=True, text=True, timeout=120)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.stderr.endswith("\n"), repr(result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr}"
    return lines[0]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user's shell: a data dir and a database URL of its own (never migrated: these
    commands fail before they would touch it)."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("TSUNAGU_") and k != "PYTEST_CURRENT_TEST"},
        "TSUNAGU_DATA_DIR": str(tmp_path),
        "TSUNAGU_DATABASE_URL": f"sqlite:///{tmp_path}/tsunagu.sqlite3",
    }


@pytest.mark.live
def test_create_workspace_source_and_key_then_use_them(live_server_factory):
    server = live_server_factory("cli-live")
    migrate = run(server.env, "migrate")
    assert migrate.returncode == 0, migrate.stderr
    server.migrated = True

    created = run(server.env, "workspace", "create", "Tea House Kyoto", "--json")
    assert created.returncode == 0, created.stderr
    assert created.stdout.count("\n") == 1, "--json prints exactly one JSON line"
    workspace = json.loads(created.stdout)
    assert workspace["slug"] == "tea-house-kyoto"

    source = json.loads(
        run(server.env, "source", "create", "--workspace", workspace["slug"], "--name", "Web", "--json").stdout
    )
    assert set(source) >= {"id", "write_key", "channel"}
    assert source["channel"] == "web" and len(source["write_key"]) >= 24
    line = json.loads(
        run(
            server.env,
            "source",
            "create",
            "--workspace",
            workspace["slug"],
            "--name",
            "LINE",
            "--channel",
            "line",
            "--json",
        ).stdout
    )
    assert line["channel"] == "line" and line["write_key"] != source["write_key"]
    key = json.loads(run(server.env, "apikey", "create", "--workspace", workspace["slug"], "--json").stdout)
    assert key["token"].startswith("tsk_")

    # Without --json the same commands print just the value, for shell scripts.
    plain = run(server.env, "apikey", "create", "--workspace", workspace["slug"])
    assert plain.returncode == 0 and plain.stdout.strip().startswith("tsk_") and plain.stdout.count("\n") == 1
    other = json.loads(run(server.env, "workspace", "create", "Other Shop", "--json").stdout)
    other_key = json.loads(run(server.env, "apikey", "create", "--workspace", other["slug"], "--json").stdout)

    server.start()
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {key['token']}"
    sources = api.get(f"{server.url}/api/v1/sources", timeout=10)
    assert sources.status_code == 200, sources.text
    assert {s["id"]: s["write_key"] for s in sources.json()["items"]} == {
        source["id"]: source["write_key"],
        line["id"]: line["write_key"],
    }
    tracked = requests.post(
        f"{server.url}/v1/identify",
        json={"userId": "u-1", "traits": {"email": "a@example.jp"}},
        auth=(source["write_key"], ""),
        timeout=10,
    )
    assert tracked.status_code == 200, tracked.text
    server.wait_applied(key["token"])
    customers = api.get(f"{server.url}/api/v1/customers", params={"email": "a@example.jp"}, timeout=10).json()["items"]
    assert [c["user_id"] for c in customers] == ["u-1"]
    # The other workspace's key sees nothing of it; a made-up key is refused.
    seen = requests.get(
        f"{server.url}/api/v1/sources", headers={"Authorization": f"Bearer {other_key['token']}"}, timeout=10
    )
    assert seen.status_code == 200 and seen.json()["items"] == []
    refused = requests.get(f"{server.url}/api/v1/sources", headers={"Authorization": "Bearer tsk_made_up"}, timeout=10)
    assert refused.status_code == 401


def test_slugs_are_derived_unique_and_japanese_names_work(db, capsys):
    outputs = []
    for name in ("Ramen Bar", "Ramen Bar", "京都茶房"):
        assert main(["workspace", "create", name, "--json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert [o["slug"] for o in outputs[:2]] == ["ramen-bar", "ramen-bar-2"]
    assert outputs[2]["name"] == "京都茶房"
    assert outputs[2]["slug"].startswith("ws-")


BAD_ARGUMENTS: list[tuple[list[str], str]] = [
    (["frobnicate"], "invalid choice"),
    ([], "required"),
    (["workspace"], "required"),
    (["workspace", "delete", "x"], "invalid choice"),
    (["workspace", "create"], "name"),
    (["workspace", "create", "X", "--colour", "red"], "unrecognized arguments"),
    (["source", "create", "--name", "Web"], "--workspace"),
    (["source", "create", "--workspace", "cli-shop"], "--name"),
    (["apikey", "create"], "--workspace"),
    (["web", "--port", "eighty"], "--port"),
    (["demo", "--customers", "many"], "--customers"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_ARGUMENTS, ids=[" ".join(a) or "nothing" for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_exit_2_with_one_line(env, args, expected):
    result = run(env, *args)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert expected in one_line(result)


BAD_VALUES: list[tuple[list[str], str]] = [
    (["source", "create", "--workspace", "no-such-shop", "--name", "Web"], "no-such-shop"),
    (["apikey", "create", "--workspace", "no-such-shop"], "no-such-shop"),
    (["createuser", "hanako", "--password", "long-enough-pw", "--workspace", "no-such-shop"], "no-such-shop"),
    (["source", "create", "--workspace", "cli-shop", "--name", "POS", "--channel", "fax"], "channel"),
    (["source", "create", "--workspace", "cli-shop", "--name", "   "], "name"),
    (["workspace", "create", "   "], "name"),
    (["workspace", "create", "Shop", "--slug", "Not A Slug!"], "slug"),
    (["createuser", "taro", "--password", "short"], "password"),
    (["createuser", "jiro"], "password"),
    (["createuser", "saburo", "--password", "long-enough-pw", "--workspace", "cli-shop", "--role", "emperor"], "role"),
]


@pytest.fixture
def shop(db: Any) -> str:
    return workspace_create(name="CLI Shop", slug="cli-shop", actor=SYSTEM).slug


# In-process (``main(argv)``), since they need a database: the pytest one, SQLite or PostgreSQL.
@pytest.mark.parametrize(("args", "expected"), BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_values_exit_2_with_one_line(shop, capsys, monkeypatch, args, expected):
    monkeypatch.delenv("TSUNAGU_PASSWORD", raising=False)
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert expected in lines[0]
    assert lines[0].startswith("tsunagu")


def test_a_failed_createuser_leaves_nothing_behind(shop, capsys):
    from django.contrib.auth import get_user_model

    assert main(["createuser", "saburo", "--password", "long-enough-pw", "--workspace", shop, "--role", "emperor"]) == 2
    assert not get_user_model().objects.filter(username="saburo").exists()
    # So the corrected command succeeds.
    assert (
        main(["createuser", "saburo", "--password", "long-enough-pw", "--workspace", shop, "--role", "agent", "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out) == {"username": "saburo"}


def test_an_existing_slug_is_a_conflict(shop, capsys):
    assert main(["workspace", "create", "Again", "--slug", shop]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "already exists" in lines[0]


@pytest.mark.parametrize(
    "url",
    ["mysql://user@localhost/tsunagu", "redis://localhost:6379/0", "sqlite", "://nothing"],
)
def test_invalid_database_url_exits_2_with_one_line(env, url):
    result = run({**env, "TSUNAGU_DATABASE_URL": url}, "source", "create", "--workspace", "shop", "--name", "Web")
    assert result.returncode == 2, (result.returncode, result.stderr)
    line = one_line(result)
    assert "TSUNAGU_DATABASE_URL" in line


def test_unreachable_database_is_one_line_not_a_traceback(env, tmp_path):
    for url in (f"postgres://nobody@127.0.0.1:{free_port()}/nothing", f"sqlite:///{tmp_path}/missing/dir/db.sqlite3"):
        result = run({**env, "TSUNAGU_DATABASE_URL": url}, "source", "create", "--workspace", "shop", "--name", "Web")
        assert result.returncode == 1, (url, result.returncode, result.stderr)
        line = one_line(result)
        assert "database" in line.lower()
        assert "Traceback" not in result.stderr


def test_help_exits_0(env):
    result = run(env, "--help")
    assert result.returncode == 0
    assert "workspace" in result.stdout and result.stderr == ""
