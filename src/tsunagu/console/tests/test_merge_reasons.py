"""Merges on the 360° page: why they happened, in the reader's language (the facts are stored, not an
English sentence), and links to the profiles on the other side."""

from __future__ import annotations

import importlib

import pytest

from tsunagu.customers.models import Merge
from tsunagu.customers.selectors import customer_list

pytestmark = pytest.mark.django_db


@pytest.fixture
def merged(send, workspace):
    send("/v1/identify", {"userId": "u1", "traits": {"name": "山田 太郎"}})
    send("/v1/page", {"anonymousId": "phone-app", "name": "Top"})
    known = customer_list(workspace=workspace, user_id="u1").get()
    anonymous = customer_list(workspace=workspace, anonymous_id="phone-app").get()
    send("/v1/identify", {"userId": "u1", "anonymousId": "phone-app", "messageId": "tie-1"})
    return known, anonymous


def merges_section(client, customer_id):
    page = client.get(f"/w/shop-a/customers/{customer_id}/").content.decode()
    return page.split('id="h-merges"', 1)[1].split("</section>", 1)[0]


def test_the_facts_are_stored(merged):
    known, anonymous = merged
    merge = Merge.objects.get()
    assert merge.reason_code == "event"
    assert merge.into_identity == ["user_id", "u1"]
    assert merge.other_identity == ["anonymous_id", "phone-app"]
    assert (merge.event_type, merge.message_id) == ("identify", "tie-1")
    assert merge.note == ""


def test_reason_in_english(client_en, merged):
    known, anonymous = merged
    section = merges_section(client_en, known.pk)
    assert (
        f"The identify event tie-1 carried User ID “u1” of profile #{known.pk} "
        f"and Anonymous ID “phone-app” of profile #{anonymous.pk}." in section
    )


def test_reason_in_japanese(client_ja, merged):
    known, anonymous = merged
    section = merges_section(client_ja, known.pk)
    assert (
        f"identify イベント tie-1 に、プロフィール #{known.pk} のユーザーID「u1」と"
        f"プロフィール #{anonymous.pk} の匿名ID「phone-app」が含まれていました。" in section
    )
    assert "carried" not in section
    link = f'<a href="/w/shop-a/customers/{anonymous.pk}/">#{anonymous.pk}</a>'
    assert f"プロフィール {link} をこの顧客に統合しました" in section


def test_merged_away_id_is_a_link_that_leads_here_and_says_so(client_en, merged):
    known, anonymous = merged
    section = merges_section(client_en, known.pk)
    link = f'<a href="/w/shop-a/customers/{anonymous.pk}/">#{anonymous.pk}</a>'
    assert f"Profile {link} was merged into this one" in section
    response = client_en.get(f"/w/shop-a/customers/{anonymous.pk}/", follow=True)
    assert response.redirect_chain == [(f"/w/shop-a/customers/{known.pk}/", 302)]
    assert f"Profile #{anonymous.pk} was merged into this one, #{known.pk}." in response.content.decode()


def test_the_api_keeps_an_english_reason_and_adds_the_facts(api, merged):
    known, anonymous = merged
    status, body = api.get(f"/api/v1/customers/{known.pk}/merges")
    assert status == 200
    item = body["items"][0]
    assert item["reason"].startswith("The identify event tie-1 carried User ID “u1”")
    assert item["reason_code"] == "event"
    assert item["into_identity"] == ["user_id", "u1"]
    assert item["other_identity"] == ["anonymous_id", "phone-app"]


MIGRATION = importlib.import_module("tsunagu.customers.migrations.0002_merge_reason_facts")


def test_the_migration_reads_the_old_sentences():
    facts = MIGRATION.reason_facts(
        "identify event demo-00010804 carried phone '+819018626532' of customer 2040 "
        "and anonymous_id 'c427abee-1' of customer 219"
    )
    assert facts == {
        "event_type": "identify",
        "message_id": "demo-00010804",
        "into_identity": ["phone", "+819018626532"],
        "other_identity": ["anonymous_id", "c427abee-1"],
    }
    # repr() switches to double quotes for a value with an apostrophe.
    facts = MIGRATION.reason_facts(
        "track event m 1 carried email \"o'brien@example.com\" of customer 1 and user_id 'x' of customer 2"
    )
    assert facts["message_id"] == "m 1"
    assert facts["into_identity"] == ["email", "o'brien@example.com"]
    assert MIGRATION.reason_facts("merged by hand: same person") is None


def test_a_legacy_sentence_is_shown_as_written(client_ja, merged, workspace):
    known, anonymous = merged
    Merge.objects.filter(into=known).update(reason_code="legacy", note="merged by hand: same person")
    assert "merged by hand: same person" in merges_section(client_ja, known.pk)
