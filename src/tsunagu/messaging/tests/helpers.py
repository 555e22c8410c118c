"""Shared helpers of messaging's tests: a known customer, in-app communications, a worker pass."""

from __future__ import annotations

from typing import Any

from tsunagu.core.permissions import SYSTEM
from tsunagu.customers.models import Customer
from tsunagu.messaging.delivery import Runner
from tsunagu.messaging.failover import sends_run_due
from tsunagu.messaging.services import communication_create
from tsunagu.messaging.timeline import delivery_events_publish, send_events_publish
from tsunagu.testing.pipeline import apply_all


def identified(send: Any, workspace: Any, *, user_id: str = "u-1", **traits: Any) -> Customer:
    """A customer made the real way: an identify event through /v1, applied."""
    status, body = send("/v1/identify", {"userId": user_id, "traits": traits})
    assert status == 200, body
    apply_all(workspace)
    return Customer.objects.get(workspace=workspace, user_id=user_id)


def inapp_communication(workspace: Any, key: str = "notice", **fields: Any) -> Any:
    variants = fields.pop("variants", None) or [
        {"channel": "in_app", "locale": "ja", "title": "こんにちは {{ customer.name }} 様", "body": "{{ data.note }}"},
        {"channel": "in_app", "locale": "en", "title": "Hello {{ customer.name }}", "body": "{{ data.note }}"},
    ]
    comm, _ = communication_create(
        workspace=workspace,
        key=key,
        name=fields.pop("name", "Notice"),
        topic=fields.pop("topic", "service"),
        variants=variants,
        actor=SYSTEM,
    )
    return comm


def work(worker_id: str = "test-worker") -> int:
    """One worker pass, as ``tsunagu worker`` runs it: advance due sends along their policies, execute due
    deliveries, then publish their events to the log. Returns the deliveries handled."""
    sends_run_due(worker_id=worker_id)
    runner = Runner(worker_id=worker_id)
    try:
        done = runner.run_due()
    finally:
        runner.close()
    sends_run_due(worker_id=worker_id)  # what the outcomes woke (a failure moves on to the next channel)
    delivery_events_publish()
    send_events_publish()
    return done


def api_call(method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    """One API request with a bearer token: (status, parsed JSON or None)."""
    import orjson
    from django.test import Client

    kwargs: dict[str, Any] = {"headers": {"Authorization": f"Bearer {token}"}}
    if body is not None:
        kwargs.update(data=orjson.dumps(body), content_type="application/json")
    response = getattr(Client(), method)(path, **kwargs)
    return response.status_code, (orjson.loads(response.content) if response.content else None)
