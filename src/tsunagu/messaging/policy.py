"""Channel policies: the ordered channels a send tries, and what moves it on to the next.

``{"steps": [{"channel": "line"}, {"channel": "sms", "wait": {"delivered": 600}}, {"channel": "email"}],
"late_success": "ignore"}`` — try LINE; when it cannot be used or fails, SMS, and if the SMS is not
delivered within ten minutes, email. A step's ``wait`` names what satisfies it and for how long to wait for
it; without one a step is satisfied once the provider took the message (and still moves on if it fails or
bounces later). ``late_success``: what a success that arrives after the send moved on does to the steps
not yet sent — ``cancel`` them, or ``ignore`` it (the default). See docs/failover.md.
"""

from __future__ import annotations

from typing import Any

from tsunagu.core.errors import ValidationError
from tsunagu.messaging.channels import TYPES

MAX_STEPS = 6
MAX_WAIT = 30 * 24 * 3600
# What each channel reports, and so what a step on it can wait for. Email's "delivered" would only be the
# absence of a bounce, which is not delivery; LINE reports neither delivery nor reads of pushed messages.
REPORTS: dict[str, frozenset[str]] = {
    "email": frozenset({"read"}),
    "sms": frozenset({"delivered", "read"}),
    "line": frozenset(),
    "webpush": frozenset({"read"}),
    "webhook": frozenset({"delivered"}),
    "in_app": frozenset({"delivered", "read"}),
}
LATE_SUCCESS = ("ignore", "cancel")


def policy_default(channels: list[str]) -> dict[str, Any]:
    """The policy of a communication that has none: its variants' channels in their order."""
    return {"steps": [{"channel": c} for c in channels], "late_success": "ignore"}


def policy_clean(value: Any, *, channels: list[str], field: str = "policy") -> dict[str, Any]:
    """``value`` checked and normalised, for a communication whose variants are on ``channels``. Raises
    ``ValidationError`` naming the offending part (``policy.steps[1].wait.delivered``)."""
    if not isinstance(value, dict):
        raise ValidationError("must be an object with steps", field=field)
    unknown = set(value) - {"steps", "late_success"}
    if unknown:
        raise ValidationError(f"unknown key {sorted(unknown)[0]!r} (known: steps, late_success)", field=field)
    steps = value.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ValidationError("must be a non-empty list", field=f"{field}.steps")
    if len(steps) > MAX_STEPS:
        raise ValidationError(f"has {len(steps)} steps; at most {MAX_STEPS}", field=f"{field}.steps")
    late = value.get("late_success", "ignore")
    if late not in LATE_SUCCESS:
        raise ValidationError("must be 'cancel' or 'ignore'", field=f"{field}.late_success")
    clean: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, step in enumerate(steps):
        where = f"{field}.steps[{i}]"
        if not isinstance(step, dict):
            raise ValidationError("must be an object with a channel", field=where)
        if set(step) - {"channel", "wait"}:
            extra = sorted(set(step) - {"channel", "wait"})[0]
            raise ValidationError(f"unknown key {extra!r} (known: channel, wait)", field=where)
        channel = step.get("channel")
        if channel not in TYPES:
            raise ValidationError(f"must be one of {', '.join(TYPES)}", field=f"{where}.channel")
        if channel not in channels:
            raise ValidationError(f"the communication has no {channel} variant", field=f"{where}.channel")
        if channel in seen:
            raise ValidationError(f"{channel} is already an earlier step", field=f"{where}.channel")
        seen.add(channel)
        out: dict[str, Any] = {"channel": channel}
        wait = step.get("wait")
        if wait is not None:
            out["wait"] = _clean_wait(wait, channel=channel, where=f"{where}.wait")
        clean.append(out)
    return {"steps": clean, "late_success": late}


def _clean_wait(wait: Any, *, channel: str, where: str) -> dict[str, int]:
    if not isinstance(wait, dict) or len(wait) != 1:
        raise ValidationError('must be {"delivered": seconds} or {"read": seconds}', field=where)
    (what, seconds), = wait.items()
    if what not in ("delivered", "read"):
        raise ValidationError('must be {"delivered": seconds} or {"read": seconds}', field=where)
    if what not in REPORTS[channel]:
        can = " or ".join(sorted(REPORTS[channel])) or "nothing"
        raise ValidationError(
            f"{channel} does not report {'delivery' if what == 'delivered' else 'reads'} (it can wait for {can})",
            field=f"{where}.{what}",
        )
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= MAX_WAIT:
        raise ValidationError(f"must be a whole number of seconds from 1 to {MAX_WAIT}", field=f"{where}.{what}")
    return {what: seconds}


def policy_resolve(*, override: Any, stored: dict[str, Any] | None, channels: list[str]) -> dict[str, Any]:
    """The policy a new send follows: ``override`` (the send's own, checked), else the communication's
    ``stored`` one — keeping only the steps whose channel still has a variant —, else the default."""
    if override is not None:
        return policy_clean(override, channels=channels)
    if stored:
        steps = [s for s in stored.get("steps", []) if s.get("channel") in channels]
        if steps:
            return {"steps": steps, "late_success": stored.get("late_success", "ignore")}
    return policy_default(channels)
