"""The channel-policy part of the communication editor: the ordered steps (a channel, and optionally what
to wait for and how long), ``late_success``, in and out of the posted form.

Each step's wait offers only what its channel reports (``messaging.policy.REPORTS``); when the operator
picks another channel, htmx asks for the section again (``views_messaging.communication_policy``) so the
choices follow. Without script the server still refuses a wait the channel cannot report, beside the field.
The rows are compacted (a blank row is no step), so row *i* is ``policy.steps[i]`` of the services' errors.
"""

from __future__ import annotations

import re
from typing import Any

from django.http import QueryDict
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from tsunagu.messaging.policy import LATE_SUCCESS, MAX_STEPS, REPORTS

UNITS = (("seconds", 1, gettext_lazy("seconds")), ("minutes", 60, gettext_lazy("minutes")),
         ("hours", 3600, gettext_lazy("hours")))
WAITS = {"delivered": gettext_lazy("Delivered within"), "read": gettext_lazy("Read within")}
LATE_LABELS = {
    "ignore": gettext_lazy("Ignore it: the next channel's message stands"),
    "cancel": gettext_lazy("Cancel the steps not yet sent"),
}
_STEP_FIELD = re.compile(r"^policy\.steps\[(\d+)\](?:\.(\w+))?")


def _amount(seconds: int) -> tuple[str, str]:
    """(amount, unit) for showing ``seconds``: the largest unit that divides it."""
    for name, size, _label in reversed(UNITS):
        if seconds % size == 0:
            return str(seconds // size), name
    return str(seconds), "seconds"


def rows_from_policy(policy: dict[str, Any] | None) -> list[dict[str, str]]:
    rows = []
    for step in (policy or {}).get("steps") or []:
        wait = step.get("wait") or {}
        kind, seconds = next(iter(wait.items())) if wait else ("", 0)
        amount, unit = _amount(int(seconds)) if kind else ("", "minutes")
        rows.append({"channel": str(step.get("channel", "")), "wait": kind, "amount": amount, "unit": unit})
    return rows


def rows_from_post(post: QueryDict) -> tuple[list[dict[str, str]], str]:
    """The posted steps (blank rows left out) and ``late_success``."""
    try:
        count = min(int(post.get("policy_count", "0")), MAX_STEPS + 1)
    except ValueError:
        count = 0
    rows = []
    for i in range(count):
        channel = post.get(f"p{i}-channel", "").strip()
        if not channel:
            continue
        rows.append({
            "channel": channel,
            "wait": post.get(f"p{i}-wait", "").strip(),
            "amount": post.get(f"p{i}-amount", "").strip(),
            "unit": post.get(f"p{i}-unit", "minutes"),
        })
    return rows, post.get("late_success", "ignore")


def policy_value(rows: list[dict[str, str]], late: str) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The policy the rows describe (None: no steps, the variants' order) for ``policy_clean``, and the
    errors found on the way (an amount that is not a whole number), keyed like the services' fields."""
    if not rows:
        return None, {}
    steps: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    sizes = {name: size for name, size, _label in UNITS}
    for i, row in enumerate(rows):
        step: dict[str, Any] = {"channel": row["channel"]}
        if row["wait"]:
            amount = row["amount"]
            if not amount.isdigit() or int(amount) < 1:
                errors[f"policy.steps[{i}].wait.{row['wait']}"] = _("Enter a whole number of at least 1.")
            else:
                step["wait"] = {row["wait"]: int(amount) * sizes.get(row["unit"], 60)}
        steps.append(step)
    return {"steps": steps, "late_success": late}, errors


def error_place(field: str) -> tuple[int | None, str]:
    """(row, part) of a services error's field: ``policy.steps[1].wait.delivered`` → (1, "wait");
    ``policy.late_success`` → (None, "late_success"); the policy as a whole → (None, "")."""
    found = _STEP_FIELD.match(field)
    if found:
        return int(found.group(1)), found.group(2) or ""
    return None, field.removeprefix("policy").lstrip(".")


def policy_section(
    rows: list[dict[str, str]], late: str, *, channels: list[str], errors: dict[str, str], label: Any
) -> dict[str, Any]:
    """What ``_policy.html`` shows: a row per step plus one blank to add a step (while there are channels
    left and fewer than the maximum), each with the wait choices its channel allows, and the errors placed
    beside their field."""
    row_errors: dict[int, dict[str, str]] = {}
    general, late_error = [], ""
    for field, message in errors.items():
        index, part = error_place(field)
        if index is not None and index < len(rows):
            row_errors.setdefault(index, {})[part or "channel"] = message
        elif part == "late_success":
            late_error = message
        else:
            general.append(message)
    shown = list(rows)
    if len(shown) < min(MAX_STEPS, len(channels)):
        shown.append({"channel": "", "wait": "", "amount": "", "unit": "minutes"})
    out = []
    for i, row in enumerate(shown):
        options = list(dict.fromkeys([*channels, *([row["channel"]] if row["channel"] else [])]))
        reports = sorted(REPORTS.get(row["channel"], frozenset()))
        out.append({
            "index": i,
            "channel": row["channel"],
            "channels": [(c, label(c)) for c in options],
            "waits": [(w, WAITS[w]) for w in ("delivered", "read") if w in reports],
            # A wait the channel cannot report stays shown (and refused on save) rather than dropped unseen.
            "wait": row["wait"] if row["wait"] in reports or not row["channel"] else "",
            "bad_wait": row["wait"] if row["wait"] and row["wait"] not in reports and row["channel"] else "",
            "amount": row["amount"],
            "unit": row["unit"],
            "errors": row_errors.get(i, {}),
        })
    return {
        "rows": out,
        "count": len(out),
        "late_success": late if late in LATE_SUCCESS else "ignore",
        "late_choices": [(v, LATE_LABELS[v]) for v in ("ignore", "cancel")],
        "late_error": late_error,
        "units": [(name, text) for name, _size, text in UNITS],
        "errors": general,
        "default": " → ".join(str(label(c)) for c in channels),
    }
