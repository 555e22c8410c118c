"""``demo_load``: create the demo workspace and load the simulated events through the ingestion path."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from tsunagu.core import clock
from tsunagu.core.errors import Conflict
from tsunagu.core.jobs import job_enqueue
from tsunagu.core.permissions import System
from tsunagu.core.selectors import user_get, workspace_get
from tsunagu.core.services import apikey_create, audit_record, membership_add, user_create, workspace_create
from tsunagu.customers.selectors import customer_count
from tsunagu.demo.broadcast import demo_broadcast
from tsunagu.demo.catalog import (
    _FLUSH_AFTER,
    DEFAULT_PASSWORD,
    DEMO_NAME,
    DEMO_SLUG,
    DEMO_USERNAME,
    JST,
    SEED,
    SOURCES,
    TOKEN_FILE,
)
from tsunagu.demo.journeys import demo_journeys
from tsunagu.demo.messaging import demo_channels_off, demo_messaging
from tsunagu.demo.personas import demo_personas
from tsunagu.demo.segments import demo_segments
from tsunagu.demo.simulation import _fit, _Simulation
from tsunagu.events.applier import events_apply_pending
from tsunagu.events.selectors import event_count, source_list
from tsunagu.events.services import events_append, source_create
from tsunagu.events.validation import ParsedEvent, parse_event
from tsunagu.messaging.timeline import delivery_events_publish, send_events_publish
from tsunagu.segments.services import segment_changes_publish

# Events appended between two runs of the applier: the progress bar moves as profiles are written.
_APPLY_EVERY = 5000


def _apply(workspace: Any) -> int:
    # One transaction per SDK batch, as a live applier would see a trickle of them: profiles that meet in one
    # transaction are joined without a merge record, and the demo is there to show its merge history.
    return events_apply_pending(workspace_id=workspace.pk, max_events=1).stored


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[int], None]]:
    if enabled:
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        except ImportError:
            enabled = False
    if not enabled:
        yield lambda n: None
        return
    columns = (TextColumn("[bold]デモデータ[/bold] events"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("load", total=total)
        yield lambda n: bar.advance(task, n)


DEMO_ACTOR = System("tsunagu demo")


def _password() -> str:
    return os.environ.get("TSUNAGU_DEMO_PASSWORD") or DEFAULT_PASSWORD


def _url() -> str:
    # `make run PORT=9000` exports PORT to its commands; `tsunagu up` defaults to TSUNAGU_PORT, then 8000.
    port = os.environ.get("TSUNAGU_PORT") or os.environ.get("PORT") or "8000"
    return f"http://127.0.0.1:{port}"


def _token_path() -> Path:
    return Path(settings.DATA_DIR) / TOKEN_FILE


def _write_token(token: str) -> str | None:
    """Keep the demo token beside the database (mode 600) so the README tour and later runs can find it."""
    path = _token_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        path.chmod(0o600)
    except OSError:
        return None
    return str(path)


def _read_token() -> str | None:
    try:
        return _token_path().read_text().strip() or None
    except OSError:
        return None


def _outcome(
    workspace: Any, *, created: bool, token: str | None, seconds: float | None, note: str = "", url: str | None = None
) -> dict[str, Any]:
    found = {(s.channel, s.name): s.write_key for s in source_list(workspace=workspace)}
    keys = {channel: found[(channel, name)] for channel, name in SOURCES if (channel, name) in found}
    url = url or _url()
    password = _password()
    customers, events = customer_count(workspace=workspace), event_count(workspace=workspace)
    if created:
        head = (
            f"Loaded the demo workspace 「{workspace.name}」 ({DEMO_SLUG}): {customers:,} customers, {events:,} events"
        )
        head += f" in {seconds:.1f} s." if seconds is not None else "."
    else:
        head = f"The demo workspace 「{workspace.name}」 ({DEMO_SLUG}) is already loaded; nothing to do."
    lines = [head, f"Console:  {url}  — log in as {DEMO_USERNAME} / {password}"]
    if note:
        lines.append(note)
    if token:
        lines.append(f"API token: {token}  (also in {_token_path()})")
    else:
        lines.append(f"API token: create one with `tsunagu apikey create --workspace {DEMO_SLUG}`")
    if keys.get("web"):
        lines.append(f"Web source write key: {keys['web']}")
    return {
        "created": created,
        "workspace": DEMO_SLUG,
        "username": DEMO_USERNAME,
        "password": password,
        "api_token": token,
        "write_keys": keys,
        "customers": customers,
        "events": events,
        "seconds": round(seconds, 2) if seconds is not None else None,
        "url_hint": url,
        "message": "\n".join(lines),
    }


def demo_load(
    *,
    customers: int = 2000,
    events: int = 50000,
    progress: bool = False,
    batch_size: int | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """Create and fill the ``demo`` workspace unless it exists; return the login, the API token and counts.

    All of it happens in one transaction, so an interrupted load leaves nothing behind and the next run
    starts again. ``batch_size`` defaults to 500 for the full demo and smaller for small loads, so that
    anonymous sessions and the logins that identify them land in different batches and merges are
    recorded as they are in production traffic. ``url`` is the console's address to print (the server's
    ``--host``/``--port``).
    """
    existing = workspace_get(slug=DEMO_SLUG)
    if existing is not None:
        return _outcome(existing, created=False, token=_read_token(), seconds=None, url=url)
    started = time.monotonic()
    customers, events = max(1, customers), max(1, events)
    batch = batch_size or max(10, min(500, events // 100))
    end = clock.now().astimezone(JST).replace(hour=0, minute=0, second=0, microsecond=0)
    units = _fit(_Simulation(people=customers, end=end, seed=SEED), events)
    stream = sorted((e for u in units for e in u.events), key=lambda e: e.ts)
    note = ""
    try:
        with transaction.atomic():
            workspace = workspace_create(name=DEMO_NAME, slug=DEMO_SLUG, actor=DEMO_ACTOR)
            sources = {
                channel: source_create(workspace=workspace, name=name, channel=channel, actor=DEMO_ACTOR)
                for channel, name in SOURCES
            }
            user = user_get(username=DEMO_USERNAME)
            if user is None:
                user = user_create(username=DEMO_USERNAME, password=_password(), email="demo@example.com")
            else:
                note = f"User {DEMO_USERNAME!r} already existed; its password was left unchanged."
            membership_add(workspace=workspace, user=user, role="owner", actor=DEMO_ACTOR)
            _key, token = apikey_create(workspace=workspace, name="demo", role="owner", actor=DEMO_ACTOR)
            received_at = clock.now()
            with _progress(progress, len(stream)) as advance:

                appended = 0

                def send(channel: str) -> None:
                    # The one way in, as /v1/batch: the ingest log, then the applier (here, in this thread).
                    nonlocal appended
                    events = pending.pop(channel)
                    events_append(source=sources[channel], events=events, received_at=received_at, check_backlog=False)
                    appended += len(events)
                    if appended >= _APPLY_EVERY:
                        advance(_apply(workspace))
                        appended = 0

                # Each source sends its own batches, as each SDK would. The stream is walked in time order; a
                # source's batch goes in when it is full, and every batch once the oldest waiting event is a
                # day old, so that quiet sources (the call centre) are not all stored at the very end.
                pending: dict[str, list[ParsedEvent]] = {}
                oldest: dt.datetime | None = None
                for out in stream:
                    if oldest is not None and out.ts - oldest > _FLUSH_AFTER:
                        for channel in list(pending):
                            send(channel)
                        oldest = None
                    parsed = parse_event(out.payload, type_=None, where="", max_bytes=settings.TSUNAGU_MAX_EVENT_BYTES)
                    pending.setdefault(out.channel, []).append(parsed)
                    oldest = oldest or out.ts
                    if len(pending[out.channel]) >= batch:
                        send(out.channel)
                for channel in list(pending):
                    send(channel)
                advance(_apply(workspace))
            # Segments over what happened so far; from here on the applier keeps them (the messaging below
            # records consents and events that move some of them).
            segments = demo_segments(workspace=workspace, actor=DEMO_ACTOR)
            demo_personas(workspace=workspace, actor=DEMO_ACTOR)
            # Three weeks of messages, and their outcomes on the timeline through the same log.
            sent = demo_messaging(workspace=workspace, actor=DEMO_ACTOR, end=received_at, seed=SEED, switch_off=False)
            demo_broadcast(workspace=workspace, actor=DEMO_ACTOR)
            # Weeks of journey runs, replayed by the engine over the stored events; their sends go out through
            # the channels before they are switched off like the rest of the demo's.
            journeys = demo_journeys(workspace=workspace, actor=DEMO_ACTOR, until=received_at, seed=SEED)
            demo_channels_off(workspace=workspace, actor=DEMO_ACTOR)
            # Messaging's outcomes and the segment changes they cause reach the timeline through the log;
            # applying them can move segments again, so until nothing is left.
            while delivery_events_publish(limit=2000) + send_events_publish(limit=2000) + segment_changes_publish(
                limit=2000
            ):
                events_apply_pending(workspace_id=workspace.pk)
            events_apply_pending(workspace_id=workspace.pk)
            audit_record(
                workspace=workspace,
                actor=DEMO_ACTOR,
                action="demo.loaded",
                data={"people": customers, "events": len(stream), "seed": SEED, "sends": sent, "segments": segments,
                      "journeys": journeys},
            )
            job_enqueue(kind="core.optimize_database", idempotency_key="demo-optimize")
    except Conflict:
        # Another `tsunagu demo` created the workspace while we were simulating.
        existing = workspace_get(slug=DEMO_SLUG)
        if existing is None:
            raise
        return _outcome(existing, created=False, token=_read_token(), seconds=None, url=url)
    if _write_token(token) is None:
        note = (note + "\n" if note else "") + f"Could not write {_token_path()}; keep the token below."
    return _outcome(workspace, created=True, token=token, seconds=time.monotonic() - started, note=note, url=url)
