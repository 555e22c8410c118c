"""The write-key lookup every tracking request makes: one raw SELECT, the same Source the ORM would load."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

from tsunagu.core.permissions import SYSTEM
from tsunagu.events.models import Source
from tsunagu.events.selectors import source_by_write_key
from tsunagu.events.services import source_rotate_key


def test_lookup_returns_the_source_and_its_workspace_as_the_orm_loads_them(source: Any) -> None:
    source_rotate_key(source=source, actor=SYSTEM)  # rotated_at set: every datetime column holds a value
    expected = Source.objects.select_related("workspace").get(pk=source.pk)
    with CaptureQueriesContext(connection) as queries:
        found = source_by_write_key(write_key=source.write_key)
        assert found is not None
        workspace = found.workspace
    assert len(queries) == 1
    assert found == expected and not found._state.adding
    for field in Source._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(expected, field.attname), field.name
    for field in type(workspace)._meta.concrete_fields:
        assert getattr(workspace, field.attname) == getattr(expected.workspace, field.attname), field.name
    assert found.created_at.tzinfo is not None and found.rotated_at is not None and found.rotated_at.tzinfo
    assert workspace.created_at.tzinfo is not None


def test_unknown_and_rotated_keys_find_nothing(source: Any) -> None:
    old = source.write_key
    assert source_by_write_key(write_key="") is None
    assert source_by_write_key(write_key="x" * 65) is None
    assert source_by_write_key(write_key="not-a-key") is None
    source_rotate_key(source=source, actor=SYSTEM)
    assert source_by_write_key(write_key=old) is None
    found = source_by_write_key(write_key=source.write_key)
    assert found is not None and found.pk == source.pk
