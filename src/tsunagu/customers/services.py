"""Writes of customer profiles: identity resolution for a batch of events, merges, trait updates.

Ingestion resolves a whole batch at once: one query finds every profile the batch's identities point at,
resolution then runs in memory event by event (in batch order), and one flush writes new profiles,
identities, merges and profile updates — all inside the caller's transaction, so an event and the profile
change it causes commit together or not at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.db import connection
from django.db.models.base import ModelState

from tsunagu.core import clock
from tsunagu.core.dburl import datetime_param, json_param, json_placeholder
from tsunagu.core.models import Workspace
from tsunagu.customers.models import Customer, Identity, IdentityType, Merge, MergeReason
from tsunagu.customers.normalize import fold_text, normalize_email, normalize_phone

Key = tuple[str, str]

# Trait names SDKs and Japanese forms use for the name parts we keep as columns.
_NAME_TRAITS = {
    "family_name": ("lastName", "last_name", "familyName", "family_name", "sei"),
    "given_name": ("firstName", "first_name", "givenName", "given_name", "mei"),
    "family_kana": ("lastNameKana", "last_name_kana", "familyNameKana", "family_name_kana", "sei_kana"),
    "given_kana": ("firstNameKana", "first_name_kana", "givenNameKana", "given_name_kana", "mei_kana"),
}
_SAVE_FIELDS = [
    "user_id",
    "email",
    "phone",
    "family_name",
    "given_name",
    "family_kana",
    "given_kana",
    "display_name",
    "search_text",
    "traits",
    "trait_times",
    "channels",
    "first_seen",
    "last_seen",
    "event_count",
    "updated_at",
]
_JSON_FIELDS = frozenset({"traits", "trait_times", "channels"})
# What every event changes on its profile, when it brings no trait and no new identity.
_ACTIVITY_FIELDS = ["channels", "first_seen", "last_seen", "event_count", "updated_at"]


@dataclass(slots=True)
class Touch:
    """What one event says about its customer. ``keys`` are normalised identities in priority order;
    ``lookup_only`` keys find a profile but are never added to one (alias's previousId as a userId)."""

    keys: list[Key]
    timestamp: dt.datetime
    channel: str
    message_id: str
    event_type: str
    traits: dict[str, Any] | None = None
    lookup_only: list[Key] = field(default_factory=list)
    # False for tsunagu's own notes about the customer (a segment entered): they resolve the profile but
    # are not its activity (first/last seen, channels, event_count).
    activity: bool = True


@dataclass(slots=True)
class PendingMerge:
    into: Customer
    other: Customer
    into_key: Key  # the identity of ``into`` the event carried
    other_key: Key  # and the one of ``other``: together, why they merged
    message_id: str
    event_type: str
    identities: list[Key]
    traits_before: dict[str, Any]


def _ms(ts: dt.datetime) -> float:
    return ts.timestamp() * 1000.0


class ProfileBatch:
    """Resolves the profiles of one batch of events. Use ``load`` with every key of the batch, ``resolve``
    once per event, then ``flush`` once."""

    def __init__(self, *, workspace: Workspace) -> None:
        self.workspace = workspace
        self.now = clock.now()
        self._owner: dict[Key, Customer] = {}
        self._keys_of: dict[int, dict[str, set[str]]] = {}
        self._redirect: dict[int, Customer] = {}
        self._touched: dict[int, Customer] = {}
        self._new: list[Customer] = []
        self._new_keys: list[tuple[Key, Customer, str, dt.datetime]] = []
        self._merges: list[PendingMerge] = []
        # Profiles whose traits or identities changed: only these need their searchable columns rebuilt
        # and rewritten; the rest get the activity columns only.
        self._dirty: set[int] = set()

    # -- loading ---------------------------------------------------------------------------------
    def load(self, keys: Iterable[Key]) -> None:
        """Fetch the profiles that own any of ``keys``, with all their identities (for the limits).

        Raw SQL, three queries a batch: the ORM's model and converter machinery cost ~150 µs a profile."""
        wanted = set(keys)
        values = list({v for _, v in wanted})
        if not values:
            return
        quote = connection.ops.quote_name
        identities = quote(Identity._meta.db_table)
        owner_ids: set[int] = set()
        with connection.cursor() as cursor:
            for chunk in _chunks(values):
                cursor.execute(
                    f"SELECT type, value, customer_id FROM {identities} "  # noqa: S608
                    f"WHERE workspace_id = %s AND value IN ({_marks(chunk)})",
                    [self.workspace.pk, *chunk],
                )
                for type_, value, cid in cursor.fetchall():
                    if (type_, value) in wanted:
                        owner_ids.add(cid)
            if not owner_ids:
                return
            ids = list(owner_ids)
            customers: dict[int, Customer] = {}
            for chunk in _chunks(ids):
                cursor.execute(f"{_customer_select()} WHERE id IN ({_marks(chunk)})", chunk)  # noqa: S608
                for row in cursor.fetchall():
                    customer = _customer_from_row(row)
                    customers[customer.pk] = customer
            for chunk in _chunks(ids):
                cursor.execute(
                    f"SELECT type, value, customer_id FROM {identities} WHERE customer_id IN ({_marks(chunk)})",  # noqa: S608
                    chunk,
                )
                for type_, value, cid in cursor.fetchall():
                    customer = customers[cid]
                    self._owner[(type_, value)] = customer
                    self._keys_of.setdefault(id(customer), {}).setdefault(type_, set()).add(value)

    # -- resolution ------------------------------------------------------------------------------
    def final(self, customer: Customer) -> Customer:
        """The profile a (possibly merged-away) profile now lives in."""
        while id(customer) in self._redirect:
            customer = self._redirect[id(customer)]
        return customer

    def resolve(self, touch: Touch) -> Customer:
        """Find or create the profile of one event, merging profiles the event ties together."""
        found: list[tuple[Customer, Key]] = []
        seen: set[int] = set()
        for key in touch.keys + touch.lookup_only:
            owner = self._owner.get(key)
            if owner is None:
                continue
            owner = self.final(owner)
            if id(owner) not in seen:
                seen.add(id(owner))
                found.append((owner, key))
        if found and self._outranked(found[0], touch):
            found = []
        if not found:
            customer = Customer(workspace=self.workspace, created_at=self.now, traits={}, trait_times={}, channels={})
            self._new.append(customer)
            self._keys_of[id(customer)] = {}
        else:
            customer, key = found[0]
            for other, other_key in found[1:]:
                other = self.final(other)
                customer = self.final(customer)
                if other is customer or not self._can_merge(customer, other):
                    continue
                customer = self._merge(customer, key, other, other_key, touch)
        for key in touch.keys:
            self._attach(customer, key, touch)
        self._apply(customer, touch)
        if touch.traits:
            self._dirty.add(id(customer))
        self._touched[id(customer)] = customer
        return customer

    def _outranked(self, match: tuple[Customer, Key], touch: Touch) -> bool:
        """True when the event carries a new identity that outranks the one it matched by and that the
        matched profile cannot take (its limit is full): a second userId on a shared device's anonymousId
        means another person, so the event starts a profile of its own instead of joining."""
        customer, matched_key = self.final(match[0]), match[1]
        rank = IdentityType.priority(matched_key[0])
        for key in touch.keys:
            if IdentityType.priority(key[0]) >= rank:
                break
            if key in self._owner:
                continue
            limit = IdentityType.limit(key[0])
            held = self._keys_of.get(id(customer), {}).get(key[0], ())
            if limit is not None and len(held) >= limit:
                return True
        return False

    def _attach(self, customer: Customer, key: Key, touch: Touch) -> None:
        if key in self._owner:
            return  # already this profile's, or another's that the guard kept apart
        type_, value = key
        held = self._keys_of.setdefault(id(customer), {}).setdefault(type_, set())
        limit = IdentityType.limit(type_)
        if limit is not None and len(held) >= limit:
            return
        held.add(value)
        self._dirty.add(id(customer))
        self._owner[key] = customer
        self._new_keys.append((key, customer, touch.message_id, touch.timestamp))

    def _can_merge(self, a: Customer, b: Customer) -> bool:
        keys_a, keys_b = self._keys_of.get(id(a), {}), self._keys_of.get(id(b), {})
        for type_ in keys_a.keys() & keys_b.keys():
            limit = IdentityType.limit(type_)
            if limit is not None and len(keys_a[type_] | keys_b[type_]) > limit:
                return False
        return True

    def _merge(self, a: Customer, key_a: Key, b: Customer, key_b: Key, touch: Touch) -> Customer:
        # A profile already in the database outlives one created in this batch, so ids stay stable.
        into, other = (b, a) if a.pk is None and b.pk is not None else (a, b)
        into_key, other_key = (key_b, key_a) if into is b else (key_a, key_b)
        moved = [(t, v) for t, vals in self._keys_of.get(id(other), {}).items() for v in sorted(vals)]
        if into.pk is not None and other.pk is not None:
            self._merges.append(
                PendingMerge(
                    into=into,
                    other=other,
                    into_key=into_key,
                    other_key=other_key,
                    message_id=touch.message_id,
                    event_type=touch.event_type,
                    identities=moved,
                    traits_before={"into": dict(into.traits), "other": dict(other.traits)},
                )
            )
        into_keys = self._keys_of.setdefault(id(into), {})
        for type_, value in moved:
            into_keys.setdefault(type_, set()).add(value)
            self._owner[(type_, value)] = into
        for i, (key, owner, mid, ts) in enumerate(self._new_keys):
            if owner is other:
                self._new_keys[i] = (key, into, mid, ts)
        self._combine(into, other)
        self._dirty.add(id(into))
        self._redirect[id(other)] = into
        self._touched.pop(id(other), None)
        return into

    @staticmethod
    def _combine(into: Customer, other: Customer) -> None:
        for name, value in other.traits.items():
            when = other.trait_times.get(name, 0)
            if name not in into.traits or when >= into.trait_times.get(name, 0):
                into.traits[name] = value
                into.trait_times[name] = when
        for channel, when in other.channels.items():
            into.channels[channel] = max(when, into.channels.get(channel, 0))
        if other.first_seen and (not into.first_seen or other.first_seen < into.first_seen):
            into.first_seen = other.first_seen
        if other.last_seen and (not into.last_seen or other.last_seen > into.last_seen):
            into.last_seen = other.last_seen
        into.event_count += other.event_count

    @staticmethod
    def _apply(customer: Customer, touch: Touch) -> None:
        ts = touch.timestamp
        when = _ms(ts)
        if touch.traits:
            for name, value in touch.traits.items():
                if when >= customer.trait_times.get(name, 0):
                    customer.traits[name] = value
                    customer.trait_times[name] = when
        if not touch.activity:
            return
        if customer.first_seen is None or ts < customer.first_seen:
            customer.first_seen = ts
        if customer.last_seen is None or ts > customer.last_seen:
            customer.last_seen = ts
        if when > customer.channels.get(touch.channel, 0):
            customer.channels[touch.channel] = when
        customer.event_count += 1

    # -- writing ---------------------------------------------------------------------------------
    def flush(self) -> list[Merge]:
        """Write everything resolved so far; returns the merges recorded (the caller moves their events)."""
        keys_by_customer: dict[int, dict[str, set[str]]] = self._keys_of
        new = [c for c in self._new if id(c) not in self._redirect]
        for customer in new:
            _denormalize(customer, keys_by_customer.get(id(customer), {}))
            customer.updated_at = self.now
        if new:
            _insert_profiles(new)

        merges: list[Merge] = []
        for pending in self._merges:
            Identity.objects.filter(customer_id=pending.other.pk).update(customer_id=pending.into.pk)
            Customer.objects.filter(pk=pending.other.pk).update(merged_into=pending.into.pk, updated_at=self.now)
            merges.append(
                Merge.objects.create(
                    workspace=self.workspace,
                    into_id=pending.into.pk,
                    other_id=pending.other.pk,
                    reason_code=MergeReason.EVENT,
                    into_identity=list(pending.into_key),
                    other_identity=list(pending.other_key),
                    message_id=pending.message_id,
                    event_type=pending.event_type,
                    identities=[list(k) for k in pending.identities],
                    traits_before=pending.traits_before,
                    created_at=self.now,
                )
            )

        if self._new_keys:
            vendor = connection.vendor
            workspace_id = self.workspace.pk
            rows = [
                (workspace_id, self.final(owner).pk, key[0], key[1], datetime_param(ts, vendor), mid)
                for key, owner, mid, ts in self._new_keys
            ]
            # On PostgreSQL two requests may race to add the same identity; the unique constraint keeps
            # the first and this one is skipped rather than failing the whole batch.
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {connection.ops.quote_name(Identity._meta.db_table)} "  # noqa: S608
                    "(workspace_id, customer_id, type, value, first_seen, source_message_id) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    rows,
                )

        new_ids = {id(c) for c in new}
        existing = [c for c in self._touched.values() if c.pk is not None and id(c) not in new_ids]
        changed = [c for c in existing if id(c) in self._dirty]
        active = [c for c in existing if id(c) not in self._dirty]
        for customer in changed:
            _denormalize(customer, keys_by_customer.get(id(customer), {}))
        for customer in existing:
            customer.updated_at = self.now
        if changed:
            _update_profiles(changed, _SAVE_FIELDS)
        if active:
            _update_profiles(active, _ACTIVITY_FIELDS)
        return merges

    def customer_id_of(self, customer: Customer) -> int | None:
        """The database id an event resolved to ``customer`` must carry (valid after ``flush``)."""
        return self.final(customer).pk


_CHUNK = 900  # under SQLite's old 999-variable limit


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def _marks(items: list[Any]) -> str:
    return ", ".join(["%s"] * len(items))


# What resolution reads and writes back: the searchable columns are rebuilt from traits and identities
# (``_denormalize``) before they are written, so they need not be read. Any other field of these instances
# would be fetched from the database on first access (Django's deferred fields) — nothing here does that.
_LOADED_FIELDS = ["id", "workspace", "traits", "trait_times", "channels", "first_seen", "last_seen", "event_count"]


def _customer_select() -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(_COLUMNS[name]) for name in _LOADED_FIELDS)
    return f"SELECT {columns} FROM {quote(Customer._meta.db_table)}"  # noqa: S608


def _from_db_json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _from_db_datetime(value: Any) -> dt.datetime | None:
    # SQLite hands back naive UTC (Django's converter parses the text); PostgreSQL an aware datetime.
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _customer_from_row(row: tuple[Any, ...]) -> Customer:
    """A Customer as ``from_db`` would build it, without ``Model.__init__`` (its per-field setattr and
    signals were a third of the cost of loading a batch's profiles); Customer has no post_init receivers."""
    values = list(row)
    for index in _CUSTOMER_JSON_INDEXES:
        values[index] = _from_db_json(values[index])
    for index in _CUSTOMER_DATETIME_INDEXES:
        values[index] = _from_db_datetime(values[index])
    customer = Customer.__new__(Customer)
    customer.__dict__.update(zip(_CUSTOMER_ATTNAMES, values, strict=True))
    state = ModelState()
    state.adding = False
    state.db = connection.alias
    customer._state = state
    return customer


_FIELDS = {f.name: f for f in Customer._meta.concrete_fields}
_COLUMNS: dict[str, str] = {name: str(f.column) for name, f in _FIELDS.items()}
_CUSTOMER_ATTNAMES = [_FIELDS[name].attname for name in _LOADED_FIELDS]
_CUSTOMER_JSON_INDEXES = [
    i for i, name in enumerate(_LOADED_FIELDS) if _FIELDS[name].get_internal_type() == "JSONField"
]
_CUSTOMER_DATETIME_INDEXES = [
    i for i, name in enumerate(_LOADED_FIELDS) if _FIELDS[name].get_internal_type() == "DateTimeField"
]


def _update_profiles(customers: list[Customer], fields: list[str]) -> None:
    """Write ``fields`` of existing profiles: one parameterised UPDATE run with executemany.
    (``bulk_update`` builds a CASE WHEN per field and row — its SQL compilation alone cost more than the
    rest of ingestion put together.)"""
    vendor = connection.vendor
    quote = connection.ops.quote_name
    json_ph = json_placeholder(vendor)
    sets = ", ".join(f"{quote(_COLUMNS[name])} = {json_ph if name in _JSON_FIELDS else '%s'}" for name in fields)
    sql = f"UPDATE {quote(Customer._meta.db_table)} SET {sets} WHERE id = %s"  # noqa: S608
    if fields is _ACTIVITY_FIELDS:  # the common case, spelled out: it runs for nearly every event
        rows = [
            (
                json_param(c.channels),
                datetime_param(c.first_seen, vendor),
                datetime_param(c.last_seen, vendor),
                c.event_count,
                datetime_param(c.updated_at, vendor),
                c.pk,
            )
            for c in customers
        ]
    else:
        getters = [_PARAM[name] for name in fields]
        rows = [(*(get(c, vendor) for get in getters), c.pk) for c in customers]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


_INSERT_FIELDS = [f.name for f in Customer._meta.concrete_fields if f.name != "id"]


def _insert_profiles(customers: list[Customer]) -> None:
    """Insert new profiles and set their ids: multi-row INSERT … RETURNING id (SQLite >= 3.35 and PostgreSQL
    return the rows in insertion order — what Django's own bulk_create relies on for both)."""
    vendor = connection.vendor
    quote = connection.ops.quote_name
    json_ph = json_placeholder(vendor)
    row_marks = "(" + ", ".join(json_ph if n in _JSON_FIELDS else "%s" for n in _INSERT_FIELDS) + ")"
    getters = [_PARAM[name] for name in _INSERT_FIELDS]
    columns = ", ".join(quote(_COLUMNS[name]) for name in _INSERT_FIELDS)
    # 20 columns a row: 40 rows stay under SQLite's older 999-variable limit.
    for start in range(0, len(customers), 40):
        chunk = customers[start : start + 40]
        params = [get(c, vendor) for c in chunk for get in getters]
        sql = (
            f"INSERT INTO {quote(Customer._meta.db_table)} ({columns}) "  # noqa: S608
            f"VALUES {', '.join([row_marks] * len(chunk))} RETURNING id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            ids = [row[0] for row in cursor.fetchall()]
        for customer, pk in zip(chunk, ids, strict=True):
            customer.pk = pk
            customer._state.adding = False
            customer._state.db = connection.alias


def _param_getter(name: str) -> Any:
    if name in _JSON_FIELDS:
        return lambda c, vendor: json_param(getattr(c, name))
    if name in _DATETIME_FIELDS:
        return lambda c, vendor: datetime_param(getattr(c, name), vendor)
    attname = _FIELDS[name].attname  # workspace -> workspace_id
    return lambda c, vendor: getattr(c, attname)


_DATETIME_FIELDS = frozenset({"first_seen", "last_seen", "updated_at", "created_at"})
_PARAM = {name: _param_getter(name) for name in _COLUMNS}


def _first_trait(traits: dict[str, Any], names: tuple[str, ...]) -> str:
    for name in names:
        value = traits.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()[:100]
    return ""


def _denormalize(customer: Customer, keys: dict[str, set[str]]) -> None:
    """Refresh the searchable columns from identities and traits."""
    traits = customer.traits
    customer.user_id = min(keys.get(IdentityType.USER_ID, ()), default="")
    emails = keys.get(IdentityType.EMAIL, set())
    phones = keys.get(IdentityType.PHONE, set())
    trait_email = normalize_email(traits.get("email"))
    trait_phone = normalize_phone(traits.get("phone"))
    customer.email = trait_email if trait_email in emails else min(emails, default="")
    customer.phone = trait_phone if trait_phone in phones else min(phones, default="")
    for column, names in _NAME_TRAITS.items():
        setattr(customer, column, _first_trait(traits, names))
    name = traits.get("name") if isinstance(traits.get("name"), str) else ""
    if not name and (customer.family_name or customer.given_name):
        name = f"{customer.family_name} {customer.given_name}".strip()
    customer.display_name = (name or "")[:200]
    parts = [
        customer.display_name,
        customer.family_name,
        customer.given_name,
        customer.family_kana,
        customer.given_kana,
        customer.family_name + customer.given_name,
        customer.family_kana + customer.given_kana,
        customer.email,
        customer.user_id,
    ]
    customer.search_text = " ".join(fold_text(p) for p in parts if p)


def merge_note_events(*, merge: Merge, events_moved: int) -> None:
    """Record on a merge how many events moved with it (set by ingestion, which owns the events)."""
    Merge.objects.filter(pk=merge.pk).update(events_moved=events_moved)
