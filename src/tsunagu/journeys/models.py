"""Journeys: a definition with a draft and immutable published versions; runs, one per (version, customer,
entry key), each a row of work with a due time and the event it awaits (``Run.awaits``, indexed with its
customer: the applier's index, so an applied event finds its runs without a scan); every step of every run
(``RunHistory``); evaluations
other systems attach to a run; and the outboxes a step leaves behind (trait updates, follow-up tasks)."""

from __future__ import annotations

from django.db import models

from tsunagu.core import clock
from tsunagu.core.models import Workspace
from tsunagu.customers.models import Customer


class Journey(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"  # never published
        ACTIVE = "active"
        PAUSED = "paused"  # no step of any run runs; entries are still recorded (they wait)

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="journeys")
    key = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    # The draft being edited: validated as a whole on every save, copied into a version when published.
    draft = models.JSONField(null=True, blank=True)
    current_version = models.PositiveIntegerField(default=0)  # 0: never published
    created_at = models.DateTimeField(default=clock.now)
    updated_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "key"], name="journey_key_unique")]

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"


class JourneyVersion(models.Model):
    """A published definition. Never changed once written: runs point at it for their whole life."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    published_at = models.DateTimeField(default=clock.now)
    published_by = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["journey", "number"], name="journey_version_unique")]


class Run(models.Model):
    """One customer's way through one version of a journey.

    A run is work when ``status`` is active or waiting and ``due_at`` has come: a worker claims it with a
    lease (``locked_by``, ``lease_until``) and executes steps until the run waits or ends. ``step`` is the id
    of the step the run is at; ``step_state`` is blank when that step is still to be executed, ``waiting``
    when it was executed and the run waits on it (a timer, an event, a webhook's answer)."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        WAITING = "waiting"
        PAUSED = "paused"
        COMPLETED = "completed"
        EXITED = "exited"
        CANCELLED = "cancelled"
        FAILED = "failed"

    ENDED = frozenset({Status.COMPLETED, Status.EXITED, Status.CANCELLED, Status.FAILED})

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+", db_index=False)
    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="runs", db_index=False)
    version = models.ForeignKey(JourneyVersion, on_delete=models.PROTECT, related_name="runs", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    entry_key = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # The status a paused run goes back to on resume (active or waiting).
    resume_status = models.CharField(max_length=16, blank=True)
    step = models.CharField(max_length=100)
    step_state = models.CharField(max_length=16, blank=True)
    visits = models.PositiveIntegerField(default=0)  # steps executed so far: part of each side effect's key
    due_at = models.DateTimeField(null=True, blank=True)
    # True while the run or its journey is paused: the claim's index leaves held runs out, so a paused
    # journey's backlog of due runs costs the claim nothing.
    held = models.BooleanField(default=False)
    locked_by = models.CharField(max_length=100, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    # The customer's path: the entry (event or data) and every step's outcome (docs/journeys.md, "Context").
    context = models.JSONField(default=dict)
    entered_at = models.DateTimeField(default=clock.now)
    updated_at = models.DateTimeField(default=clock.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    # The goal: converted when ``goal_at`` is set; looked for until ``goal_until`` (entry + within).
    goal_at = models.DateTimeField(null=True, blank=True)
    goal_until = models.DateTimeField(null=True, blank=True)
    # The event the run awaits on its step (a ``wait_for_event`` it waits on; the step's ``where`` is in its
    # version), blank otherwise. A column of the run, not a table of its own: waking a run rewrites its row
    # anyway, and a table's row and index of their own were 2.8 more pages written per woken run (of 8.9,
    # measured on the million runs of ``python -m bench journeys``; docs/performance.md).
    awaits = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "customer", "entry_key"], name="journey_run_unique"),
        ]
        indexes = [
            # The executor's claim: due runs in time order. Ended and paused runs have no due time.
            models.Index(fields=["due_at"], name="journey_run_due_idx",
                         condition=models.Q(due_at__isnull=False, held=False)),
            # A customer's runs (entries, goals, the console's per-customer path).
            models.Index(fields=["customer", "journey"], name="journey_run_customer_idx"),
            # Monitoring: one journey's runs by status and entry time.
            models.Index(fields=["journey", "status", "entered_at"], name="journey_run_monitor_idx"),
            # The applier: a customer's runs awaiting an event of a name — the runs that await anything only,
            # so a million ended runs cost it nothing.
            models.Index(fields=["customer", "awaits"], name="journey_run_await_idx",
                         condition=models.Q(awaits__gt="")),
        ]


class RunHistory(models.Model):
    """One thing that happened to a run: a step executed (with its outcome), a wait begun or ended, a pause,
    a resume, a migration, the goal reached — with who did it (``actor``: blank for the engine)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="history", db_index=False)
    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="+", db_index=False)
    step = models.CharField(max_length=100, blank=True)
    action = models.CharField(max_length=32)
    at = models.DateTimeField(default=clock.now)
    outcome = models.JSONField(null=True, blank=True)
    actor = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["run", "id"], name="journey_history_run_idx"),
            models.Index(fields=["journey", "action", "step"], name="journey_history_stats_idx"),
        ]


class Evaluation(models.Model):
    """A score from another system (a CSAT from the contact centre, an NPS answer) attached to a run, and to
    the step the run was at then unless the caller names one."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="evaluations")
    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="+", db_index=False)
    step = models.CharField(max_length=100, blank=True)
    name = models.CharField(max_length=100)
    value = models.JSONField()
    at = models.DateTimeField(default=clock.now)
    actor = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [models.Index(fields=["journey", "name"], name="journey_evaluation_idx")]


class RunSend(models.Model):
    """Which run's step a send was made by: its delivery outcomes come back as events and update the run's
    context (``journey.steps.<id>.outcome``, the channel that worked last)."""

    send_id = models.BigIntegerField(primary_key=True)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    step = models.CharField(max_length=100)


class TraitUpdate(models.Model):
    """An ``update_traits`` step's outbox row: appended to the ingest log as an ``identify`` after commit (the
    log is another store), then marked. A crash between the two appends again; the applier drops the copy by
    its messageId."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    message_id = models.CharField(max_length=100)
    traits = models.JSONField()
    created_at = models.DateTimeField(default=clock.now)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["id"], name="journey_traits_pending_idx",
                                condition=models.Q(published_at__isnull=True))]


class Task(models.Model):
    """A follow-up task for the team, made by a ``notify`` step (``{"task": …}``), shown in the console."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(Run, on_delete=models.SET_NULL, null=True, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.SET_NULL, null=True, related_name="+")
    title = models.CharField(max_length=300)
    assignee = models.CharField(max_length=150, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now)


class ScheduleTick(models.Model):
    """The last cron tick a scheduled entry handled, per version: the worker enters the segment's members once
    per tick, whichever worker gets there first."""

    version = models.OneToOneField(JourneyVersion, on_delete=models.CASCADE, primary_key=True, related_name="+")
    last_tick = models.DateTimeField()


class JourneySecret(models.Model):
    """The journey's Standard Webhooks signing secret (encrypted at rest, ``messaging.secrets``), made on the
    first webhook a step sends and rotated by the API."""

    journey = models.OneToOneField(Journey, on_delete=models.CASCADE, primary_key=True, related_name="+")
    secret = models.TextField()
    rotated_at = models.DateTimeField(null=True, blank=True)
