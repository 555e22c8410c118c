"""A segment as a broadcast's audience: its members when expansion starts (not when the broadcast is made,
and not later), through the service, the API and the console's form; errors name ``audience.segment``."""

from __future__ import annotations

import pytest

from tsunagu.core.permissions import SYSTEM
from tsunagu.customers.models import Customer
from tsunagu.messaging.broadcast_expand import broadcasts_run_due
from tsunagu.messaging.broadcasts import broadcast_create, broadcast_summary
from tsunagu.messaging.models import Broadcast, BroadcastRecipient, Send
from tsunagu.messaging.tests.broadcast_helpers import people, run_until_idle
from tsunagu.messaging.tests.helpers import inapp_communication
from tsunagu.segments.services import segment_create, segment_delete, segments_refresh

pytestmark = pytest.mark.django_db

VARIANTS = [{"channel": "in_app", "locale": "ja", "title": "お知らせ", "body": "VIP"}]
GOLD = {"trait": "tier", "op": "eq", "value": "gold"}


def _gold(workspace, customers):
    Customer.objects.filter(pk__in=[c.pk for c in customers]).update(traits={"tier": "gold"})


@pytest.fixture
def shop(workspace):
    everyone = people(workspace, 5)
    _gold(workspace, everyone[:2])
    segment_create(workspace=workspace, key="gold", name="Gold", rule=GOLD, actor=SYSTEM)
    inapp_communication(workspace, variants=VARIANTS)
    return everyone


def test_the_members_at_expansion_get_it(workspace, shop):
    b = broadcast_create(workspace=workspace, communication="notice", audience={"segment": "gold"}, actor=SYSTEM)
    assert (b.total, b.audience_segment, b.snapshot_at) == (0, "gold", None)
    assert not BroadcastRecipient.objects.filter(broadcast=b).exists()  # nobody listed yet
    _gold(workspace, shop[2:3])  # enters after the broadcast was made, before it starts
    segments_refresh(workspace=workspace, every=True)
    broadcasts_run_due(worker_id="w1")
    b.refresh_from_db()
    assert b.total == 3 and b.snapshot_at is not None
    assert list(BroadcastRecipient.objects.filter(broadcast=b).order_by("position")
                .values_list("position", "kind", "ref")) == [
        (i + 1, "customer_id", str(c.pk)) for i, c in enumerate(shop[:3])]
    _gold(workspace, shop[3:4])  # enters once the snapshot is taken: not in this broadcast
    segments_refresh(workspace=workspace, every=True)
    run_until_idle()
    b.refresh_from_db()
    assert b.status == "done" and b.total == 3
    assert set(Send.objects.filter(broadcast=b).values_list("customer_id", flat=True)) == {c.pk for c in shop[:3]}
    assert broadcast_summary(b)["sent"] == 3


def test_a_segment_deleted_before_the_start_ends_the_broadcast_empty(workspace, shop):
    b = broadcast_create(workspace=workspace, communication="notice", audience={"segment": "gold"}, actor=SYSTEM)
    from tsunagu.segments.selectors import segment_get

    segment_delete(segment=segment_get(workspace=workspace, key="gold"), actor=SYSTEM)
    run_until_idle()
    b.refresh_from_db()
    assert (b.status, b.total, b.snapshot_at is not None) == ("done", 0, True)
    assert not Send.objects.filter(broadcast=b).exists()


def test_a_paused_broadcast_takes_no_snapshot(workspace, shop):
    from tsunagu.messaging.broadcasts import broadcast_pause

    b = broadcast_create(workspace=workspace, communication="notice", audience={"segment": "gold"}, actor=SYSTEM)
    broadcast_pause(broadcast=b, actor=SYSTEM)
    run_until_idle()
    b.refresh_from_db()
    assert (b.status, b.snapshot_at) == ("paused", None)


def test_through_the_api(api, workspace, shop):
    status, body = api.post("/api/v1/broadcasts", {"communication": "notice", "audience": {"segment": "gold"}})
    assert status == 201, body
    status, one = api.get(f"/api/v1/broadcasts/{body['id']}")
    assert (one["segment"], one["total"], one["progress"]) == ("gold", 0, 0.0)
    run_until_idle()
    status, one = api.get(f"/api/v1/broadcasts/{body['id']}")
    assert (one["status"], one["total"], one["progress"], one["summary"]["sent"]) == ("done", 2, 1.0, 2)


@pytest.mark.parametrize(("audience", "status_code", "field"), [
    ({"segment": "nope"}, 404, "audience.segment"),
    ({"segment": 5}, 400, "audience.segment"),
    ({"segment": "gold", "user_ids": ["u0"]}, 400, "audience"),
])
def test_bad_segment_audiences_name_the_field(api, workspace, shop, audience, status_code, field):
    status, body = api.post("/api/v1/broadcasts", {"communication": "notice", "audience": audience})
    assert (status, body["field"]) == (status_code, field)
    assert not Broadcast.objects.exists()
