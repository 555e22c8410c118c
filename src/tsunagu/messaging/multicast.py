"""LINE multicast for broadcasts: a broadcast's LINE deliveries whose rendered messages are identical go as
one ``POST /v2/bot/message/multicast`` to up to 500 users, instead of one push each.

The delivery engine (``delivery.Runner.run_due``) hands its claimed batch to ``multicast_run`` first; what
it returns is sent one by one as usual. Here, for each (channel, broadcast) in the batch, more of that
broadcast's due LINE deliveries are claimed, all are rendered (each is still its own archived message,
with its customer's links), grouped by identical ``messages``, and each group of two or more is sent as
one multicast.

Exactly once: before the request, one commit marks every delivery of the group ``sending`` with the same
retry key in ``provider_id`` (``multicast:<uuid>``). The answer is recorded on all of them in the next
commit. A worker that dies in between leaves the group ``sending`` under an expired lease: whichever
worker claims any delivery of it sends the *whole* group again, same users, same messages, same
``X-Line-Retry-Key`` — LINE answers 409 "already accepted" to a key it took, and that counts as sent;
if the first request never reached LINE, this one is the first. A temporary error (5xx, 429) keeps the key
for the retry, for the same reason; a permanent one fails every delivery of the group, and each send's
policy moves on (SMS, email…) as after any failed delivery.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q

from tsunagu.core import clock
from tsunagu.messaging.channels.base import DeliveryError
from tsunagu.messaging.models import Delivery

if TYPE_CHECKING:
    from tsunagu.messaging.delivery import Runner

PREFIX = "multicast:"
MAX_TO = 500  # LINE's limit of users a multicast request
MAX_EXTRA = 2 * MAX_TO  # deliveries claimed beside the batch, per (channel, broadcast)


def _lease(now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=float(settings.TSUNAGU_DELIVERY_LEASE))


def _grouped_key(delivery: Delivery) -> str:
    return delivery.provider_id if delivery.provider_id.startswith(PREFIX) else ""


def _eligible(delivery: Delivery) -> bool:
    """A delivery of a multicast group (to resend as that group), or a broadcast's LINE delivery not yet
    handed over. One left ``sending`` by a push (it was alone in its group) is resent as that push, with
    its own retry key: grouping it now would give it another key."""
    if delivery.channel_type != "line" or delivery.channel_id is None:
        return False
    if _grouped_key(delivery):
        return True
    return delivery.send.broadcast_id is not None and delivery.status == Delivery.Status.QUEUED


def _claim_more(runner: Runner, *, channel_id: int, broadcast_id: int, have: set[int], now: dt.datetime
                ) -> list[Delivery]:
    from tsunagu.messaging.delivery import _load_claimed

    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    with transaction.atomic():
        ids = list(
            Delivery.objects.filter(
                free, status=Delivery.Status.QUEUED, due_at__lte=now, channel_id=channel_id,
                send__broadcast_id=broadcast_id, provider_id="",
            )
            .exclude(pk__in=have)
            .order_by("due_at", "id")
            .values_list("pk", flat=True)[:MAX_EXTRA]
        )
        if not ids:
            return []
        Delivery.objects.filter(free, pk__in=ids).update(locked_by=runner.worker_id, lease_until=_lease(now))
    return _load_claimed(ids, runner.worker_id)


def _take_group(runner: Runner, key: str, now: dt.datetime) -> list[Delivery]:
    """Every unfinished delivery of the multicast ``key`` (the whole group goes again); those no live
    worker holds are claimed for this one. Returns the whole group, loaded."""
    from tsunagu.messaging.delivery import _load_claimed

    open_ = Q(provider_id=key, status__in=[Delivery.Status.QUEUED, Delivery.Status.SENDING])
    with transaction.atomic():
        ids = list(Delivery.objects.filter(open_).order_by("id").values_list("pk", flat=True))
        Delivery.objects.filter(open_).filter(
            Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(locked_by=runner.worker_id)
        ).update(locked_by=runner.worker_id, lease_until=_lease(now))
    loaded = {d.pk: d for d in _load_claimed(ids, runner.worker_id)}
    others = Delivery.objects.filter(pk__in=[i for i in ids if i not in loaded]).only("pk", "address")
    # Deliveries of the group another worker holds are sent to again too (their addresses are in the
    # request), but recorded by that worker.
    group = list(loaded.values())
    for other in others:
        other._foreign = True  # type: ignore[attr-defined]
        group.append(other)
    return group


def multicast_run(runner: Runner, claimed: list[Delivery]) -> list[Delivery]:
    """The delivery engine's hook: send what in ``claimed`` (and more of the same broadcasts) can go by
    LINE multicast; return the deliveries left to send one by one."""
    from tsunagu.messaging.delivery import delivery_render

    eligible = [d for d in claimed if _eligible(d)]
    if not eligible:
        return claimed
    rest = [d for d in claimed if not _eligible(d)]
    now = clock.now()
    done_keys: set[str] = set()
    fresh: dict[tuple[int, int], list[Delivery]] = {}
    for d in eligible:
        key = _grouped_key(d)
        if key:
            if key not in done_keys:
                done_keys.add(key)
                _send_group(runner, _take_group(runner, key, now), key=key)
            continue
        fresh.setdefault((d.channel_id, d.send.broadcast_id), []).append(d)  # type: ignore[arg-type]
    for (channel_id, broadcast_id), batch in fresh.items():
        batch += _claim_more(runner, channel_id=channel_id, broadcast_id=broadcast_id,
                             have={d.pk for d in batch}, now=now)
        groups: dict[bytes, list[tuple[Delivery, dict[str, Any]]]] = {}
        for d in batch:
            try:
                rendered = delivery_render(d)
            except ValueError as exc:
                runner._later(runner._final, d, Delivery.Status.FAILED, str(exc))
                continue
            same = orjson.dumps(rendered["content"].get("messages"), option=orjson.OPT_SORT_KEYS)
            groups.setdefault(same, []).append((d, rendered))
        for members in groups.values():
            for start in range(0, len(members), MAX_TO):
                part = members[start:start + MAX_TO]
                if len(part) == 1:
                    rest.append(part[0][0])  # alone: an ordinary push
                    continue
                key = PREFIX + str(uuid.uuid4())
                marked = _mark(runner, part, key)
                if marked:
                    _send_group(runner, marked, key=key)
    runner._flush()
    return rest


def _mark(runner: Runner, part: list[tuple[Delivery, dict[str, Any]]], key: str) -> list[Delivery]:
    """One commit: the group's deliveries rendered, ``sending``, under one retry key (``provider_id``)."""
    from tsunagu.messaging.delivery import _index, _txn

    now = clock.now()
    first = part[0][1]
    with _txn():
        runner._apply_writes()
        ids = [d.pk for d, _ in part]
        Delivery.objects.filter(pk__in=ids, locked_by=runner.worker_id, status=Delivery.Status.QUEUED).update(
            status=Delivery.Status.SENDING, attempts=F("attempts") + 1, provider_id=key,
            lease_until=_lease(now), updated_at=now,
            content=first["content"], subject=first["subject"], body_text=first["body_text"],
        )
        mine = set(Delivery.objects.filter(pk__in=ids, provider_id=key).values_list("pk", flat=True))
        marked = []
        for d, rendered in part:
            if d.pk in mine:
                d.status, d.provider_id, d.attempts = Delivery.Status.SENDING, key, d.attempts + 1
                for name, value in rendered.items():
                    setattr(d, name, value)
                marked.append(d)
        _index(marked)
    return marked


def _send_group(runner: Runner, group: list[Delivery], *, key: str) -> None:
    """Send ``group`` (all of one retry key) as one multicast and record the answer on the deliveries
    this worker holds."""
    mine = [d for d in group if not getattr(d, "_foreign", False)]
    if not mine:
        return
    sample = mine[0]
    messages = (sample.content or {}).get("messages") or []
    to = sorted({d.address for d in group})
    try:
        impl: Any = runner._impl(sample)  # the LINE channel (``_eligible``)
        outcome = impl.multicast(to, messages, key.removeprefix(PREFIX))
    except DeliveryError as exc:
        if exc.permanent and exc.bounced:
            # A user id LINE refused fails the request, not an address of everyone in it.
            exc = DeliveryError(exc.reason, permanent=True)
        for d in mine:
            runner._later(runner._failed, d, exc)
    else:
        outcome.detail = (outcome.detail + f"; multicast to {len(to)}").lstrip("; ")
        runner._later(_succeeded, runner, mine, outcome, clock.now())
    runner._flush()


def _succeeded(runner: Runner, mine: list[Delivery], outcome: Any, at: dt.datetime) -> None:
    # One UPDATE for the group (they share the answer); a "sent" wakes no send, as in ``Runner._succeeded``.
    headers = {"sent": outcome.headers, "multicast": True}
    Delivery.objects.filter(pk__in=[d.pk for d in mine]).update(
        status=Delivery.Status.SENT, provider_id=outcome.provider_id[:255], headers=headers, sent_at=at,
        lease_until=None, reason="", updated_at=at,
    )
    for d in mine:
        d.status = Delivery.Status.SENT
        runner._event(d, "sent", at=at, detail=outcome.detail)
