"""Computed traits (being built on branch i9-computed): until then no trait changes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tsunagu.core.models import Workspace


def computed_apply(*, workspace: Workspace, events: list[Any], merges: list[tuple[int, int]]) -> dict[str, set[int]]:
    return {}


def computed_refresh(*, workspace: Workspace, now: dt.datetime | None = None) -> dict[str, set[int]]:
    return {}
