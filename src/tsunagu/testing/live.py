"""A real tsunagu server on loopback for tests that must not use Django's test client: official SDKs,
the browser, crash tests. The server runs in its own process with its own data directory and database
(a fresh SQLite file, or a fresh database on the PostgreSQL cluster the suite runs against)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fresh_database_url(data_dir: Path) -> str:
    """A database of its own for the live server: SQLite in its data dir, or a new PostgreSQL database
    beside the one the suite was given."""
    base = os.environ.get("TSUNAGU_DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        return f"sqlite:///{data_dir / 'tsunagu.sqlite3'}"
    import psycopg

    name = f"live_{uuid.uuid4().hex[:12]}"
    parsed = urlparse(base)
    admin = urlunparse(parsed._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunparse(parsed._replace(path=f"/{name}"))


@dataclass
class LiveServer:
    data_dir: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    migrated: bool = False
    spawned: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "TSUNAGU_DATA_DIR": str(self.data_dir),
            "TSUNAGU_DATABASE_URL": _fresh_database_url(self.data_dir),
            "TSUNAGU_SECRET_KEY": "live-test-secret-key-" + uuid.uuid4().hex,
            "DJANGO_SETTINGS_MODULE": "tsunagu.settings",
        }
        self.env.pop("PYTEST_CURRENT_TEST", None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the ``tsunagu`` command against this server's database."""
        result = subprocess.run(
            [sys.executable, "-m", "tsunagu.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=600,
        )
        if args[:1] == ("migrate",) and result.returncode == 0:
            self.migrated = True
        return result

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def provision(self, *, name: str, slug: str) -> tuple[str, str, str]:
        """Migrate and create a workspace with a web source and an API key through the CLI, as an operator
        would: returns (write_key, token, slug)."""
        self.cli("migrate")
        slug = self.cli_json("workspace", "create", name, "--slug", slug)["slug"]
        write_key = self.cli_json("source", "create", "--workspace", slug, "--name", "Web")["write_key"]
        token = self.cli_json("apikey", "create", "--workspace", slug)["token"]
        return write_key, token, slug

    def start(self, *, workers: int = 2, command: str = "up") -> LiveServer:
        """Start (or restart, on the same database) the server and wait until it answers /readyz. ``up``
        (the default) runs web and worker, so events are applied; ``web`` serves without an applier."""
        if not self.migrated:
            self.cli("migrate")
        self.log_path = self.data_dir / f"server-{self.port}.log"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tsunagu.cli", command, "--port", str(self.port), "--workers", str(workers)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready()
        return self

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start another ``tsunagu`` process on this server's database (a second web, a worker), in a
        process group of its own so that it can be killed alone; the caller stops it."""
        log = (self.data_dir / f"spawned-{'-'.join(args)}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "tsunagu.cli", *args],
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # Killed by ``stop`` if the test did not stop it itself (a failed assertion on the way).
        self.spawned.append(process)
        return process

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"live server exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"live server not ready after {timeout}s:\n{self.log()}")

    def wait_applied(self, token: str, *, timeout: float = 60.0, expect_applied: int | None = None) -> dict[str, Any]:
        """Wait until the applier has applied everything acknowledged in the token's workspace."""
        from tsunagu.testing.pipeline import wait_applied

        return wait_applied(self.url, token, timeout=timeout, expect_applied=expect_applied)

    @property
    def database_url(self) -> str:
        return self.env["TSUNAGU_DATABASE_URL"]

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the server's database directly and read-only, bypassing the server (which may be dead):
        the SQLite file opened with ``mode=ro``, or a read-only PostgreSQL session."""
        url = self.database_url
        if url.startswith("sqlite:"):
            import sqlite3

            path = "/" + urlparse(url).path.lstrip("/")
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            try:
                return conn.execute(sql.replace("%s", "?"), params).fetchall()
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(url) as pg:
            pg.read_only = True
            return pg.execute(sql, params).fetchall()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        import signal

        for process in self.spawned:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.spawned.clear()
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL the whole server process group, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            import signal

            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
