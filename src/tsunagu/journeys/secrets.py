"""The signing secret of a journey's webhooks (``webhook`` and ``notify`` steps): ``whsec_…`` per Standard
Webhooks, stored encrypted, made on first use; rotating it is audited."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from tsunagu.core import clock
from tsunagu.core.permissions import Perm, authorize
from tsunagu.core.services import audit_record
from tsunagu.journeys.models import Journey, JourneySecret
from tsunagu.messaging.channels.webhook import secret_generate
from tsunagu.messaging.secrets import secrets_decrypt, secrets_encrypt


def webhook_secret_of(journey: Journey) -> str:
    """The journey's secret, made (and stored encrypted) on first use. For the engine: no actor."""
    row = JourneySecret.objects.filter(journey=journey).first()
    if row is None:
        with transaction.atomic():
            row, _ = JourneySecret.objects.get_or_create(
                journey=journey, defaults={"secret": secrets_encrypt({"secret": secret_generate()})})
    return str(secrets_decrypt(row.secret)["secret"])


def journey_webhook_secret(*, journey: Journey, actor: Any, rotate: bool = False) -> str:
    """The secret for whoever manages journeys; ``rotate`` replaces it (audited) for every call from then
    on, retries included. Raises PermissionDenied."""
    authorize(actor=actor, workspace=journey.workspace, perm=Perm.JOURNEYS)
    if not rotate:
        return webhook_secret_of(journey)
    secret = secret_generate()
    with transaction.atomic():
        sealed = secrets_encrypt({"secret": secret})
        JourneySecret.objects.update_or_create(journey=journey, defaults={"secret": sealed, "rotated_at": clock.now()})
        audit_record(workspace=journey.workspace, actor=actor, action="journey.webhook_secret_rotated",
                     target=journey.key)
    return secret
