"""A send as the console draws it: its chain of attempts (each step skipped or made, the reason code
translated, the times), its status and, when delayed, when it goes; one send's page; and the overview's
counts of sends skipped, delayed or moved on by reason.

Reads only (``messaging.selectors`` and ``messaging.selectors_reports``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse

from tsunagu.console.labels import REASON_LABELS, SEND_STATUS_LABELS, TOPIC_LABELS, label
from tsunagu.console.views_messaging import channel_label, messaging_page, workspace_page
from tsunagu.core import clock
from tsunagu.customers.selectors import customer_get
from tsunagu.messaging.failover import REASONS
from tsunagu.messaging.selectors import send_attempts, send_get, send_status
from tsunagu.messaging.selectors_reports import reason_counts, scheduled_count

REPORT_DAYS = 7


def chain(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``send_attempts`` rows with their labels, for ``_chain.html``."""
    return [
        {
            **a,
            "channel_label": channel_label(a["channel"]),
            "status_label": label(SEND_STATUS_LABELS, a["status"]),
            "reason_label": label(REASON_LABELS, a["reason"]) if a["reason"] else "",
        }
        for a in attempts
    ]


def send_view(send: Any) -> dict[str, Any]:
    """A send with its status (the current delivery's while the chain is under way), its due time when it
    waits, and its chain."""
    status = send_status(send)
    return {
        "s": send,
        "status": status,
        "status_label": label(SEND_STATUS_LABELS, status),
        "due_at": send.due_at if status == "scheduled" else None,
        "chain": chain(send_attempts(send)),
    }


@workspace_page
def send_page(request: HttpRequest, workspace: Any, send_id: int) -> HttpResponse:
    """One send: its facts, its policy and its chain of attempts, with links to the messages made."""
    send = send_get(workspace=workspace, send_id=send_id)
    if send is None:
        raise Http404("send not found")
    customer = customer_get(workspace=workspace, customer_id=send.customer_id) if send.customer_id else None
    steps = []
    for step in (send.policy or {}).get("steps") or []:
        wait = step.get("wait") or {}
        steps.append({"channel": step.get("channel"), "label": channel_label(str(step.get("channel"))),
                      "wait": next(iter(wait.items())) if wait else None})
    return messaging_page(
        request, workspace, "send.html", "archive", send=send_view(send), customer=customer, steps=steps,
        topic_label=label(TOPIC_LABELS, send.version.topic),
    )


def overview_counts(workspace: Any) -> dict[str, Any]:
    """The overview's "never silent" table: sends skipped, delayed or moved on by reason over the last
    ``REPORT_DAYS`` days, in the order the checks run, and how many sends wait now."""
    since = clock.now() - dt.timedelta(days=REPORT_DAYS)
    counts = reason_counts(workspace=workspace, since=since)
    order = [r for r in REASONS if r in counts] + sorted(r for r in counts if r not in REASONS)
    return {
        "days": REPORT_DAYS,
        "rows": [{"reason": r, "label": label(REASON_LABELS, r), **counts[r]} for r in order],
        "scheduled": scheduled_count(workspace=workspace),
    }
