"""The rule language as a JSON Schema (served at ``/api/v1/rules/schema.json``), for editors and scripts.

It describes the shapes; ``parse.rule_parse`` is the authority (it also checks what a schema cannot say well:
depth, node counts, which operators a profile field takes, and gives the node's path)."""

from __future__ import annotations

from typing import Any

from tsunagu.segments.rule.nodes import COUNT_OPS, EVENT_TYPES, FIELDS, VALUE_OPS
from tsunagu.segments.rule.parse import CONSENT_TOPICS

_SCALAR = {"type": ["string", "number", "boolean"]}
_DATE = {
    "oneOf": [
        {"type": "string", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?"
                                      r"(Z|[+-][0-9]{2}:[0-9]{2})?$"},
        {"type": "object", "properties": {"days_ago": {"type": "integer"}}, "required": ["days_ago"],
         "additionalProperties": False},
    ]
}


def _cmp(subject: str, subject_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            subject: subject_schema,
            "op": {"enum": sorted(VALUE_OPS)},
            "value": {"oneOf": [_SCALAR, {"type": "array", "items": {"oneOf": [_SCALAR, _DATE]}}, _DATE]},
        },
        "required": [subject, "op"],
        "additionalProperties": False,
    }


def rule_json_schema() -> dict[str, Any]:
    name = {"type": "string", "minLength": 1, "maxLength": 1000}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://tsunagu.dev/schemas/rule.json",
        "title": "tsunagu rule",
        "description": "A rule of the tsunagu rule language (docs/rules.md).",
        "$ref": "#/$defs/node",
        "$defs": {
            "node": {"oneOf": [{"$ref": f"#/$defs/{k}"} for k in
                               ("all", "any", "not", "trait", "computed", "segment", "consent", "event")]},
            "all": {"type": "object", "properties": {"all": {"type": "array", "minItems": 1,
                                                             "items": {"$ref": "#/$defs/node"}}},
                    "required": ["all"], "additionalProperties": False},
            "any": {"type": "object", "properties": {"any": {"type": "array", "minItems": 1,
                                                             "items": {"$ref": "#/$defs/node"}}},
                    "required": ["any"], "additionalProperties": False},
            "not": {"type": "object", "properties": {"not": {"$ref": "#/$defs/node"}}, "required": ["not"],
                    "additionalProperties": False},
            "trait": _cmp("trait", {"oneOf": [{"enum": sorted(FIELDS)}, {**name, "pattern": "^[^$]"}]}),
            "computed": _cmp("computed", name),
            "segment": {"type": "object", "properties": {"segment": name}, "required": ["segment"],
                        "additionalProperties": False},
            "consent": {
                "type": "object",
                "properties": {"consent": {
                    "type": "object",
                    "properties": {"channel": {"type": "string", "maxLength": 16},
                                   "topic": {"enum": list(CONSENT_TOPICS)}},
                    "required": ["topic"], "additionalProperties": False,
                }},
                "required": ["consent"], "additionalProperties": False,
            },
            "event": {
                "type": "object",
                "properties": {
                    "event": name,
                    "type": {"enum": list(EVENT_TYPES)},
                    "channel": {"type": "string", "minLength": 1, "maxLength": 20},
                    "where": {"type": "array", "maxItems": 50, "items": _cmp("property", name)},
                    "count": {
                        "type": "object",
                        "properties": {
                            "op": {"enum": list(COUNT_OPS)},
                            "value": {"oneOf": [{"type": "integer", "minimum": 0},
                                                {"type": "array", "items": {"type": "integer", "minimum": 0},
                                                 "minItems": 2, "maxItems": 2}]},
                        },
                        "required": ["op", "value"], "additionalProperties": False,
                    },
                    "within": {"oneOf": [
                        {"type": "object", "properties": {"days": {"type": "number", "exclusiveMinimum": 0}},
                         "required": ["days"], "additionalProperties": False},
                        {"type": "object", "properties": {"since": _DATE}, "required": ["since"],
                         "additionalProperties": False},
                        {"type": "object", "properties": {"between": {"type": "array", "items": _DATE,
                                                                      "minItems": 2, "maxItems": 2}},
                         "required": ["between"], "additionalProperties": False},
                    ]},
                },
                "required": ["event"],
                "additionalProperties": False,
            },
        },
    }
