"""Rows of the messaging app for tests, written with the ORM (no delivery engine involved).

``make_delivery(workspace=…, subject=…, body_text=…)`` makes the whole chain a delivery needs (a
communication, its version, a send) the first time and reuses it afterwards; pass ``index=False`` to
leave the delivery out of the archive's search index.
"""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
from typing import Any

from tsunagu.core.models import Workspace
from tsunagu.customers.models import Customer
from tsunagu.messaging.archive import archive_index
from tsunagu.messaging.models import Communication, CommunicationVersion, Delivery, DeliveryEvent, Send


def make_customer(*, workspace: Workspace, email: str = "", name: str = "") -> Customer:
    return Customer.objects.create(workspace=workspace, email=email, display_name=name)


def make_communication(*, workspace: Workspace, key: str = "order-shipped") -> Communication:
    comm, created = Communication.objects.get_or_create(
        workspace=workspace, key=key, defaults={"name": key.replace("-", " ").title()}
    )
    if created:
        CommunicationVersion.objects.create(communication=comm, number=1, name=comm.name, topic=comm.topic)
    return comm


def eml(*, subject: str, body: str, to: str, sender: str = "shop@example.com") -> bytes:
    msg = EmailMessage()
    msg["Subject"] = " ".join(subject.split())
    msg["From"], msg["To"] = sender, to
    msg["Message-ID"] = "<test@example.com>"
    msg.set_content(body)
    return msg.as_bytes()


def make_delivery(
    *,
    workspace: Workspace,
    subject: str = "",
    body_text: str = "",
    customer: Customer | None = None,
    communication: Communication | None = None,
    channel_type: str = "email",
    status: str = Delivery.Status.SENT,
    address: str = "taro@example.com",
    created_at: dt.datetime | None = None,
    events: list[tuple[str, dt.datetime]] | None = None,
    raw: bytes | None = None,
    index: bool = True,
    **fields: Any,
) -> Delivery:
    comm = communication or make_communication(workspace=workspace)
    version = comm.versions.order_by("-number").first()
    assert version is not None
    send = Send.objects.create(workspace=workspace, communication=comm, version=version, customer=customer)
    if raw is None and channel_type == "email":
        raw = eml(subject=subject, body=body_text, to=address)
    extra: dict[str, Any] = {"created_at": created_at} if created_at is not None else {}
    delivery = Delivery.objects.create(
        workspace=workspace, send=send, channel_type=channel_type, customer=customer, communication=comm,
        version=version, topic=comm.topic, address=address, subject=subject, body_text=body_text,
        content={"subject": subject, "text": body_text}, status=status, raw=raw, **extra, **fields,
    )
    for state, at in events or []:
        DeliveryEvent.objects.create(delivery=delivery, workspace=workspace, status=state, at=at)
    if index:
        archive_index(deliveries=[delivery])
    return delivery
