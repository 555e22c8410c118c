"""The web server: gunicorn, embedded, so ``tsunagu web`` needs no separate configuration file."""

from __future__ import annotations

import os
from typing import Any

from gunicorn.app.base import BaseApplication


class _App(BaseApplication):
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from tsunagu.wsgi import application

        return with_tracking_fast_path(application)


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


def serve(*, host: str, port: int, workers: int) -> None:
    """Serve until SIGINT/SIGTERM. Threads per worker let slow clients not block ingestion."""
    _App(
        {
            "bind": f"{host}:{port}",
            "workers": max(1, workers),
            "threads": int(os.environ.get("TSUNAGU_WEB_THREADS", 4)),
            "worker_class": "gthread",
            "timeout": 60,
            "graceful_timeout": 10,
            "keepalive": 30,
            "accesslog": os.environ.get("TSUNAGU_ACCESS_LOG") or None,
            # gunicorn's default format logs the Basic auth user name, which on /v1 is the write key.
            "access_log_format": '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(L)ss "%(a)s"',
            "errorlog": "-",
            "loglevel": os.environ.get("TSUNAGU_LOG_LEVEL", "warning").lower(),
            "preload_app": True,
        }
    ).run()
