"""The demo's broadcast: the point-expiry notice to the first customers, in-app, run to its end — so the
console's Broadcasts page has a finished one with its summary."""

from __future__ import annotations

from typing import Any

from tsunagu.customers.selectors import customer_list
from tsunagu.messaging.broadcast_expand import broadcast_run_inline
from tsunagu.messaging.broadcasts import broadcast_create


def demo_broadcast(*, workspace: Any, actor: Any, recipients: int = 120) -> int:
    """Create and run the demo broadcast; returns its id. Every listed customer exists, and one id is
    listed twice, so the summary shows a ``duplicate`` beside the sends."""
    ids = list(customer_list(workspace=workspace).order_by("id").values_list("pk", flat=True)[:recipients])
    if not ids:
        return 0
    b = broadcast_create(
        workspace=workspace,
        communication="point-expiry",
        name="ポイント失効のご案内（12月）",
        audience={"customer_ids": [*ids, ids[0]]},
        policy={"steps": [{"channel": "in_app"}]},
        actor=actor,
    )
    broadcast_run_inline(broadcast_id=b.pk, worker_id="demo-loader")
    return b.pk
