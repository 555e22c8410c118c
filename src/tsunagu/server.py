"""The web server: Granian parses HTTP in Rust on an event loop; the WSGI application runs on a thread pool.

Why not gunicorn's threaded worker (what tsunagu used before): each connection took a thread from its first
byte, so a couple of dozen clients that never finished their headers stopped every other request. Here a
connection costs a thread only once its request has fully arrived:

- Granian closes a connection that has not sent its whole header within ``TSUNAGU_HEADER_TIMEOUT`` seconds;
- ``BufferedWSGI`` reads the body on the event loop (an idle client costs memory, bounded by ``MAX_BODY``;
  one slower than ``TSUNAGU_BODY_TIMEOUT`` gets a 408), and only then hands the request to a thread.

The views are synchronous Django views doing blocking database writes. They run as plain WSGI on the pool,
so the requests of one process run concurrently (the ingest log's shared fsync, ``tsunagu.events.log``,
groups them) — not Django's ASGI handler, which would run every sync view on one thread (``thread_sensitive``).
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

DEFAULT_THREADS = 8


def with_tracking_fast_path(application: Any) -> Any:
    """Serve the Segment tracking API (``/v1/…``) through a handler with only the middleware it needs.

    Sessions, auth, locale, CSRF (the views are csrf_exempt), messages and htmx do nothing for a request
    authenticated by its write key, and together cost about as much as 100 events' validation on every
    request; everything else keeps the full stack."""
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings

    with override_settings(MIDDLEWARE=settings.TSUNAGU_TRACKING_MIDDLEWARE):
        tracking = WSGIHandler()

    def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO", "").startswith("/v1/"):
            return tracking(environ, start_response)
        return application(environ, start_response)

    return dispatch


MAX_BODY = 8 * 1024 * 1024  # twice Django's DATA_UPLOAD_MAX_MEMORY_SIZE: Django, not us, answers in between


class _BodyError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        self.status, self.error, self.message = status, error, message


class BufferedWSGI:
    """An ASGI application serving a WSGI one: the request body is read whole on the event loop, then the
    WSGI call runs on a thread of ``executor`` and its response is sent back from the loop."""

    def __init__(self, application: Any, *, threads: int, body_timeout: float) -> None:
        self.application = application
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tsunagu-web")
        self.body_timeout = body_timeout

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        try:
            body = await asyncio.wait_for(self._read_body(receive), self.body_timeout)
        except TimeoutError:
            await self._error(send, _BodyError(408, "timeout", "the request body did not arrive in time"))
            return
        except _BodyError as exc:
            if exc.status:
                await self._error(send, exc)
            return
        environ = _environ(scope, body)
        loop = asyncio.get_running_loop()
        status, headers, content = await loop.run_in_executor(self.executor, self._call, environ)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    @staticmethod
    async def _read_body(receive: Any) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _BodyError(0, "", "")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise _BodyError(413, "too_large", f"request body over {MAX_BODY} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _error(send: Any, exc: _BodyError) -> None:
        body = json.dumps({"error": exc.error, "message": exc.message}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _call(self, environ: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [status, headers]
            return lambda data: None  # the legacy write(); Django never uses it

        result = self.application(environ, start_response)
        try:
            content = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started
        return (
            int(status.split(" ", 1)[0]),
            [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            content,
        )


def _environ(scope: dict[str, Any], body: bytes) -> dict[str, Any]:
    """PEP 3333 environ from an ASGI HTTP scope (strings are latin-1 "bytes as str", as WSGI wants)."""
    server = scope.get("server") or ("127.0.0.1", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode().decode("latin-1"),
        "PATH_INFO": scope["path"].encode().decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] or 80),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": str(client[0]),
        "REMOTE_PORT": str(client[1]),
        # Always set: the body is complete, also when it came chunked (Django reads only CONTENT_LENGTH).
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            continue
        key = name if name == "CONTENT_TYPE" else f"HTTP_{name}"
        if key in environ:
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
        environ[key] = value
    return environ


def load_application() -> Any:
    """The served application: the tracking fast path and the full stack, behind ``BufferedWSGI``.

    The URL configuration is imported here rather than by the first request (it builds the REST API's
    schemas: ~0.5 s that the first requests of every worker used to wait for). Everything loaded by then
    (Django, the URL patterns, the models: tens of thousands of objects) lives as long as the process, so it
    is moved out of the garbage collector's reach (``gc.freeze``): otherwise every full collection, which a
    busy ``/v1/batch`` triggers every few requests, walks all of it."""
    from django.urls import get_resolver

    from tsunagu.wsgi import application

    get_resolver().url_patterns  # noqa: B018 (imports the URL configuration)
    served = BufferedWSGI(
        with_tracking_fast_path(application),
        threads=_env_int("TSUNAGU_WEB_THREADS", DEFAULT_THREADS),
        body_timeout=_env_int("TSUNAGU_BODY_TIMEOUT", 30),
    )
    gc.collect()
    gc.freeze()
    return served


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


def _log_config(access_log: str) -> dict[str, Any]:
    """Granian's messages on stderr; the access log (``TSUNAGU_ACCESS_LOG``) in a file, or stdout for ``-``."""
    if access_log and access_log != "-":
        access: dict[str, Any] = {"class": "logging.FileHandler", "filename": access_log, "formatter": "plain"}
    else:
        access = {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "plain"}
    return {
        "formatters": {"plain": {"format": "%(message)s"}, "generic": {"format": "[%(levelname)s] %(message)s"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "generic"},
            "access": access,
        },
        "loggers": {
            "_granian": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


def serve(*, host: str, port: int, workers: int) -> None:
    """Serve until SIGINT/SIGTERM; ``workers`` processes, each with ``TSUNAGU_WEB_THREADS`` threads."""
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    access_log = os.environ.get("TSUNAGU_ACCESS_LOG", "")
    Server(
        "tsunagu.server:load_application",
        address=host,
        port=port,
        interface=Interfaces.ASGINL,
        factory=True,
        workers=max(1, workers),
        # Connections a worker serves at once (the rest wait in the kernel's accept queue); most of them are
        # idle keep-alive sockets or bodies still arriving, which cost memory only.
        backpressure=1024,
        http1_settings=HTTP1Settings(header_read_timeout=_env_int("TSUNAGU_HEADER_TIMEOUT", 15) * 1000),
        log_level=LogLevels(os.environ.get("TSUNAGU_LOG_LEVEL", "warning").lower()),
        log_dictconfig=_log_config(access_log),
        log_access=bool(access_log),
        # No Authorization user in it: on /v1 that is the write key.
        log_access_format='%(addr)s [%(time)s] "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).1fms '
        '"%(header{user-agent})s"',
        workers_kill_timeout=10,
        respawn_failed_workers=False,
    ).serve()
