"""The archive's index: what it finds (two-character Japanese words inside longer text), that it is kept in
step by ``archive_index`` / ``archive_unindex`` and rebuilt by ``archive_rebuild``, and bad search input."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tsunagu.core import clock
from tsunagu.core.errors import ValidationError
from tsunagu.messaging.archive import archive_index, archive_rebuild, archive_search, archive_unindex, grams
from tsunagu.messaging.tests.factories import make_delivery


def _ids(rows: list[Any]) -> list[int]:
    return [d.pk for d in rows]


def test_two_character_words_are_found_inside_japanese_text(workspace: Any) -> None:
    refund = make_delivery(workspace=workspace, subject="ご注文の返金手続きが完了しました",
                           body_text="クレジットカードへの返金は1〜2か月かかります")
    shipping = make_delivery(workspace=workspace, subject="商品を発送しました",
                             body_text="配送状況はアプリで確認できます")
    make_delivery(workspace=workspace, subject="Winter sale", body_text="ポイント10倍")
    assert _ids(archive_search(workspace=workspace, q="返金")) == [refund.pk]
    assert _ids(archive_search(workspace=workspace, q="配送")) == [shipping.pk]
    assert _ids(archive_search(workspace=workspace, q="配送状況")) == [shipping.pk]
    assert _ids(archive_search(workspace=workspace, q="送状")) == [shipping.pk]  # any substring, not only words
    assert _ids(archive_search(workspace=workspace, q="SALE")) == [_ids(archive_search(workspace=workspace))[0]]
    assert archive_search(workspace=workspace, q="返送") == []


def test_the_index_is_what_finds_text_queries(workspace: Any) -> None:
    """A delivery the index was not told about is invisible to queries with grams (proof that the index,
    not a scan, answers them) and is found once indexed; a one-character query scans and finds it."""
    d = make_delivery(workspace=workspace, subject="返金のお知らせ", index=False)
    assert archive_search(workspace=workspace, q="返金") == []
    assert _ids(archive_search(workspace=workspace, q="返")) == [d.pk]
    archive_index(deliveries=[d])
    archive_index(deliveries=[d])  # twice: still one result
    assert _ids(archive_search(workspace=workspace, q="返金")) == [d.pk]
    archive_unindex(deliveries=[d])
    assert archive_search(workspace=workspace, q="返金") == []
    assert archive_rebuild() == 1
    assert _ids(archive_search(workspace=workspace, q="返金")) == [d.pk]


def test_facts_narrow_the_index_without_losing_rows(workspace: Any) -> None:
    """Channel, communication and month are tokens of the index too: a filtered search still finds rows
    at the edges of a period (UTC months) and of a year."""
    jan = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    dec = make_delivery(workspace=workspace, subject="返金 dec", created_at=jan - dt.timedelta(microseconds=1))
    first = make_delivery(workspace=workspace, subject="返金 jan", created_at=jan, channel_type="sms")
    late = make_delivery(workspace=workspace, subject="返金 later", created_at=jan + dt.timedelta(days=400),
                         channel_type="in_app")
    assert _ids(archive_search(workspace=workspace, q="返金", since=jan)) == [late.pk, first.pk]
    assert _ids(archive_search(workspace=workspace, q="返金", until=jan)) == [dec.pk]
    assert _ids(archive_search(workspace=workspace, q="返金", since=jan - dt.timedelta(days=40),
                               until=jan + dt.timedelta(days=500))) == [late.pk, first.pk, dec.pk]
    assert archive_search(workspace=workspace, q="返金", since=jan + dt.timedelta(days=500)) == []
    assert archive_search(workspace=workspace, q="返金", since=jan, until=jan) == []
    assert _ids(archive_search(workspace=workspace, q="返金", channel="in_app")) == [late.pk]
    assert _ids(archive_search(workspace=workspace, q="返金", channel="sms")) == [first.pk]


def test_grams_fold_case_and_keep_two_character_words() -> None:
    assert "返金" in grams("ご返金手続き") and "配送" in grams("【配送】")
    assert grams("Refund") == grams("REFUND") == {"ref", "efu", "fun", "und"}
    assert grams("返") == set() and grams("ok") == set() and grams("!?、。") == set()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"q": "返金\x00"}, "q"),
        ({"q": "あ" * 201}, "q"),
        ({"q": 5}, "q"),
        ({"channel": "fax"}, "channel"),
        ({"status": "lost"}, "status"),
        ({"since": dt.datetime(2026, 1, 2, tzinfo=dt.UTC), "until": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}, "since"),
        ({"since": dt.datetime(2026, 1, 2)}, "since"),
        ({"until": "2026-01-01"}, "until"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"before_id": -1}, "before_id"),
        ({"customer_id": "12"}, "customer_id"),
        ({"communication_key": "a\x00"}, "communication"),
    ],
)
def test_bad_input_names_the_field(workspace: Any, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        archive_search(workspace=workspace, **kwargs)
    assert err.value.field == field


def test_blank_query_is_no_text_filter(workspace: Any) -> None:
    d = make_delivery(workspace=workspace, subject="hello", created_at=clock.now())
    assert _ids(archive_search(workspace=workspace, q="   ")) == [d.pk]
    assert _ids(archive_search(workspace=workspace, q=" hello ")) == [d.pk]


def test_the_migration_indexes_deliveries_that_exist_already(workspace: Any) -> None:
    """Migration 0002's forward step on a database with deliveries (its table already there: only the
    statements that create it are skipped)."""
    import importlib

    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("tsunagu.messaging.migrations.0002_archive_index")
    before = [make_delivery(workspace=workspace, subject=f"配送 {i}", index=False) for i in range(3)]
    assert archive_search(workspace=workspace, q="配送") == []

    class Editor:
        def __init__(self) -> None:
            self.connection = connection
            self.executed: list[str] = []

        def execute(self, sql: str) -> None:
            self.executed.append(sql)

    editor = Editor()
    migration.create(apps, editor)
    assert editor.executed and all("messaging_archive_index" in sql for sql in editor.executed)
    assert _ids(archive_search(workspace=workspace, q="配送")) == [d.pk for d in reversed(before)]
