"""REST endpoints of customer profiles (thin: selectors do the work)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from pydantic import field_validator

from tsunagu.core.errors import NotFound
from tsunagu.core.pagination import page_by_id_desc
from tsunagu.customers.models import Customer
from tsunagu.customers.schemas import CustomerOut, CustomerPage, MergePage
from tsunagu.customers.selectors import (
    customer_get,
    customer_identities,
    customer_list,
    customer_merges,
    profile_extras,
)

router = Router(tags=["customers"])


class CustomerFilters(Schema):
    email: str | None = Field(None, max_length=1000)
    phone: str | None = Field(None, max_length=1000)
    user_id: str | None = Field(None, max_length=1000)
    anonymous_id: str | None = Field(None, max_length=1000)
    q: str | None = Field(None, max_length=1000)
    limit: int = 50
    cursor: str | None = Field(None, max_length=1000)

    @field_validator("email", "phone", "user_id", "anonymous_id", "q", "cursor")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        # PostgreSQL refuses U+0000 in a query parameter; no stored value can hold one.
        if value is not None and "\x00" in value:
            raise ValueError("must not contain the NUL character (U+0000)")
        return value


def customer_or_404(request: HttpRequest, customer_id: int) -> Customer:
    customer = customer_get(workspace=request.auth, customer_id=customer_id)  # type: ignore[attr-defined]
    if customer is None:
        raise NotFound(f"customer {customer_id} not found", field="customer_id")
    return customer


def customer_detail(customer: Customer) -> dict[str, Any]:
    return {
        **{f: getattr(customer, f) for f in (
            "display_name", "family_name", "given_name", "family_kana", "given_kana",
            "email", "phone", "user_id", "first_seen", "last_seen", "event_count", "traits",
        )},
        "id": customer.pk,
        "identities": list(customer_identities(customer=customer)),
        "channels": {
            name: dt.datetime.fromtimestamp(ms / 1000.0, tz=dt.UTC) for name, ms in sorted(customer.channels.items())
        },
        "merged_ids": sorted(customer.merged_from.values_list("pk", flat=True)),
        "computed": {},
        **profile_extras(customer),
    }


@router.get("/customers", response=CustomerPage, summary="List and search customers")
def list_customers(request: HttpRequest, filters: Query[CustomerFilters]) -> dict[str, Any]:
    qs = customer_list(
        workspace=request.auth,  # type: ignore[attr-defined]
        email=filters.email,
        phone=filters.phone,
        user_id=filters.user_id,
        anonymous_id=filters.anonymous_id,
        q=filters.q,
    )
    items, next_cursor = page_by_id_desc(qs, limit=filters.limit, cursor=filters.cursor)
    return {"items": items, "next": next_cursor}


@router.get("/customers/{customer_id}", response=CustomerOut, summary="One customer with traits and identities")
def get_customer(request: HttpRequest, customer_id: int) -> dict[str, Any]:
    return customer_detail(customer_or_404(request, customer_id))


@router.get("/customers/{customer_id}/merges", response=MergePage, summary="Merges into or out of a customer")
def list_merges(request: HttpRequest, customer_id: int, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
    customer = customer_or_404(request, customer_id)
    items, next_cursor = page_by_id_desc(customer_merges(customer=customer), limit=limit, cursor=cursor)
    return {"items": items, "next": next_cursor}
