"""Prometheus metrics of ingestion (``GET /metrics``).

Two kinds:
- what each process counts as it happens — events received and rejected by the tracking API, request
  latency, how long applied events waited — kept in prometheus-client's multiprocess files
  (``PROMETHEUS_MULTIPROC_DIR``, set by the settings to ``<data dir>/metrics``) so that every web and
  worker process of the machine adds up in one scrape;
- what the database knows — events applied and duplicates (all time), events pending and the age of the
  oldest — read at scrape time, so they are right whichever process or machine did the work.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from tsunagu.core import clock

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

RECEIVED = Counter(
    "tsunagu_events_received", "Events acknowledged (durably appended) by the tracking API", ["endpoint"]
)
REJECTED = Counter("tsunagu_events_rejected", "Events or requests refused by the tracking API, by reason", ["reason"])
REQUEST_SECONDS = Histogram(
    "tsunagu_tracking_request_seconds", "Tracking API request latency", ["endpoint"], buckets=_LATENCY_BUCKETS
)
APPLY_LAG_SECONDS = Histogram(
    "tsunagu_apply_lag_seconds",
    "Time from acknowledgement to applied, of the oldest event of each applier transaction",
    buckets=_LAG_BUCKETS,
)


def received(endpoint: str, count: int) -> None:
    RECEIVED.labels(endpoint).inc(count)


def rejected(reason: str, count: int = 1) -> None:
    REJECTED.labels(reason).inc(count)


def request_time(endpoint: str, seconds: float) -> None:
    REQUEST_SECONDS.labels(endpoint).observe(seconds)


def applied(*, stored: int, duplicates: int, oldest: dt.datetime) -> None:
    APPLY_LAG_SECONDS.observe(max(0.0, (clock.now() - oldest).total_seconds()))


class _DatabaseCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        from tsunagu.events.selectors import ingestion_overview

        overview = ingestion_overview()
        yield CounterMetricFamily(
            "tsunagu_events_applied", "Events applied to profiles and the timeline", overview["applied"]
        )
        yield CounterMetricFamily(
            "tsunagu_events_duplicates", "Events dropped by the applier as repeated messageIds", overview["duplicates"]
        )
        yield GaugeMetricFamily(
            "tsunagu_ingest_pending_events", "Events acknowledged, not yet applied", overview["pending"]
        )
        lag = (overview["oldest_pending_ms"] or 0.0) / 1000
        yield GaugeMetricFamily("tsunagu_ingest_lag_seconds", "Age of the oldest pending event", lag)


def exposition() -> tuple[bytes, str]:
    """The text format of every metric: this machine's processes plus the database's figures."""
    registry: Any
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        for collector in list(REGISTRY._collector_to_names):  # noqa: SLF001 - the default registry's metrics
            registry.register(collector)
    registry.register(_DatabaseCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
