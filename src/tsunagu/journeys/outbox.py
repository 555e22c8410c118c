"""What journey steps leave the process with, executed after the turn that recorded them committed:

- ``update_traits``: an ``identify`` appended to the ingest log (every profile change takes the one path);
- ``webhook`` (and ``notify`` with a webhook): a POST signed per Standard Webhooks, refused on private
  addresses unless the workspace allows them; a ``webhook`` step's answer goes into the run's context and
  makes the run due;
- ``notify`` with an email: a plain message to the team through the workspace's email channel.

The webhook id is the step's idempotency key (``journey-run:<run>:<step>:<visit>``): a receiver seeing an
id twice (a worker died after the POST, before recording it) knows it is the same call.
"""

from __future__ import annotations

import datetime as dt
import http.client
from typing import Any

import orjson
from django.db import connection, transaction
from standardwebhooks import Webhook

from tsunagu.core import clock
from tsunagu.core.models import Job
from tsunagu.customers.selectors import customer_event_identity, event_identities
from tsunagu.events.services import system_events_append
from tsunagu.journeys import engine
from tsunagu.journeys.models import Run, RunHistory, TraitUpdate
from tsunagu.journeys.plans import iso, plan_of
from tsunagu.journeys.secrets import webhook_secret_of
from tsunagu.messaging import netguard

SOURCE_NAME = "tsunagu journeys"
USER_AGENT = "tsunagu-journeys/1"
TIMEOUT = 10.0
MAX_RESPONSE = 16 * 1024


def trait_updates_publish(*, limit: int = 1000) -> int:
    """Append pending trait updates to the ingest log as ``identify`` events, then mark them. Not in a
    transaction (the log is its own store on SQLite); a crash between the two appends again and the applier
    drops the copy by its messageId. Returns how many were marked."""
    # Plain tuples and two identity queries for the batch (``event_identities``): building model instances
    # for rows that only become events was a quarter of the engine's turn.
    rows = list(TraitUpdate.objects.filter(published_at__isnull=True).order_by("id")
                .values_list("pk", "workspace_id", "customer_id", "message_id", "traits", "created_at")[:limit])
    if not rows:
        return 0
    who_of = event_identities(customer_ids=(r[2] for r in rows))
    payloads: dict[int, list[dict[str, Any]]] = {}
    for _pk, workspace_id, customer_id, message_id, traits, created_at in rows:
        who = dict(who_of.get(customer_id, {}))
        if not who:  # the customer was deleted since
            continue
        context = {"channel": "backoffice", **who.pop("context", {})}
        payloads.setdefault(workspace_id, []).append(
            {"type": "identify", "messageId": message_id, "timestamp": created_at.isoformat(), "traits": traits,
             "context": context, **who})
    system_events_append(name=SOURCE_NAME, payloads=payloads)
    done = TraitUpdate.objects.filter(pk__in=[r[0] for r in rows]).update(published_at=clock.now())
    return done


def _post(run: Run, url: str, body: bytes, webhook_id: str, now: dt.datetime) -> tuple[bool, dict[str, Any]]:
    """(retry, outcome) of one signed POST."""
    stamp = now.replace(microsecond=0)
    headers = {
        "Content-Type": "application/json", "User-Agent": USER_AGENT, "webhook-id": webhook_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(webhook_secret_of(run.journey)).sign(msg_id=webhook_id, timestamp=stamp,
                                                                   data=body.decode()),
    }
    try:
        response = netguard.post(url, body=body, headers=headers, allow_private=run.workspace.allow_private_webhooks,
                                 timeout=TIMEOUT, max_redirects=3, max_body=MAX_RESPONSE)
    except (netguard.AddressRefused, netguard.TooManyRedirects, ValueError) as exc:
        return False, {"outcome": "refused", "error": str(exc)}
    except (OSError, http.client.HTTPException) as exc:
        return True, {"outcome": "failed", "error": f"could not reach {url}: {exc or type(exc).__name__}"}
    text = response.body.decode("utf-8", "replace")
    try:
        answer: Any = orjson.loads(response.body) if response.body else None
    except orjson.JSONDecodeError:
        answer = text[:2000]
    outcome = {"outcome": "ok" if 200 <= response.status < 300 else "failed", "status": response.status,
               "response": answer}
    retry = response.status in (408, 429) or response.status >= 500
    return retry, outcome


def _body(run: Run, step_id: str, raw: dict[str, Any], notify: bool) -> bytes:
    view = engine.journey_view(run)
    body = {"type": "journey.notify" if notify else "journey.webhook", "journey": run.journey.key,
            "version": run.version.number, "run_id": run.pk, "step": step_id, "customer_id": run.customer_id,
            "customer": customer_event_identity(run.customer), "context": view}
    if notify:
        body["message"] = raw.get("message", "")
    else:
        body["payload"] = raw.get("payload", {})
    return orjson.dumps(body)


def webhook_job(job: Job) -> None:
    """The job of a ``webhook`` or ``notify`` step: POST, then (for a webhook step) keep the answer in the
    run's context and make the run due. A retryable failure raises (the job is retried with backoff) until
    the last attempt, which records the failure and lets the run go on."""
    payload = job.payload
    run = (Run.objects.filter(pk=payload["run_id"]).select_related("journey", "version", "workspace", "customer")
           .first())
    if run is None:
        return
    step = plan_of(run.version).steps[payload["step"]]
    notify = bool(payload.get("notify"))
    url = step.raw["webhook"] if notify else step.raw["url"]
    now = clock.now()
    retry, outcome = _post(run, url, _body(run, step.id, step.raw, notify), job.idempotency_key or "", now)
    last = job.attempts + 1 >= job.max_attempts
    if retry and not last:
        raise RuntimeError(outcome.get("error") or f"HTTP {outcome.get('status')}")
    with transaction.atomic():
        locked = Run.objects.filter(pk=run.pk)
        if connection.vendor == "postgresql":
            locked = locked.select_for_update()
        run = locked.get()
        history = RunHistory(run=run, journey_id=run.journey_id, step=step.id, at=now, outcome=outcome,
                             action="notified" if notify else "response")
        if not notify and run.step == step.id and run.step_state == engine.WAITING:
            run.context.setdefault("steps", {})[step.id] = {"at": iso(now), **outcome}
            run.due_at = now
            run.save(update_fields=["context", "due_at"])
        history.save()
    transaction.on_commit(engine.WAKE.set)
