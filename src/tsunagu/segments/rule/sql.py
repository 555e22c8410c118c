"""The rule language compiled to one SQL query over a workspace's customers (SQLite and PostgreSQL).

Every leaf is a boolean that is never NULL (a NULL would make ``{"not": …}`` lose customers: the complement
is over every customer of the workspace), and mirrors ``values.cmp_holds``: a JSON value compares only with
an operand of its own JSON type, strings after NFKC, dates as instants. On SQLite NFKC, folding and date
parsing are the very Python functions the other evaluator calls (``sqlfunctions``); on PostgreSQL they are
``normalize``, ``translate`` and ``tsunagu_instant`` (migration 0002), which the agreement tests hold to them.

Event conditions group the workspace's events of one name in the window (``event_name_time_idx``); a count
that 0 satisfies ("did not", "fewer than 3") is the complement of the customers whose count does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tsunagu.core.dburl import datetime_param
from tsunagu.segments.rule.nodes import (
    And,
    Cmp,
    Computed,
    Consent,
    DateValue,
    EventCond,
    InSegment,
    Node,
    Not,
    Or,
    Trait,
)
from tsunagu.segments.rule.pyeval import window_bounds
from tsunagu.segments.rule.values import FOLD_FROM, FOLD_TO, Context, count_holds, is_number

ZERO_DEFAULT = frozenset({"count", "sum", "distinct_count"})
# Consent lives in messaging, above segments: it registers how to ask the question in SQL and in Python.
ConsentSQL = Callable[[str, str, str], tuple[str, list[Any]]]
_consent_sql: list[ConsentSQL] = []


def consent_sql_register(fn: ConsentSQL) -> None:
    """``fn(channel, topic, vendor) -> (sql, params)``: a boolean over the customer alias ``c``."""
    _consent_sql[:] = [fn]


@dataclass(frozen=True)
class Catalog:
    """What a compiled rule refers to by key in the workspace: computed traits (key -> (id, aggregate))
    and segments (key -> id)."""

    workspace_id: int
    computed: dict[str, tuple[int, str]] = field(default_factory=dict)
    segments: dict[str, int] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)


class _Compiler:
    def __init__(self, catalog: Catalog, ctx: Context, vendor: str, restrict: list[int] | None) -> None:
        self.catalog = catalog
        self.ctx = ctx
        self.vendor = vendor
        self.restrict = restrict
        self.params: list[Any] = []
        self.pg = vendor == "postgresql"
        # Within an ``all``: the indexed sets its members must be in (``_sibling_sets``), for event subqueries.
        self.siblings: list[tuple[str, list[Any]]] = []
        t = catalog.tables
        self.t_event, self.t_member, self.t_value = t["event"], t["membership"], t["computed_value"]

    def p(self, value: Any) -> str:
        self.params.append(value)
        return "%s"

    def ids_in(self, column: str) -> str:
        """``column IN (the restriction)``, one parameter whatever its length."""
        if self.restrict is None:
            return "TRUE"
        if self.pg:
            return f"{column} = ANY({self.p(self.restrict)})"
        return f"{column} IN (SELECT value FROM json_each({self.p(orjson.dumps(self.restrict).decode())}))"

    # -- nodes ---------------------------------------------------------------------------------------

    def node(self, node: Node) -> str:
        if isinstance(node, And):
            # A customer matching the ``all`` is in each of its indexed siblings, so anything below it
            # (an ``any``'s branch or a ``not`` included) may be evaluated among those customers only.
            outer = self.siblings
            self.siblings = outer + self._sibling_sets(node)
            try:
                return "(" + " AND ".join(self.node(c) for c in node.children) + ")"
            finally:
                self.siblings = outer
        if isinstance(node, Or):
            return "(" + " OR ".join(self.node(c) for c in node.children) + ")"
        if isinstance(node, Not):
            return f"(NOT {self.node(node.child)})"
        return self._leaf(node)

    def _leaf(self, node: Node) -> str:
        if isinstance(node, Trait):
            if node.field:
                return self.field(node.field, node.cmp)
            return self.json_leaf("c.traits", node.path, node.cmp)
        if isinstance(node, Computed):
            return self.computed(node)
        if isinstance(node, InSegment):
            seg = self.catalog.segments.get(node.key)
            if seg is None:
                return "FALSE"
            return f"c.id IN ({self._members(seg)})"
        if isinstance(node, Consent):
            if not _consent_sql:
                return "FALSE"
            sql, params = _consent_sql[0](node.channel, node.topic, self.vendor)
            self.params.extend(params)
            return f"COALESCE(({sql}), FALSE)"
        assert isinstance(node, EventCond)
        return self.event(node)

    def computed(self, node: Computed) -> str:
        found = self.catalog.computed.get(node.key)
        if found is None:  # not declared: missing for everyone
            return "TRUE" if node.cmp.op == "not_exists" else "FALSE"
        trait_id, aggregate = found
        zero = aggregate in ZERO_DEFAULT and not node.path
        if node.cmp.op == "not_exists" and zero:
            return "FALSE"  # a missing row means 0
        if node.cmp.op == "not_exists":
            # Missing: no row, or a row whose value at the path is missing.
            return f"c.id NOT IN ({self._rows(trait_id)} AND {self.value_leaf(Cmp('exists'), node.path)})"
        if zero and _zero_holds(node.cmp, self.ctx):
            # 0 satisfies it, and a customer without a row has 0: everyone but those whose value does not.
            return f"c.id NOT IN ({self._rows(trait_id)} AND NOT {self.value_leaf(node.cmp, node.path)})"
        return f"c.id IN ({self._holders(node)})"

    def _rows(self, trait_id: int) -> str:
        # Parameters are taken in text order: the trait id before the value's.
        return f"SELECT customer_id FROM {self.t_value} WHERE trait_id = {self.p(trait_id)}"  # noqa: S608

    def _holders(self, node: Computed) -> str:
        """The customers whose value satisfies ``node``, for a computed condition 0 does not satisfy."""
        # Inside the subquery's WHERE a NULL only drops the row, so the bare comparison is enough — and lets
        # SQLite range-scan computed_value_num_idx (a COALESCE around it would not).
        rows = self._rows(self.catalog.computed[node.key][0])
        return f"{rows} AND {self.value_leaf(node.cmp, node.path, bare=True)}"

    def _members(self, segment_id: int) -> str:
        return f"SELECT customer_id FROM {self.t_member} WHERE segment_id = {self.p(segment_id)}"  # noqa: S608

    def _sibling_sets(self, node: And) -> list[tuple[str, list[Any]]]:
        """The children of an ``all`` that are an indexed set of customers (a computed condition 0 does not
        satisfy, a segment), as subqueries with their parameters. An event condition among the siblings
        groups only these customers' events: ``c IN A AND c IN E`` is ``c IN A AND c IN (E ∩ A)``, and ``c IN
        A AND c NOT IN E`` is ``c IN A AND c NOT IN (E ∩ A)`` — the same customers, a smaller GROUP BY."""
        out = []
        for child in node.children:
            saved, self.params = self.params, []
            try:
                if isinstance(child, InSegment) and child.key in self.catalog.segments:
                    out.append((self._members(self.catalog.segments[child.key]), self.params))
                elif isinstance(child, Computed) and self._indexed(child):
                    out.append((self._holders(child), self.params))
            finally:
                self.params = saved
        return out

    def _indexed(self, node: Computed) -> bool:
        found = self.catalog.computed.get(node.key)
        if found is None or node.cmp.op == "not_exists":
            return False
        zero = found[1] in ZERO_DEFAULT and not node.path
        return not (zero and _zero_holds(node.cmp, self.ctx))

    def value_leaf(self, cmp: Cmp, path: tuple[str, ...], *, bare: bool = False) -> str:
        # Whole numeric values are in ``num`` (indexed): a range scan instead of parsing every value.
        if not path and cmp.op in ("gt", "gte", "lt", "lte", "between") and not cmp.is_date:
            return self.order("num", cmp) if bare else f"COALESCE({self.order('num', cmp)}, FALSE)"
        return self.json_leaf("value", path, cmp)

    def event(self, node: EventCond) -> str:
        e = self.t_event
        where = [f"e.workspace_id = {self.p(self.catalog.workspace_id)}"]
        if node.type == "track":
            # Only track events carry an ``event`` name, so the name alone selects them (and the index has it).
            where.append(f"e.event = {self.p(node.name)}")
        else:
            where += [f"e.type = {self.p(node.type)}", f"e.name = {self.p(node.name)}"]
        start, end = window_bounds(node.within, self.ctx)
        if start is not None:
            where.append(f"e.timestamp >= {self.p(datetime_param(start, self.vendor))}")
        if end is not None:
            where.append(f"e.timestamp <= {self.p(datetime_param(end, self.vendor))}")
        if node.channel is not None:
            where.append(f"e.channel = {self.p(node.channel)}")
        where.append("e.customer_id IS NOT NULL")
        if self.restrict is not None:
            where.append(self.ids_in("e.customer_id"))
        else:
            for sql, params in self.siblings:
                where.append(f"e.customer_id IN ({sql})")
                self.params.extend(params)
        where += [self.json_leaf("e.properties", p.path, p.cmp) for p in node.where]
        having = self.count("count(*)", node.count)
        # For a few customers (the applier's chunk), read each one's timeline rather than the workspace's
        # range of the name in the window: SQLite, without statistics, would pick the latter. For the whole
        # workspace, the name's range in the window: restricted to a sibling's customers, SQLite would walk
        # each one's whole timeline instead (6.7 s against 0.5-1 s on the segments benchmark's dataset).
        if self.pg:
            hint = ""
        elif self.restrict is not None:
            hint = " INDEXED BY event_timeline_idx"
        else:
            hint = " INDEXED BY event_name_time_idx" if node.type == "track" and self.siblings else ""
        body = f"SELECT e.customer_id FROM {e} e{hint} WHERE {' AND '.join(where)} GROUP BY e.customer_id"
        if count_holds(0, node.count):
            return f"c.id NOT IN ({body} HAVING NOT ({having}))"
        return f"c.id IN ({body} HAVING {having})"

    def count(self, expr: str, cmp: Cmp) -> str:
        if cmp.op == "between":
            return f"{expr} BETWEEN {self.p(cmp.value[0])} AND {self.p(cmp.value[1])}"
        sign = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[cmp.op]
        return f"{expr} {sign} {self.p(cmp.value)}"

    # -- the profile's own fields --------------------------------------------------------------------

    def field(self, name: str, cmp: Cmp) -> str:
        op = cmp.op
        if name in ("$email", "$phone"):
            col = "c." + name[1:]
            if op == "exists":
                return f"({col} <> '')"
            if op == "not_exists":
                return f"({col} = '')"
            return f"({col} <> '' AND {self.text_cmp(col, cmp)})"
        if name == "$event_count":
            if op in ("exists", "not_exists"):
                return "TRUE" if op == "exists" else "FALSE"
            return self.number_cmp("c.event_count", cmp)
        if name in ("$first_seen", "$last_seen"):
            col = "c." + name[1:]
            if op in ("exists", "not_exists"):
                return f"({col} IS {'NOT ' if op == 'exists' else ''}NULL)"
            return f"({col} IS NOT NULL AND {self.instant_column(col, cmp)})"
        assert name == "$channels"
        if self.pg:
            any_sql = "(c.channels <> '{}'::jsonb)"
            has = f"jsonb_exists(c.channels, {self.p(cmp.value)})" if op in ("contains", "not_contains") else ""
        else:
            any_sql = "EXISTS (SELECT 1 FROM json_each(c.channels))"
            has = (f"(json_type(c.channels, {_lit(_sqlite_path((cmp.value,)))}) IS NOT NULL)"
                   if op in ("contains", "not_contains") else "")
        if op == "exists":
            return any_sql
        if op == "not_exists":
            return f"(NOT {any_sql})"
        if op == "contains":
            return has
        return f"({any_sql} AND NOT {has})"

    def instant_column(self, col: str, cmp: Cmp) -> str:
        if cmp.op == "between":
            low, high = (self._instant_param(v) for v in cmp.value)
            return f"{col} >= {low} AND {col} <= {high}"
        sign = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[cmp.op]
        return f"{col} {sign} {self._instant_param(cmp.value)}"

    def _instant_param(self, value: DateValue) -> str:
        return self.p(datetime_param(self.ctx.resolve(value), self.vendor))

    def number_cmp(self, col: str, cmp: Cmp) -> str:
        op, v = cmp.op, cmp.value
        if op in ("eq", "neq"):
            if not is_number(v):
                return "FALSE" if op == "eq" else "TRUE"
            return f"({col} {'=' if op == 'eq' else '<>'} {self.p(v)})"
        if op in ("in", "not_in"):
            nums = [x for x in v if is_number(x)]
            hit = f"{col} IN ({', '.join(self.p(x) for x in nums)})" if nums else "FALSE"
            return hit if op == "in" else f"(NOT {hit})"
        return self.order(col, cmp)

    def order(self, col: str, cmp: Cmp) -> str:
        if cmp.op == "between":
            return f"({col} >= {self.p(cmp.value[0])} AND {col} <= {self.p(cmp.value[1])})"
        sign = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[cmp.op]
        return f"({col} {sign} {self.p(cmp.value)})"

    def text_cmp(self, col: str, cmp: Cmp) -> str:
        """A comparison of a text column that holds a value (the caller checked it is present)."""
        op, v = cmp.op, cmp.value
        norm = self.nfkc(col)
        if op in ("eq", "neq"):
            hit = f"{norm} = {self.p(v)}" if isinstance(v, str) else "FALSE"
            return hit if op == "eq" else f"NOT ({hit})"
        if op in ("in", "not_in"):
            strs = [x for x in v if isinstance(x, str)]
            hit = f"{norm} IN ({', '.join(self.p(x) for x in strs)})" if strs else "FALSE"
            return hit if op == "in" else f"NOT ({hit})"
        if op in ("contains", "not_contains"):
            if not isinstance(v, str):
                hit = "FALSE"
            elif self.pg:
                hit = f"strpos({norm}, {self.p(v)}) > 0"
            else:
                hit = f"instr({norm}, {self.p(v)}) > 0"
            return hit if op == "contains" else f"NOT ({hit})"
        if op == "starts_with":
            fn = "left" if self.pg else "substr"
            args = f"{norm}, {self.p(len(v))}" if self.pg else f"{norm}, 1, {self.p(len(v))}"
            return f"{fn}({args}) = {self.p(v)}"
        if op == "eq_folded":
            return f"{self.fold(col)} = {self.p(v)}"
        if cmp.is_date:
            return self.instant_text(col, cmp)
        return "FALSE"  # numbers against a string

    def nfkc(self, col: str) -> str:
        if self.pg:
            return f"normalize({col}, NFKC)"
        # ASCII is NFKC already; only other text pays for the call into Python.
        return f"(CASE WHEN {col} GLOB '*[^ -~]*' THEN tsunagu_nfkc({col}) ELSE {col} END)"

    def fold(self, col: str) -> str:
        if self.pg:
            return f"translate(normalize({col}, NFKC), {self.p(FOLD_FROM)}, {self.p(FOLD_TO)})"
        return f"tsunagu_fold({col})"

    def instant_text(self, col: str, cmp: Cmp) -> str:
        expr = f"tsunagu_instant({col}, {self.p(self.ctx.tz)})"
        if cmp.op == "between":
            low, high = (self.ctx.resolve(v).timestamp() for v in cmp.value)
            return f"{expr} BETWEEN {self.p(low)} AND {self.p(high)}"
        sign = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[cmp.op]
        return f"{expr} {sign} {self.p(self.ctx.resolve(cmp.value).timestamp())}"

    # -- JSON values -----------------------------------------------------------------------------------

    def json_leaf(self, col: str, path: tuple[str, ...], cmp: Cmp) -> str:
        """``cmp`` on the JSON value at ``path`` of ``col``: never NULL."""
        if self.pg:
            return f"COALESCE(({self._pg_leaf(col, path, cmp)}), FALSE)"
        return f"COALESCE(({self._sqlite_leaf(col, path, cmp)}), FALSE)"

    def _sqlite_leaf(self, col: str, path: tuple[str, ...], cmp: Cmp) -> str:
        # Paths are literals, not parameters: an expression below repeats ``t`` and ``v``.
        jp = _lit(_sqlite_path(path))
        t = f"json_type({col}, {jp})"
        present = f"{t} IS NOT NULL AND {t} <> 'null'"
        op = cmp.op
        if op == "exists":
            return present
        if op == "not_exists":
            return f"({t} IS NULL OR {t} = 'null')"
        v = f"json_extract({col}, {jp})"
        if op in ("eq", "neq", "in", "not_in"):
            items = cmp.value if op in ("in", "not_in") else (cmp.value,)
            hit = self._sqlite_any_eq(t, v, items)
            return hit if op in ("eq", "in") else f"{present} AND NOT ({hit})"
        if op in ("contains", "not_contains"):
            hit = self._sqlite_contains(col, jp, t, v, cmp.value)
            return hit if op == "contains" else f"{present} AND NOT ({hit})"
        if op in ("starts_with", "eq_folded"):
            return f"{t} = 'text' AND {self.text_cmp(v, cmp)}"
        if cmp.is_date:
            return f"{t} = 'text' AND {self.instant_text(v, cmp)}"
        return f"{t} IN ('integer', 'real') AND {self.order(v, cmp)}"

    def _sqlite_any_eq(self, t: str, v: str, items: tuple[Any, ...]) -> str:
        parts = []
        strs = [x for x in items if isinstance(x, str)]
        nums = [x for x in items if is_number(x)]
        bools = {x for x in items if isinstance(x, bool)}
        if strs:
            # The raw value first (most values are ASCII, or stored normalised): the type test and NFKC only
            # for the few that need them. A raw match is NFKC already, as the operands are.
            raw = ", ".join(self.p(x) for x in strs)
            normalised = ", ".join(self.p(x) for x in strs)
            parts.append(f"(({v} IN ({raw}) OR ({v} GLOB '*[^ -~]*' AND tsunagu_nfkc({v}) IN ({normalised}))) "
                         f"AND {t} = 'text')")
        if nums:
            parts.append(f"({t} IN ('integer', 'real') AND {v} IN ({', '.join(self.p(x) for x in nums)}))")
        for b in bools:
            parts.append(f"({t} = '{'true' if b else 'false'}')")
        return "(" + " OR ".join(parts) + ")" if parts else "FALSE"

    def _sqlite_contains(self, col: str, jp: str, t: str, v: str, operand: Any) -> str:
        # Parameters are taken in the order they appear in the text: the substring test comes first.
        in_text = ""
        if isinstance(operand, str):
            in_text = f"({t} = 'text' AND instr({self.nfkc(v)}, {self.p(operand)}) > 0) OR "
        element = self._sqlite_any_eq("j.type", "j.value", (operand,))
        in_array = f"({t} = 'array' AND EXISTS (SELECT 1 FROM json_each({col}, {jp}) j WHERE {element}))"
        return f"({in_text}{in_array})"

    def _pg_leaf(self, col: str, path: tuple[str, ...], cmp: Cmp) -> str:
        # Paths are literals, not parameters: an expression below repeats ``jv`` and ``text``.
        arr = _pg_path(path)
        jv = f"({col} #> {arr})"
        t = f"jsonb_typeof({jv})"
        present = f"{t} IS NOT NULL AND {t} <> 'null'"
        op = cmp.op
        if op == "exists":
            return present
        if op == "not_exists":
            return f"({t} IS NULL OR {t} = 'null')"
        if op in ("eq", "neq", "in", "not_in"):
            items = cmp.value if op in ("in", "not_in") else (cmp.value,)
            hit = self._pg_any_eq(jv, items)
            return hit if op in ("eq", "in") else f"{present} AND NOT ({hit})"
        text = f"({col} #>> {arr})"
        if op in ("contains", "not_contains"):
            # Parameters are taken in the order they appear in the text: the substring test comes first.
            in_text = (f"({t} = 'string' AND strpos({self.nfkc(text)}, {self.p(cmp.value)}) > 0) OR "
                       if isinstance(cmp.value, str) else "")
            element = self._pg_any_eq("j.value", (cmp.value,))
            in_array = (f"(CASE WHEN {t} = 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements({jv}) j "
                        f"WHERE {element}) ELSE FALSE END)")
            hit = f"({in_text}{in_array})"
            return hit if op == "contains" else f"{present} AND NOT ({hit})"
        if op in ("starts_with", "eq_folded"):
            return f"{t} = 'string' AND {self.text_cmp(text, cmp)}"
        if cmp.is_date:
            return f"{t} = 'string' AND {self.instant_text(text, cmp)}"
        # jsonb orders numbers by value; the type test keeps strings (which jsonb orders apart) out.
        if cmp.op == "between":
            low, high = (self.p(orjson.dumps(x).decode()) for x in cmp.value)
            return f"{t} = 'number' AND {jv} >= {low}::jsonb AND {jv} <= {high}::jsonb"
        sign = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[cmp.op]
        return f"{t} = 'number' AND {jv} {sign} {self.p(orjson.dumps(cmp.value).decode())}::jsonb"

    def _pg_any_eq(self, jv: str, items: tuple[Any, ...]) -> str:
        parts = []
        strs = [x for x in items if isinstance(x, str)]
        others = [x for x in items if not isinstance(x, str)]
        if strs:
            parts.append(f"(jsonb_typeof({jv}) = 'string' AND normalize({jv} #>> '{{}}', NFKC) = "
                         f"ANY({self.p(strs)}::text[]))")
        for x in others:
            # jsonb equality: numbers by value (1 = 1.0), booleans as booleans, never across types.
            parts.append(f"({jv} = {self.p(orjson.dumps(x).decode())}::jsonb)")
        return "(" + " OR ".join(parts) + ")" if parts else "FALSE"


def _zero_holds(cmp: Cmp, ctx: Context) -> bool:
    from tsunagu.segments.rule.values import cmp_holds

    return cmp_holds(0, cmp, ctx)


def _lit(text: str) -> str:
    """A SQL string literal (rule paths have no quotes or backslashes, parse.dotted; doubling ' is for safety)."""
    return "'" + text.replace("'", "''") + "'"


def _pg_path(path: tuple[str, ...]) -> str:
    if not path:
        return "'{}'::text[]"
    return "ARRAY[" + ", ".join(_lit(p) for p in path) + "]::text[]"


def _sqlite_path(path: tuple[str, ...]) -> str:
    return "$" + "".join(f'."{p}"' for p in path)


def compile_rule(node: Node, *, catalog: Catalog, ctx: Context, vendor: str,
                 restrict: list[int] | None = None) -> tuple[str, list[Any]]:
    """``SELECT c.id FROM customers c WHERE …`` for the workspace's live customers matching ``node`` (only
    among ``restrict`` when given), and its parameters."""
    comp = _Compiler(catalog, ctx, vendor, restrict)
    head = f"c.workspace_id = {comp.p(catalog.workspace_id)} AND c.merged_into_id IS NULL"
    if restrict is not None:
        head += " AND " + comp.ids_in("c.id")
    expr = comp.node(node)
    return f"SELECT c.id FROM {catalog.tables['customer']} c WHERE {head} AND {expr}", comp.params


def where_sql(where: Any, *, column: str, ctx: Context, vendor: str) -> tuple[str, list[Any]]:
    """A ``where`` list (``parse.where_parse``) as one SQL boolean over the JSON ``column`` (AND)."""
    comp = _Compiler(Catalog(0, tables={"event": "", "membership": "", "computed_value": ""}), ctx, vendor, None)
    parts = [comp.json_leaf(column, p.path, p.cmp) for p in where]
    return (" AND ".join(parts) if parts else "TRUE"), comp.params

