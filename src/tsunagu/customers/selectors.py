"""Reads of customer profiles."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db.models import Q, QuerySet

from tsunagu.core.models import Workspace
from tsunagu.customers.models import Customer, Identity, IdentityType, Merge
from tsunagu.customers.normalize import fold_text, normalize_email, normalize_id, normalize_phone

# Free text (a search box, `q`) is read up to this many characters and this many words: each word is one
# LIKE condition, and thousands of them exceed SQLite's expression depth (1000) — a 500, not a search.
MAX_QUERY_CHARS = 200
MAX_QUERY_TERMS = 10
# Longer than any stored identity (Identity.value is 255 characters): such a value cannot match.
MAX_VALUE_CHARS = 255
# An event carries at most this many of a profile's identities (externalIds); a profile may hold more.
MAX_EVENT_IDENTITIES = 20
# Ids per IN (…) list: SQLite allows 32,766 parameters, and shorter lists plan faster on both backends.
IN_CHUNK = 2000


def clean_query(q: str | None) -> str:
    """Free text as the selectors search for it: NUL characters removed (PostgreSQL refuses U+0000 in a
    parameter, and no stored text holds one), trimmed, at most MAX_QUERY_CHARS characters. Callers that
    show the query back (the console's search box) show this."""
    return (q or "").replace("\x00", "").strip()[:MAX_QUERY_CHARS].strip()


def usable_value(value: str) -> bool:
    """Whether an exact value (an identity, a key) may be compared with stored ones: one with a NUL or
    longer than any stored value matches nothing, and is not sent to the database."""
    return "\x00" not in value and len(value) <= MAX_VALUE_CHARS


def _terms(q: str) -> list[str]:
    folded = (fold_text(term) for term in q.split())
    return list(dict.fromkeys(t for t in folded if t))[:MAX_QUERY_TERMS]


def customer_get(*, workspace: Workspace, customer_id: int) -> Customer | None:
    """A live profile of this workspace. An id that was merged away leads to the profile it lives in now."""
    customer = Customer.objects.filter(workspace=workspace, pk=customer_id).first()
    hops = 0
    while customer is not None and customer.merged_into_id is not None and hops < 50:
        customer = Customer.objects.filter(workspace=workspace, pk=customer.merged_into_id).first()
        hops += 1
    return customer


def customer_find_by_identity(*, workspace: Workspace, type_: str, value: str) -> Customer | None:
    if not (usable_value(type_) and usable_value(value)):
        return None
    identity = (
        Identity.objects.select_related("customer").filter(workspace=workspace, type=type_, value=value).first()
    )
    return identity.customer if identity else None


def customer_list(
    *,
    workspace: Workspace,
    email: str | None = None,
    phone: str | None = None,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    q: str | None = None,
) -> QuerySet[Customer]:
    """Live profiles, newest id first, narrowed by identity filters (normalised as at ingestion) and by
    free text over names (kanji or kana, any width), email and userId (see ``clean_query``)."""
    qs = Customer.objects.filter(workspace=workspace, merged_into__isnull=True)
    filters: list[tuple[str, str | None]] = []
    if any(v is not None and "\x00" in v for v in (email, phone, user_id, anonymous_id)):
        return qs.none()
    if email is not None:
        filters.append((IdentityType.EMAIL, normalize_email(email)))
    if phone is not None:
        filters.append((IdentityType.PHONE, normalize_phone(phone)))
    if user_id is not None:
        filters.append((IdentityType.USER_ID, normalize_id(user_id)))
    if anonymous_id is not None:
        filters.append((IdentityType.ANONYMOUS_ID, normalize_id(anonymous_id)))
    for type_, value in filters:
        if value is None:
            return qs.none()
        qs = qs.filter(
            pk__in=Identity.objects.filter(workspace=workspace, type=type_, value=value).values("customer_id")
        )
    for term in _terms(clean_query(q)):
        qs = qs.filter(Q(search_text__contains=term))
    return qs.order_by("-pk")


def customer_identities(*, customer: Customer) -> QuerySet[Identity]:
    return customer.identities.order_by("type", "first_seen", "value")


def customer_merges(*, customer: Customer) -> QuerySet[Merge]:
    return Merge.objects.filter(Q(into=customer) | Q(other=customer)).order_by("-created_at")


def customer_count(*, workspace: Workspace) -> int:
    return Customer.objects.filter(workspace=workspace, merged_into__isnull=True).count()


def customer_search(*, workspace: Workspace, q: str) -> QuerySet[Customer]:
    """One search box: free text over names (kanji or kana, any width), email and userId, or an exact email
    or phone (normalised as at ingestion, so 090-1234-5678 finds +819012345678). Newest id first.
    ``q`` is read as ``clean_query`` reads it."""
    q = clean_query(q)
    qs = customer_list(workspace=workspace, q=q)
    phone = normalize_phone(q) if any(ch.isdigit() for ch in q) else None
    email = normalize_email(q) if "@" in q else None
    for type_, value in ((IdentityType.PHONE, phone), (IdentityType.EMAIL, email)):
        if value:
            qs = qs | Customer.objects.filter(
                workspace=workspace,
                merged_into__isnull=True,
                pk__in=Identity.objects.filter(workspace=workspace, type=type_, value=value).values("customer_id"),
            )
    return qs.order_by("-pk")


def customer_recent(*, workspace: Workspace, limit: int = 10) -> list[Customer]:
    """Live profiles most recently active, for the dashboard."""
    qs = Customer.objects.filter(workspace=workspace, merged_into__isnull=True, last_seen__isnull=False)
    return list(qs.order_by("-last_seen")[:limit])


# What apps above customers add to a profile as the API and the console show it (segments: ``computed``).
# Customers cannot import them (the layers go the other way), so they register here when Django is ready.
_PROFILE_EXTRAS: dict[str, Callable[[Customer], Any]] = {}


def profile_extra_register(name: str, fn: Callable[[Customer], Any]) -> None:
    """Show ``fn(customer)`` as ``name`` on every profile (registering a name again replaces it)."""
    _PROFILE_EXTRAS[name] = fn


def profile_extras(customer: Customer) -> dict[str, Any]:
    """{name: value} of every registered extra for this profile."""
    return {name: fn(customer) for name, fn in _PROFILE_EXTRAS.items()}


def customer_event_identity(customer: Any) -> dict[str, Any]:
    """The customer's identities as the event carries them: userId when the profile has one, else one of
    its anonymous ids, and every identity as externalIds — so the applier finds the customer (or the profile
    it was merged into). Segment requires userId or anonymousId: a profile known only by, say, an email
    address gets the stable anonymous id ``tsunagu-customer-<id>``."""
    if customer is None:
        return {}
    idents = [(i.type, i.value) for i in customer.identities.all()[:MAX_EVENT_IDENTITIES]]
    return _event_who(customer.pk, customer.user_id, idents)


def event_identities(*, customer_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """``customer_event_identity`` for many customers at once, by id, in two queries of plain tuples (no
    model instances): the outboxes that turn thousands of rows a second into events read this. A customer
    that no longer exists is absent."""
    ids = list(set(customer_ids))
    users: dict[int, str] = {}
    idents: dict[int, list[tuple[str, str]]] = {}
    for start in range(0, len(ids), IN_CHUNK):
        part = ids[start:start + IN_CHUNK]
        users.update(Customer.objects.filter(pk__in=part).values_list("pk", "user_id"))
        rows = Identity.objects.filter(customer_id__in=part).order_by("customer_id", "id")
        for customer_id, type_, value in rows.values_list("customer_id", "type", "value"):
            held = idents.setdefault(customer_id, [])
            if len(held) < MAX_EVENT_IDENTITIES:
                held.append((type_, value))
    return {pk: _event_who(pk, user_id, idents.get(pk, [])) for pk, user_id in users.items()}


def _event_who(pk: int, user_id: str | None, idents: list[tuple[str, str]]) -> dict[str, Any]:
    ids: list[dict[str, str]] = []
    anonymous = ""
    for type_, value in idents:
        if type_ == "anonymous_id":
            anonymous = anonymous or value
        elif type_ != "user_id":
            ids.append({"type": type_.removeprefix("external:"), "id": value})
    who: dict[str, Any] = {"userId": user_id} if user_id else {"anonymousId": anonymous or f"tsunagu-customer-{pk}"}
    if ids:
        who["context"] = {"externalIds": ids}
    return who
