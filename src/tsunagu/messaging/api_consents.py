"""REST endpoints of consent: a customer's decisions per channel and topic, with their history."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router

from tsunagu.core.errors import NotFound
from tsunagu.customers.selectors import customer_get
from tsunagu.messaging.consent import consent_history, consent_set
from tsunagu.messaging.schemas import ConsentIn, ConsentList

router = Router(tags=["consent"])


def _customer(request: HttpRequest, customer_id: int) -> Any:
    customer = customer_get(workspace=request.auth, customer_id=customer_id)  # type: ignore[attr-defined]
    if customer is None:
        raise NotFound(f"customer {customer_id} not found", field="customer_id")
    return customer


def _decision(row: Any) -> dict[str, Any]:
    return {
        "channel": row.channel or "all",
        "topic": row.topic,
        "status": row.status,
        "source": row.source,
        "text": row.text,
        "actor": row.actor,
        "at": row.at,
    }


def _consents(customer: Any) -> dict[str, Any]:
    items: dict[tuple[str, str], dict[str, Any]] = {}
    for row in consent_history(customer=customer):  # newest first: the first of a key is in force
        key = (row.channel, row.topic)
        if key not in items:
            items[key] = {**_decision(row), "history": []}
        items[key]["history"].append(_decision(row))
    return {"items": [items[k] for k in sorted(items, key=lambda k: (k[1], k[0]))]}


@router.get("/customers/{customer_id}/consents", response=ConsentList,
            summary="A customer's consents in force, each with its history")
def get_consents(request: HttpRequest, customer_id: int) -> dict[str, Any]:
    return _consents(_customer(request, customer_id))


@router.put("/customers/{customer_id}/consents", response=ConsentList,
            summary="Record a consent decision (granted or revoked) with its source and wording")
def put_consent(request: HttpRequest, customer_id: int, payload: ConsentIn) -> dict[str, Any]:
    customer = _customer(request, customer_id)
    consent_set(
        customer=customer,
        channel=payload.channel,
        topic=payload.topic,
        status=payload.status,
        source=payload.source,
        text=payload.text,
        actor=request.api_key,  # type: ignore[attr-defined]
    )
    return _consents(customer)
