"""Migration 0002 turns the English sentences earlier versions stored into facts, on a real database."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

OLD = ("customers", "0001_initial")
NEW = ("customers", "0002_merge_reason_facts")


def migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


def test_old_sentences_become_facts_and_others_stay_as_notes():
    apps = migrate(OLD)
    try:
        Workspace = apps.get_model("core", "Workspace")
        Customer = apps.get_model("customers", "Customer")
        Merge = apps.get_model("customers", "Merge")
        ws = Workspace.objects.create(name="Old", slug="old")
        a, b, c = (Customer.objects.create(workspace=ws) for _ in range(3))
        sentence = (
            f"identify event m-1 carried user_id 'u1' of customer {a.pk} and anonymous_id 'dev' of customer {b.pk}"
        )
        read = Merge.objects.create(
            workspace=ws, into=a, other=b, message_id="m-1", event_type="identify", reason=sentence
        )
        unread = Merge.objects.create(workspace=ws, into=a, other=c, reason="merged by hand")
        apps = migrate(NEW)
        Merge = apps.get_model("customers", "Merge")
        read = Merge.objects.get(pk=read.pk)
        assert (read.reason_code, read.note) == ("event", "")
        assert read.into_identity == ["user_id", "u1"]
        assert read.other_identity == ["anonymous_id", "dev"]
        unread = Merge.objects.get(pk=unread.pk)
        assert (unread.reason_code, unread.note) == ("legacy", "merged by hand")
    finally:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)  # back to the latest state for the tests that follow
