"""Writes of personas: a segment described as a person (who they are, their goals and pain points, where to
reach them, a picture). One persona per segment."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from django.db import transaction

from tsunagu.core import clock
from tsunagu.core.errors import ValidationError
from tsunagu.core.permissions import Perm, authorize
from tsunagu.core.services import audit_record
from tsunagu.segments.models import Persona, Segment

MAX_PICTURE = 512 * 1024  # bytes of the image itself, before base64
MAX_ITEMS = 20
MAX_ITEM = 300
PICTURE_TYPES = ("image/png", "image/jpeg", "image/webp")
_DATA_URL = re.compile(r"data:(image/(?:png|jpeg|webp));base64,([A-Za-z0-9+/=\s]+)")
CHANNEL_RE = re.compile(r"[a-z][a-z0-9_]{0,19}")


def _magic(mime: str, data: bytes) -> bool:
    """Whether the bytes are the image type the URL says (a data URL's type is only a claim)."""
    if mime == "image/png":
        return data.startswith(b"\x89PNG\r\n\x1a\n")
    if mime == "image/jpeg":
        return data.startswith(b"\xff\xd8\xff")
    return len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def picture_check(picture: str) -> str:
    """``picture`` when it is a data: URL of a PNG, JPEG or WebP image of at most 512 KB (or empty); raises
    ValidationError(field="picture") otherwise."""
    if picture == "":
        return ""
    match = _DATA_URL.fullmatch(picture) if isinstance(picture, str) else None
    if match is None:
        raise ValidationError("picture: a data: URL of a PNG, JPEG or WebP image", field="picture")
    if len(match.group(2)) > MAX_PICTURE * 4 // 3 + 16:
        raise ValidationError("picture: at most 512 KB", field="picture")
    try:
        data = base64.b64decode(re.sub(r"\s", "", match.group(2)), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationError("picture: the image is not valid base64", field="picture") from exc
    if len(data) > MAX_PICTURE:
        raise ValidationError("picture: at most 512 KB", field="picture")
    if not _magic(match.group(1), data):
        raise ValidationError(f"picture: the file is not a {match.group(1).split('/')[1].upper()} image",
                              field="picture")
    return f"data:{match.group(1)};base64,{base64.b64encode(data).decode()}"


def picture_from_upload(content: bytes, content_type: str = "") -> str:
    """An uploaded file as the data: URL ``persona_save`` takes, its type told by its bytes."""
    for mime in PICTURE_TYPES:
        if _magic(mime, content[:16]):
            return f"data:{mime};base64,{base64.b64encode(content).decode()}"
    raise ValidationError("picture: a PNG, JPEG or WebP image", field="picture")


def _texts(value: Any, field: str) -> list[str]:
    if isinstance(value, str):
        value = value.splitlines()
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(f"{field}: a list of texts", field=field)
    out = [v.strip() for v in value if v.strip()]
    if len(out) > MAX_ITEMS:
        raise ValidationError(f"{field}: at most {MAX_ITEMS} items", field=field)
    if any(len(v) > MAX_ITEM or "\x00" in v for v in out):
        raise ValidationError(f"{field}: at most {MAX_ITEM} characters each", field=field)
    return out


def persona_save(
    *, segment: Segment, actor: Any, description: str = "", goals: Any = (), pain_points: Any = (),
    preferred_channels: Any = (), picture: str | None = None,
) -> Persona:
    """Create or change the persona of ``segment``. ``goals`` and ``pain_points`` are lists of texts (or one
    text, a line each); ``preferred_channels`` channel names (email, line, …); ``picture`` a data: URL
    (``picture_check``), "" to remove it, None to keep it. One transaction, audited (without the picture's
    bytes). Raises ValidationError naming the field, PermissionDenied without Perm.SEGMENTS."""
    workspace = segment.workspace
    authorize(actor=actor, workspace=workspace, perm=Perm.SEGMENTS)
    if not isinstance(description, str) or len(description) > 5000 or "\x00" in description:
        raise ValidationError("description: at most 5000 characters", field="description")
    goals_list = _texts(goals, "goals")
    pains_list = _texts(pain_points, "pain_points")
    channels = _texts(preferred_channels, "preferred_channels")
    if any(not CHANNEL_RE.fullmatch(c) for c in channels):
        raise ValidationError("preferred_channels: channel names (email, line, sms, …)", field="preferred_channels")
    checked = None if picture is None else picture_check(picture)
    with transaction.atomic():
        persona = Persona.objects.select_for_update().filter(segment=segment).first()
        created = persona is None
        if persona is None:
            persona = Persona(workspace=workspace, segment=segment)
        persona.description = description.strip()
        persona.goals, persona.pain_points = goals_list, pains_list
        persona.preferred_channels = list(dict.fromkeys(channels))
        if checked is not None:
            persona.picture = checked
        persona.updated_at = clock.now()
        persona.save()
        audit_record(
            workspace=workspace, actor=actor, action="persona.created" if created else "persona.updated",
            target=segment.key,
            data={"description": persona.description, "goals": goals_list, "pain_points": pains_list,
                  "preferred_channels": persona.preferred_channels,
                  "picture_bytes": len(base64.b64decode(persona.picture.split(",", 1)[1])) if persona.picture else 0},
        )
    return persona


def persona_delete(*, persona: Persona, actor: Any) -> None:
    """Remove a persona (its segment stays). Audited."""
    authorize(actor=actor, workspace=persona.workspace, perm=Perm.SEGMENTS)
    with transaction.atomic():
        audit_record(workspace=persona.workspace, actor=actor, action="persona.deleted", target=persona.segment.key)
        persona.delete()
