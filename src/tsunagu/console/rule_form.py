"""The segment builder's form: a rule (docs/rules.md) as named form fields and back, the edits its buttons
make, and the tree the templates draw — the editor's nodes and the rule written out in words.

The page works without script: every button posts the whole form and the server draws it again. With htmx,
the same buttons swap the editor alone, and typing asks for the live count (``views_segments``).

Field names are positional ids, not JSON paths: ``r`` is the root, ``r.0`` its first child, ``r.0.w1`` the
second property condition of that node, and a field is ``<id>:<name>`` (``r.0:op``). Ids are given again on
every drawing, so a removed node leaves no hole; each node also carries its JSON path (``$.all[0]``), which
is what ``rule_parse`` names in its errors, so an error is drawn beside the node it is about.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from tsunagu.segments.rule.nodes import COUNT_OPS, EVENT_TYPES, FIELDS

GROUPS = ("all", "any", "not")
LEAVES = ("trait", "computed", "segment", "consent", "event")
KINDS = GROUPS + LEAVES
KIND_LABELS = {
    "all": gettext_lazy("All of"),
    "any": gettext_lazy("Any of"),
    "not": gettext_lazy("Not"),
    "trait": gettext_lazy("Trait"),
    "computed": gettext_lazy("Computed trait"),
    "segment": gettext_lazy("In segment"),
    "consent": gettext_lazy("Consent granted"),
    "event": gettext_lazy("Event"),
}
# In the order the editor offers them.
OPS = ("eq", "neq", "eq_folded", "in", "not_in", "contains", "not_contains", "starts_with", "gt", "gte", "lt",
       "lte", "between", "exists", "not_exists")
OP_LABELS = {
    "eq": gettext_lazy("equals"),
    "neq": gettext_lazy("does not equal"),
    "eq_folded": gettext_lazy("equals, ignoring case, width and kana"),
    "in": gettext_lazy("is one of"),
    "not_in": gettext_lazy("is none of"),
    "contains": gettext_lazy("contains"),
    "not_contains": gettext_lazy("does not contain"),
    "starts_with": gettext_lazy("starts with"),
    "gt": gettext_lazy("is more than"),
    "gte": gettext_lazy("is at least"),
    "lt": gettext_lazy("is less than"),
    "lte": gettext_lazy("is at most"),
    "between": gettext_lazy("is between"),
    "exists": gettext_lazy("is set"),
    "not_exists": gettext_lazy("is not set"),
}
NO_VALUE = ("exists", "not_exists")
WITHIN_KINDS = ("", "days", "since", "between")
TOPICS = ("marketing", "service", "transactional")
CONSENT_CHANNELS = ("email", "sms", "line", "webpush", "in_app")
_ID = re.compile(r"r(\.\d+)*")
_WHERE = re.compile(r"(r(?:\.\d+)*)\.w(\d+)")


# -- values as text --------------------------------------------------------------------------------------

def value_text(value: Any) -> str:
    """A rule value as the editor's text box shows it: a plain string as itself, anything else (and a string
    that would read as something else, like ``"5"``) as JSON."""
    if isinstance(value, str) and value:
        try:
            json.loads(value)
        except ValueError:
            return value
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False)


def value_parse(text: str) -> Any:
    """The inverse of ``value_text``: JSON when the text is JSON (``5``, ``true``, ``["a", "b"]``,
    ``{"days_ago": 30}``, ``"5"``), the text itself otherwise."""
    try:
        return json.loads(text)
    except ValueError:
        return text


# -- form -> rule ----------------------------------------------------------------------------------------

def _children(data: Mapping[str, str], fid: str) -> list[str]:
    pattern = re.compile(re.escape(fid) + r"\.(\d+):kind")
    found = sorted({int(m.group(1)) for k in data if (m := pattern.fullmatch(k))})
    return [f"{fid}.{i}" for i in found]


def _wheres(data: Mapping[str, str], fid: str) -> list[str]:
    pattern = re.compile(re.escape(fid) + r"\.w(\d+):property")
    found = sorted({int(m.group(1)) for k in data if (m := pattern.fullmatch(k))})
    return [f"{fid}.w{i}" for i in found]


def _cmp(data: Mapping[str, str], fid: str, out: dict[str, Any]) -> dict[str, Any]:
    op = data.get(f"{fid}:op", "")
    out["op"] = op
    text = data.get(f"{fid}:value", "")
    if op not in NO_VALUE and text != "":
        out["value"] = value_parse(text)
    return out


def node_from_form(data: Mapping[str, str], fid: str = "r") -> Any:
    """The rule the form's fields under ``fid`` describe (not validated: ``rule_parse`` judges it)."""
    # ``was`` is the kind the node was drawn as: the fields beside it are that kind's, whatever the kind
    # select says now (``retypes`` turns the change into an edit).
    kind = data.get(f"{fid}:was") or data.get(f"{fid}:kind", "")
    get = lambda name: data.get(f"{fid}:{name}", "")  # noqa: E731
    if kind in ("all", "any"):
        return {kind: [node_from_form(data, c) for c in _children(data, fid)]}
    if kind == "not":
        children = _children(data, fid)
        return {"not": node_from_form(data, children[0]) if children else {}}
    if kind in ("trait", "computed"):
        return _cmp(data, fid, {kind: get("name").strip()})
    if kind == "segment":
        return {"segment": get("name").strip()}
    if kind == "consent":
        body = {"topic": get("topic")}
        if get("channel").strip():
            body = {"channel": get("channel").strip(), **body}
        return {"consent": body}
    if kind == "event":
        node: dict[str, Any] = {"event": get("name").strip()}
        if get("etype") and get("etype") != "track":
            node["type"] = get("etype")
        if get("channel").strip():
            node["channel"] = get("channel").strip()
        wheres = [_cmp(data, w, {"property": data.get(f"{w}:property", "").strip()}) for w in _wheres(data, fid)]
        if wheres:
            node["where"] = wheres
        if get("count_op"):
            node["count"] = {"op": get("count_op"), "value": value_parse(get("count_value"))}
        within = get("within")
        if within == "days":
            node["within"] = {"days": value_parse(get("within_a"))}
        elif within == "since":
            node["within"] = {"since": value_parse(get("within_a"))}
        elif within == "between":
            node["within"] = {"between": [value_parse(get("within_a")), value_parse(get("within_b"))]}
        return node
    return {}


# -- edits -----------------------------------------------------------------------------------------------

def blank(kind: str) -> dict[str, Any]:
    """A new node of ``kind`` as the editor adds it."""
    if kind in ("all", "any"):
        return {kind: [blank("trait")]}
    if kind == "not":
        return {"not": blank("trait")}
    if kind in ("trait", "computed"):
        return {kind: "", "op": "eq"}
    if kind == "consent":
        return {"consent": {"channel": "email", "topic": "marketing"}}
    if kind == "event":
        return {"event": ""}
    return {"segment": ""}


def kind_of(node: Any) -> str:
    if isinstance(node, dict):
        for kind in KINDS:
            if kind in node:
                return kind
    return ""


def _retype(node: Any, kind: str) -> Any:
    """``node`` made a ``kind``: a group keeps its children, a condition made a group becomes its child."""
    old = kind_of(node)
    if old == kind:
        return node
    items = node[old] if old in ("all", "any") else [node["not"]] if old == "not" else [node] if old else []
    if kind in ("all", "any"):
        return {kind: items or [blank("trait")]}
    if kind == "not":
        return {"not": items[0] if items else blank("trait")}
    return blank(kind)


def _locate(rule: Any, fid: str) -> tuple[Any, Any] | None:
    """(parent list or node, key) of the node ``fid`` names in ``rule``."""
    parts = fid.split(".")[1:]
    holder: Any = None
    key: Any = None
    node = rule
    for part in parts:
        kind = kind_of(node)
        if kind in ("all", "any") and isinstance(node[kind], list) and int(part) < len(node[kind]):
            holder, key = node[kind], int(part)
        elif kind == "not" and part == "0":
            holder, key = node, "not"
        else:
            return None
        node = holder[key]
    return holder, key


def apply_action(rule: Any, action: str) -> Any:
    """The rule after one of the editor's buttons: ``add:<id>:<kind>``, ``remove:<id>``, ``kind:<id>:<kind>``,
    ``addwhere:<id>``, ``removewhere:<id>.w<n>``. An action that names no node changes nothing."""
    verb, _sep, rest = action.partition(":")
    target, _sep, arg = rest.partition(":")
    if verb == "removewhere" and (m := _WHERE.fullmatch(target)):
        found = _locate(rule, m.group(1))
        event = rule if m.group(1) == "r" else found[0][found[1]] if found else None
        index = int(m.group(2))
        if isinstance(event, dict) and isinstance(event.get("where"), list) and index < len(event["where"]):
            del event["where"][index]
            if not event["where"]:
                del event["where"]
        return rule
    if not _ID.fullmatch(target):
        return rule
    holder: Any = None
    key: Any = None
    node: Any = rule
    if target != "r":
        found = _locate(rule, target)
        if found is None:
            return rule
        holder, key = found
        node = holder[key]
    if verb == "add" and arg in KINDS and kind_of(node) in ("all", "any"):
        node[kind_of(node)].append(blank(arg))
    elif verb == "kind" and arg in KINDS:
        new = _retype(node, arg)
        if holder is None:
            return new
        holder[key] = new
    elif verb == "remove" and holder is not None:
        if isinstance(holder, list) and len(holder) > 1:
            del holder[key]
        elif isinstance(holder, dict):  # a not's only child: a blank condition takes its place
            holder["not"] = blank("trait")
    elif verb == "addwhere" and kind_of(node) == "event":
        node.setdefault("where", []).append({"property": "", "op": "eq"})
    return rule


def retypes(data: Mapping[str, str]) -> list[str]:
    """``kind:<id>:<kind>`` for every node whose kind select was changed, the deepest first."""
    out = []
    for name, kind in data.items():
        fid, _sep, field = name.partition(":")
        if field == "kind" and _ID.fullmatch(fid) and data.get(f"{fid}:was") not in (None, "", kind):
            out.append(f"kind:{fid}:{kind}")
    return sorted(out, key=lambda a: -a.count("."))


def representable(rule: Any) -> bool:
    """Whether the builder can show ``rule`` as it is (else it stays on the JSON tab)."""
    return node_from_form(form_values(rule)) == rule


# -- rule -> form and tree -------------------------------------------------------------------------------

def _walk(node: Any, fid: str, jpath: str, values: dict[str, str], errors: Mapping[str, str],
          depth: int) -> dict[str, Any]:
    kind = kind_of(node)
    node = node if isinstance(node, dict) else {}
    values[f"{fid}:kind"] = kind or "trait"
    item: dict[str, Any] = {"fid": fid, "path": jpath, "kind": kind or "trait", "depth": depth,
                            "group": kind in GROUPS, "children": [], "wheres": []}
    item["error"] = errors.get(jpath, "")
    if kind in ("all", "any"):
        kids = node[kind] if isinstance(node[kind], list) else []
        item["children"] = [_walk(c, f"{fid}.{i}", f"{jpath}.{kind}[{i}]", values, errors, depth + 1)
                            for i, c in enumerate(kids)]
    elif kind == "not":
        item["children"] = [_walk(node["not"], f"{fid}.0", f"{jpath}.not", values, errors, depth + 1)]
    elif kind in ("trait", "computed", "segment", "event"):
        values[f"{fid}:name"] = node[kind] if isinstance(node[kind], str) else value_text(node[kind])
    if kind in ("trait", "computed"):
        values[f"{fid}:op"] = str(node.get("op", ""))
        values[f"{fid}:value"] = value_text(node["value"]) if "value" in node else ""
    if kind == "consent":
        body = node["consent"] if isinstance(node["consent"], dict) else {}
        values[f"{fid}:channel"] = str(body.get("channel", ""))
        values[f"{fid}:topic"] = str(body.get("topic", ""))
    if kind == "event":
        values[f"{fid}:etype"] = str(node.get("type", "track"))
        values[f"{fid}:channel"] = str(node.get("channel", ""))
        count = node.get("count") if isinstance(node.get("count"), dict) else {}
        values[f"{fid}:count_op"] = str(count.get("op", ""))
        values[f"{fid}:count_value"] = value_text(count["value"]) if "value" in count else ""
        within = node.get("within") if isinstance(node.get("within"), dict) else {}
        wkind = next((k for k in ("days", "since", "between") if k in within), "")
        values[f"{fid}:within"] = wkind
        if wkind == "between" and isinstance(within["between"], list) and len(within["between"]) == 2:
            values[f"{fid}:within_a"] = _date_text(within["between"][0])
            values[f"{fid}:within_b"] = _date_text(within["between"][1])
        elif wkind:
            values[f"{fid}:within_a"] = _date_text(within[wkind])
        wheres = node.get("where") if isinstance(node.get("where"), list) else []
        for i, cond in enumerate(wheres):
            cond = cond if isinstance(cond, dict) else {}
            wid, wpath = f"{fid}.w{i}", f"{jpath}.where[{i}]"
            values[f"{wid}:property"] = str(cond.get("property", ""))
            values[f"{wid}:op"] = str(cond.get("op", ""))
            values[f"{wid}:value"] = value_text(cond["value"]) if "value" in cond else ""
            item["wheres"].append({"fid": wid, "path": wpath, "error": errors.get(wpath, "")})
    return item


def _date_text(value: Any) -> str:
    return value if isinstance(value, str) else value_text(value)


def form_values(rule: Any) -> dict[str, str]:
    values: dict[str, str] = {}
    _walk(rule, "r", "$", values, {}, 0)
    return values


def error_paths(field: str, tree: dict[str, Any]) -> dict[str, str]:
    """The node path an error's field (``$.all[1].where[0].op``) is drawn at: the deepest node or property
    condition of the tree whose path it starts with."""
    paths: list[str] = []

    def collect(item: dict[str, Any]) -> None:
        paths.append(item["path"])
        paths.extend(w["path"] for w in item["wheres"])
        for child in item["children"]:
            collect(child)

    collect(tree)
    best = max((p for p in paths if field == p or field.startswith((p + ".", p + "["))), key=len, default="$")
    return {best: field}


def editor(rule: Any, error: tuple[str, str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The tree the editor template draws and the values of its fields; ``error`` (field, message) is put
    on the node it is about."""
    values: dict[str, str] = {}
    tree = _walk(rule, "r", "$", values, {}, 0)
    if error:
        field, message = error
        at = error_paths(field, tree)
        values = {}
        tree = _walk(rule, "r", "$", values, {p: message for p in at}, 0)
    by_id: dict[str, dict[str, str]] = {}
    for name, value in values.items():
        fid, _sep, field = name.partition(":")
        by_id.setdefault(fid, {})[field] = value

    def attach(item: dict[str, Any]) -> None:
        item["v"] = by_id.get(item["fid"], {})
        for w in item["wheres"]:
            w["v"] = by_id.get(w["fid"], {})
        for child in item["children"]:
            attach(child)

    attach(tree)
    return tree, values


def choices() -> dict[str, Any]:
    """The editor's select options, labelled in the request's language."""
    return {
        "kinds": [(k, str(KIND_LABELS[k])) for k in KINDS],
        "ops": [(o, str(OP_LABELS[o])) for o in OPS],
        "count_ops": [(o, str(OP_LABELS[o])) for o in COUNT_OPS],
        "etypes": list(EVENT_TYPES),
        "withins": [("", _("any time")), ("days", _("in the last … days")), ("since", _("since a date")),
                    ("between", _("between two dates"))],
        "topics": list(TOPICS),
        "consent_channels": list(CONSENT_CHANNELS),
        "fields": list(FIELDS),
    }


# -- the rule in words -----------------------------------------------------------------------------------

def _cmp_words(node: dict[str, Any]) -> str:
    op = node.get("op", "")
    label = str(OP_LABELS.get(op, op))
    if op in NO_VALUE or "value" not in node:
        return label
    if op == "between" and isinstance(node["value"], list) and len(node["value"]) == 2:
        low, high = node["value"]
        return _("%(op)s %(a)s and %(b)s") % {"op": label, "a": _value_words(low), "b": _value_words(high)}
    return _("%(op)s %(value)s") % {"op": label, "value": _value_words(node["value"])}


def _value_words(value: Any) -> str:
    if isinstance(value, dict) and "days_ago" in value:
        return _("%(n)s days ago") % {"n": value["days_ago"]}
    if isinstance(value, list):
        return ", ".join(_value_words(v) for v in value)
    if isinstance(value, str):
        return f"“{value}”"
    return json.dumps(value, ensure_ascii=False)


def describe(node: Any) -> dict[str, Any]:
    """The rule as nested sentences (``{"text", "children"}``) for the segment page."""
    kind = kind_of(node)
    if kind in ("all", "any"):
        return {"text": _("All of these") if kind == "all" else _("Any of these"),
                "children": [describe(c) for c in node[kind]]}
    if kind == "not":
        return {"text": _("None of these"), "children": [describe(node["not"])]}
    if kind == "trait":
        return {"text": _("Trait %(name)s %(cmp)s") % {"name": node["trait"], "cmp": _cmp_words(node)}, "children": []}
    if kind == "computed":
        return {"text": _("Computed trait %(name)s %(cmp)s") % {"name": node["computed"], "cmp": _cmp_words(node)},
                "children": []}
    if kind == "segment":
        return {"text": _("In segment %(key)s") % {"key": node["segment"]}, "children": []}
    if kind == "consent":
        body = node["consent"]
        return {"text": _("Has granted %(topic)s consent on %(channel)s") % {
            "topic": body.get("topic", ""), "channel": body.get("channel") or _("any channel")}, "children": []}
    if kind == "event":
        return {"text": _event_words(node), "children": []}
    return {"text": json.dumps(node, ensure_ascii=False), "children": []}


def _event_words(node: dict[str, Any]) -> str:
    count = node.get("count") or {"op": "gte", "value": 1}
    if count == {"op": "eq", "value": 0}:
        head = _("Did not do %(event)s") % {"event": node["event"]}
    elif count == {"op": "gte", "value": 1}:
        head = _("Did %(event)s") % {"event": node["event"]}
    else:
        head = _("Did %(event)s, a number of times that %(cmp)s") % {"event": node["event"], "cmp": _cmp_words(count)}
    parts = [head]
    if node.get("type", "track") != "track":
        parts.append(_("type %(type)s") % {"type": node["type"]})
    if node.get("channel"):
        parts.append(_("on %(channel)s") % {"channel": node["channel"]})
    for cond in node.get("where", []):
        parts.append(_("where %(property)s %(cmp)s") % {"property": cond.get("property"), "cmp": _cmp_words(cond)})
    within = node.get("within") or {}
    if "days" in within:
        parts.append(_("in the last %(n)s days") % {"n": within["days"]})
    elif "since" in within:
        parts.append(_("since %(date)s") % {"date": _value_words(within["since"])})
    elif "between" in within:
        low, high = within["between"]
        parts.append(_("between %(a)s and %(b)s") % {"a": _value_words(low), "b": _value_words(high)})
    return ", ".join(parts)
