"""Helpers of the computed-trait tests: events with their own times sent through the real tracking API and
applier, and the values read back."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from tsunagu.core.permissions import SYSTEM
from tsunagu.events import reactions
from tsunagu.segments.computed import computed_apply, computed_trait_create
from tsunagu.segments.models import ComputedTrait, ComputedValue

UTC = dt.UTC
_ids = itertools.count()


def at(days_ago: float, now: dt.datetime) -> str:
    return (now - dt.timedelta(days=days_ago)).isoformat()


def track(user: str, event: str, when: dt.datetime | str, **properties: Any) -> dict[str, Any]:
    stamp = when.isoformat() if isinstance(when, dt.datetime) else when
    return {
        "type": "track", "userId": user, "event": event, "timestamp": stamp, "properties": properties,
        "messageId": f"m-{next(_ids)}",
    }


def page(user: str, name: str, when: dt.datetime | str, **properties: Any) -> dict[str, Any]:
    body = track(user, "", when, **properties)
    body.update(type="page", name=name)
    del body["event"]
    return body


def send_batch(send: Any, events: list[dict[str, Any]]) -> None:
    """One /v1/batch request, applied before returning (``send`` runs the applier)."""
    status, body = send("/v1/batch", {"batch": events})
    assert status == 200, body


def declare(workspace: Any, key: str, aggregate: str, event: str, **kw: Any) -> ComputedTrait:
    return computed_trait_create(workspace=workspace, key=key, aggregate=aggregate, event=event, actor=SYSTEM, **kw)


def values(trait: ComputedTrait) -> dict[int, Any]:
    return dict(ComputedValue.objects.filter(trait=trait).values_list("customer_id", "value"))


def rows(trait: ComputedTrait) -> dict[int, tuple[Any, Any, Any]]:
    return {
        cid: (value, num, state)
        for cid, value, num, state in ComputedValue.objects.filter(trait=trait).values_list(
            "customer_id", "value", "num", "state"
        )
    }


@pytest.fixture
def applied_changes(monkeypatch: Any) -> Any:
    """What ``computed_apply`` returned for each applied chunk, in order: the segments reaction (which runs
    it in the applier's transaction) is made to call a recording wrapper."""
    from tsunagu.segments import reactions as segment_reactions

    calls: list[dict[str, set[int]]] = []
    assert "segments" in reactions.registered()

    def recording(**kwargs: Any) -> dict[str, set[int]]:
        changed = computed_apply(**kwargs)
        calls.append(changed)
        return changed

    monkeypatch.setattr(segment_reactions, "computed_apply", recording)
    return calls
