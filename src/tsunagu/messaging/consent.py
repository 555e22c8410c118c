"""Consent per channel and topic, with its proof, and what it allows.

Every decision is a ``Consent`` row kept for ever (source, time, the wording shown): the latest one for a
(channel, topic) — or for every channel, ``channel`` blank — is in force. The defaults follow Japanese law
and carriers' practice (docs/consent.md):

- marketing by email or SMS needs a prior opt-in (特定電子メール法: 「オプトイン方式」);
- marketing on LINE, web push and in-app goes to those who follow the account, subscribed or use the app,
  until they revoke it;
- service and transactional messages need no opt-in; a revoked service consent stops service messages,
  while a transactional message (a receipt, a password reset) ignores marketing and service choices.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from tsunagu.core import clock
from tsunagu.core.errors import ValidationError
from tsunagu.core.permissions import Perm, actor_label, authorize
from tsunagu.customers.models import Customer
from tsunagu.messaging.channels import TYPES
from tsunagu.messaging.models import Consent, Topic
from tsunagu.segments.services import segments_reevaluate

OPT_IN_REQUIRED = frozenset({("email", "marketing"), ("sms", "marketing")})
TOPICS = tuple(Topic.values)
SOURCES_MAX = 100
TEXT_MAX = 5000


def _clean(channel: Any, topic: Any, status: Any, source: Any, text: Any) -> tuple[str, str, str, str, str]:
    channel = "" if channel in (None, "", "all") else channel
    if channel and channel not in TYPES:
        raise ValidationError(f"must be one of {', '.join(TYPES)} or 'all'", field="channel")
    if topic not in TOPICS or topic == "transactional":
        raise ValidationError("must be 'marketing' or 'service'", field="topic")
    if status not in Consent.Status.values:
        raise ValidationError("must be 'granted' or 'revoked'", field="status")
    if not isinstance(source, str) or not source.strip() or len(source) > SOURCES_MAX or "\x00" in source:
        raise ValidationError(f"must be a non-empty string of at most {SOURCES_MAX} characters", field="source")
    text = "" if text is None else text
    if not isinstance(text, str) or len(text) > TEXT_MAX or "\x00" in text:
        raise ValidationError(f"must be a string of at most {TEXT_MAX} characters", field="text")
    return channel, topic, status, source.strip(), text


def consent_set(
    *,
    customer: Customer,
    channel: Any,
    topic: Any,
    status: Any,
    source: Any,
    actor: Any,
    text: Any = "",
    at: dt.datetime | None = None,
    event: bool = True,
) -> Consent:
    """Record a consent decision of ``customer`` (keys and members that may send). One transaction; the
    decision reaches the customer's timeline as ``Consent Granted`` / ``Consent Revoked`` after commit
    (``event=False`` when it came from an event already there, such as an ``identify``). Raises
    ``ValidationError`` naming the field."""
    authorize(actor=actor, workspace=customer.workspace, perm=Perm.SEND)
    channel, topic, status, source, text = _clean(channel, topic, status, source, text)
    with transaction.atomic():
        row = Consent.objects.create(
            workspace_id=customer.workspace_id,
            customer=customer,
            channel=channel,
            topic=topic,
            status=status,
            source=source,
            text=text,
            actor=actor_label(actor),
            at=at or clock.now(),
        )
        if event:
            transaction.on_commit(lambda: _timeline(row))
        # Segments whose rule asks for this consent move with the decision, in its transaction.
        segments_reevaluate(workspace=customer.workspace, customer_ids=[customer.pk])
    return row


def _timeline(row: Consent) -> None:
    from tsunagu.messaging.timeline import customer_timeline_append

    customer_timeline_append(
        customer=row.customer,
        event=f"Consent {row.status.title()}",
        properties={"channel": row.channel or "all", "topic": row.topic, "source": row.source},
        message_id=f"tsunagu:consent:{row.pk}",
        at=row.at,
    )


Decisions = dict[tuple[str, str], tuple[dt.datetime, int, str]]


def consents_in_force(customer_ids: list[int]) -> Decisions:
    """{(channel or "", topic): (at, id, status)} — the latest decision for each, over the customer and
    the profiles merged into it."""
    state: Decisions = {}
    rows = Consent.objects.filter(customer_id__in=customer_ids).values_list("channel", "topic", "status", "at", "id")
    for channel, topic, status, at, pk in rows:
        key = (channel, topic)
        if key not in state or (at, pk) > state[key][:2]:
            state[key] = (at, pk, status)
    return state


def consent_decision(state: Decisions, *, channel: str, topic: str) -> str:
    """``""`` when a message of ``topic`` may go on ``channel``, else the reason code: ``no_consent`` (an
    opt-in is required and was never given) or ``unsubscribed`` (revoked)."""
    if topic == "transactional":
        return ""
    # The later of the channel's own decision and the every-channel one is in force: "unsubscribe from
    # all" after an email opt-in stops email, an email opt-in after it allows email again.
    decisions = [d for d in (state.get((channel, topic)), state.get(("", topic))) if d is not None]
    latest = max(decisions)[2] if decisions else None
    if latest == "revoked":
        return "unsubscribed"
    if latest is None and (channel, topic) in OPT_IN_REQUIRED:
        return "no_consent"
    return ""


def consent_history(*, customer: Customer) -> QuerySet[Consent]:
    """Every decision of the customer (and of profiles merged into it), newest first."""
    from tsunagu.messaging.selectors import customer_ids

    return Consent.objects.filter(customer_id__in=customer_ids(customer)).order_by("-at", "-id")


def consent_current(*, customer: Customer) -> list[dict[str, Any]]:
    """The decisions in force, one per (channel, topic), for the API and the console."""
    from tsunagu.messaging.selectors import customer_ids

    latest: dict[tuple[str, str], Consent] = {}
    for row in Consent.objects.filter(customer_id__in=customer_ids(customer)).order_by("at", "id"):
        latest[(row.channel, row.topic)] = row
    return [
        {"channel": r.channel or "all", "topic": r.topic, "status": r.status, "source": r.source, "at": r.at}
        for r in sorted(latest.values(), key=lambda r: (r.topic, r.channel))
    ]


def identify_consents(traits: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The consent decisions an ``identify`` carries as traits: ``consent_<channel>_<topic>`` or
    ``consent_<topic>`` (every channel) set to true/false (or "granted"/"revoked"). [(channel, topic,
    status)]; other values are ignored."""
    out: list[tuple[str, str, str]] = []
    for key, value in traits.items():
        if not isinstance(key, str) or not key.startswith("consent_"):
            continue
        if value in (True, "granted"):
            status = "granted"
        elif value in (False, "revoked"):
            status = "revoked"
        else:
            continue
        rest = key.removeprefix("consent_")
        for topic in ("marketing", "service"):
            if rest == topic:
                out.append(("", topic, status))
            elif rest.endswith("_" + topic) and rest.removesuffix("_" + topic) in TYPES:
                out.append((rest.removesuffix("_" + topic), topic, status))
    return out



def delivery_unsubscribe(*, delivery: Any, one_click: bool) -> None:
    """The recipient of ``delivery`` unsubscribed through its link (the page's form, or a mail client's
    RFC 8058 one-click POST): the address is suppressed for the message's topic, the customer's consent for
    that topic on that channel is revoked (its proof: the message), and the delivery records it. Each write
    is idempotent; a second unsubscribe changes nothing that matters."""
    from tsunagu.core.permissions import SYSTEM
    from tsunagu.messaging.delivery import Report, delivery_report
    from tsunagu.messaging.services import suppression_add

    source = "list_unsubscribe" if one_click else "unsubscribe_link"
    with transaction.atomic():
        suppression_add(
            workspace=delivery.workspace,
            channel_type=delivery.channel_type,
            address=delivery.address,
            topic=delivery.topic,
            reason="unsubscribe",
            detail=f"{source} of delivery {delivery.pk}",
        )
        if delivery.customer_id is not None and delivery.topic != "transactional":
            consent_set(
                customer=delivery.customer, channel=delivery.channel_type, topic=delivery.topic,
                status="revoked", source=source, actor=SYSTEM, text=f"unsubscribed from message {delivery.key}",
            )
        delivery_report(
            delivery=delivery,
            report=Report(status="unsubscribed", data={"one_click": one_click, "topic": delivery.topic}),
        )
