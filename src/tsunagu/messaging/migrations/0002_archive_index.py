"""The archive's search index (``messaging.archive``): not a model, a database object of each vendor.

SQLite: an FTS5 table holding only the inverted index of each delivery's grams (``content=''``), no
positions (``detail=none``) and no per-row sizes (``columnsize=0``): rowid = the delivery's id.
PostgreSQL: a table of ``tsvector``s with a GIN index. Deliveries that exist already are indexed.
"""

from django.db import migrations

SQLITE = [
    "CREATE VIRTUAL TABLE messaging_archive_index USING fts5(tokens, content='', detail=none, columnsize=0)",
]
POSTGRES = [
    "CREATE TABLE messaging_archive_index (delivery_id bigint PRIMARY KEY, tokens tsvector NOT NULL)",
    "CREATE INDEX messaging_archive_index_gin ON messaging_archive_index USING gin (tokens)",
]


def create(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor not in ("sqlite", "postgresql"):
        raise RuntimeError(f"the archive index supports SQLite and PostgreSQL, not {vendor}")
    for sql in POSTGRES if vendor == "postgresql" else SQLITE:
        schema_editor.execute(sql)
    from tsunagu.messaging.archive import TABLE, document

    Delivery = apps.get_model("messaging", "Delivery")
    fields = ("id", "workspace_id", "channel_type", "communication_id", "created_at", "subject", "body_text")
    rows = Delivery.objects.only(*fields).order_by("id").iterator(chunk_size=2000)
    with schema_editor.connection.cursor() as cursor:

        def flush(batch):
            if vendor == "postgresql":
                cursor.executemany(
                    f"INSERT INTO {TABLE} (delivery_id, tokens) VALUES (%s, array_to_tsvector(%s::text[]))", batch
                )
            else:
                cursor.executemany(
                    f"INSERT INTO {TABLE}(rowid, tokens) VALUES (%s, %s)", [(pk, " ".join(g)) for pk, g in batch]
                )

        batch = []
        for d in rows:
            batch.append((d.pk, sorted(document(d))))
            if len(batch) >= 2000:
                flush(batch)
                batch = []
        if batch:
            flush(batch)


def drop(apps, schema_editor):
    schema_editor.execute("DROP TABLE IF EXISTS messaging_archive_index")


class Migration(migrations.Migration):
    dependencies = [("messaging", "0001_initial")]

    operations = [migrations.RunPython(create, drop)]
