"""Reads of segments: evaluating rules (counts, members, one customer), segments and their members, and the
names a rule may use (for warnings and the console's builder)."""

from __future__ import annotations

import datetime as dt
import difflib
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from tsunagu.core.errors import NotFound
from tsunagu.core.models import Workspace
from tsunagu.customers.models import Customer
from tsunagu.events.models import Event
from tsunagu.segments.facts import CustomerFacts
from tsunagu.segments.models import ComputedTrait, ComputedValue, Membership, MembershipChange, Segment
from tsunagu.segments.rule import Parsed, context, evaluate, rule_parse
from tsunagu.segments.rule.sql import Catalog, compile_rule
from tsunagu.segments.rule.values import Context


def catalog(workspace: Workspace) -> Catalog:
    """The workspace's computed traits and segments by key, and the tables a compiled rule reads."""
    return Catalog(
        workspace_id=workspace.pk,
        computed={k: (pk, agg) for k, pk, agg in ComputedTrait.objects.filter(workspace=workspace)
                  .values_list("key", "pk", "aggregate")},
        segments=dict(Segment.objects.filter(workspace=workspace).values_list("key", "pk")),
        tables={
            "customer": Customer._meta.db_table,
            "event": Event._meta.db_table,
            "membership": Membership._meta.db_table,
            "computed_value": ComputedValue._meta.db_table,
        },
    )


def _parsed(rule: Any) -> Parsed:
    return rule if isinstance(rule, Parsed) else rule_parse(rule)


def rule_member_ids(*, workspace: Workspace, rule: Any, restrict: list[int] | None = None,
                    ctx: Context | None = None, cat: Catalog | None = None) -> list[int]:
    """The ids of the workspace's customers matching ``rule`` (among ``restrict`` when given), by SQL."""
    parsed = _parsed(rule)
    sql, params = compile_rule(parsed.node, catalog=cat or catalog(workspace), ctx=ctx or context(workspace),
                               vendor=connection.vendor, restrict=restrict)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def rule_count(*, workspace: Workspace, rule: Any, ctx: Context | None = None) -> int:
    """How many of the workspace's customers match ``rule`` (raises ValidationError for a bad rule)."""
    parsed = _parsed(rule)
    sql, params = compile_rule(parsed.node, catalog=catalog(workspace), ctx=ctx or context(workspace),
                               vendor=connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({sql}) matched", params)  # noqa: S608
        return int(cursor.fetchone()[0])


def rule_sample(*, workspace: Workspace, rule: Any, limit: int = 10) -> list[Customer]:
    """Up to ``limit`` of the customers matching ``rule``, the newest profiles first (the console builder's
    sample while editing: the rule's SQL with a LIMIT, not every member's id)."""
    parsed = _parsed(rule)
    sql, params = compile_rule(parsed.node, catalog=catalog(workspace), ctx=context(workspace),
                               vendor=connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT matched.id FROM ({sql}) matched ORDER BY matched.id DESC LIMIT %s",  # noqa: S608
                       [*params, max(0, min(int(limit), 100))])
        ids = [row[0] for row in cursor.fetchall()]
    found = Customer.objects.in_bulk(ids)
    return [found[i] for i in ids if i in found]


def live_customer(*, workspace: Workspace, customer_id: int) -> Customer:
    """The customer, or the profile it was merged into; NotFound outside the workspace."""
    customer = Customer.objects.filter(workspace=workspace, pk=customer_id).first()
    seen = 0
    while customer is not None and customer.merged_into_id is not None and seen < 50:
        customer = Customer.objects.filter(workspace=workspace, pk=customer.merged_into_id).first()
        seen += 1
    if customer is None:
        raise NotFound(f"no customer {customer_id}", field="customer_id")
    return customer


def rule_match(*, workspace: Workspace, rule: Any, customer_id: int, ctx: Context | None = None) -> bool:
    """Whether one customer matches ``rule``, evaluated in Python (real time, one customer)."""
    parsed = _parsed(rule)
    customer = live_customer(workspace=workspace, customer_id=customer_id)
    return evaluate(parsed.node, CustomerFacts(customer, catalog(workspace)), ctx or context(workspace))


def rule_holds(*, parsed: Parsed, customer: Customer, cat: Catalog, ctx: Context,
               wrap: Any = None) -> bool:
    """Whether a loaded (live) customer matches a parsed rule, in Python. ``wrap(facts)`` may add facts of the
    caller's own around the customer's (a journey's branch reads the run's context); ``cat`` is read once by
    the caller for many customers (``catalog``)."""
    facts = CustomerFacts(customer, cat)
    return evaluate(parsed.node, wrap(facts) if wrap is not None else facts, ctx)


# -- names a rule may use ------------------------------------------------------------------------------------

def event_names(*, workspace: Workspace, limit: int = 500) -> list[str]:
    """The workspace's distinct track event names, walked along ``event_name_time_idx`` one name at a time
    (a seek per name, not a scan of every event)."""
    table = Event._meta.db_table
    sql = (
        f"WITH RECURSIVE names(n) AS ("  # noqa: S608
        f"SELECT (SELECT min(event) FROM {table} WHERE workspace_id = %s AND event > '') "
        f"UNION ALL SELECT (SELECT min(event) FROM {table} WHERE workspace_id = %s AND event > n) "
        f"FROM names WHERE n IS NOT NULL) SELECT n FROM names WHERE n IS NOT NULL LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [workspace.pk, workspace.pk, limit])
        return [row[0] for row in cursor.fetchall()]


def trait_names(*, workspace: Workspace, sample: int = 2000) -> list[str]:
    """Trait names seen on the workspace's most recently active profiles (a sample, not every profile)."""
    names: set[str] = set()
    for traits in (Customer.objects.filter(workspace=workspace, merged_into__isnull=True)
                   .order_by("-last_seen").values_list("traits", flat=True)[:sample]):
        if isinstance(traits, dict):
            names.update(traits)
    return sorted(names)


def rule_warnings(*, workspace: Workspace, parsed: Parsed) -> list[dict[str, Any]]:
    """Names the rule uses that the workspace does not know, each with the closest known names."""
    out: list[dict[str, Any]] = []

    def check(kind: str, names: set[str], known: list[str]) -> None:
        for name in sorted(names):
            if name not in known:
                out.append({
                    "kind": kind, "name": name, "message": f"unknown {kind} “{name}”",
                    "suggestions": difflib.get_close_matches(name, known, n=3, cutoff=0.5),
                })

    deps = parsed.deps
    if deps.traits:
        check("trait", deps.traits, trait_names(workspace=workspace))
    if deps.events:
        track = {n for t, n in deps.events if t == "track"}
        check("event", track, event_names(workspace=workspace))
    if deps.computed:
        check("computed trait", deps.computed,
              list(ComputedTrait.objects.filter(workspace=workspace).values_list("key", flat=True)))
    if deps.segments:
        check("segment", deps.segments, list(Segment.objects.filter(workspace=workspace).values_list("key", flat=True)))
    return out


# -- segments ----------------------------------------------------------------------------------------------

def segment_list(*, workspace: Workspace) -> QuerySet[Segment]:
    return Segment.objects.filter(workspace=workspace).order_by("name", "key")


def segment_get(*, workspace: Workspace, key: str) -> Segment:
    segment = Segment.objects.filter(workspace=workspace, key=key).first()
    if segment is None:
        raise NotFound(f"no segment “{key}”", field="key")
    return segment


def segment_members(*, segment: Segment, after: int = 0, limit: int = 100) -> list[tuple[int, dt.datetime]]:
    """(customer id, entered at), by customer id, after ``after`` (keyset pagination)."""
    return list(Membership.objects.filter(segment=segment, customer_id__gt=after).order_by("customer_id")
                .values_list("customer_id", "entered_at")[:limit])


def segment_member_ids(*, segment: Segment) -> list[int]:
    return list(Membership.objects.filter(segment=segment).values_list("customer_id", flat=True))


def customer_segments(*, customer: Customer) -> list[tuple[Segment, dt.datetime]]:
    """The segments a customer is in now, with when they entered."""
    rows = Membership.objects.filter(customer=customer).select_related("segment").order_by("-entered_at")
    return [(m.segment, m.entered_at) for m in rows]


def segment_history(*, segment: Segment | None = None, customer: Customer | None = None,
                    limit: int = 100) -> QuerySet[MembershipChange]:
    """Entries and exits, newest first, of a segment or of a customer."""
    qs = MembershipChange.objects.select_related("segment")
    if segment is not None:
        qs = qs.filter(segment=segment)
    if customer is not None:
        qs = qs.filter(customer=customer)
    return qs.order_by("-at", "-id")[:limit]


def workspaces_due_refresh(*, before: dt.datetime) -> list[Workspace]:
    """Workspaces with a segment that time alone can change, or a windowed computed trait, last refreshed
    before ``before``."""
    from django.db.models import Q

    stale = Q(refreshed_at__isnull=True) | Q(refreshed_at__lt=before)
    ids = set(Segment.objects.filter(stale, time_dependent=True).values_list("workspace_id", flat=True))
    ids |= set(ComputedTrait.objects.filter(stale).filter(Q(within__isnull=False) | Q(aggregate="rfm"))
               .values_list("workspace_id", flat=True))
    return list(Workspace.objects.filter(pk__in=ids))


def customer_computed(*, customer: Customer) -> list[tuple[ComputedTrait, Any]]:
    """A customer's computed-trait values (the 360° page), every declared trait of the workspace in key
    order; a trait without a row is ``None`` (0 for count, sum and distinct_count, as rules read it)."""
    values = dict(ComputedValue.objects.filter(customer=customer).values_list("trait_id", "value"))
    zero = {"count", "sum", "distinct_count"}
    return [(t, values.get(t.pk, 0 if t.aggregate in zero else None))
            for t in ComputedTrait.objects.filter(workspace_id=customer.workspace_id).order_by("key")]
