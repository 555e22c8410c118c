"""The workspace's rules around sending: quiet hours, frequency caps, public holidays.

Their settings are checked here (registered with ``core.services`` as settings of the workspace) and
evaluated here for one customer at one moment. Times are the customer's (the ``timezone`` trait, an IANA
name), else the workspace's. See docs/consent.md ("Quiet hours, holidays and caps").
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from typing import Any

from tsunagu.core.errors import ValidationError
from tsunagu.core.models import Workspace

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
TOPICS_WITH_QUIET_HOURS = ("marketing", "service")  # transactional messages always go at once
CAP_TOPICS = ("marketing", "service", "transactional")
PERIODS = {"day": dt.timedelta(days=1), "week": dt.timedelta(days=7), "month": dt.timedelta(days=30)}
HOLIDAY_COUNTRIES = {"jp": "JP"}
MAX_CAPS = 20


# --- settings ------------------------------------------------------------------------------------------


def quiet_hours_clean(value: Any) -> dict[str, dict[str, str]]:
    """``{"marketing": {"start": "21:00", "end": "08:00", "action": "delay"}}`` checked; ``action`` is
    ``delay`` (the default: wait until the window ends) or ``drop`` (skip the send)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError('must be an object of topics: {"marketing": {"start": "21:00", "end": "08:00"}}',
                              field="quiet_hours")
    clean: dict[str, dict[str, str]] = {}
    for topic, window in value.items():
        where = f"quiet_hours.{topic}"
        if topic not in TOPICS_WITH_QUIET_HOURS:
            raise ValidationError("quiet hours apply to marketing and service messages only", field=where)
        if window is None:
            continue
        if not isinstance(window, dict) or set(window) - {"start", "end", "action"}:
            shape = '{"start": "HH:MM", "end": "HH:MM", "action"?: "delay" | "drop"}'
            raise ValidationError(f"must be {shape}", field=where)
        out: dict[str, str] = {}
        for end in ("start", "end"):
            text = window.get(end)
            if not isinstance(text, str) or not _HHMM.match(text):
                raise ValidationError("must be a time of day as HH:MM (00:00–23:59)", field=f"{where}.{end}")
            out[end] = text
        if out["start"] == out["end"]:
            raise ValidationError("must differ from start (an empty window)", field=f"{where}.end")
        action = window.get("action", "delay")
        if action not in ("delay", "drop"):
            raise ValidationError("must be 'delay' or 'drop'", field=f"{where}.action")
        if action != "delay":
            out["action"] = action
        clean[topic] = out
    return clean


def frequency_caps_clean(value: Any) -> list[dict[str, Any]]:
    """``[{"topic": "marketing", "channel"?: "email", "max": 2, "per": "day"}]`` checked."""
    from tsunagu.messaging.channels import TYPES

    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError("must be a list of caps", field="frequency_caps")
    if len(value) > MAX_CAPS:
        raise ValidationError(f"has {len(value)} caps; at most {MAX_CAPS}", field="frequency_caps")
    clean: list[dict[str, Any]] = []
    for i, cap in enumerate(value):
        where = f"frequency_caps[{i}]"
        if not isinstance(cap, dict) or set(cap) - {"topic", "channel", "max", "per"}:
            raise ValidationError('must be {"topic", "channel"?, "max", "per"}', field=where)
        if cap.get("topic") not in CAP_TOPICS:
            raise ValidationError(f"must be one of {', '.join(CAP_TOPICS)}", field=f"{where}.topic")
        channel = cap.get("channel")
        if channel is not None and channel not in TYPES:
            raise ValidationError(f"must be one of {', '.join(TYPES)}", field=f"{where}.channel")
        limit = cap.get("max")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= 10000:
            raise ValidationError("must be a whole number from 0 to 10000", field=f"{where}.max")
        if cap.get("per") not in PERIODS:
            raise ValidationError("must be 'day', 'week' or 'month'", field=f"{where}.per")
        out = {"topic": cap["topic"], "max": limit, "per": cap["per"]}
        if channel is not None:
            out["channel"] = channel
        clean.append(out)
    return clean


def holidays_clean(value: Any) -> str:
    if value is None or value == "":
        return ""
    if value not in HOLIDAY_COUNTRIES:
        raise ValidationError("must be 'jp' or null", field="holidays")
    return str(value)


# --- evaluation ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        return None


def customer_zone(traits: dict[str, Any] | None, workspace: Workspace) -> zoneinfo.ZoneInfo:
    """The customer's time zone: the ``timezone`` trait when it names one, else the workspace's."""
    name = (traits or {}).get("timezone")
    zone = _zone(name) if isinstance(name, str) and 0 < len(name) < 64 and "\x00" not in name else None
    return zone or _zone(workspace.timezone) or zoneinfo.ZoneInfo("Asia/Tokyo")


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def quiet_until(window: dict[str, str] | None, *, now: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime | None:
    """When the quiet ``window`` ends, if ``now`` is inside it (a window may span midnight), else None."""
    if not window:
        return None
    local = now.astimezone(zone)
    start, end = _minutes(window["start"]), _minutes(window["end"])
    at = local.hour * 60 + local.minute
    inside = start <= at < end if start < end else (at >= start or at < end)
    if not inside:
        return None
    day = local.date() if (start < end or at < end) else local.date() + dt.timedelta(days=1)
    opens = dt.datetime.combine(day, dt.time(end // 60, end % 60), tzinfo=zone)
    return opens.astimezone(dt.UTC)


@functools.lru_cache(maxsize=8)
def _calendar(country: str) -> Any:
    import holidays

    return holidays.country_holidays(HOLIDAY_COUNTRIES[country])


def holiday_until(country: str, *, now: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime | None:
    """The start of the next working day, if ``now`` falls on a public holiday of ``country`` (local date)."""
    if not country:
        return None
    calendar = _calendar(country)
    day = now.astimezone(zone).date()
    if day not in calendar:
        return None
    while day in calendar:
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(0, 0), tzinfo=zone).astimezone(dt.UTC)


def caps_for(caps: list[dict[str, Any]], *, topic: str, channel: str) -> list[dict[str, Any]]:
    """The caps that a message of ``topic`` on ``channel`` counts against."""
    return [c for c in caps if c["topic"] == topic and c.get("channel") in (None, channel)]
