"""Date rendering for the console that never fails on a stored value.

Django's ``date`` filter converts to the current time zone before formatting, and an instant near either
end of ``datetime``'s range (9999-12-31 23:59:59 UTC is past ``datetime.max`` in Tokyo) raises
``OverflowError`` there — one such event, from an import or an SDK with a broken clock, would make every
page that shows it answer 500. ``when`` shows such a value in UTC instead, marked " UTC" so it is not read
as local time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import template
from django.utils import dateformat, timezone

register = template.Library()

# Machine-readable formats (the ``datetime`` attribute of <time>) carry their offset and take no suffix.
_ISO_FORMATS = frozenset({"c", "r", "U"})


@register.filter(expects_localtime=False, is_safe=False)
def when(value: Any, fmt: str = "Y-m-d H:i") -> str:
    """``value`` in the current time zone formatted like ``date``; in UTC with " UTC" when the time zone
    cannot hold it; empty for anything that is not a datetime."""
    if not isinstance(value, dt.datetime):
        return ""
    if timezone.is_naive(value):
        value = value.replace(tzinfo=dt.UTC)
    try:
        return dateformat.format(timezone.localtime(value), fmt)
    except (OverflowError, ValueError):
        pass
    try:
        utc = value.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        utc = value
    text = dateformat.format(utc, fmt)
    return text if fmt in _ISO_FORMATS else f"{text} UTC"
