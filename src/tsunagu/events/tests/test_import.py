"""``tsunagu import``: history through the one way in — validated like /v1/batch, appended to the ingest log,
applied by the applier; bad lines reported by number with exit 2, the valid ones kept."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from tsunagu.cli import main
from tsunagu.customers.models import Customer
from tsunagu.events.models import Event
from tsunagu.events.selectors import ingestion_status

pytestmark = pytest.mark.django_db


def ndjson(tmp_path: Any, lines: list[Any]) -> str:
    path = tmp_path / "history.ndjson"
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else orjson.dumps(x) for x in lines) + b"\n")
    return str(path)


def order(i: int, user: str = "m-1") -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": "Order Completed",
        "messageId": f"pos-{i}",
        "timestamp": f"2024-0{1 + i % 9}-01T10:00:00+09:00",
        "properties": {"total": 1000 + i},
    }


def test_valid_lines_are_appended_and_applied_bad_lines_reported(tmp_path, workspace, source, capsys):
    path = ndjson(
        tmp_path,
        [order(1), b"{not json", order(2), {"type": "track", "userId": "null", "event": "X"}, b"", order(3)],
    )
    code = main(["import", path, "--workspace", workspace.slug, "--source", str(source.pk), "--apply", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 2
    assert out["appended"] == 3 and out["applied"] == 3 and out["pending"] == 0
    assert [(r["line"], r["field"]) for r in out["rejected"]] == [(2, "line"), (4, "userId")]
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["pos-1", "pos-2", "pos-3"]
    assert Customer.objects.get(user_id="m-1").event_count == 3
    # History keeps its own times.
    assert Event.objects.get(message_id="pos-2").timestamp.year == 2024


def test_without_apply_the_events_wait_for_a_worker(tmp_path, workspace, source, capsys):
    path = ndjson(tmp_path, [order(i, f"m-{i}") for i in range(7)])
    assert main(["import", path, "--workspace", workspace.slug, "--source", str(source.pk)]) == 0
    assert capsys.readouterr().out.strip() == "appended 7 events to the ingest log; 7 waiting to be applied"
    assert not Event.objects.exists()
    assert ingestion_status(workspace_id=workspace.pk)["pending"] == 7
    # Re-importing the same file stores nothing twice (stable messageIds).
    assert main(["import", path, "--workspace", workspace.slug, "--source", str(source.pk), "--apply"]) == 0
    assert Event.objects.count() == 7
    assert ingestion_status(workspace_id=workspace.pk)["duplicates"] == 7


def test_a_full_backlog_is_made_room_for_not_dropped(tmp_path, workspace, source, settings, capsys):
    settings.TSUNAGU_INGEST_MAX_PENDING = 5
    settings.TSUNAGU_INGEST_RETRY_AFTER = 0
    settings.TSUNAGU_INGEST_BACKLOG_TTL = 0
    path = ndjson(tmp_path, [order(i, f"m-{i % 4}") for i in range(23)])
    code = main(["import", path, "--workspace", workspace.slug, "--source", str(source.pk), "--apply"])
    assert code == 0
    assert Event.objects.count() == 23


def test_an_unknown_source_or_file_is_exit_2_one_line(tmp_path, workspace, source, other_workspace, capsys):
    from tsunagu.core.permissions import SYSTEM
    from tsunagu.events.services import source_create

    foreign = source_create(workspace=other_workspace, name="B", channel="web", actor=SYSTEM)
    path = ndjson(tmp_path, [order(1)])
    assert main(["import", path, "--workspace", workspace.slug, "--source", str(foreign.pk)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"source {foreign.pk} not found" in err
    missing = str(tmp_path / "missing.ndjson")
    assert main(["import", missing, "--workspace", workspace.slug, "--source", str(source.pk)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read" in err and "missing.ndjson" in err
    assert not Event.objects.exists()
