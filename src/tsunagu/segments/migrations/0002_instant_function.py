"""``tsunagu_instant(text, tz)`` on PostgreSQL: the rule language's date strings as seconds since 1970, NULL
for anything else — the same grammar as ``segments.rule.values.DATE_RE`` (SQLite calls that Python code)."""

from django.db import migrations

FUNCTION = r"""
CREATE OR REPLACE FUNCTION tsunagu_instant(v text, tz text) RETURNS double precision AS $$
DECLARE
    m text[];
    ts timestamp;
    off text;
BEGIN
    m := regexp_match(v, '^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?)?(Z|[+-][0-9]{2}:[0-9]{2})?$');
    IF m IS NULL THEN
        RETURN NULL;
    END IF;
    IF coalesce(m[4], '0')::int > 23 OR coalesce(m[5], '0')::int > 59 OR coalesce(m[6], '0')::int > 59 THEN
        RETURN NULL;
    END IF;
    BEGIN
        ts := make_timestamp(m[1]::int, m[2]::int, m[3]::int, coalesce(m[4], '0')::int, coalesce(m[5], '0')::int,
                             (coalesce(m[6], '0') || '.' || rpad(coalesce(m[7], '0'), 6, '0'))::double precision);
    EXCEPTION WHEN others THEN
        RETURN NULL;
    END;
    off := m[8];
    IF off IS NULL THEN
        RETURN extract(epoch FROM (ts AT TIME ZONE tz))::double precision;
    END IF;
    IF off = 'Z' THEN
        RETURN extract(epoch FROM ts)::double precision;
    END IF;
    IF substr(off, 2, 2)::int > 23 OR substr(off, 5, 2)::int > 59 THEN
        RETURN NULL;
    END IF;
    RETURN extract(epoch FROM ts)::double precision
        - (CASE WHEN substr(off, 1, 1) = '+' THEN 1 ELSE -1 END) * (substr(off, 2, 2)::int * 3600 + substr(off, 5, 2)::int * 60);
END;
$$ LANGUAGE plpgsql IMMUTABLE;
"""


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION)


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS tsunagu_instant(text, text)")


class Migration(migrations.Migration):
    dependencies = [("segments", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
