"""Writes of messaging: channels (provider accounts), communications and their versions, sends.

A send is recorded — rendered, with its delivery row — in one transaction and executed later by a worker
(``messaging.delivery``): nothing leaves the process here. See docs/communications.md.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import orjson
from django.db import IntegrityError, transaction

from tsunagu.core import clock
from tsunagu.core.errors import NotFound, ValidationError
from tsunagu.core.models import Workspace
from tsunagu.core.permissions import Perm, authorize
from tsunagu.core.services import audit_record
from tsunagu.customers.models import Customer
from tsunagu.messaging.channels import TYPES, channel_class
from tsunagu.messaging.context import customer_context
from tsunagu.messaging.models import (
    Channel,
    Communication,
    CommunicationVersion,
    Delivery,
    PushSubscription,
    Send,
    Suppression,
    Topic,
)
from tsunagu.messaging.render import check_variant, finished_template, variant_channels
from tsunagu.messaging.secrets import secrets_encrypt
from tsunagu.messaging.selectors import channel_config, customer_sample

_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
MAX_DATA_BYTES = 64 * 1024


def _text(value: Any, field: str, *, limit: int = 200, required: bool = True) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValidationError("must be a string", field=field)
    value = value.strip()
    if required and not value:
        raise ValidationError("must not be empty", field=field)
    if len(value) > limit:
        raise ValidationError(f"is longer than {limit} characters", field=field)
    if "\x00" in value:
        raise ValidationError("must not contain the NUL character (U+0000)", field=field)
    return value


# --- channels -----------------------------------------------------------------------------------------


def _store_config(channel: Channel, full: dict[str, Any]) -> None:
    cls = channel_class(channel.type)
    secret = {k: v for k, v in full.items() if k in cls.secret_fields}
    channel.config = {k: v for k, v in full.items() if k not in cls.secret_fields}
    channel.secrets = secrets_encrypt(secret) if secret else ""


def channel_create(*, workspace: Workspace, type: str, name: str, config: dict[str, Any], actor: Any) -> Channel:
    """Configure a provider account (admins and owners). The config is checked by the channel type
    (``ValidationError`` naming ``config.<key>``); secret keys are stored encrypted. Audited, without the
    secrets, in the same transaction."""
    authorize(actor=actor, workspace=workspace, perm=Perm.CHANNELS)
    if type not in TYPES:
        raise ValidationError(f"must be one of {', '.join(TYPES)}", field="type")
    name = _text(name, "name")
    full = channel_class(type).clean_config(config if config is not None else {})
    channel = Channel(workspace=workspace, type=type, name=name)
    _store_config(channel, full)
    try:
        with transaction.atomic():
            channel.save()
            audit_record(
                workspace=workspace,
                actor=actor,
                action="channel.created",
                target=name,
                data={"id": channel.pk, "type": type, "config": channel.config},
            )
    except IntegrityError:
        raise ValidationError("a channel with this name exists in the workspace", field="name") from None
    return channel


def channel_update(
    *,
    channel: Channel,
    actor: Any,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    enabled: bool | None = None,
) -> Channel:
    """Change a channel (admins and owners). ``config`` keys replace the stored ones (a secret not given is
    kept; ``null`` removes an optional key); the result is checked as a whole. Audited."""
    authorize(actor=actor, workspace=channel.workspace, perm=Perm.CHANNELS)
    changed: list[str] = []
    if name is not None:
        channel.name = _text(name, "name")
        changed.append("name")
    if config is not None:
        if not isinstance(config, dict):
            raise ValidationError("config must be an object", field="config")
        full = channel_config(channel)
        for key, value in config.items():
            if value is None:
                full.pop(key, None)
            else:
                full[key] = value
        _store_config(channel, channel_class(channel.type).clean_config(full))
        changed.append("config")
    if enabled is not None:
        if not isinstance(enabled, bool):
            raise ValidationError("must be true or false", field="enabled")
        channel.enabled = enabled
        changed.append("enabled")
    if not changed:
        return channel
    channel.updated_at = clock.now()
    try:
        with transaction.atomic():
            channel.save()
            audit_record(
                workspace=channel.workspace,
                actor=actor,
                action="channel.changed",
                target=channel.name,
                data={"id": channel.pk, "changed": changed, "config": channel.config, "enabled": channel.enabled},
            )
    except IntegrityError:
        raise ValidationError("a channel with this name exists in the workspace", field="name") from None
    return channel


def channel_delete(*, channel: Channel, actor: Any) -> None:
    """Remove a channel (admins and owners). Archived deliveries keep their content and lose the link."""
    authorize(actor=actor, workspace=channel.workspace, perm=Perm.CHANNELS)
    with transaction.atomic():
        audit_record(
            workspace=channel.workspace,
            actor=actor,
            action="channel.deleted",
            target=channel.name,
            data={"id": channel.pk, "type": channel.type},
        )
        channel.delete()


# --- communications -----------------------------------------------------------------------------------


def _clean_variants(variants: Any, *, workspace: Workspace) -> tuple[list[dict[str, Any]], list[str]]:
    if not isinstance(variants, list) or not variants:
        raise ValidationError("must be a non-empty list of variants", field="variants")
    if len(variants) > 50:
        raise ValidationError("at most 50 variants", field="variants")
    sample = customer_context(customer_sample(workspace=workspace))
    context = _template_context(sample, event={}, data={}, links={"unsubscribe_url": "", "preferences_url": ""})
    seen: set[tuple[str, str]] = set()
    clean: list[dict[str, Any]] = []
    warnings: list[str] = []
    for i, variant in enumerate(variants):
        where = f"variants[{i}]"
        if not isinstance(variant, dict):
            raise ValidationError("must be an object", field=where)
        channel = variant.get("channel")
        if channel not in TYPES:
            raise ValidationError(f"must be one of {', '.join(TYPES)}", field=f"{where}.channel")
        locale = _text(variant.get("locale") or workspace.default_locale, f"{where}.locale", limit=16).lower()
        if (channel, locale) in seen:
            raise ValidationError(f"a second {channel} variant for locale {locale}", field=f"{where}.locale")
        seen.add((channel, locale))
        cls = channel_class(channel)
        fields = {k: v for k, v in variant.items() if k not in ("channel", "locale") and v not in (None, "")}
        for key in fields:
            if key not in cls.variant_fields:
                raise ValidationError(
                    f"a {channel} variant has no field {key!r} (fields: {', '.join(cls.variant_fields)})",
                    field=f"{where}.{key}",
                )
        for group in cls.variant_required:
            if not any(fields.get(k) not in (None, "") for k in group):
                raise ValidationError(f"a {channel} variant needs {' or '.join(group)}", field=f"{where}.{group[0]}")
        item = {"channel": channel, "locale": locale, **fields}
        for problem in check_variant(item, sample=context):
            if problem.fatal:
                raise ValidationError(str(problem), field=f"{where}.{problem.field}")
            warnings.append(str(problem))
        if cls.finish_first:
            try:
                finished_template(item)  # bad MJML is refused now, not at the first send
            except ValueError as exc:
                message = f"variant {channel}/{locale}: {exc}"
                raise ValidationError(message, field=f"{where}.{group_field(item)}") from None
        clean.append(item)
    return clean, warnings


def group_field(variant: dict[str, Any]) -> str:
    """The field a finishing error is most likely about: MJML when the variant has it, else HTML."""
    return "mjml" if variant.get("mjml") else "html"


def _clean_topic(topic: Any) -> str:
    if topic not in Topic.values:
        raise ValidationError(f"must be one of {', '.join(Topic.values)}", field="topic")
    return str(topic)


KEEP: Any = object()  # communication_update: leave the policy as it is


def _clean_policy(policy: Any, variants: list[dict[str, Any]]) -> dict[str, Any] | None:
    from tsunagu.messaging.policy import policy_clean

    return None if policy is None else policy_clean(policy, channels=variant_channels(variants))


def communication_create(
    *,
    workspace: Workspace,
    key: str,
    name: str,
    topic: str,
    variants: list[dict[str, Any]],
    actor: Any,
    policy: Any = None,
) -> tuple[Communication, list[str]]:
    """Create a communication and its version 1 (operators, admins, owners). Every variant is checked:
    unknown fields, missing required fields, Liquid syntax errors and unknown filters are refused with a
    ``ValidationError`` naming the variant and line; variables the sample customer lacks come back as
    warnings. ``policy`` (``messaging.policy``) may only name channels that have a variant; none: the
    variants' channels in order. One transaction, audited."""
    authorize(actor=actor, workspace=workspace, perm=Perm.COMMUNICATIONS)
    key = _text(key, "key", limit=100)
    if not _KEY.match(key):
        raise ValidationError("must be lower-case letters, digits, '-' or '_' (order-shipped)", field="key")
    name = _text(name, "name")
    topic = _clean_topic(topic)
    clean, warnings = _clean_variants(variants, workspace=workspace)
    clean_policy = _clean_policy(policy, clean)
    try:
        with transaction.atomic():
            comm = Communication.objects.create(
                workspace=workspace, key=key, name=name, topic=topic, policy=clean_policy
            )
            CommunicationVersion.objects.create(
                communication=comm, number=1, name=name, topic=topic, variants=clean, created_by=_label(actor)
            )
            audit_record(
                workspace=workspace, actor=actor, action="communication.created", target=key,
                data={"version": 1, "policy": clean_policy},
            )
    except IntegrityError:
        raise ValidationError("a communication with this key exists in the workspace", field="key") from None
    return comm, warnings


def communication_update(
    *,
    communication: Communication,
    actor: Any,
    variants: list[dict[str, Any]],
    name: str | None = None,
    topic: str | None = None,
    policy: Any = KEEP,
) -> tuple[CommunicationVersion, list[str]]:
    """Save a new immutable version (checked as ``communication_create`` checks). Sends already recorded
    keep the version and policy they used. ``policy``: a new one, ``None`` to go back to the variants'
    order, or left out to keep the current one — which must still fit the new variants (a
    ``ValidationError`` on ``policy`` says which step lost its variant)."""
    workspace = communication.workspace
    authorize(actor=actor, workspace=workspace, perm=Perm.COMMUNICATIONS)
    name = _text(name, "name") if name is not None else communication.name
    topic = _clean_topic(topic) if topic is not None else communication.topic
    clean, warnings = _clean_variants(variants, workspace=workspace)
    clean_policy = _clean_policy(communication.policy if policy is KEEP else policy, clean)
    with transaction.atomic():
        comm = Communication.objects.select_for_update().get(pk=communication.pk)
        number = comm.current_version + 1
        version = CommunicationVersion.objects.create(
            communication=comm, number=number, name=name, topic=topic, variants=clean, created_by=_label(actor)
        )
        Communication.objects.filter(pk=comm.pk).update(
            current_version=number, name=name, topic=topic, policy=clean_policy, updated_at=clock.now()
        )
        audit_record(
            workspace=workspace,
            actor=actor,
            action="communication.versioned",
            target=comm.key,
            # The policy before and after: a change of the channel order is a change of configuration.
            data={"version": number, "policy": {"before": comm.policy, "after": clean_policy}},
        )
    communication.refresh_from_db()
    return version, warnings


def _label(actor: Any) -> str:
    from tsunagu.core.permissions import actor_label

    return actor_label(actor)


# --- sends --------------------------------------------------------------------------------------------


def _template_context(
    customer: dict[str, Any], *, event: dict[str, Any] | None, data: dict[str, Any], links: dict[str, str]
) -> dict[str, Any]:
    return {"customer": customer, "event": event or {}, "data": data, **links}


def _clean_data(data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValidationError("must be an object", field="data")
    try:
        size = len(orjson.dumps(data))
    except TypeError:
        raise ValidationError("is not representable as JSON", field="data") from None
    if size > MAX_DATA_BYTES:
        raise ValidationError(f"is {size} bytes, over the {MAX_DATA_BYTES // 1024} KB limit", field="data")
    from tsunagu.events.validation import NUL_MESSAGE, nul_path

    if (where := nul_path(data, "data")) is not None:
        raise ValidationError(f"{where}: {NUL_MESSAGE}", field="data")
    return data


def send_create(
    *,
    workspace: Workspace,
    communication: str,
    customer: Customer,
    actor: Any,
    channel: str | None = None,
    policy: Any = None,
    data: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    base_url: str = "",
    at: dt.datetime | None = None,
    via: Channel | None = None,
) -> Send:
    """Record a send of ``communication`` (its key) to ``customer`` and take it through the first steps of
    its channel policy (``messaging.failover``): ``policy`` (this send's own), else ``channel`` alone, else
    the communication's policy, else its variants' channels in order. The variant is the customer's locale
    (``locale`` trait), else the workspace default. Unusable steps are skipped with their reason; a step
    inside quiet hours leaves the send ``scheduled``; the first usable one is a delivery, which a worker
    renders and sends after commit (the archive holds exactly what was sent).

    One transaction. The same ``idempotency_key`` again returns the first send and records nothing. A send
    that no step can reach is recorded as ``skipped`` with the reasons (``Message Skipped`` on the
    timeline): the caller learns it from ``status``, not from an exception. ``at`` records the send at
    another time than now (imports of an earlier platform's archive, the demo) — quiet hours and caps do not
    apply to the past. ``via`` sends through that channel row of the workspace, enabled or not (the
    console's "send a test"), outside quiet hours and caps. Raises ``NotFound`` (communication),
    ``ValidationError`` (a channel or policy step without a variant, bad data)."""
    from tsunagu.messaging.failover import send_advance
    from tsunagu.messaging.policy import policy_resolve

    authorize(actor=actor, workspace=workspace, perm=Perm.SEND)
    if idempotency_key is not None:
        idempotency_key = _text(idempotency_key, "idempotency_key")
        existing = Send.objects.filter(workspace=workspace, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
    comm = Communication.objects.filter(workspace=workspace, key=communication).first()
    if comm is None:
        raise NotFound(f"no communication with key {communication!r}", field="communication")
    version = CommunicationVersion.objects.get(communication=comm, number=comm.current_version)
    channels = variant_channels(list(version.variants))
    if via is not None:
        if via.workspace_id != workspace.pk:
            raise NotFound("no such channel in this workspace", field="channel_id")
        channel = via.type
    if channel is not None:
        if channel not in TYPES:
            raise ValidationError(f"must be one of {', '.join(TYPES)}", field="channel")
        if channel not in channels:
            raise ValidationError(f"communication {comm.key!r} has no {channel} variant", field="channel")
        if policy is None:
            policy = {"steps": [{"channel": channel}]}
    resolved = policy_resolve(override=policy, stored=comm.policy, channels=channels)
    data = _clean_data(data)
    now = at or clock.now()
    try:
        with transaction.atomic():
            send = Send.objects.create(
                workspace=workspace,
                communication=comm,
                version=version,
                customer=customer,
                channel=channel or "",
                data=data,
                event=event,
                idempotency_key=idempotency_key,
                actor=_label(actor),
                policy=resolved,
                created_at=now,
                updated_at=now,
            )
            send.workspace, send.version, send.customer = workspace, version, customer
            send_advance(send, now=now, via=via, timing=via is None and at is None)
    except IntegrityError:
        # Two requests with one idempotency key raced: the other recorded it first.
        return Send.objects.get(workspace=workspace, idempotency_key=idempotency_key)
    return send


def _index(deliveries: list[Delivery]) -> None:
    """Keep the archive's search index in step (``messaging.archive``, when installed)."""
    try:
        from tsunagu.messaging.archive import archive_index
    except ImportError:
        return
    archive_index(deliveries=deliveries)


# --- suppressions and push subscriptions --------------------------------------------------------------


def suppression_add(
    *, workspace: Workspace, channel_type: str, address: str, reason: str, topic: str = "", detail: str = ""
) -> Suppression:
    """Stop sending to ``address`` on ``channel_type`` (for ``topic`` only, when given). Idempotent."""
    row, _created = Suppression.objects.get_or_create(
        workspace=workspace,
        channel_type=channel_type,
        address=address,
        topic=topic,
        defaults={"reason": reason, "detail": detail[:1000]},
    )
    return row


def push_subscription_register(
    *, workspace: Workspace, customer: Customer, endpoint: Any, p256dh: Any, auth: Any
) -> PushSubscription:
    """Store a browser's push subscription for ``customer`` (the same endpoint again updates it). Push
    services are on https; a plain http endpoint is taken only where the workspace allows private addresses
    (a test or staging set-up with a local push service). Raises ``ValidationError`` naming the field."""
    endpoint = _text(endpoint, "subscription.endpoint", limit=2000)
    allowed = ("https://", "http://") if workspace.allow_private_webhooks else ("https://",)
    if not endpoint.startswith(allowed):
        raise ValidationError("must be an https URL", field="subscription.endpoint")
    p256dh = _text(p256dh, "subscription.keys.p256dh")
    auth = _text(auth, "subscription.keys.auth", limit=100)
    sub, _created = PushSubscription.objects.update_or_create(
        workspace=workspace,
        endpoint=endpoint,
        defaults={"customer": customer, "p256dh": p256dh, "auth": auth, "expired_at": None},
    )
    return sub


def inbox_mark_read(*, customer: Customer, delivery: Delivery, actor: Any) -> Delivery:
    """Mark an in-app message read by its customer (idempotent; keys that may send); the first read is an
    ``opened`` event on the customer's timeline. One transaction."""
    from tsunagu.messaging.delivery import Report, delivery_report

    authorize(actor=actor, workspace=customer.workspace, perm=Perm.SEND)
    if delivery.channel_type != "in_app":
        raise ValidationError("is not an in-app message", field="message_id")
    if delivery.read_at is not None:
        return delivery
    now = clock.now()
    with transaction.atomic():
        if Delivery.objects.filter(pk=delivery.pk, read_at__isnull=True).update(read_at=now):
            delivery_report(delivery=delivery, report=Report(status="opened", at=now))
    delivery.refresh_from_db()
    return delivery
