# Dedup by messageId moves from a unique index on the event table to a table of 8-byte keys over a
# look-back window (tsunagu.events.dedup). The keys of the events already stored are copied, so nothing
# stored before the migration can be stored again by a late retry.

import datetime as dt
import hashlib

from django.db import migrations, models

import tsunagu.events.models


def _digest(workspace_id, message_id):
    # Frozen copy of tsunagu.events.dedup.dedup_key (a migration must not change when the app does).
    raw = hashlib.blake2b(message_id.encode(), digest_size=16, key=workspace_id.to_bytes(8, "little")).digest()
    return int.from_bytes(raw[:8], "little", signed=True), int.from_bytes(raw[8:], "little", signed=True)


def copy_keys(apps, schema_editor):
    Event = apps.get_model("events", "Event")
    DedupKey = apps.get_model("events", "DedupKey")
    db = schema_editor.connection.alias
    batch = []
    rows = Event.objects.using(db).order_by("id").values_list("workspace_id", "message_id", "received_at")
    for workspace_id, message_id, received_at in rows.iterator(chunk_size=5000):
        digest, checksum = _digest(workspace_id, message_id)
        seen = int(received_at.timestamp()) if received_at.tzinfo else int(received_at.replace(tzinfo=dt.UTC).timestamp())
        batch.append(DedupKey(digest=digest, workspace_id=workspace_id, checksum=checksum, seen=seen))
        if len(batch) >= 5000:
            DedupKey.objects.using(db).bulk_create(batch, ignore_conflicts=True)
            batch = []
    if batch:
        DedupKey.objects.using(db).bulk_create(batch, ignore_conflicts=True)


class Migration(migrations.Migration):

    dependencies = [
        ('events', '0003_ingest_log'),
    ]

    operations = [
        migrations.CreateModel(
            name='DedupKey',
            fields=[
                ('digest', tsunagu.events.models.Int64KeyField(primary_key=True, serialize=False)),
                ('workspace_id', models.BigIntegerField()),
                ('checksum', models.BigIntegerField()),
                ('seen', models.BigIntegerField()),
            ],
            options={
                'indexes': [models.Index(fields=['workspace_id', 'seen'], name='dedupkey_seen_idx')],
            },
        ),
        migrations.RunPython(copy_keys, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name='event',
            name='event_message_unique',
        ),
    ]
