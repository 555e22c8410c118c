"""Throttling per channel, with the clock moved: a channel with ``rate_per_second`` has its deliveries due
``1 / rate`` apart, shared by all workers; one without it sends at once; the config key is checked."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from tsunagu.core import clock
from tsunagu.core.errors import ValidationError
from tsunagu.core.permissions import SYSTEM
from tsunagu.messaging.broadcasts import broadcast_create
from tsunagu.messaging.channels import channel_class
from tsunagu.messaging.models import Channel, ChannelThrottle, Delivery
from tsunagu.messaging.services import channel_create, communication_create
from tsunagu.messaging.tests.broadcast_helpers import people, worker_pass
from tsunagu.messaging.throttle import throttle_due
from tsunagu.testing.standins.line import LineStandIn, user_id
from tsunagu.testing.standins.twilio import TwilioStandIn

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("kind", ["line", "sms"])
def test_rate_per_second_is_accepted_and_checked(kind):
    with LineStandIn() as line, TwilioStandIn() as twilio:
        base = line.channel_config() if kind == "line" else twilio.channel_config()
        cls = channel_class(kind)
        assert cls.clean_config({**base, "rate_per_second": 5})["rate_per_second"] == 5.0
        assert cls.clean_config({**base, "rate_per_second": " 0.5 "})["rate_per_second"] == 0.5  # the console's
        assert "rate_per_second" not in cls.clean_config({**base, "rate_per_second": None})
        for bad in (0, -1, "fast", "", True, [5], 10_001):
            with pytest.raises(ValidationError) as caught:
                cls.clean_config({**base, "rate_per_second": bad})
            assert caught.value.field == "config.rate_per_second"


def test_slots_are_spaced_by_the_rate_and_never_in_the_past(workspace):
    row = Channel.objects.create(workspace=workspace, type="sms", name="SMS", config={"rate_per_second": 4})
    start = clock.now()
    assert [throttle_due(row, start) for _ in range(3)] == [
        start, start + dt.timedelta(seconds=0.25), start + dt.timedelta(seconds=0.5)]
    later = start + dt.timedelta(seconds=10)  # idle a while: the next one goes at once, not in the past
    assert throttle_due(row, later) == later
    assert ChannelThrottle.objects.get(channel=row).next_at == later + dt.timedelta(seconds=0.25)
    free = Channel.objects.create(workspace=workspace, type="sms", name="Free", config={})
    assert throttle_due(free, start) == start and not ChannelThrottle.objects.filter(channel=free).exists()


def test_a_throttled_broadcast_goes_out_at_the_channels_pace(workspace):
    with LineStandIn() as line:
        users = [user_id() for _ in range(6)]
        crowd = people(workspace, 6, line=users)
        channel_create(workspace=workspace, type="line", name="LINE", actor=SYSTEM,
                       config={**line.channel_config(), "rate_per_second": 2})
        # Personalised text: each message differs, so each is its own push (no multicast to merge them).
        communication_create(workspace=workspace, key="sale", name="Sale", topic="service", actor=SYSTEM,
                             variants=[{"channel": "line", "locale": "ja", "text": "{{ customer.display_name }} 様"}])
        start = clock.now()
        with time_machine.travel(start, tick=False) as traveller:
            broadcast_create(workspace=workspace, communication="sale", actor=SYSTEM,
                             audience={"customer_ids": [c.pk for c in crowd]})
            for _ in range(3):
                worker_pass()
            dues = sorted(Delivery.objects.values_list("due_at", flat=True))
            assert dues == [start + dt.timedelta(seconds=0.5 * i) for i in range(6)]
            assert len(line.requests) == 1  # only the first slot is due
            traveller.move_to(start + dt.timedelta(seconds=1))
            worker_pass()
            assert len(line.requests) == 3  # slots 0.5 s and 1 s
            traveller.move_to(start + dt.timedelta(seconds=2.5))
            worker_pass()
            assert len(line.requests) == 6
        assert sorted(to for d in line.deliveries for to in d.to) == sorted(users)
