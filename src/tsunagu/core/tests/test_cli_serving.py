"""What `up`, `web`, `worker`, `migrate` and `demo` say: bad serving options exit 2 with one line, a port in
use is one line, an unmigrated database is refused, and every start names its URL in one line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tsunagu.core.tests.test_cli import command, one_line, run
from tsunagu.testing.live import free_port


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A user's shell with a data dir of its own, never migrated."""
    return {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith("TSUNAGU_") and k not in ("PYTEST_CURRENT_TEST", "PORT")
        },
        "TSUNAGU_DATA_DIR": str(tmp_path / "var"),
    }


@pytest.mark.parametrize(
    ("args", "extra_env", "expected"),
    [
        (["up", "--port", "99999"], {}, "port 99999 is out of range"),
        (["web", "--port", "0"], {}, "port 0 is out of range"),
        (["web", "--port", "http"], {}, "not a port number"),
        (["web"], {"TSUNAGU_PORT": "eighty"}, "not a port number"),
        (["up", "--workers", "0"], {}, "--workers: must be at least 1"),
        (["web", "--workers", "-3"], {}, "--workers: must be at least 1"),
        (["web"], {"TSUNAGU_WEB_WORKERS": "0"}, "--workers: must be at least 1"),
        (["demo", "--port", "70000"], {}, "port 70000 is out of range"),
        (["web", "--host", "0.0.0.0"], {}, "needs TSUNAGU_ALLOWED_HOSTS"),
        (["up", "--host", "192.0.2.10"], {}, "needs TSUNAGU_ALLOWED_HOSTS"),
    ],
)
def test_bad_serving_options_exit_2_with_one_line(env, args, extra_env, expected):
    result = run({**env, **extra_env}, *args)
    assert result.returncode == 2
    assert expected in one_line(result)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("cmd", ["web", "up"])
def test_a_port_in_use_is_one_line(env, cmd):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(env, cmd, "--port", str(port), "--workers", "1")
    assert result.returncode == 1
    assert one_line(result) == f"tsunagu {cmd}: error: cannot listen on http://127.0.0.1:{port}: the port is in use"


@pytest.mark.parametrize("cmd", ["web", "worker"])
def test_an_unmigrated_database_is_refused_with_one_line(env, cmd):
    result = run(env, cmd, *(["--port", str(free_port())] if cmd == "web" else []))
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith(f"tsunagu {cmd}: error: the database is not migrated")
    assert line.endswith("run `tsunagu migrate` first")


def test_migrate_says_what_it_did(env):
    first = run(env, "migrate")
    assert first.returncode == 0, first.stderr
    database = Path(env["TSUNAGU_DATA_DIR"]) / "tsunagu.sqlite3"
    lines = first.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("tsunagu migrate: applied ")
    assert lines[0].endswith(f" migrations to SQLite {database}")
    again = run(env, "migrate")
    assert again.stdout == f"tsunagu migrate: SQLite {database} is up to date\n"


@pytest.mark.live
@pytest.mark.parametrize("cmd", ["web", "up"])
def test_start_prints_one_line_with_the_url(env, cmd):
    assert run(env, "migrate").returncode == 0
    port = free_port()
    process = subprocess.Popen(
        [*command(), cmd, "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        else:
            pytest.fail(f"`tsunagu {cmd}` never answered")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert out.decode().splitlines()[0].startswith(f"tsunagu {cmd}: listening on http://127.0.0.1:{port}")
    assert f"http://127.0.0.1:{port}" not in out.decode().split("\n", 1)[1], "the URL is printed once"
    assert b"Traceback" not in err


def test_demo_prints_the_url_of_the_port_it_is_given(env):
    result = run(env, "demo", "--customers", "5", "--events", "20", "--quiet", "--port", "9123", "--json")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["url_hint"] == "http://127.0.0.1:9123"
    assert "Console:  http://127.0.0.1:9123 " in outcome["message"]
    again = run({**env, "TSUNAGU_PORT": "9400", "TSUNAGU_HOST": "localhost"}, "demo", "--quiet", "--json")
    assert json.loads(again.stdout)["url_hint"] == "http://localhost:9400"
