"""A worker hands emails over a wave at a time: one message on each of the channel's SMTP connections,
the wave marked ``sending`` together, the next wave not marked (so not sent) until the relay has answered
every message of this one — at most one message a connection whose outcome the worker does not know."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from tsunagu.core.permissions import SYSTEM
from tsunagu.messaging.delivery import Runner
from tsunagu.messaging.models import Delivery
from tsunagu.messaging.services import channel_create, communication_create, send_create
from tsunagu.messaging.tests.helpers import identified
from tsunagu.testing.standins.smtp import SMTPStandin

# The worker runs in a thread of its own (it waits for the held relay), with its own database connection.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
def test_one_message_a_connection_and_the_next_wave_waits_for_the_answers(workspace, send, pipelining):
    customers = [identified(send, workspace, user_id=f"u{i}", email=f"c{i}@example.jp") for i in range(7)]
    with SMTPStandin(pipelining=pipelining) as smtp:
        config = {"host": smtp.host, "port": smtp.port, "security": "none", "from_email": "info@shop.example",
                  "connections": 3}
        channel_create(workspace=workspace, type="email", name="SMTP", actor=SYSTEM, config=config)
        communication_create(
            workspace=workspace, key="news", name="News", topic="service", actor=SYSTEM,
            variants=[{"channel": "email", "locale": "ja", "subject": "件名", "html": "<p>{{ customer.email }}</p>"}],
        )
        for customer in customers:
            send_create(workspace=workspace, communication="news", customer=customer, actor=SYSTEM)
        smtp.hold()
        runner = Runner(worker_id="w1")
        handled: list[int] = []
        def work() -> None:
            try:
                handled.append(runner.run_due())
            finally:
                connections.close_all()  # the thread's own connection, or the test database cannot be dropped

        worker = threading.Thread(target=work)
        worker.start()
        try:
            smtp.wait_held(3)
            # The first wave is on the wire, unanswered: three "sending", one on each connection; the rest
            # are not marked, so none of them can be at the relay.
            assert sorted(Delivery.objects.values_list("status", flat=True)) == ["queued"] * 4 + ["sending"] * 3
            assert sorted(r.connection for r in smtp.messages) == [1, 2, 3]
        finally:
            smtp.release()
            worker.join(timeout=60)
        runner.close()
        assert handled == [7]
        assert list(Delivery.objects.values_list("status", flat=True).distinct()) == ["sent"]
        ids = smtp.message_ids()
        assert len(ids) == len(set(ids)) == 7
        assert sorted({r.rcpt_tos[0] for r in smtp.messages}) == sorted(c.email for c in customers)
        assert smtp.connections == 3
