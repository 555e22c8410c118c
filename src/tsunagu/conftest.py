"""Fixtures shared by every app's tests: workspaces, sources, API clients, and helpers to send events."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from django.test import Client

from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import apikey_create, workspace_create
from tsunagu.events.services import source_create


@pytest.fixture(autouse=True)
def _ingest_log(tmp_path: Any, settings: Any) -> Any:
    """A fresh SQLite ingest log for every test: the log is a file outside the test database, which is
    rolled back after each test, so a shared one would hand one test's events to the next."""
    settings.TSUNAGU_INGEST_LOG = str(tmp_path / "ingest-log.sqlite3")
    yield
    from tsunagu.events.log import logs_close

    logs_close(settings.TSUNAGU_INGEST_LOG)


def _without_quiet_hours(workspace: Any) -> Any:
    # A new workspace keeps marketing quiet from 21:00 to 08:00 Tokyo time; the suite runs at any hour,
    # so its workspaces have none unless a test is about them (messaging/tests/test_quiet_hours.py).
    workspace.quiet_hours = {}
    workspace.save(update_fields=["quiet_hours"])
    return workspace


@pytest.fixture
def workspace(db: Any) -> Any:
    return _without_quiet_hours(workspace_create(name="Shop A", slug="shop-a", actor=SYSTEM))


@pytest.fixture
def other_workspace(db: Any) -> Any:
    return _without_quiet_hours(workspace_create(name="Shop B", slug="shop-b", actor=SYSTEM))


@pytest.fixture
def source(workspace: Any) -> Any:
    return source_create(workspace=workspace, name="Website", channel="web", actor=SYSTEM)


@pytest.fixture
def token(workspace: Any) -> str:
    return apikey_create(workspace=workspace, name="test", actor=SYSTEM)[1]


class ApiClient:
    """Django's test client with a bearer token, answering parsed JSON."""

    def __init__(self, token: str | None) -> None:
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, **params: Any) -> tuple[int, Any]:
        response = self.client.get(path, params, headers=self.headers)
        return response.status_code, orjson.loads(response.content) if response.content else None

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        response = self.client.post(
            path, orjson.dumps(body or {}), content_type="application/json", headers=self.headers
        )
        return response.status_code, orjson.loads(response.content) if response.content else None


@pytest.fixture
def api(token: str) -> ApiClient:
    return ApiClient(token)


Sender = Callable[..., tuple[int, Any]]


@pytest.fixture
def send(source: Any) -> Sender:
    """POST a body to a tracking endpoint with the source's write key (Basic auth, as the SDKs do). After
    a 200 the applier runs in the test's thread until nothing is pending (``apply=False`` leaves the events
    in the log), so the test then reads profiles as the worker would have left them."""
    from tsunagu.testing.pipeline import apply_all

    client = Client()

    def _send(
        path: str,
        body: Any,
        *,
        write_key: str | None = None,
        raw: bytes | None = None,
        gzip_body: bool = False,
        auth: bool = True,
        headers: dict[str, str] | None = None,
        apply: bool = True,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else orjson.dumps(body)
        all_headers = dict(headers or {})
        if gzip_body:
            data = gzip.compress(data)
            all_headers["Content-Encoding"] = "gzip"
        if auth:
            key = write_key if write_key is not None else source.write_key
            all_headers["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        response = client.post(path, data, content_type="application/json", headers=all_headers)
        if apply and response.status_code == 200:
            apply_all()
        return response.status_code, orjson.loads(response.content) if response.content else None

    return _send


@pytest.fixture
def live_server_factory(tmp_path: Any) -> Any:
    """Start real tsunagu servers (``tsunagu web``) on loopback; all are stopped after the test."""
    from tsunagu.testing.live import LiveServer

    servers: list[LiveServer] = []

    def _make(name: str = "live") -> LiveServer:
        server = LiveServer(data_dir=tmp_path / name)
        servers.append(server)
        return server

    yield _make
    for server in servers:
        server.stop()


@pytest.fixture
def live_workspace(live_server_factory: Any) -> Any:
    """A running server with a workspace, a web source and an API key: (server, write_key, token, slug)."""
    server = live_server_factory()
    write_key, token, slug = server.provision(name="Live Shop", slug="live-shop")
    server.start()
    return server, write_key, token, slug
