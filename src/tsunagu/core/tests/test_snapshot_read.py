"""``snapshot_read``: reads inside it agree with each other although another connection commits between
them (PostgreSQL's READ COMMITTED would show the second read the commit)."""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.db import connection

from tsunagu.core.dburl import snapshot_read
from tsunagu.core.models import Workspace

ON_POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not ON_POSTGRES, reason="isolation levels of PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]


def _rename_elsewhere(pk: int) -> None:
    def rename() -> None:  # its own thread: its own connection, autocommit
        Workspace.objects.filter(pk=pk).update(name="renamed")
        connection.close()

    thread = threading.Thread(target=rename)
    thread.start()
    thread.join(timeout=30)


def test_reads_inside_agree_though_another_connection_commits_between_them(workspace):
    name = workspace.name
    with snapshot_read():
        assert Workspace.objects.get(pk=workspace.pk).name == name
        _rename_elsewhere(workspace.pk)
        assert Workspace.objects.get(pk=workspace.pk).name == name  # the snapshot of the first read
    assert Workspace.objects.get(pk=workspace.pk).name == "renamed"


def test_without_it_the_second_read_sees_the_commit(workspace):
    # What the helper is for: the same two reads in autocommit see the rename in between.
    assert Workspace.objects.get(pk=workspace.pk).name == workspace.name
    _rename_elsewhere(workspace.pk)
    assert Workspace.objects.get(pk=workspace.pk).name == "renamed"
