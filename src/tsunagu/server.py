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

        return application


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
            "errorlog": "-",
            "loglevel": os.environ.get("TSUNAGU_LOG_LEVEL", "warning").lower(),
            "preload_app": True,
        }
    ).run()
