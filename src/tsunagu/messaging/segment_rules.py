"""The rule language's consent condition (``{"consent": {"channel": "email", "topic": "marketing"}}``),
answered from messaging's consent records for segments (which sit below messaging): true when the decision
in force — the later of the channel's own and the every-channel one, as ``consent.consent_decision`` reads
them — is a grant."""

from __future__ import annotations

from typing import Any

from tsunagu.messaging.consent import consents_in_force
from tsunagu.messaging.models import Consent


def consent_granted(customer_id: int, channel: str, topic: str) -> bool:
    state = consents_in_force([customer_id])
    decisions = [d for d in (state.get((channel, topic)), state.get(("", topic))) if d is not None]
    return bool(decisions) and max(decisions)[2] == Consent.Status.GRANTED


def consent_granted_sql(channel: str, topic: str, vendor: str) -> tuple[str, list[Any]]:
    table = Consent._meta.db_table
    sql = (
        f"(SELECT k.status FROM {table} k WHERE k.customer_id = c.id AND k.topic = %s "  # noqa: S608
        f"AND k.channel IN (%s, '') ORDER BY k.at DESC, k.id DESC LIMIT 1) = 'granted'"
    )
    return sql, [topic, channel]
