"""Merge reasons as facts: the English sentence ingestion used to store is read back into the reason code,
the identity of each profile and the event; a sentence that does not read is kept as the merge's note."""

from __future__ import annotations

import ast
import re
from typing import Any

from django.db import migrations, models

_VALUE = r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\""""
# f"{event_type} event {message_id} carried {type} {value!r} of customer {id} and {type} {value!r} of customer {id}"
_SENTENCE = re.compile(
    rf"^(?P<event_type>\S+) event (?P<message_id>.*?) carried (?P<into_type>\S+) (?P<into_value>{_VALUE}) "
    rf"of customer (?P<into>\d+) and (?P<other_type>\S+) (?P<other_value>{_VALUE}) of customer (?P<other>\d+)$",
    re.S,
)


def reason_facts(text: str) -> dict[str, Any] | None:
    """The facts of one stored sentence, or None when it is not one ingestion wrote."""
    match = _SENTENCE.match(text or "")
    if match is None:
        return None
    try:
        into_value = ast.literal_eval(match["into_value"])
        other_value = ast.literal_eval(match["other_value"])
    except (ValueError, SyntaxError):
        return None
    if not isinstance(into_value, str) or not isinstance(other_value, str):
        return None
    return {
        "event_type": match["event_type"],
        "message_id": match["message_id"],
        "into_identity": [match["into_type"], into_value],
        "other_identity": [match["other_type"], other_value],
    }


def forwards(apps: Any, schema_editor: Any) -> None:
    Merge = apps.get_model("customers", "Merge")
    for merge in Merge.objects.exclude(note="").iterator():
        facts = reason_facts(merge.note)
        if facts is None:
            merge.reason_code = "legacy"
            merge.save(update_fields=["reason_code"])
            continue
        merge.reason_code = "event"
        merge.into_identity = facts["into_identity"]
        merge.other_identity = facts["other_identity"]
        merge.message_id = merge.message_id or facts["message_id"]
        merge.event_type = merge.event_type or facts["event_type"]
        merge.note = ""
        merge.save(update_fields=["reason_code", "into_identity", "other_identity", "message_id", "event_type", "note"])


class Migration(migrations.Migration):
    dependencies = [("customers", "0001_initial")]

    operations = [
        migrations.RenameField("merge", "reason", "note"),
        migrations.AlterField("merge", "note", models.TextField(blank=True)),
        migrations.AddField(
            "merge",
            "reason_code",
            models.CharField(choices=[("event", "event"), ("legacy", "legacy")], default="event", max_length=16),
        ),
        migrations.AddField("merge", "into_identity", models.JSONField(blank=True, default=list)),
        migrations.AddField("merge", "other_identity", models.JSONField(blank=True, default=list)),
        # Backwards leaves the facts in place and the sentence column empty: nothing is lost, nothing is re-worded.
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
