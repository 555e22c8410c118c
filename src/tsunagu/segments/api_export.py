"""``GET /api/v1/segments/{key}/export``: a segment's members as CSV or JSON Lines, streamed (docs/api.md).

Any role may read it (``Perm.READ``); the API key's workspace scopes the segment. Bad parameters and an
unknown segment are answered as JSON errors before the first byte of the file is sent.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, StreamingHttpResponse
from ninja import Router

from tsunagu.core.permissions import Perm, authorize
from tsunagu.segments.export import (
    CONTENT_TYPES,
    export_filename,
    export_format_clean,
    export_traits_clean,
    segment_export_chunks,
)
from tsunagu.segments.selectors import segment_get

router = Router(tags=["segments"])


@router.get("/segments/{key}/export", url_name="segment-export",
            summary="A segment's members as CSV or JSON Lines (streamed)")
def export_segment(request: HttpRequest, key: str, format: str = "csv",  # noqa: A002 - the documented name
                   traits: str = "") -> StreamingHttpResponse:
    """customer_id, user_id, email, phone, display_name, entered_at and the ``traits`` named (comma
    separated), one member a row by ascending customer id."""
    workspace: Any = request.auth  # type: ignore[attr-defined]
    authorize(actor=request.api_key, workspace=workspace, perm=Perm.READ)  # type: ignore[attr-defined]
    fmt = export_format_clean(format)
    names = export_traits_clean(traits)
    segment = segment_get(workspace=workspace, key=key)
    response = StreamingHttpResponse(segment_export_chunks(segment=segment, fmt=fmt, traits=names),
                                     content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{export_filename(segment, fmt)}"'
    return response
