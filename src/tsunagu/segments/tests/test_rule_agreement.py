"""The rule language's evaluators agree: for generated rules over generated profiles and event histories,
the customers the SQL query returns (SQLite or PostgreSQL, whichever the suite runs on) are exactly those the
Python evaluator accepts one by one — and the applier's partial evaluation (``rule.partial`` over a chunk's
facts, some of the events as the chunk's) gives the same answer wherever it decides one."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tsunagu.core.errors import ValidationError
from tsunagu.customers.models import Customer
from tsunagu.events.apply import AppliedEvent
from tsunagu.events.models import Event
from tsunagu.segments import sql as segments_sql
from tsunagu.segments.facts import ChunkFacts
from tsunagu.segments.models import ComputedTrait, ComputedValue, Membership, Segment
from tsunagu.segments.rule import Context, rule_parse
from tsunagu.segments.rule.partial import rule_decider
from tsunagu.segments.selectors import catalog, rule_match, rule_member_ids

NOW = dt.datetime(2026, 6, 15, 3, 0, tzinfo=dt.UTC)
CTX = Context(now=NOW, tz="Asia/Tokyo")

STRINGS = ["gold", "ｇｏｌｄ", "Gold", "silver", "東京", "とうきょう", "トウキョウ", "ﾄｳｷｮｳ", "", "go",
           "2026-05-01", "2026-06-14T10:00:00+09:00", "2026-06-10 08:30", "2026-02-30", "2026-06-01Z"]
NUMBERS = [0, 1, 2, 2.5, -3, 10, 100]
SCALARS = st.sampled_from(STRINGS) | st.sampled_from(NUMBERS) | st.booleans()
JSON_VALUES = st.one_of(
    st.none(), SCALARS, st.lists(SCALARS, max_size=3),
    st.fixed_dictionaries({}, optional={"city": st.sampled_from(STRINGS), "zip": st.sampled_from(NUMBERS)}),
)
TRAITS = ["tier", "age", "tags", "address", "birthday"]
PATHS = ["tier", "age", "tags", "address.city", "birthday", "address", "address.zip", "missing"]
EVENTS = ["Order Completed", "Product Viewed"]
OPS = ["eq", "neq", "in", "not_in", "contains", "not_contains", "starts_with", "gt", "gte", "lt", "lte",
       "between", "exists", "not_exists", "eq_folded"]
DATES = st.sampled_from(["2026-05-01", "2026-06-14T10:00:00+09:00", "2026-06-10 08:30", "2026-06-15T00:00Z"]) | \
    st.builds(lambda n: {"days_ago": n}, st.integers(-2, 60))


def _operand(op: str) -> st.SearchStrategy[Any]:
    if op in ("exists", "not_exists"):
        return st.just(None)
    if op in ("in", "not_in"):
        return st.lists(SCALARS, min_size=1, max_size=3)
    if op in ("starts_with", "eq_folded"):
        return st.sampled_from(STRINGS)
    if op == "between":
        numbers = st.tuples(st.sampled_from(NUMBERS), st.sampled_from(NUMBERS)).map(sorted)
        return numbers | st.tuples(DATES, DATES).map(list)
    if op in ("gt", "gte", "lt", "lte"):
        return st.sampled_from(NUMBERS) | DATES
    return SCALARS


@st.composite
def cmp(draw: Any, key: str, name: Any) -> dict[str, Any]:
    op = draw(st.sampled_from(OPS))
    node = {key: name, "op": op}
    value = draw(_operand(op))
    if op not in ("exists", "not_exists"):
        node["value"] = value
    return node


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    trait = st.sampled_from(PATHS).flatmap(lambda p: cmp("trait", p))
    field = st.sampled_from(["$email", "$event_count", "$first_seen", "$last_seen", "$channels"]).flatmap(
        lambda p: cmp("trait", p))
    computed = st.sampled_from(["orders", "favourite", "rfm.recency", "undeclared"]).flatmap(
        lambda k: cmp("computed", k))
    where = st.lists(st.sampled_from(["revenue", "category", "tags"]).flatmap(lambda p: cmp("property", p)), max_size=2)
    count = st.fixed_dictionaries({"op": st.sampled_from(["eq", "gte", "lt", "lte", "neq", "gt"]),
                                   "value": st.integers(0, 3)}) | \
        st.fixed_dictionaries({"op": st.just("between"), "value": st.tuples(st.integers(0, 3), st.integers(0, 3))
                               .map(lambda pair: sorted(pair))})
    within = st.none() | st.sampled_from([{"days": 7}, {"days": 90}, {"since": "2026-06-01"},
                                          {"between": ["2026-01-01", "2026-06-10T00:00:00Z"]}])

    @st.composite
    def event(draw: Any) -> dict[str, Any]:
        node: dict[str, Any] = {"event": draw(st.sampled_from(EVENTS))}
        w = draw(where)
        if w:
            node["where"] = w
        if draw(st.booleans()):
            node["count"] = draw(count)
        win = draw(within)
        if win is not None:
            node["within"] = win
        if draw(st.booleans()):
            node["channel"] = draw(st.sampled_from(["web", "line"]))
        return node

    page = st.just({"event": "Home", "type": "page", "count": {"op": "gte", "value": 1}})
    segment = st.sampled_from([{"segment": "vip"}, {"segment": "nobody"}])
    return st.one_of(trait, field, computed, event(), page, segment)


RULES = st.recursive(
    _leaf(),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda c: {"all": c}),
        st.lists(children, min_size=1, max_size=3).map(lambda c: {"any": c}),
        children.map(lambda c: {"not": c}),
    ),
    max_leaves=6,
)

EVENT_ROWS = st.lists(
    st.fixed_dictionaries({
        "event": st.sampled_from(EVENTS + ["Home"]),
        "channel": st.sampled_from(["web", "line"]),
        "days_ago": st.floats(0, 200),
        "properties": st.fixed_dictionaries({}, optional={
            "revenue": st.sampled_from(NUMBERS) | st.sampled_from(["5000", "gold"]),
            "category": st.sampled_from(STRINGS),
            "tags": st.lists(SCALARS, max_size=2)}),
    }),
    max_size=6,
)
PROFILES = st.lists(
    st.fixed_dictionaries({
        "traits": st.dictionaries(st.sampled_from(TRAITS), JSON_VALUES, min_size=2, max_size=5),
        "email": st.sampled_from(["", "hanako@example.jp", "ＴＡＲＯ@example.jp"]),
        "event_count": st.integers(0, 5),
        "first_seen_days": st.none() | st.floats(0, 400),
        "channels": st.dictionaries(st.sampled_from(["web", "line", "email"]), st.just(1), max_size=2),
        "events": EVENT_ROWS,
        "orders": st.none() | st.sampled_from(NUMBERS),
        "favourite": st.none() | st.sampled_from(STRINGS),
        "rfm": st.none() | st.fixed_dictionaries({"recency": st.integers(1, 5)}),
        "vip": st.booleans(),
    }),
    min_size=3, max_size=6,
)


def _world(workspace: Any, source: Any, profiles: list[dict[str, Any]]) -> list[int]:
    orders = ComputedTrait.objects.create(workspace=workspace, key="orders", aggregate="count", event="Order Completed")
    fav = ComputedTrait.objects.create(workspace=workspace, key="favourite", aggregate="most_frequent",
                                       event="Order Completed", property="category")
    rfm = ComputedTrait.objects.create(workspace=workspace, key="rfm", aggregate="rfm", event="Order Completed")
    vip = Segment.objects.create(workspace=workspace, key="vip", name="VIP", rule={"segment": "vip"})
    ids = []
    for i, p in enumerate(profiles):
        first = NOW - dt.timedelta(days=p["first_seen_days"]) if p["first_seen_days"] is not None else None
        c = Customer.objects.create(workspace=workspace, traits=p["traits"], email=p["email"],
                                    event_count=p["event_count"], first_seen=first, last_seen=first,
                                    channels=p["channels"])
        ids.append(c.pk)
        for j, e in enumerate(p["events"]):
            page = e["event"] == "Home"
            Event.objects.create(
                workspace=workspace, source=source, message_id=f"m{i}-{j}", type="page" if page else "track",
                event="" if page else e["event"], name="Home" if page else "", customer=c, channel=e["channel"],
                timestamp=NOW - dt.timedelta(days=e["days_ago"]), received_at=NOW, properties=e["properties"])
        for trait, value in ((orders, p["orders"]), (fav, p["favourite"]), (rfm, p["rfm"])):
            if value is not None:
                num = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
                ComputedValue.objects.create(workspace=workspace, trait=trait, customer=c, value=value, num=num)
        if p["vip"]:
            Membership.objects.create(workspace=workspace, segment=vip, customer=c)
    # A merged-away profile is in no answer.
    gone = Customer.objects.create(workspace=workspace, traits={"tier": "gold"})
    Customer.objects.filter(pk=gone.pk).update(merged_into_id=ids[0])
    return ids


class _Rollback(Exception):
    pass


@pytest.mark.django_db(transaction=False)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(rule=RULES, profiles=PROFILES, stride=st.sampled_from([1, 2, 3]))
def test_sql_and_python_agree(
    workspace: Any, source: Any, rule: dict[str, Any], profiles: list[dict[str, Any]], stride: int
) -> None:
    try:
        parsed = rule_parse(rule)
    except ValidationError:
        assume(False)
        return
    try:
        with transaction.atomic():
            ids = _world(workspace, source, profiles)
            cat = catalog(workspace)
            by_sql = sorted(rule_member_ids(workspace=workspace, rule=parsed, ctx=CTX, cat=cat))
            by_python = sorted(i for i in ids if rule_match(workspace=workspace, rule=parsed, customer_id=i, ctx=CTX))
            restricted = sorted(rule_member_ids(workspace=workspace, rule=parsed, ctx=CTX, cat=cat, restrict=ids[:2]))
            assert by_sql == by_python, (rule, profiles)
            assert restricted == [i for i in by_python if i in ids[:2]], (rule, profiles)
            verdicts = _partial(workspace, parsed, ids, cat, stride)
            wrong = {i: v for i, v in verdicts.items() if v is not None and v != (i in by_python)}
            assert not wrong, (rule, profiles, wrong)
            raise _Rollback
    except _Rollback:
        pass


def _partial(workspace: Any, parsed: Any, ids: list[int], cat: Any, stride: int) -> dict[int, bool | None]:
    """The partial evaluation's verdict per customer, with every ``stride``-th event (by id) as the chunk's:
    all of them (the lower bound is the count), or some (it is below)."""
    chunk = [AppliedEvent(message_id=e.message_id, type=e.type, event=e.event, name=e.name, customer_id=e.customer_id,
                          source_id=e.source_id, channel=e.channel, timestamp=e.timestamp, received_at=e.received_at,
                          properties=e.properties, traits={})
             for e in Event.objects.filter(workspace=workspace).order_by("pk")[::stride]]
    facts = ChunkFacts(catalog=cat, current=segments_sql.members_read(customer_ids=ids), events=chunk)
    facts.prepare(ids)
    decide = rule_decider(parsed.node, CTX)
    return {i: decide(view) if (view := facts.view(i)) is not None else False for i in ids}
