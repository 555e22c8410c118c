"""The identities an event names, normalised, in the priority identity resolution uses."""

from __future__ import annotations

from tsunagu.customers.models import IdentityType
from tsunagu.customers.normalize import normalize_email, normalize_id, normalize_phone
from tsunagu.events.validation import ParsedEvent


def identity_keys(event: ParsedEvent) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    keys: list[tuple[str, str]] = []
    lookup_only: list[tuple[str, str]] = []
    user_id = normalize_id(event.user_id)
    if user_id:
        keys.append((IdentityType.USER_ID, user_id))
    trait_sources = [event.traits] if event.type == "identify" else []
    ctx_traits = event.context.get("traits")
    if isinstance(ctx_traits, dict):
        trait_sources.append(ctx_traits)
    for traits in trait_sources:
        email = normalize_email(traits.get("email"))
        if email:
            keys.append((IdentityType.EMAIL, email))
        phone = normalize_phone(traits.get("phone"))
        if phone:
            keys.append((IdentityType.PHONE, phone))
    external = event.context.get("externalIds")
    if isinstance(external, list):
        for item in external[:20]:
            if not isinstance(item, dict) or not isinstance(item.get("type"), str):
                continue
            kind = item["type"].strip().lower()
            if kind == "email":
                value = normalize_email(item.get("id"))
            elif kind == "phone":
                value = normalize_phone(item.get("id"))
            elif kind in ("user_id", "userid"):
                kind, value = IdentityType.USER_ID, normalize_id(item.get("id"))
            else:
                value = normalize_id(item.get("id"))
                kind = IdentityType.EXTERNAL_PREFIX + kind[:50]
            if value:
                keys.append((kind, value))
    anonymous_id = normalize_id(event.anonymous_id)
    if anonymous_id:
        keys.append((IdentityType.ANONYMOUS_ID, anonymous_id))
    if event.type == "alias":
        previous = normalize_id(event.previous_id)
        if previous:
            keys.append((IdentityType.ANONYMOUS_ID, previous))
            lookup_only.append((IdentityType.USER_ID, previous))
    unique = list(dict.fromkeys(keys))
    unique.sort(key=lambda k: IdentityType.priority(k[0]))
    return unique, lookup_only


