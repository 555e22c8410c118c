"""The console's broadcasts with Django's client: the list and its form, a bad CSV answered beside the form,
the summary with translated reasons, pause/resume/cancel for operators and not for viewers."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import membership_add, user_create
from tsunagu.messaging.broadcasts import broadcast_create
from tsunagu.messaging.models import Broadcast
from tsunagu.messaging.tests.broadcast_helpers import people, run_until_idle
from tsunagu.messaging.tests.helpers import inapp_communication

pytestmark = pytest.mark.django_db

VARIANTS = [{"channel": "in_app", "locale": "ja", "title": "お知らせ", "body": "{{ data.coupon }}"}]


@pytest.fixture
def viewer(workspace: Any) -> Client:
    user = user_create(username="vera", password="correct-horse-battery")
    membership_add(workspace=workspace, user=user, role="viewer", actor=SYSTEM)
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(user)
    return client


def test_create_from_the_form_and_read_the_summary(client_ja, workspace):
    people(workspace, 2)
    inapp_communication(workspace, variants=VARIANTS)
    page = client_ja.get(f"/w/{workspace.slug}/messaging/broadcasts/")
    assert page.status_code == 200 and "一斉配信はまだありません。" in page.content.decode()
    r = client_ja.post(f"/w/{workspace.slug}/messaging/broadcasts/", {
        "communication": "notice", "name": "冬", "kind": "csv",
        "audience": "user_id,coupon\nu0,A\nu1,B\nghost,C\n"})
    b = Broadcast.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/w/{workspace.slug}/messaging/broadcasts/{b.pk}/"
    run_until_idle()
    html = client_ja.get(r["Location"]).content.decode()
    assert "完了" in html and "登録のない顧客: 1" in html
    assert '<td data-key="sent">2</td>' in html and '<td data-key="total">3</td>' in html
    assert "一時停止" not in html  # done: nothing to pause
    listing = client_ja.get(f"/w/{workspace.slug}/messaging/broadcasts/").content.decode()
    assert 'data-status="done"' in listing and "冬" in listing


def test_a_bad_csv_is_answered_beside_the_form(client_en, workspace):
    inapp_communication(workspace, variants=VARIANTS)
    r = client_en.post(f"/w/{workspace.slug}/messaging/broadcasts/", {
        "communication": "notice", "kind": "csv", "audience": "email\nnot-an-email\n"})
    assert r.status_code == 400
    html = r.content.decode()
    assert 'data-field="audience.csv"' in html and "line 2: email:" in html
    assert "not-an-email" in html  # the text is kept in the form
    assert not Broadcast.objects.exists()


def test_pause_resume_cancel_buttons(client_en, workspace):
    people(workspace, 1)
    inapp_communication(workspace, variants=VARIANTS)
    b = broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM, audience={"user_ids": ["u0"]})
    base = f"/w/{workspace.slug}/messaging/broadcasts/{b.pk}/"
    assert "Pause" in client_en.get(base).content.decode()
    assert client_en.post(base + "pause").status_code == 302
    b.refresh_from_db()
    assert b.status == "paused"
    html = client_en.get(base).content.decode()
    assert "Resume" in html and ">Pause<" not in html
    client_en.post(base + "resume")
    client_en.post(base + "cancel")
    b.refresh_from_db()
    assert b.status == "cancelled"
    r = client_en.post(base + "resume", follow=True)
    assert "the broadcast is cancelled, not paused" in r.content.decode()
    assert client_en.post(base + "explode").status_code == 404


def test_viewers_see_but_cannot_run_broadcasts(viewer, workspace, other_workspace):
    inapp_communication(workspace, variants=VARIANTS)
    b = broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM, audience={"user_ids": ["u0"]})
    html = viewer.get(f"/w/{workspace.slug}/messaging/broadcasts/").content.decode()
    assert "New broadcast" not in html and b.name in html
    assert "Pause" not in viewer.get(f"/w/{workspace.slug}/messaging/broadcasts/{b.pk}/").content.decode()
    assert viewer.post(f"/w/{workspace.slug}/messaging/broadcasts/{b.pk}/pause").status_code == 403
    assert viewer.post(f"/w/{workspace.slug}/messaging/broadcasts/", {
        "communication": "notice", "kind": "user_ids", "audience": "u0"}).status_code == 403
    b.refresh_from_db()
    assert b.status == "scheduled" and Broadcast.objects.count() == 1
    # Another workspace's broadcast is not found through this one.
    inapp_communication(other_workspace, variants=VARIANTS)
    other = broadcast_create(workspace=other_workspace, communication="notice", actor=SYSTEM,
                             audience={"user_ids": ["u0"]})
    assert viewer.get(f"/w/{workspace.slug}/messaging/broadcasts/{other.pk}/").status_code == 404
    assert viewer.get(f"/w/{other_workspace.slug}/messaging/broadcasts/{other.pk}/").status_code == 404


def test_a_segment_from_the_form(client_ja, workspace):
    from tsunagu.customers.models import Customer
    from tsunagu.segments.services import segment_create

    gold = people(workspace, 3)[:2]
    Customer.objects.filter(pk__in=[c.pk for c in gold]).update(traits={"tier": "gold"})
    segment_create(workspace=workspace, key="gold", name="ゴールド", actor=SYSTEM,
                   rule={"trait": "tier", "op": "eq", "value": "gold"})
    inapp_communication(workspace, variants=VARIANTS)
    page = client_ja.get(f"/w/{workspace.slug}/messaging/broadcasts/").content.decode()
    assert "セグメント（配信開始時点のメンバー）" in page and '<option value="gold">ゴールド (gold, 2)</option>' in page
    r = client_ja.post(f"/w/{workspace.slug}/messaging/broadcasts/", {
        "communication": "notice", "kind": "segment", "segment": "gold", "audience": ""})
    b = Broadcast.objects.get()
    assert r.status_code == 302 and b.audience_segment == "gold"
    run_until_idle()
    b.refresh_from_db()
    assert (b.status, b.total) == ("done", 2)
