"""Scheduled entries (``{"schedule": {"cron": "0 9 * * *", "segment": KEY}}``): at each tick of the cron
expression, read in the workspace's time zone, the segment's members at that moment enter (under the
re-entry policy). A tick is taken by one worker only: the conditional UPDATE of ``ScheduleTick`` from the
previous tick to this one is the claim. Ticks missed while no worker ran are not caught up one by one: the
latest one is run once."""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo

from cronsim import CronSim
from django.db import transaction
from django.db.models import F

from tsunagu.core.errors import NotFound
from tsunagu.journeys.entries import Candidate, runs_enter
from tsunagu.journeys.models import Journey, JourneyVersion, ScheduleTick
from tsunagu.journeys.plans import iso, plan_of

log = logging.getLogger(__name__)
LOOK_BACK = dt.timedelta(days=8)  # the latest tick is searched for within this window before now


def latest_tick(cron: str, *, after: dt.datetime, now: dt.datetime, tz: str) -> dt.datetime | None:
    """The last tick of ``cron`` in (after, now], or None."""
    zone = zoneinfo.ZoneInfo(tz)
    start = max(after, now - LOOK_BACK).astimezone(zone).replace(tzinfo=None)
    found = None
    for tick in CronSim(cron, start):
        aware = tick.replace(tzinfo=zone).astimezone(dt.UTC)
        if aware > now:
            break
        if aware > after:
            found = aware
    return found


def schedules_run(*, now: dt.datetime) -> int:
    """Run the due ticks of every scheduled entry; return how many customers entered."""
    from tsunagu.segments.selectors import segment_get, segment_member_ids

    entered = 0
    versions = (JourneyVersion.objects.filter(journey__status__in=[Journey.Status.ACTIVE, Journey.Status.PAUSED],
                                              number=F("journey__current_version"))
                .filter(definition__entry__has_key="schedule").select_related("journey__workspace"))
    for version in versions:
        plan = plan_of(version)
        schedule = plan.entry["schedule"]
        row = ScheduleTick.objects.filter(version=version).first()
        if row is None:
            continue
        journey = version.journey
        tick = latest_tick(schedule["cron"], after=row.last_tick, now=now, tz=journey.workspace.timezone)
        if tick is None:
            continue
        with transaction.atomic():
            if not ScheduleTick.objects.filter(version=version, last_tick=row.last_tick).update(last_tick=tick):
                continue  # another worker took this tick
            try:
                segment = segment_get(workspace=journey.workspace, key=schedule["segment"])
            except NotFound:
                log.warning("journey %s: scheduled entry's segment %s no longer exists", journey.key,
                            schedule["segment"])
                continue
            members = segment_member_ids(segment=segment)
            candidates = [Candidate(customer_id=c, entry={"schedule": {"tick": iso(tick)}}, at=now) for c in members]
            entered += len(runs_enter(journey=journey, version=version, plan=plan, candidates=candidates, now=now))
    return entered
