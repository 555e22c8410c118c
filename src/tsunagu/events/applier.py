"""The applier: reads the ingest log of a workspace in order and applies it — dedup, identity resolution,
profiles, the event store and timeline, then the reactions — in transactions of thousands of events.

Exactly once: the applier's position in the log (``ApplierState.position``) is updated in the transaction
that applied the records (on PostgreSQL the records are also deleted in it), so a crash at any point
re-applies nothing and loses nothing.

One applier per workspace at a time: a worker takes a workspace's *lease* (a conditional UPDATE of its
``ApplierState`` row) before applying it, and every chunk re-checks, under the row lock of the same row,
that the lease is still its own. A worker that dies keeps its workspaces only until the lease runs out;
then another worker takes them over. Workers give a workspace back after a time slice, so several workers
share the workspaces between them.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import F, Q

from tsunagu.core import clock
from tsunagu.core.errors import TsunaguError
from tsunagu.core.models import Workspace
from tsunagu.events import codec, metrics
from tsunagu.events.apply import Prepared, apply_prepared, prepare
from tsunagu.events.dedup import dedup_trim
from tsunagu.events.log import get_log
from tsunagu.events.models import ApplierState, Source
from tsunagu.events.reactions import Applied, dispatch

log = logging.getLogger(__name__)


def _lease() -> dt.timedelta:
    return dt.timedelta(seconds=float(settings.TSUNAGU_APPLIER_LEASE))


def _state_row(workspace_id: int) -> None:
    if not ApplierState.objects.filter(pk=workspace_id).exists():
        try:
            with transaction.atomic():
                ApplierState.objects.create(workspace_id=workspace_id)
        except IntegrityError:
            pass  # another applier created it meanwhile


def applier_claim(*, workspace_id: int, owner: str) -> bool:
    """Take (or renew) the lease on a workspace for ``owner``: True when it is now ``owner``'s. One
    conditional UPDATE, atomic on both backends; a lease held by another owner is taken only once expired."""
    _state_row(workspace_id)
    now = clock.now()
    free = Q(owner="") | Q(owner=owner) | Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    return bool(ApplierState.objects.filter(Q(pk=workspace_id) & free).update(owner=owner, lease_until=now + _lease()))


def applier_release(*, workspace_id: int, owner: str) -> None:
    """Give a workspace's lease back so that any worker may take it at once."""
    ApplierState.objects.filter(pk=workspace_id, owner=owner).update(owner="", lease_until=None)


@dataclass(slots=True)
class ChunkOutcome:
    records: int = 0
    stored: int = 0
    duplicates: int = 0
    events: int = 0  # events read from the log (stored, duplicates and those of deleted sources)
    limit: int = 0  # the most events the chunk could take


def _next_limit(limit: int, chunk: ChunkOutcome) -> int:
    """Bigger transactions while behind: a chunk that came back full doubles the next one, up to
    ``TSUNAGU_APPLY_CHUNK_MAX``; one that did not (the applier caught up) goes back to
    ``TSUNAGU_APPLY_CHUNK``. The commit and the per-chunk queries are a fixed cost per transaction, so
    a long backlog is applied faster in big ones, while a caught-up applier keeps small ones."""
    base = int(settings.TSUNAGU_APPLY_CHUNK)
    top = max(base, int(getattr(settings, "TSUNAGU_APPLY_CHUNK_MAX", base)))
    # "Full": more than half the limit (a log record holds up to a batch of events, so a chunk that had
    # more pending can stop short of the limit by one record).
    if chunk.events * 2 > limit:
        return min(top, limit * 2)
    return base


class LeaseLost(TsunaguError):
    http_status = 409
    exit_code = 1


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a chunk is applied. A chunk allocates hundreds of thousands of
    small objects (decoded events, rows, profiles), and each collection they trigger walks the young ones:
    ~25% of the applier's CPU with chunks alternating GC on and off (docs/performance.md). Reference
    counting still frees nearly all of it at once; what is cyclic waits for the next collection, after the
    chunk. Process-wide: in ``tsunagu up`` the web threads' cycles wait for the end of the chunk too."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def events_apply_chunk(*, workspace_id: int, owner: str, max_events: int | None = None) -> ChunkOutcome:
    """Apply the next records of a workspace's log in one transaction, with the reactions; advance the
    position in it. Returns what was applied (``records == 0``: nothing was pending).

    Raises ``LeaseLost`` (nothing applied) when ``owner`` no longer holds the lease; any other error
    (a reaction's, the database's) rolls the whole chunk back and propagates — the records stay pending."""
    with _gc_paused():
        return _apply_chunk(workspace_id=workspace_id, owner=owner, max_events=max_events)


def _apply_chunk(*, workspace_id: int, owner: str, max_events: int | None) -> ChunkOutcome:
    limit = max_events or int(settings.TSUNAGU_APPLY_CHUNK)
    ingest_log = get_log()
    outcome = ChunkOutcome()
    with transaction.atomic():
        # The row lock serialises appliers of one workspace on PostgreSQL (SQLite's write lock, taken by
        # BEGIN IMMEDIATE, already does): a worker whose lease expired while it was applying finds here
        # that the lease has gone and applies nothing.
        state = ApplierState.objects.select_for_update().filter(pk=workspace_id).first()
        if state is None or state.owner != owner:
            raise LeaseLost(f"the applier lease of workspace {workspace_id} is not held by {owner}")
        records = ingest_log.read(workspace_id=workspace_id, after=state.position, max_events=limit)
        if not records:
            return outcome
        workspace = Workspace.objects.get(pk=workspace_id)
        sources = {s.pk: s for s in Source.objects.filter(pk__in={r.source_id for r in records})}
        prepared: list[Prepared] = []
        for record in records:
            source = sources.get(record.source_id)
            if source is None:
                # The source was deleted after the events were acknowledged; its events go with it.
                log.warning("dropping %d events of deleted source %d", record.count, record.source_id)
                continue
            source.workspace = workspace
            prepared.extend(prepare(source, codec.decode(record.body), record.received_at))
        result = apply_prepared(workspace, prepared)
        # Keys no record still pending can repeat: bounded, so the table keeps about one window of keys.
        dedup_trim(
            workspace_id=workspace_id,
            oldest_pending=min(r.received_at for r in records),
            limit=2 * len(prepared) + 1000,
        )
        dispatch(Applied(workspace, result.events, result.customer_ids, result.merges))
        ingest_log.consumed(workspace_id=workspace_id, ids=[r.id for r in records])
        now = clock.now()
        ApplierState.objects.filter(pk=workspace_id).update(
            position=records[-1].id,
            applied=F("applied") + result.stored,
            duplicates=F("duplicates") + result.duplicates,
            lease_until=now + _lease(),
            last_applied_at=now,
            last_error="",
        )
        outcome = ChunkOutcome(len(records), result.stored, result.duplicates, sum(r.count for r in records), limit)
    position = records[-1].id
    # After commit only (at once outside a transaction): the position must be durable before the rows go.
    transaction.on_commit(lambda: ingest_log.trim(workspace_id=workspace_id, position=position))
    metrics.applied(stored=outcome.stored, duplicates=outcome.duplicates, oldest=records[0].received_at)
    return outcome


def _inline_owner() -> str:
    return f"inline:{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def events_apply_pending(
    *, workspace_id: int, timeout: float = 60.0, max_events: int | None = None
) -> ChunkOutcome:
    """Apply everything pending in a workspace now, in this thread (bulk loaders, the CLI, tests): the same
    chunks and reactions as the worker's applier (``max_events`` per chunk; 1 applies each log record in a
    transaction of its own). Waits up to ``timeout`` seconds for a lease held by a worker to be given back;
    raises ``LeaseLost`` if it is not."""
    owner = _inline_owner()
    deadline = time.monotonic() + timeout
    while not applier_claim(workspace_id=workspace_id, owner=owner):
        if time.monotonic() > deadline:
            raise LeaseLost(f"workspace {workspace_id} is being applied by another worker")
        time.sleep(0.05)
    total = ChunkOutcome()
    limit = max_events or int(settings.TSUNAGU_APPLY_CHUNK)
    try:
        while True:
            chunk = events_apply_chunk(workspace_id=workspace_id, owner=owner, max_events=limit)
            if not chunk.records:
                return total
            if max_events is None:
                limit = _next_limit(limit, chunk)
            total.records += chunk.records
            total.stored += chunk.stored
            total.duplicates += chunk.duplicates
    finally:
        applier_release(workspace_id=workspace_id, owner=owner)


def _record_error(workspace_id: int, error: BaseException) -> None:
    try:
        ApplierState.objects.filter(pk=workspace_id).update(last_error=f"{type(error).__name__}: {error}"[:4000])
    except Exception:  # noqa: BLE001 - the database itself may be what failed
        log.debug("could not record the applier error", exc_info=True)


class Applier:
    """The loop ``tsunagu worker`` runs in a thread: find workspaces with pending records, take their
    lease, apply them for a time slice, give them back."""

    def __init__(self, *, owner: str | None = None, idle_sleep: float = 0.02, slice_seconds: float = 1.0) -> None:
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:applier"
        self.idle_sleep = idle_sleep
        self.slice_seconds = slice_seconds
        self._retry_at: dict[int, tuple[float, float]] = {}  # workspace -> (monotonic time, backoff)
        self._limit: dict[int, int] = {}  # workspace -> events in its next chunk (``_next_limit``)

    def run_once(self) -> int:
        """One pass over the workspaces with pending records; returns the records applied."""
        done = 0
        workspaces = get_log().workspaces()
        random.shuffle(workspaces)  # several workers start on different workspaces
        now = time.monotonic()
        for workspace_id in workspaces:
            retry = self._retry_at.get(workspace_id)
            if retry is not None and retry[0] > now:
                continue
            if not applier_claim(workspace_id=workspace_id, owner=self.owner):
                continue
            try:
                done += self._apply_slice(workspace_id)
                self._retry_at.pop(workspace_id, None)
            except LeaseLost:
                continue
            except Exception as exc:  # noqa: BLE001 - one workspace's failure must not stop the others
                backoff = min(30.0, (retry[1] * 2) if retry else 0.5)
                self._retry_at[workspace_id] = (time.monotonic() + backoff, backoff)
                log.exception("applying workspace %s failed; retrying in %.1f s", workspace_id, backoff)
                _record_error(workspace_id, exc)
            finally:
                applier_release(workspace_id=workspace_id, owner=self.owner)
        return done

    def _apply_slice(self, workspace_id: int) -> int:
        deadline = time.monotonic() + self.slice_seconds
        done = 0
        limit = self._limit.get(workspace_id, int(settings.TSUNAGU_APPLY_CHUNK))
        while time.monotonic() < deadline:
            chunk = events_apply_chunk(workspace_id=workspace_id, owner=self.owner, max_events=limit)
            if not chunk.records:
                break
            limit = self._limit[workspace_id] = _next_limit(limit, chunk)
            done += chunk.records
        return done

    def run(self, stop: threading.Event) -> None:
        log.info("applier %s started", self.owner)
        try:
            while not stop.is_set():
                try:
                    done = self.run_once()
                except Exception:  # noqa: BLE001 - a transient database error must not end the loop
                    log.exception("applier loop error")
                    close_old_connections()
                    done = 0
                if not done:
                    stop.wait(self.idle_sleep)
        finally:
            connection.close()
            log.info("applier %s stopped", self.owner)


def start_applier(stop: threading.Event) -> threading.Thread:
    """Run the applier in a daemon thread of this process until ``stop`` is set."""
    thread = threading.Thread(target=Applier().run, args=(stop,), name="tsunagu-applier", daemon=True)
    thread.start()
    return thread
