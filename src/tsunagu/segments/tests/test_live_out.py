"""Segments out, end to end on a real server (`tsunagu up`, web + worker): an event that qualifies a
customer reaches the segment's webhook — signed, verified by the receiver with ``standardwebhooks`` — with
no test code running the applier or the worker; the export and ``tsunagu segment count`` read the same
database."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tsunagu.testing.standins.webhook import WebhookReceiver

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_an_entry_reaches_the_webhook_and_the_export(live_workspace: Any, tmp_path: Any) -> None:
    server, write_key, token, slug = live_workspace
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    assert api.patch(f"{server.url}/api/v1/workspace/settings", timeout=10,
                     json={"allow_private_webhooks": True}).status_code == 200
    rule = {"trait": "plan", "op": "eq", "value": "premium"}
    r = api.post(f"{server.url}/api/v1/segments", timeout=10, json={"key": "premium", "name": "Premium", "rule": rule})
    assert r.status_code == 201, r.text
    secret = api.get(f"{server.url}/api/v1/segments/premium/webhook", timeout=10).json()["secret"]
    with WebhookReceiver(secret) as hook:
        r = api.put(f"{server.url}/api/v1/segments/premium", timeout=10, json={"webhook_url": hook.url("/in")})
        assert r.status_code == 200, r.text
        r = requests.post(f"{server.url}/v1/identify", auth=(write_key, ""), timeout=10,
                          json={"userId": "u-live", "traits": {"plan": "premium", "name": "花子"}})
        assert r.status_code == 200, r.text
        (got,) = hook.wait_for(1, timeout=60)
        assert hook.rejected == []
        assert got.payload["segment"] == "premium"
        assert [(c["user_id"], c["entered"], c["reason"]) for c in got.payload["changes"]] == [
            ("u-live", True, "event")]

    export = api.get(f"{server.url}/api/v1/segments/premium/export", params={"format": "jsonl", "traits": "name"},
                     timeout=10)
    assert export.status_code == 200
    (row,) = [json.loads(line) for line in export.text.splitlines()]
    entered = got.payload["changes"][0]["customer_id"]
    assert (row["user_id"], row["name"], row["customer_id"]) == ("u-live", "花子", entered)

    path = tmp_path / "rule.json"
    path.write_text(json.dumps(rule))
    counted = server.cli("segment", "count", "--workspace", slug, "--rule", str(path), "--json")
    assert json.loads(counted.stdout) == {"count": 1, "warnings": []}
