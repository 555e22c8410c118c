"""The flow drawing's layout: layers are the BFS depth from the first step, branches open columns to the
right, loops are drawn as back edges, each way out to "exit" or completion gets its own terminal, errors mark
the step their field names — and a definition that is not one yet still draws without raising."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import translation

from tsunagu.console.journey_svg import duration, error_step, flow_svg, layout

CART: dict[str, Any] = {
    "entry": {"event": "Checkout Started"},
    "goal": {"event": "Order Completed", "within": {"days": 3}},
    "steps": [
        {"id": "wait_purchase", "type": "wait_for_event", "event": "Order Completed", "timeout_seconds": 3600,
         "on_event": "exit", "on_timeout": "ab"},
        {"id": "ab", "type": "split", "paths": [{"percent": 45, "next": "reminder"}, {"percent": 45, "next": "coupon"}],
         "holdout": 10},
        {"id": "reminder", "type": "send", "communication": "cart-reminder", "next": "check"},
        {"id": "coupon", "type": "send", "communication": "cart-coupon", "next": "check"},
        {"id": "check", "type": "branch", "rule": {"trait": "plan", "op": "eq", "value": "gold"},
         "then": "thanks", "else": "exit"},
        {"id": "thanks", "type": "update_traits", "traits": {"thanked": True}},
    ],
}


@pytest.fixture(autouse=True)
def english() -> Any:
    # The labels are translated; these tests read the English ones (the default language is Japanese).
    with translation.override("en"):
        yield


def test_layers_are_the_bfs_depth_and_branches_open_columns() -> None:
    d = layout(CART)
    layer = {sid: d.nodes[sid].layer for sid in ("wait_purchase", "ab", "reminder", "coupon", "check", "thanks")}
    assert layer == {"wait_purchase": 1, "ab": 2, "reminder": 3, "coupon": 3, "check": 4, "thanks": 5}
    assert (d.nodes["entry"].layer, d.nodes["goal"].layer) == (0, 0)
    assert d.nodes["goal"].col == 1 and d.nodes["goal"].x > d.nodes["entry"].x  # beside the entry
    # The split's first path goes straight down; the second opens the next column.
    assert (d.nodes["reminder"].col, d.nodes["coupon"].col) == (d.nodes["ab"].col, d.nodes["ab"].col + 1)
    assert d.nodes["coupon"].x > d.nodes["reminder"].x
    assert d.nodes["reminder"].y == d.nodes["coupon"].y > d.nodes["ab"].y
    # No two boxes overlap.
    boxes = [n for n in d.nodes.values()]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            apart = a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y
            assert apart, (a.id, b.id)
    assert all(n.x + n.w <= d.width and n.y + n.h <= d.height for n in boxes)


def test_edges_carry_the_branch_labels_and_terminals_are_per_edge() -> None:
    d = layout(CART)
    edges = {(e.source, e.target): e.label for e in d.edges}
    assert edges[("entry", "wait_purchase")] == ""
    assert edges[("wait_purchase", "exit:wait_purchase:0")] == "event"
    assert edges[("wait_purchase", "ab")] == "timeout"
    assert edges[("ab", "reminder")] == "A 45%" and edges[("ab", "coupon")] == "B 45%"
    assert edges[("ab", "exit:ab:2")] == "holdout 10%"
    assert edges[("check", "thanks")] == "yes" and edges[("check", "exit:check:1")] == "no"
    assert ("thanks", "complete:thanks:0") in edges  # the last step without next: the run completes
    assert d.nodes["complete:thanks:0"].kind == "complete" and d.nodes["exit:check:1"].kind == "exit"
    # A terminal sits under its step, in its column.
    assert d.nodes["exit:check:1"].y > d.nodes["check"].y and d.nodes["exit:check:1"].col == d.nodes["check"].col


def test_a_loop_through_a_wait_is_a_back_edge() -> None:
    d = layout({"entry": {"api": True}, "steps": [
        {"id": "nudge", "type": "send", "communication": "n"},
        {"id": "pause", "type": "wait", "seconds": 86400, "next": "nudge"}]})
    (back,) = [e for e in d.edges if e.back]
    assert (back.source, back.target) == ("pause", "nudge")
    assert not any(e.back for e in d.edges if e.source == "nudge")
    assert d.width > max(n.x + n.w for n in d.nodes.values())  # room for the curve on the right


def test_error_fields_name_their_step() -> None:
    assert error_step("definition.steps[reminder].communication", CART) == "reminder"
    assert error_step("steps[ab].paths[0].percent", CART) == "ab"
    assert error_step("definition.steps[1].id", CART) == "ab"  # an index: the step at it
    assert error_step("definition.entry.event", CART) is None
    d = layout(CART, error_field="definition.steps[coupon].communication")
    assert [n.id for n in d.nodes.values() if n.error] == ["coupon"]
    assert [n.id for n in layout(CART, error_field="definition.entry.event").nodes.values() if n.error] == ["entry"]


def test_the_svg_has_a_group_per_node_and_edge_and_escapes_text() -> None:
    definition = {"entry": {"event": "<script>"}, "steps": [{"id": "a", "type": "send", "communication": "x&y"}]}
    svg = flow_svg(definition, error_field="definition.steps[a].communication", current="a", notes={"a": "3"})
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "x&amp;y" in svg
    assert 'class="jf-node jf-send jf-error jf-current" data-step="a"' in svg
    assert 'stroke="#c62828"' in svg and ">3</text>" in svg
    assert svg.count('class="jf-edge') == 2  # entry → a, a → complete


@pytest.mark.parametrize("definition", [
    None, [], "text", {}, {"steps": "x"}, {"steps": [1, None, {"id": 5}]}, {"entry": [], "goal": "x"},
    {"steps": [{"id": "a", "type": "split", "paths": [{"next": "zzz"}, 7], "holdout": "x"}]},
    {"steps": [{"id": "a", "type": "branch", "then": "a"}, {"id": "a", "type": "wait"}]},
    {"steps": [{"id": "a", "type": "nope", "next": ["x"]}, {"id": "orphan", "type": "exit"}]},
])
def test_anything_draws_without_raising(definition: Any) -> None:
    svg = flow_svg(definition, error_field="definition.steps[0].id")
    assert svg.startswith("<svg") and 'data-step="entry"' in svg


def test_an_unreachable_step_is_drawn_under_the_rest() -> None:
    d = layout({"entry": {"api": True}, "steps": [{"id": "a", "type": "exit"}, {"id": "b", "type": "exit"}]})
    assert d.nodes["b"].layer > d.nodes["a"].layer


def test_durations_read_in_two_units() -> None:
    assert [duration(s) for s in (0, 45, 90, 3600, 86400 + 7200 + 5, None)] == [
        "0 s", "45 s", "1 min 30 s", "1 h", "1 d 2 h", "?"]
