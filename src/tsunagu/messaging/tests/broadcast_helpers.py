"""Shared helpers of the broadcast tests: customers made in bulk, a worker pass that runs every stage."""

from __future__ import annotations

from typing import Any

from tsunagu.customers.models import Customer, Identity
from tsunagu.messaging.broadcast_expand import broadcasts_run_due
from tsunagu.messaging.delivery import Runner
from tsunagu.messaging.failover import sends_run_due
from tsunagu.messaging.models import Broadcast


def people(workspace: Any, n: int, *, line: list[str] | None = None, prefix: str = "u") -> list[Customer]:
    """``n`` customers with user ids ``u0``…, emails ``c0@example.jp``… and, if given, LINE user ids."""
    rows = Customer.objects.bulk_create(
        [Customer(workspace=workspace, user_id=f"{prefix}{i}", email=f"c{i}@example.jp", display_name=f"客{i}")
         for i in range(n)]
    )
    idents = [Identity(workspace=workspace, customer=c, type="user_id", value=c.user_id) for c in rows]
    idents += [Identity(workspace=workspace, customer=c, type="email", value=c.email) for c in rows]
    if line:
        idents += [Identity(workspace=workspace, customer=c, type="external:line_user_id", value=u)
                   for c, u in zip(rows, line, strict=True)]
    Identity.objects.bulk_create(idents)
    return list(rows)


def worker_pass(worker_id: str = "w1", *, deliver: bool = True) -> int:
    """One pass of the worker's messaging stages, in the worker's order."""
    done = broadcasts_run_due(worker_id=worker_id)
    done += sends_run_due(worker_id=worker_id)
    if deliver:
        runner = Runner(worker_id=worker_id)
        try:
            done += runner.run_due()
        finally:
            runner.close()
    return done


def run_until_idle(worker_id: str = "w1", *, passes: int = 200, deliver: bool = True) -> None:
    """Worker passes until one does nothing, then one more finishing check (as after ``RECHECK``)."""
    for _ in range(passes):
        if not worker_pass(worker_id, deliver=deliver):
            Broadcast.objects.filter(status=Broadcast.Status.RUNNING, locked_by="").update(lease_until=None)
            broadcasts_run_due(worker_id=worker_id)
            return
    raise AssertionError(f"still busy after {passes} passes")
