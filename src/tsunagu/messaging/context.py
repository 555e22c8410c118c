"""What a template sees of a customer, and where each channel reaches them."""

from __future__ import annotations

from typing import Any

from tsunagu.customers.models import Customer
from tsunagu.segments.computed_selectors import computed_lazy

LINE_IDENTITY = "external:line_user_id"
_PROFILE_FIELDS = (
    "email",
    "phone",
    "user_id",
    "family_name",
    "given_name",
    "family_kana",
    "given_kana",
    "display_name",
)


def customer_context(customer: Customer | None) -> dict[str, Any]:
    """``customer`` for templates: the profile fields, ``traits``, ``identities`` ({type: [values]}),
    ``computed`` (computed traits by key, read only if a template looks), and each trait also at the top level
    where no profile field has its name (``{{ customer.first_name }}``)."""
    if customer is None:
        return {"id": None, "traits": {}, "identities": {}}
    identities: dict[str, list[str]] = {}
    # Through the relation, so that a worker's prefetch of its batch's identities is used.
    for ident in customer.identities.all():
        identities.setdefault(ident.type, []).append(ident.value)
    traits = dict(customer.traits or {})
    out: dict[str, Any] = {k: v for k, v in traits.items() if isinstance(k, str)}
    out.update({name: getattr(customer, name) for name in _PROFILE_FIELDS})
    out.update({"id": customer.pk, "traits": traits, "identities": identities})
    out["computed"] = computed_lazy({customer.pk: customer.workspace_id})[customer.pk]
    return out


def customer_locale(customer: Customer | None) -> str:
    traits = (customer.traits or {}) if customer is not None else {}
    locale = traits.get("locale") or traits.get("language")
    return str(locale).replace("_", "-").lower() if isinstance(locale, str) else ""


def customer_address(customer: Customer, channel_type: str, context: dict[str, Any]) -> str:
    """How ``channel_type`` reaches the customer ("" when it cannot). Webhooks go to their channel's URL and
    push to a subscription: those are found by the caller."""
    if channel_type == "email":
        return customer.email
    if channel_type == "sms":
        return customer.phone
    if channel_type == "line":
        values = context.get("identities", {}).get(LINE_IDENTITY) or []
        return values[0] if values else ""
    if channel_type == "in_app":
        return str(customer.pk)
    return ""
