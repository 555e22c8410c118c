"""A journey definition drawn as a flow: a layered layout and its server-rendered SVG (no JavaScript).

The layout is computed from the raw definition, not from a validated plan: the builder draws a definition
while it is still wrong, so every field is read defensively and whatever cannot be drawn is left out.

Layers are the BFS depth from the first step (the shortest way a run can get there); within a layer, the
first target of a step stays in its column and every further branch opens a column to the right, so a
branch's arm reads as one vertical line. Edges that go back up (a loop through a wait) or sideways are drawn
as curves on the right of the boxes so they never cross a box. "exit" and "complete" are small terminals,
one per edge, just under the step that leads to them: a shared terminal at the bottom would pull long
arrows across the drawing.
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from django.utils.html import escape
from django.utils.translation import gettext as _

BOX_W, BOX_H = 210, 66
TERM_W, TERM_H = 96, 28
GAP_X, GAP_Y = 40, 54
MARGIN = 20
# Glyphs the common fonts have (DejaVu, Noto): a missing one would draw as a box.
ICONS = {
    "wait": "◷", "wait_for_event": "⚑", "send": "✉", "branch": "◇", "split": "⋔",
    "update_traits": "✎", "notify": "☏", "webhook": "⇄", "exit": "■",
}
STEP_FIELD_RE = re.compile(r"^(?:definition\.)?steps\[([^\]]+)\]")


def type_label(kind: str) -> str:
    labels = {
        "wait": _("Wait"), "wait_for_event": _("Wait for an event"), "send": _("Send"), "branch": _("Branch"),
        "split": _("Split"), "update_traits": _("Update traits"), "notify": _("Notify"),
        "webhook": _("Webhook"), "exit": _("Exit"),
    }
    return labels.get(kind, kind or "?")


@dataclass
class Node:
    id: str
    kind: str  # a step type, or "entry", "goal", "exit", "complete"
    title: str
    detail: str = ""
    layer: int = 0
    col: int = 0
    x: int = 0
    y: int = 0
    w: int = BOX_W
    h: int = BOX_H
    error: bool = False
    current: bool = False
    note: str = ""  # a figure drawn in the box's corner (runs at the step now)
    terminal: bool = False  # an "exit" or "complete" pill, not a step (a step may be of type exit)


@dataclass
class Edge:
    source: str
    target: str
    label: str = ""
    back: bool = False  # drawn as a curve on the right: the target is not below the source


@dataclass
class Drawing:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    width: int = 0
    height: int = 0


def error_step(field_path: str | None, definition: Any) -> str | None:
    """The step an error's field names (``definition.steps[reminder].communication`` → ``reminder``); an
    index (``steps[3]``, given when the id itself is wrong) is mapped to that step's id when it has one."""
    m = STEP_FIELD_RE.match(field_path or "")
    if m is None:
        return None
    named = m.group(1)
    steps = _steps(definition)
    if named.isdigit() and int(named) < len(steps):
        sid = steps[int(named)].get("id")
        return sid if isinstance(sid, str) else f"#{named}"
    return named


def _steps(definition: Any) -> list[dict[str, Any]]:
    raw = definition.get("steps") if isinstance(definition, dict) else None
    return [s for s in raw if isinstance(s, dict)] if isinstance(raw, list) else []


def _text(value: Any, limit: int = 30) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def duration(seconds: Any) -> str:
    """``90`` → ``1 min 30 s``, ``86400`` → ``1 d``: the largest two units."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "?"
    left = int(seconds)
    parts = []
    for unit, size in ((_("d"), 86400), (_("h"), 3600), (_("min"), 60), (_("s"), 1)):
        if left >= size:
            parts.append(f"{left // size} {unit}")
            left %= size
    return " ".join(parts[:2]) or f"0 {_('s')}"


def _detail(step: dict[str, Any]) -> str:
    kind = step.get("type")
    if kind == "wait":
        if "seconds" in step:
            return duration(step["seconds"])
        if "until_time" in step:
            return _("until %(time)s") % {"time": _text(step["until_time"])}
        if "until_trait" in step:
            return _("until trait %(name)s") % {"name": _text(step["until_trait"], 20)}
    if kind == "wait_for_event":
        text = _text(step.get("event", ""), 22)
        if "timeout_seconds" in step:
            text += " ≤ " + duration(step["timeout_seconds"])
        return text
    if kind == "send":
        return _text(step.get("communication", ""))
    if kind == "branch":
        return _text(step.get("rule", ""))
    if kind == "split":
        paths: list[Any] = step["paths"] if isinstance(step.get("paths"), list) else []
        return " / ".join(_text(p.get("percent", "?"), 6) for p in paths if isinstance(p, dict))[:30]
    if kind == "update_traits":
        traits = step.get("traits")
        return _text(", ".join(traits) if isinstance(traits, dict) else traits)
    if kind == "notify":
        for name in ("task", "email", "webhook"):
            if name in step:
                return _text(step[name])
    if kind == "webhook":
        return _text(step.get("url", ""))
    return ""


def _outgoing(step: dict[str, Any], following: str | None) -> list[tuple[str | None, str]]:
    """(target, label) of each way out of a step; None is the run completing."""
    kind = step.get("type")
    nxt = step.get("next", following)
    if kind == "exit":
        return [("exit", "")]
    if kind == "branch":
        return [(step.get("then"), _("yes")), (step.get("else"), _("no"))]
    if kind == "split":
        out: list[tuple[str | None, str]] = []
        paths: list[Any] = step["paths"] if isinstance(step.get("paths"), list) else []
        for i, p in enumerate(paths):
            if isinstance(p, dict):
                name = p.get("name") if isinstance(p.get("name"), str) else chr(ord("A") + i % 26)
                out.append((p.get("next"), f"{name} {_text(p.get('percent', '?'), 6)}%"))
        holdout = step.get("holdout")
        if isinstance(holdout, int | float) and not isinstance(holdout, bool) and holdout > 0:
            out.append(("exit", _("holdout %(percent)s%%") % {"percent": _text(holdout, 6)}))
        return out
    if kind == "wait_for_event":
        on_event = step.get("on_event", nxt)
        if "timeout_seconds" not in step:
            return [(on_event, _("event"))]
        return [(on_event, _("event")), (step.get("on_timeout", nxt), _("timeout"))]
    return [(nxt, "")]


def layout(definition: Any, *, error_field: str | None = None, current: str | None = None,
           notes: dict[str, str] | None = None) -> Drawing:
    """The flow of ``definition``: the entry on top with the goal beside it, then the steps layer by layer.
    ``error_field`` marks the step it names, ``current`` the step a run is at, ``notes`` a figure per step."""
    drawing = Drawing()
    steps = _steps(definition)
    by_id: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for step in steps:
        sid = step.get("id")
        if isinstance(sid, str) and sid and sid != "exit" and sid not in by_id:
            by_id[sid] = step
            order.append(sid)
    bad = error_step(error_field, definition)
    top = definition if isinstance(definition, dict) else {}
    entry: dict[str, Any] = top["entry"] if isinstance(top.get("entry"), dict) else {}
    drawing.nodes["entry"] = Node("entry", "entry", _("Entry"), _entry_text(entry), layer=0, col=0,
                                  error=(error_field or "").replace("definition.", "").startswith("entry"))
    goal = top.get("goal")
    if isinstance(goal, dict):
        within = goal.get("within", {}).get("days") if isinstance(goal.get("within"), dict) else None
        text = _text(goal.get("event", ""), 22) + (f" ≤ {within} {_('d')}" if within else "")
        drawing.nodes["goal"] = Node("goal", "goal", _("Goal"), text, layer=0, col=1,
                                     error=(error_field or "").replace("definition.", "").startswith("goal"))
    if not order:
        _place(drawing)
        return drawing
    # BFS from the first step: a step's layer is its shortest distance; targets in the order they are listed.
    depth = {order[0]: 1}
    desired: dict[str, float] = {order[0]: 0}
    queue = deque([order[0]])
    ways: dict[str, list[tuple[str | None, str]]] = {}
    for i, sid in enumerate(order):
        ways[sid] = _outgoing(by_id[sid], order[i + 1] if i + 1 < len(order) else None)
    while queue:
        sid = queue.popleft()
        fresh = 0
        for target, _label in ways[sid]:
            if isinstance(target, str) and target in by_id and target not in depth:
                depth[target] = depth[sid] + 1
                desired[target] = desired[sid] + fresh
                fresh += 1
                queue.append(target)
    # Steps no path reaches (the validator refuses them; the drawing still shows them, under the rest).
    bottom = max(depth.values())
    for sid in order:
        if sid not in depth:
            bottom += 1
            depth[sid], desired[sid] = bottom, 0
    notes = notes or {}
    for sid in order:
        step = by_id[sid]
        kind: str = step["type"] if isinstance(step.get("type"), str) else ""
        name = step.get("name") if isinstance(step.get("name"), str) else sid
        drawing.nodes[sid] = Node(sid, kind, _text(name, 24), _detail(step), layer=depth[sid],
                                  error=sid == bad, current=sid == current, note=notes.get(sid, ""))
    _columns(drawing, order, desired)
    drawing.edges.append(Edge("entry", order[0]))
    for sid in order:
        for i, (target, label) in enumerate(ways[sid]):
            if target is None or target == "exit":
                end = "exit" if target == "exit" else "complete"
                tid = f"{end}:{sid}:{i}"
                src = drawing.nodes[sid]
                drawing.nodes[tid] = Node(tid, end, _("exit") if end == "exit" else _("complete"),
                                          layer=src.layer, col=src.col, w=TERM_W, h=TERM_H, terminal=True)
                drawing.edges.append(Edge(sid, tid, label))
            elif isinstance(target, str) and target in by_id:
                back = drawing.nodes[target].layer <= drawing.nodes[sid].layer
                drawing.edges.append(Edge(sid, target, label, back=back))
    _place(drawing)
    return drawing


def _entry_text(entry: dict[str, Any]) -> str:
    if "event" in entry:
        return _text(entry["event"])
    if "segment_entered" in entry:
        return _("enters segment %(key)s") % {"key": _text(entry["segment_entered"], 18)}
    if "api" in entry:
        return _("started through the API")
    if "schedule" in entry:
        schedule = entry["schedule"] if isinstance(entry["schedule"], dict) else {}
        return _text(f"{schedule.get('cron', '?')} · {schedule.get('segment', '?')}")
    return ""


def _columns(drawing: Drawing, order: list[str], desired: dict[str, float]) -> None:
    """Integer columns, no two boxes of a layer in one: each takes its wanted column or the next free one."""
    layers: dict[int, list[str]] = {}
    for sid in order:
        layers.setdefault(drawing.nodes[sid].layer, []).append(sid)
    for members in layers.values():
        taken = -1
        for sid in sorted(members, key=lambda s: (desired[s], order.index(s))):
            col = max(int(desired[sid]), taken + 1)
            drawing.nodes[sid].col = col
            taken = col


def _place(drawing: Drawing) -> None:
    """Pixel positions. A step's terminals sit in the half-row under it, side by side."""
    row = BOX_H + GAP_Y + TERM_H + 12
    terminals: dict[str, int] = {}
    for node in drawing.nodes.values():
        node.x = MARGIN + node.col * (BOX_W + GAP_X)
        node.y = MARGIN + node.layer * row
        if node.terminal:
            source = node.id.split(":", 2)[1]
            k = terminals.get(source, 0)
            terminals[source] = k + 1
            node.x += k * (TERM_W + 8)
            node.y += BOX_H + 14
    right = max((n.x + n.w for n in drawing.nodes.values()), default=0)
    # Back edges loop out to the right of the widest column: leave them room.
    drawing.width = right + MARGIN + (40 if any(e.back for e in drawing.edges) else 0)
    drawing.height = max((n.y + n.h for n in drawing.nodes.values()), default=0) + MARGIN


def _edge_path(edge: Edge, a: Node, b: Node, right: int) -> tuple[str, float, float]:
    x1: float
    x2: float
    if edge.back:
        x1, y1 = a.x + a.w, a.y + a.h / 2
        x2, y2 = b.x + b.w, b.y + b.h / 2
        out = right + 10
        return f"M{x1},{y1} C{out},{y1} {out},{y2} {x2 + 6},{y2}", out - 16, (y1 + y2) / 2
    x1, y1 = a.x + a.w / 2, a.y + a.h
    x2, y2 = b.x + b.w / 2, b.y - 6
    if b.terminal:
        x1 = min(max(b.x + b.w / 2, a.x + 12), a.x + a.w - 12)
    mid = (y1 + y2) / 2
    return f"M{x1},{y1} C{x1},{mid} {x2},{mid} {x2},{y2}", (x1 + x2) / 2 + 4, y1 + 14


def render(drawing: Drawing, *, title: str = "") -> str:
    """The drawing as an inline ``<svg>`` (escaped text; presentation attributes, classes for the CSS)."""
    right = max((n.x + n.w for n in drawing.nodes.values()), default=0)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="journey-flow" data-testid="journey-svg" role="img" '
        f'viewBox="0 0 {drawing.width} {drawing.height}" width="{drawing.width}" height="{drawing.height}" '
        f'aria-label="{escape(title)}">',
        '<defs><marker id="jf-arrow" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker></defs>',
    ]
    for edge in drawing.edges:
        a, b = drawing.nodes[edge.source], drawing.nodes[edge.target]
        d, lx, ly = _edge_path(edge, a, b, right)
        out.append(f'<g class="jf-edge{" jf-back" if edge.back else ""}" data-from="{escape(edge.source)}" '
                   f'data-to="{escape(edge.target)}"><path d="{d}" fill="none" stroke="#6b7280" '
                   f'stroke-width="1.5" marker-end="url(#jf-arrow)"/>')
        if edge.label:
            out.append(f'<text x="{lx}" y="{ly}" class="jf-edge-label" font-size="11" fill="#374151">'
                       f'{escape(edge.label)}</text>')
        out.append("</g>")
    for node in drawing.nodes.values():
        out.append(_node_svg(node))
    out.append("</svg>")
    return "".join(out)


def _node_svg(node: Node) -> str:
    classes = ["jf-node", f"jf-{node.kind or 'unknown'}"]
    if node.error:
        classes.append("jf-error")
    if node.current:
        classes.append("jf-current")
    stroke = "#c62828" if node.error else "#1d4ed8" if node.current else "#9ca3af"
    width = 3 if node.error or node.current else 1.2
    attrs = f'class="{" ".join(classes)}" data-step="{escape(node.id)}" data-kind="{escape(node.kind)}"'
    if node.terminal:
        fill = "#fee2e2" if node.kind == "exit" else "#dcfce7"
        return (f'<g {attrs}><rect x="{node.x}" y="{node.y}" width="{node.w}" height="{node.h}" rx="14" '
                f'fill="{fill}" stroke="{stroke}"/><text x="{node.x + node.w / 2}" y="{node.y + 18}" '
                f'text-anchor="middle" font-size="12">{escape(node.title)}</text></g>')
    fill = {"entry": "#eef2ff", "goal": "#fef9c3"}.get(node.kind, "#fff6f5" if node.error else "#ffffff")
    icon = ICONS.get(node.kind, "★" if node.kind in ("entry", "goal") else "?")
    label = type_label(node.kind) if node.kind not in ("entry", "goal") else node.title
    parts = [
        f'<g {attrs}><rect x="{node.x}" y="{node.y}" width="{node.w}" height="{node.h}" rx="8" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="{width}"/>',
        f'<text x="{node.x + 10}" y="{node.y + 20}" font-size="12" fill="#4b5563">{icon} {escape(label)}</text>',
    ]
    if node.kind not in ("entry", "goal"):
        parts.append(f'<text x="{node.x + 10}" y="{node.y + 39}" font-size="13" font-weight="600" '
                     f'fill="#111827" class="jf-id">{escape(node.title)}</text>')
    parts.append(f'<text x="{node.x + 10}" y="{node.y + (57 if node.kind not in ("entry", "goal") else 42)}" '
                 f'font-size="11" fill="#374151">{escape(node.detail)}</text>')
    if node.note:
        parts.append(f'<text x="{node.x + node.w - 8}" y="{node.y + 20}" text-anchor="end" font-size="12" '
                     f'font-weight="700" fill="#1d4ed8" class="jf-note">{escape(node.note)}</text>')
    parts.append("</g>")
    return "".join(parts)


def flow_svg(definition: Any, *, error_field: str | None = None, current: str | None = None,
             notes: dict[str, str] | None = None, title: str = "") -> str:
    """Layout and render in one call, for the views."""
    return render(layout(definition, error_field=error_field, current=current, notes=notes), title=title)
