"""Input rules of the event selectors: a write key or a timeline filter holding a NUL, or longer than any
stored value, finds nothing and never reaches the database (PostgreSQL refuses U+0000 in a parameter)."""

from __future__ import annotations

import pytest

from tsunagu.events.selectors import source_by_write_key

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("suffix", ["\x00", "\x00\x00"])
def test_write_key_with_nul_finds_no_source(source, suffix):
    assert source_by_write_key(write_key=source.write_key).pk == source.pk
    assert source_by_write_key(write_key=source.write_key + suffix) is None
    assert source_by_write_key(write_key=suffix + source.write_key[:10]) is None
