"""``tsunagu segment count|export|refresh`` through the CLI's entry point: the count or ``{"count",
"warnings"}``, the members on standard output, the refresh's moves; bad input exits 2 with one line."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tsunagu.cli import main
from tsunagu.core.permissions import SYSTEM
from tsunagu.customers.models import Customer
from tsunagu.segments.models import Membership
from tsunagu.segments.services import segment_create

pytestmark = pytest.mark.django_db

GOLD = {"trait": "tier", "op": "eq", "value": "gold"}


@pytest.fixture
def shop(workspace):
    Customer.objects.bulk_create([
        Customer(workspace=workspace, user_id=f"u{i}", email=f"c{i}@example.jp",
                 traits={"tier": "gold" if i < 3 else "silver", "points": i}) for i in range(5)])
    return workspace


def _rule(tmp_path, rule, name="rule.json"):
    path = tmp_path / name
    path.write_text(json.dumps(rule) if not isinstance(rule, str) else rule, encoding="utf-8")
    return str(path)


def test_count_prints_the_count(shop, tmp_path, capsys):
    assert main(["segment", "count", "--workspace", "shop-a", "--rule", _rule(tmp_path, GOLD)]) == 0
    out, err = capsys.readouterr()
    assert out == "3\n" and err == ""


def test_count_json_has_the_warnings(shop, tmp_path, capsys):
    rule = {"all": [GOLD, {"trait": "tierr", "op": "exists"}]}
    assert main(["segment", "count", "--workspace", "shop-a", "--rule", _rule(tmp_path, rule), "--json"]) == 0
    out, _ = capsys.readouterr()
    body = json.loads(out)
    assert body["count"] == 0 and out.count("\n") == 1
    (warning,) = body["warnings"]
    assert warning["name"] == "tierr" and "tier" in warning["suggestions"]


def test_count_warnings_go_to_stderr_without_json(shop, tmp_path, capsys):
    rule = {"trait": "pointz", "op": "gte", "value": 1}
    assert main(["segment", "count", "--workspace", "shop-a", "--rule", _rule(tmp_path, rule)]) == 0
    out, err = capsys.readouterr()
    assert out == "0\n" and "unknown trait “pointz”" in err and "points" in err


def test_count_reads_standard_input(shop, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"trait": "points", "op": "gte", "value": 3})))
    assert main(["segment", "count", "--workspace", "shop-a", "--rule", "-"]) == 0
    assert capsys.readouterr().out == "2\n"


@pytest.mark.parametrize(("args", "expected"), [
    (["--rule", "RULE:{\"trait\": \"tier\", \"op\": \"bogus\", \"value\": 1}"], "$.op"),
    (["--rule", "RULE:{not json"], "is not JSON"),
    (["--rule", "/nonexistent/rule.json"], "cannot read /nonexistent/rule.json"),
    (["--rule", "RULE:{\"trait\": \"tier\", \"op\": \"eq\", \"value\": \"gold\"}", "--workspace", "nope"],
     "workspace 'nope' not found"),
])
def test_bad_input_exits_2_with_one_line(shop, tmp_path, capsys, args, expected):
    args = [_rule(tmp_path, a[5:]) if a.startswith("RULE:") else a for a in args]
    if "--workspace" not in args:
        args = [*args, "--workspace", "shop-a"]
    assert main(["segment", "count", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and expected in err and "Traceback" not in err


def test_a_missing_flag_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["segment", "count", "--workspace", "shop-a"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--rule" in err


def test_export_writes_the_members(shop, capsysbinary):
    segment_create(workspace=shop, key="gold", name="Gold", rule=GOLD, actor=SYSTEM)
    assert main(["segment", "export", "--workspace", "shop-a", "--key", "gold", "--traits", "points"]) == 0
    rows = list(csv.reader(io.StringIO(capsysbinary.readouterr().out.decode())))
    assert rows[0][-1] == "points" and [r[1] for r in rows[1:]] == ["u0", "u1", "u2"]
    assert main(["segment", "export", "--workspace", "shop-a", "--key", "gold", "--format", "jsonl"]) == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert [json.loads(x)["user_id"] for x in lines] == ["u0", "u1", "u2"]


def test_export_of_an_unknown_segment_exits_2(shop, capsys):
    assert main(["segment", "export", "--workspace", "shop-a", "--key", "nope"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "no segment “nope”" in err


def test_refresh_moves_members_and_says_how_many(shop, capsys):
    segment = segment_create(workspace=shop, key="gold", name="Gold", rule=GOLD, actor=SYSTEM)[0]
    Customer.objects.filter(user_id="u4").update(traits={"tier": "gold"})
    Customer.objects.filter(user_id="u0").update(traits={"tier": "bronze"})
    assert main(["segment", "refresh", "--workspace", "shop-a", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"segments": {"gold": {"entered": 1, "exited": 1}}}
    assert set(Membership.objects.filter(segment=segment).values_list("customer__user_id", flat=True)) == {
        "u1", "u2", "u4"}
    assert main(["segment", "refresh", "--workspace", "shop-a"]) == 0
    assert capsys.readouterr().out == "gold: +0 -0\n"
