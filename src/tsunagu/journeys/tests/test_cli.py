"""``tsunagu journey apply FILE --workspace SLUG [--publish]`` through the CLI's entry point: a JSON or YAML
file creates the journey or replaces its draft, ``--publish`` makes the next version; one line out; bad input
exits 2 with one line naming the field, never a traceback."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from tsunagu.cli import main
from tsunagu.core.models import AuditEntry
from tsunagu.journeys.models import Journey, JourneyVersion
from tsunagu.journeys.tests.support import known_events
from tsunagu.messaging.tests.helpers import inapp_communication

pytestmark = pytest.mark.django_db

CART = {
    "entry": {"event": "Checkout Started"},
    "reentry": {"policy": "per_entry_key", "entry_key": "event.properties.cart_id"},
    "goal": {"event": "Order Completed", "within": {"days": 3}},
    "steps": [
        {"id": "wait_purchase", "type": "wait_for_event", "event": "Order Completed", "timeout_seconds": 3600,
         "on_event": "exit", "on_timeout": "reminder"},
        {"id": "reminder", "type": "send", "communication": "notice"},
    ],
}

CART_YAML = """\
key: cart
name: カゴ落ち
definition:
  entry: {event: Checkout Started}
  goal: {event: Order Completed, within: {days: 3}}
  steps:
    - id: wait_purchase
      type: wait_for_event
      event: Order Completed
      timeout_seconds: 3600
      on_event: exit
      on_timeout: reminder
    - id: reminder
      type: send
      communication: notice
"""


@pytest.fixture
def shop(workspace: Any, send: Any) -> Any:
    inapp_communication(workspace)
    known_events(send, "Checkout Started", "Order Completed")
    return workspace


def _file(tmp_path: Any, body: Any, name: str = "cart.json") -> str:
    path = tmp_path / name
    path.write_text(body if isinstance(body, str) else json.dumps(body, ensure_ascii=False), encoding="utf-8")
    return str(path)


def _apply(*args: str) -> int:
    return main(["journey", "apply", *args])


def test_a_json_file_creates_the_draft_and_a_second_apply_replaces_it(shop: Any, tmp_path: Any, capsys: Any) -> None:
    path = _file(tmp_path, {"key": "cart", "name": "Abandoned cart", "definition": CART})
    assert _apply(path, "--workspace", "shop-a") == 0
    assert capsys.readouterr() == ("cart: created, draft saved (published version: none)\n", "")
    journey = Journey.objects.get(workspace=shop, key="cart")
    assert (journey.status, journey.current_version, journey.draft) == ("draft", 0, CART)

    changed = {**CART, "goal": {"event": "Order Completed", "within": {"days": 7}}}
    path = _file(tmp_path, {"key": "cart", "name": "Cart (7 days)", "definition": changed})
    assert _apply(path, "--workspace", "shop-a") == 0
    assert capsys.readouterr().out == "cart: updated, draft saved (published version: none)\n"
    journey.refresh_from_db()
    assert journey.draft["goal"]["within"] == {"days": 7} and journey.name == "Cart (7 days)"
    assert Journey.objects.filter(workspace=shop).count() == 1
    # Through the services, with the CLI's actor in the audit log.
    actions = list(AuditEntry.objects.filter(workspace=shop, target="cart").values_list("action", "actor"))
    assert [a for a, _ in actions] == ["journey.create", "journey.update"]
    assert all("tsunagu CLI" in actor for _, actor in actions)


def test_a_yaml_file_with_publish_makes_the_next_version(shop: Any, tmp_path: Any, capsys: Any) -> None:
    path = _file(tmp_path, CART_YAML, name="cart.yaml")
    assert _apply(path, "--workspace", "shop-a", "--publish") == 0
    assert capsys.readouterr().out == "cart: created, published as version 1\n"
    assert _apply(path, "--workspace", "shop-a", "--publish", "--json") == 0
    out = capsys.readouterr().out
    assert json.loads(out) == {"key": "cart", "result": "updated", "published": True, "version": 2,
                               "status": "active"}
    journey = Journey.objects.get(workspace=shop, key="cart")
    assert journey.name == "カゴ落ち" and journey.status == "active"
    version = JourneyVersion.objects.get(journey=journey, number=2)
    assert version.definition["steps"][0]["timeout_seconds"] == 3600


def test_yaml_is_recognised_by_its_content_on_standard_input(shop: Any, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(CART_YAML))
    assert _apply("-", "--workspace", "shop-a") == 0
    assert capsys.readouterr().out.startswith("cart: created")
    assert Journey.objects.get(workspace=shop, key="cart").draft["entry"] == {"event": "Checkout Started"}


def _bad_reminder() -> dict[str, Any]:
    steps = [CART["steps"][0], {**CART["steps"][1], "communication": "x"}]
    return {"key": "cart", "name": "Cart", "definition": {**CART, "steps": steps}}


@pytest.mark.parametrize(("body", "expected"), [
    (_bad_reminder(), "definition.steps[reminder].communication: no communication with key 'x'"),
    ({"key": "cart", "name": "Cart", "definition": {**CART, "entry": {"event": "Never Seen"}}},
     "definition.entry.event: no event named 'Never Seen' has been received"),
    ({"key": "Cart!", "name": "Cart", "definition": CART}, "key: must be 1–100 lower-case letters"),
    ({"name": "Cart", "definition": CART}, "key: is required"),
    ({"key": "cart", "name": "Cart", "definition": CART, "owner": "me"}, "owner: not a field of a journey file"),
    ("{not json", "is not JSON"),
    ("key: [unclosed", "is not YAML"),
    ("- just\n- a list\n", "file: must be an object with key, name and definition"),
])
def test_bad_input_exits_2_with_one_line_naming_the_field(shop: Any, tmp_path: Any, capsys: Any, body: Any,
                                                          expected: str) -> None:
    name = "cart.json" if isinstance(body, dict) or body.startswith("{") else "cart.yml"
    assert _apply(_file(tmp_path, body, name=name), "--workspace", "shop-a", "--publish") == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and expected in err and "Traceback" not in err
    assert not Journey.objects.filter(workspace=shop).exists()


def test_a_bad_replacement_keeps_the_draft_it_would_have_replaced(shop: Any, tmp_path: Any, capsys: Any) -> None:
    assert _apply(_file(tmp_path, {"key": "cart", "name": "Cart", "definition": CART}), "--workspace", "shop-a") == 0
    assert _apply(_file(tmp_path, _bad_reminder()), "--workspace", "shop-a", "--publish") == 2
    assert "definition.steps[reminder].communication" in capsys.readouterr().err
    journey = Journey.objects.get(workspace=shop, key="cart")
    assert journey.draft == CART and journey.current_version == 0


def test_an_unknown_workspace_or_a_missing_file_exits_2(shop: Any, tmp_path: Any, capsys: Any) -> None:
    path = _file(tmp_path, {"key": "cart", "name": "Cart", "definition": CART})
    assert _apply(path, "--workspace", "nope") == 2
    assert "workspace 'nope' not found" in capsys.readouterr().err
    assert _apply(str(tmp_path / "missing.json"), "--workspace", "shop-a") == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "cannot read" in err and "missing.json" in err
