"""Segments' worker tasks: publishing entries and exits (the outbox), and the scheduled refresh of rules that
time alone can change."""

from __future__ import annotations

import datetime as dt

from django.conf import settings

from tsunagu.core import clock
from tsunagu.core.worker import worker_task
from tsunagu.segments.selectors import workspaces_due_refresh
from tsunagu.segments.services import segment_changes_publish, segments_refresh


@worker_task("segments.timeline")
def publish_changes(worker_id: str) -> int:
    # After a crash between commit and the on_commit publish, or for changes of a refresh.
    return segment_changes_publish(limit=1000)


@worker_task("segments.refresh")
def refresh_due(worker_id: str) -> int:
    every = dt.timedelta(seconds=float(settings.TSUNAGU_SEGMENT_REFRESH))
    done = 0
    for workspace in workspaces_due_refresh(before=clock.now() - every):
        done += len(segments_refresh(workspace=workspace))
    return done
