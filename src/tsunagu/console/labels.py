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
