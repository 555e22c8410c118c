"""``rate_per_second``: the optional config key of channels whose providers limit how fast one may send
(LINE, SMS). ``messaging.throttle`` spaces deliveries on the channel by it; the channel itself only
checks the value."""

from __future__ import annotations

from typing import Any

MAX_RATE = 10_000.0


def rate_clean(cleaned: dict[str, Any]) -> dict[str, Any]:
    """``cleaned`` with ``rate_per_second`` checked (a number of messages a second, or its text, > 0 and at
    most ``MAX_RATE``; absent or null: no limit); ``ValidationError(field="config.rate_per_second")``."""
    from tsunagu.core.errors import ValidationError

    if cleaned.get("rate_per_second") is None:
        cleaned.pop("rate_per_second", None)
        return cleaned
    value = cleaned["rate_per_second"]
    if isinstance(value, str):  # the console's form posts text
        try:
            value = float(value.strip())
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_RATE:
        raise ValidationError(f"must be a number of messages a second, above 0 and at most {MAX_RATE:g}",
                              field="config.rate_per_second")
    cleaned["rate_per_second"] = float(value)
    return cleaned
