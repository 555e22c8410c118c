"""The rule language (docs/rules.md): one JSON tree that answers "does this customer match?" everywhere —
validated by ``parse``, evaluated for one customer by ``pyeval`` and for a whole workspace by ``sql``."""

from tsunagu.segments.rule.nodes import Node, Prop, Window
from tsunagu.segments.rule.parse import Deps, Parsed, rule_parse, where_parse, within_parse
from tsunagu.segments.rule.pyeval import evaluate, where_holds, window_bounds
from tsunagu.segments.rule.values import Context, context

__all__ = [
    "Context", "Deps", "Node", "Parsed", "Prop", "Window", "context", "evaluate", "rule_parse", "where_holds",
    "where_parse", "window_bounds", "within_parse",
]
