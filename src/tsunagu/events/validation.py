"""Validation of Segment-spec payloads into ``ParsedEvent``s.

Hand-written rather than a schema library because it runs for every event on the hot path and must name
the exact field at fault (``batch[3].event``). Unknown fields are kept in ``extra`` and ignored, as
Segment does, so newer SDKs keep working.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from tsunagu.customers.normalize import is_placeholder

EVENT_TYPES = ("identify", "track", "page", "screen", "group", "alias")
MAX_DEPTH = 32
MAX_ID_LENGTH = 255
MAX_NAME_LENGTH = 200
MAX_MESSAGE_ID_LENGTH = 100


@dataclass(slots=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(slots=True)
class ParsedEvent:
    type: str
    message_id: str
    user_id: str | None
    anonymous_id: str | None
    event: str = ""
    name: str = ""
    group_id: str = ""
    previous_id: str = ""
    original_timestamp: dt.datetime | None = None
    sent_at: dt.datetime | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)


class Invalid(Exception):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


def parse_time(value: Any, where: str, errors: list[FieldError]) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append(FieldError(where, "must be an ISO-8601 date string"))
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        errors.append(FieldError(where, f"{value[:40]!r} is not an ISO-8601 date"))
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        # Stored in UTC: 0001-01-01T00:00+14:00 or 9999-12-31T23:59-12:00 have no UTC datetime.
        parsed.astimezone(dt.UTC)
    except OverflowError:
        errors.append(FieldError(where, f"{value[:40]!r} is out of range once converted to UTC"))
        return None
    return parsed


def _depth_ok(value: Any, limit: int) -> bool:
    if limit <= 0:
        return False
    if isinstance(value, dict):
        return all(_depth_ok(v, limit - 1) for v in value.values())
    if isinstance(value, list):
        return all(_depth_ok(v, limit - 1) for v in value)
    return True


def _id(payload: dict[str, Any], key: str, where: str, errors: list[FieldError]) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        errors.append(FieldError(f"{where}{key}", "must be a string or a number"))
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    if len(text) > MAX_ID_LENGTH:
        errors.append(FieldError(f"{where}{key}", f"is longer than {MAX_ID_LENGTH} characters"))
        return None
    return text or None


def _obj(payload: dict[str, Any], key: str, where: str, errors: list[FieldError]) -> dict[str, Any]:
    value = payload.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append(FieldError(f"{where}{key}", "must be an object"))
        return {}
    return value


def _text(payload: dict[str, Any], key: str, where: str, errors: list[FieldError], *, required: bool) -> str:
    value = payload.get(key)
    if value is None or value == "":
        if required:
            errors.append(FieldError(f"{where}{key}", "is required"))
        return ""
    if not isinstance(value, str):
        errors.append(FieldError(f"{where}{key}", "must be a string"))
        return ""
    if len(value) > MAX_NAME_LENGTH:
        errors.append(FieldError(f"{where}{key}", f"is longer than {MAX_NAME_LENGTH} characters"))
        return ""
    return value


def _refuse_placeholders_only(
    user_id: str | None, anonymous_id: str | None, where: str, errors: list[FieldError]
) -> None:
    """An event whose userId and anonymousId are placeholders ("null", "anonymous", "0000"…) identifies
    nobody: stored, it would start a new empty profile every time. One placeholder beside a usable id is
    fine; identity resolution ignores it."""
    sent = [(key, value) for key, value in (("userId", user_id), ("anonymousId", anonymous_id)) if value]
    if any(not is_placeholder(value) for _, value in sent):
        return
    for key, value in sent:
        errors.append(
            FieldError(
                f"{where}{key}",
                f"{value[:40]!r} is a placeholder, not an identifier: userId or anonymousId is required",
            )
        )


def parse_event(
    payload: Any, *, type_: str | None, where: str, max_bytes: int, batch_sent_at: dt.datetime | None = None
) -> ParsedEvent:
    """Validate one event. ``type_`` is imposed by the endpoint (``/v1/track``) or read from the payload
    (``/v1/batch``); ``where`` prefixes field names in errors (``batch[3].``). Raises ``Invalid``."""
    errors: list[FieldError] = []
    if not isinstance(payload, dict):
        raise Invalid([FieldError(where.rstrip(".") or "body", "must be a JSON object")])
    kind = type_ or payload.get("type")
    if kind is None:
        raise Invalid([FieldError(f"{where}type", f"is required (one of {', '.join(EVENT_TYPES)})")])
    if kind not in EVENT_TYPES:
        raise Invalid([FieldError(f"{where}type", f"{str(kind)[:30]!r} is not one of {', '.join(EVENT_TYPES)}")])
    whole = where.rstrip(".") or "body"
    too_deep = f"is nested deeper than {MAX_DEPTH} levels"
    try:
        encoded = orjson.dumps(payload)
    except TypeError:
        # orjson refuses past 254 levels (far beyond our limit) — and values JSON cannot hold.
        if not _depth_ok(payload, MAX_DEPTH):
            raise Invalid([FieldError(whole, too_deep)]) from None
        raise Invalid([FieldError(whole, "is not representable as JSON")]) from None
    size = len(encoded)
    if size > max_bytes:
        raise Invalid([FieldError(whole, f"event is {size} bytes, over the {max_bytes // 1024} KB limit")])
    # Nesting needs at least one bracket a level: an event with few brackets in all (nearly every event)
    # cannot be too deep, and two C-speed counts replace walking every value.
    if encoded.count(b"{") + encoded.count(b"[") > MAX_DEPTH and not _depth_ok(payload, MAX_DEPTH):
        raise Invalid([FieldError(whole, too_deep)])

    user_id = _id(payload, "userId", where, errors)
    anonymous_id = _id(payload, "anonymousId", where, errors)
    message_id_raw = payload.get("messageId")
    if message_id_raw is None or message_id_raw == "":
        message_id = f"tsunagu-{uuid.uuid4()}"
    elif not isinstance(message_id_raw, str) or len(message_id_raw) > MAX_MESSAGE_ID_LENGTH:
        errors.append(
            FieldError(f"{where}messageId", f"must be a string of at most {MAX_MESSAGE_ID_LENGTH} characters")
        )
        message_id = ""
    else:
        message_id = message_id_raw
    original = parse_time(payload.get("timestamp", payload.get("originalTimestamp")), f"{where}timestamp", errors)
    sent_at = parse_time(payload.get("sentAt"), f"{where}sentAt", errors) or batch_sent_at
    context = _obj(payload, "context", where, errors)
    _obj(payload, "integrations", where, errors)
    event = ParsedEvent(
        type=kind,
        message_id=message_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        original_timestamp=original,
        sent_at=sent_at,
        context=context,
    )
    if kind == "track":
        event.event = _text(payload, "event", where, errors, required=True)
        event.properties = _obj(payload, "properties", where, errors)
    elif kind in ("page", "screen"):
        event.name = _text(payload, "name", where, errors, required=False)
        event.properties = _obj(payload, "properties", where, errors)
        category = payload.get("category")
        if isinstance(category, str) and category and "category" not in event.properties:
            event.properties = {**event.properties, "category": category}
    elif kind == "identify":
        event.traits = _obj(payload, "traits", where, errors)
    elif kind == "group":
        event.group_id = _id(payload, "groupId", where, errors) or ""
        if not event.group_id and not any(e.field == f"{where}groupId" for e in errors):
            errors.append(FieldError(f"{where}groupId", "is required"))
        event.traits = _obj(payload, "traits", where, errors)
    elif kind == "alias":
        event.previous_id = _id(payload, "previousId", where, errors) or ""
        if not event.previous_id and not any(e.field == f"{where}previousId" for e in errors):
            errors.append(FieldError(f"{where}previousId", "is required"))
        if not user_id and not any(e.field == f"{where}userId" for e in errors):
            errors.append(FieldError(f"{where}userId", "is required for alias"))
        # An alias joins exactly these two ids: a placeholder on either side would join strangers.
        for key, value in (("userId", user_id), ("previousId", event.previous_id)):
            if value and is_placeholder(value):
                errors.append(FieldError(f"{where}{key}", f"{value[:40]!r} is a placeholder, not an identifier"))
    if kind != "alias" and not user_id and not anonymous_id and not errors:
        errors.append(FieldError(f"{where}userId", "userId or anonymousId is required"))
    if kind != "alias" and (user_id or anonymous_id):
        _refuse_placeholders_only(user_id, anonymous_id, where, errors)
    if errors:
        raise Invalid(errors)
    return event


# U+0000 can only reach a JSON text escaped; PostgreSQL can store it neither in text nor in jsonb. A
# substring search of the body rules it out for nearly every request before any walk of the values.
NUL_ESCAPE = b"\\u0000"
NUL_MESSAGE = "must not contain the NUL character (U+0000)"


def nul_path(value: Any, path: str, depth: int = 0) -> str | None:
    """The path (``properties.note``) of the first key or string holding U+0000, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if depth > 64:  # deeper than validation allows; it is refused there
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                return where.replace("\x00", "\\u0000")
            if (found := nul_path(item, where, depth + 1)) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := nul_path(item, f"{path}[{index}]", depth + 1)) is not None:
                return found
    return None
