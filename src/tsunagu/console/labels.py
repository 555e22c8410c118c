"""Translated names the console shows for values stored in English (channels, merge states)."""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

# Keys are the channel values of the event store; a channel added there without a label here is shown as is.
CHANNEL_LABELS: dict[str, Promise] = {
    "web": _("Web"),
    "app": _("App"),
    "email": _("Email"),
    "line": _("LINE"),
    "sms": _("SMS"),
    "store": _("Store"),
    "call_center": _("Call centre"),
    "social": _("Social"),
    "backoffice": _("Back office"),
}


def channel_label(value: str) -> str:
    label = CHANNEL_LABELS.get(value)
    return str(label) if label is not None else value


# Reason codes of the policy engine (messaging.failover.REASONS), plus "cancelled" (a late success took the
# step back). A code without a label is shown as is.
REASON_LABELS: dict[str, Promise] = {
    "no_address": _("No address"),
    "no_consent": _("No consent"),
    "unsubscribed": _("Unsubscribed"),
    "suppressed": _("Suppressed"),
    "capped": _("Frequency cap reached"),
    "quiet_hours": _("Quiet hours"),
    "holiday": _("Public holiday"),
    "failed": _("Failed"),
    "bounced": _("Bounced"),
    "not_delivered": _("Not delivered in time"),
    "not_read": _("Not read in time"),
    "cancelled": _("Cancelled"),
}
# Statuses of a send and of its attempts (GET /api/v1/sends/{id}).
SEND_STATUS_LABELS: dict[str, Promise] = {
    "queued": _("Queued"),
    "scheduled": _("Scheduled"),
    "sending": _("Sending"),
    "sent": _("Sent"),
    "delivered": _("Delivered"),
    "failed": _("Failed"),
    "bounced": _("Bounced"),
    "skipped": _("Skipped"),
    "undeliverable": _("Undeliverable"),
    "cancelled": _("Cancelled"),
    "timed_out": _("Timed out"),
}
TOPIC_LABELS: dict[str, Promise] = {
    "marketing": _("Marketing"),
    "service": _("Service"),
    "transactional": _("Transactional"),
}
# "Revoked" is an API key's state in the catalogue; a consent taken back is "withdrawn" (撤回).
CONSENT_LABELS: dict[str, Promise] = {"granted": _("Granted"), "revoked": _("Withdrawn")}


def label(table: dict[str, Promise], value: str) -> str:
    found = table.get(value)
    return str(found) if found is not None else value
