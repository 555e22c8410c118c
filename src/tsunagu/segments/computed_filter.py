"""A computed trait's event filter and window: the ``where`` conditions and ``within`` of the rule language's
event conditions (docs/rules.md), read and evaluated by the rule package itself, so that a computed trait's
filter and a segment's event condition cannot disagree. Field paths are the API's (``where[0].op``,
``within.days``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tsunagu.segments import rule
from tsunagu.segments.rule import Context, Prop, Window


def context(workspace: Any, now: dt.datetime | None = None) -> Context:
    return rule.context(workspace, now=now)


def where_parse(where: Any, path: str = "where") -> tuple[Prop, ...]:
    return rule.where_parse(where, path)


def within_parse(within: Any, path: str = "within") -> Window | None:
    return rule.within_parse(within, path)


def where_holds(conds: tuple[Prop, ...], properties: Any, ctx: Context) -> bool:
    return rule.where_holds(conds, properties if isinstance(properties, dict) else {}, ctx)


def window_bounds(window: Window | None, ctx: Context) -> tuple[dt.datetime | None, dt.datetime | None]:
    return rule.window_bounds(window, ctx)
