"""The one clock. Domain code asks ``clock.now()``; tests move time with time-machine, which this honours
because it reads the real system clock through ``datetime``."""

from __future__ import annotations

import datetime as dt

UTC = dt.UTC


def now() -> dt.datetime:
    """The current instant, timezone-aware in UTC."""
    return dt.datetime.now(tz=UTC)


def monotonic_ms() -> float:
    import time

    return time.monotonic() * 1000.0
