"""Email bounces and complaints, from a mailbox or a webhook, as ``StatusReport``s the delivery engine
applies like any provider's report. Pure: no models; the worker that polls the mailbox and the view that
receives the webhook call these functions.

What is read, and how it is judged:

- **Delivery status notifications** (RFC 3464: ``multipart/report; report-type=delivery-status``), as
  Postfix, Exim, Gmail, Microsoft 365 and most relays send them. Each recipient block with
  ``Action: failed`` becomes a report: status ``bounced`` (permanent) when its status code says the address
  is undeliverable (``channels.email.status_is_bounce``: 5.1.1 no such user, 5.4.4 no such domain, …);
  status ``failed`` (permanent, no suppression) for other 5.x.x (policy, content, a full mailbox); status
  ``failed`` (temporary) for a 4.x.x. ``Action: delayed`` is **ignored**: the relay is still trying and
  sends a final DSN when it gives up. ``Action: delivered`` (a success DSN) becomes ``delivered``.
- **Complaints** (ARF, RFC 5965: ``multipart/report; report-type=feedback-report``), as mailbox providers'
  feedback loops send them when a recipient presses "this is spam". ``Feedback-Type: abuse`` (also
  ``fraud``, ``other``) becomes status ``bounced`` with reason ``complaint: …``: the issue asks that
  complaints mark the address undeliverable, and a person who called our mail spam must not be mailed
  again; it is not "unsubscribed", which is the customer's own choice for one topic. ``not-spam`` and
  ``auth-failure`` reports are not complaints and are ignored.

Every report's ``provider_id`` is the original message's ``Message-ID`` (``<key@domain>``, see
``channels.email.message_id_for``), taken from the returned message or its headers, and its ``receipt``
the report's own ``Message-ID`` (with the recipient when one report names several): a report read twice
changes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import hashlib
import imaplib
import poplib
import ssl
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from tsunagu.messaging.channels.base import StatusReport
from tsunagu.messaging.channels.email import status_is_bounce

COMPLAINT_TYPES = ("abuse", "fraud", "other")
_BYTES_POLICY = email.policy.default


class MailboxError(Exception):
    """The bounce mailbox could not be read (connection, TLS or login): a configuration problem."""


# --------------------------------------------------------------------------------------------- parsing
def _date(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _field_value(value: Any) -> str:
    """A DSN field without its type prefix: ``rfc822; a@b`` -> ``a@b``, ``smtp; 550 …`` -> ``550 …``."""
    text = " ".join(str(value or "").split())
    kind, sep, rest = text.partition(";")
    return rest.strip() if sep and " " not in kind.strip() else text


def _original_message_id(report: Message) -> str:
    """The Message-ID of the message a report is about: from the returned message (message/rfc822), its
    headers (text/rfc822-headers), or an Original-Message-ID field."""
    for part in report.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message) and inner.get("Message-ID"):
                return str(inner["Message-ID"]).strip()
        elif kind == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                headers = email.message_from_bytes(raw, policy=_BYTES_POLICY)
                if headers.get("Message-ID"):
                    return str(headers["Message-ID"]).strip()
    for part in report.walk():
        if part.get_content_type() in ("message/delivery-status", "message/feedback-report"):
            for block in _blocks(part):
                if block.get("Original-Message-ID"):
                    return str(block["Original-Message-ID"]).strip()
    return ""


def _blocks(part: Message) -> list[Message]:
    """The field blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload or "")
    blocks = []
    for chunk in text.replace("\r\n", "\n").split("\n\n"):
        if chunk.strip():
            blocks.append(email.message_from_string(chunk.strip() + "\n", policy=email.policy.compat32))
    return blocks


def _receipt(report: Message, raw: bytes) -> str:
    own = str(report.get("Message-ID") or "").strip()
    return own or "sha256:" + hashlib.sha256(raw).hexdigest()


def _dsn_reports(report: Message, raw: bytes, original: str) -> list[StatusReport]:
    status_part = next((p for p in report.walk() if p.get_content_type() == "message/delivery-status"), None)
    if status_part is None:
        return []
    blocks = _blocks(status_part)
    per_message, recipients = (blocks[0], blocks[1:]) if len(blocks) > 1 else (Message(), blocks)
    receipt = _receipt(report, raw)
    found: list[StatusReport] = []
    for block in recipients:
        action = str(block.get("Action") or "").strip().lower()
        status = _field_value(block.get("Status"))
        recipient = _field_value(block.get("Final-Recipient") or block.get("Original-Recipient"))
        diagnostic = _field_value(block.get("Diagnostic-Code"))
        at = _date(block.get("Last-Attempt-Date")) or _date(per_message.get("Arrival-Date")) or _date(report["Date"])
        reason = " ".join(part for part in (status, diagnostic) if part) or action
        if action == "failed":
            if status.startswith("4"):
                state, permanent = "failed", False
            else:
                state, permanent = ("bounced" if status_is_bounce(status or "5.0.0") else "failed"), True
        elif action == "delivered":
            state, permanent = "delivered", True
        else:  # delayed (the relay is still trying), relayed, expanded: not an outcome
            continue
        found.append(
            StatusReport(receipt=receipt, provider_id=original, status=state, reason=reason, permanent=permanent, at=at)
        )
        found[-1].reason = f"{reason} ({recipient})" if recipient and recipient not in reason else reason
    if len(found) > 1:
        for index, item in enumerate(found):
            item.receipt = f"{receipt}#{index + 1}"
    return found


def _arf_reports(report: Message, raw: bytes, original: str) -> list[StatusReport]:
    feedback = next((p for p in report.walk() if p.get_content_type() == "message/feedback-report"), None)
    if feedback is None:
        return []
    fields = _blocks(feedback)
    block = fields[0] if fields else Message()
    kind = str(block.get("Feedback-Type") or "").strip().lower()
    if kind not in COMPLAINT_TYPES:
        return []
    source = str(block.get("User-Agent") or block.get("Reported-Domain") or "").strip()
    reason = f"complaint: {kind}" + (f" ({source})" if source else "")
    at = _date(block.get("Arrival-Date") or block.get("Received-Date")) or _date(report["Date"])
    return [
        StatusReport(
            receipt=_receipt(report, raw), provider_id=original, status="bounced", reason=reason, permanent=True, at=at
        )
    ]


def dsn_parse(raw: bytes) -> list[StatusReport]:
    """The reports in one email: a DSN (RFC 3464) or a complaint (ARF, RFC 5965); ``[]`` for anything else
    (a person's reply, an auto-responder, a report about a message we did not send)."""
    report = email.message_from_bytes(raw, policy=_BYTES_POLICY)
    if report.get_content_type() != "multipart/report":
        return []
    original = _original_message_id(report)
    if not original:
        return []
    kind = str(report.get_param("report-type", "") or "").lower()
    if kind == "delivery-status":
        return _dsn_reports(report, raw, original)
    if kind == "feedback-report":
        return _arf_reports(report, raw, original)
    return []


# --------------------------------------------------------------------------------------------- mailbox
_BOUNCE_PORTS = {("imap", "tls"): 993, ("imap", "starttls"): 143, ("imap", "none"): 143}
_BOUNCE_PORTS |= {("pop3", "tls"): 995, ("pop3", "starttls"): 110, ("pop3", "none"): 110}


def bounce_config_clean(cleaned: dict[str, Any]) -> None:
    """Check and complete the bounce mailbox keys of an email channel's config (``bounce_*``), in place."""
    from tsunagu.core.errors import ValidationError
    from tsunagu.messaging.channels.email import BOUNCE_FIELDS, SECURITY

    mailbox = [k for k in BOUNCE_FIELDS if k != "bounce_webhook_secret" and cleaned.get(k) not in (None, "")]
    if not mailbox:
        return
    for key in ("bounce_protocol", "bounce_host", "bounce_username", "bounce_password"):
        if not isinstance(cleaned.get(key), str) or not cleaned[key].strip():
            raise ValidationError("is required for a bounce mailbox", field=f"config.{key}")
    protocol = cleaned["bounce_protocol"].strip().lower()
    if protocol not in ("imap", "pop3"):
        raise ValidationError('must be "imap" or "pop3"', field="config.bounce_protocol")
    security = str(cleaned.get("bounce_security") or "tls").strip().lower()
    if security not in SECURITY:
        raise ValidationError('must be "tls", "starttls" or "none"', field="config.bounce_security")
    port = cleaned.get("bounce_port") or _BOUNCE_PORTS[(protocol, security)]
    if isinstance(port, str) and port.strip().isdigit():
        port = int(port.strip())
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValidationError("must be a port number from 1 to 65535", field="config.bounce_port")
    delete = cleaned.get("bounce_delete", False)
    if not isinstance(delete, bool):
        raise ValidationError("must be true or false", field="config.bounce_delete")
    cleaned.update(
        bounce_protocol=protocol,
        bounce_host=cleaned["bounce_host"].strip(),
        bounce_port=port,
        bounce_security=security,
        bounce_delete=delete,
    )


def _context(ssl_context: ssl.SSLContext | None) -> ssl.SSLContext:
    return ssl_context or ssl.create_default_context()


def _fetch_imap(
    *,
    host: str,
    port: int,
    username: str,
    password: str,
    security: str,
    delete: bool,
    timeout: float,
    ssl_context: ssl.SSLContext | None,
) -> list[StatusReport]:
    if security == "tls":
        conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(host, port, ssl_context=_context(ssl_context), timeout=timeout)
    else:
        conn = imaplib.IMAP4(host, port, timeout=timeout)
        if security == "starttls":
            conn.starttls(ssl_context=_context(ssl_context))
    reports: list[StatusReport] = []
    try:
        conn.login(username, password)
        conn.select("INBOX")
        # Unread messages only: each one read is flagged \\Seen, so the next poll does not read it again.
        _, data = conn.uid("SEARCH", "UNSEEN")
        uids = data[0].split() if data and data[0] else []
        for uid in uids:
            _, fetched = conn.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next((item[1] for item in fetched if isinstance(item, tuple)), b"")
            found = dsn_parse(raw) if raw else []
            reports.extend(found)
            conn.uid("STORE", uid, "+FLAGS", "(\\Seen)")
            if delete and found:
                conn.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
        if delete:
            conn.expunge()
        conn.close()
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            conn.logout()
    return reports


def _fetch_pop3(
    *,
    host: str,
    port: int,
    username: str,
    password: str,
    security: str,
    delete: bool,
    timeout: float,
    ssl_context: ssl.SSLContext | None,
) -> list[StatusReport]:
    if security == "tls":
        conn: poplib.POP3 = poplib.POP3_SSL(host, port, timeout=timeout, context=_context(ssl_context))
    else:
        conn = poplib.POP3(host, port, timeout=timeout)
        if security == "starttls":
            conn.stls(context=_context(ssl_context))
    reports: list[StatusReport] = []
    try:
        conn.user(username)
        conn.pass_(password)
        _, listing, _ = conn.list()
        for entry in listing:
            number = int(entry.split()[0])
            _, lines, _ = conn.retr(number)
            raw = b"\r\n".join(lines) + b"\r\n"
            found = dsn_parse(raw)
            reports.extend(found)
            # POP3 has no "read" flag: without delete the same reports come back, and their receipts make
            # that harmless. Only reports are deleted; a person's mail in the mailbox stays.
            if delete and found:
                conn.dele(number)
        conn.quit()
    except BaseException:
        with contextlib.suppress(poplib.error_proto, OSError):
            conn.close()
        raise
    return reports


def bounces_fetch(
    *,
    protocol: str,
    host: str,
    port: int,
    username: str,
    password: str,
    security: str = "tls",
    delete: bool = False,
    timeout: float = 30.0,
    ssl_context: ssl.SSLContext | None = None,
) -> list[StatusReport]:
    """Read the bounce mailbox (IMAP or POP3; ``security`` "tls", "starttls" or "none") and return the
    reports of the DSNs and complaints in it. IMAP reads unread messages and flags each one read; with
    ``delete`` the reports among them are deleted (other mail is left, read). POP3 reads every message and,
    with ``delete``, deletes the reports. Raises ``MailboxError`` when the mailbox cannot be reached or
    logged into; no message is lost then (nothing was flagged or deleted). TLS certificates are verified
    against the system's trust store (``SSL_CERT_FILE`` for a private CA) unless ``ssl_context`` is given."""
    if protocol not in ("imap", "pop3"):
        raise ValueError('protocol is "imap" or "pop3"')
    if security not in ("tls", "starttls", "none"):
        raise ValueError('security is "tls", "starttls" or "none"')
    fetch = _fetch_imap if protocol == "imap" else _fetch_pop3
    try:
        return fetch(
            host=host,
            port=port,
            username=username,
            password=password,
            security=security,
            delete=delete,
            timeout=timeout,
            ssl_context=ssl_context,
        )
    except (imaplib.IMAP4.error, poplib.error_proto) as exc:
        raise MailboxError(f"{protocol.upper()} {host}:{port}: {exc}") from exc
    except (ssl.SSLError, OSError) as exc:
        raise MailboxError(f"cannot reach the {protocol.upper()} server {host}:{port}: {exc}") from exc


# --------------------------------------------------------------------------------------------- webhook
def bounce_webhook_parse(body: bytes) -> list[StatusReport]:
    """The reports in a provider-neutral bounce webhook body (documented in docs/channels.md):

    ``{"events": [{"id": "evt_1", "type": "bounce" | "complaint", "message_id": "<key@domain>",
    "email": "tanaka@example.com", "reason": "550 5.1.1 user unknown", "permanent": true,
    "at": "2026-12-01T09:30:00+09:00"}]}``

    ``id`` (the receipt) and ``message_id`` are required; a bounce is permanent unless ``permanent`` is
    false. Raises ``ValidationError`` naming the field at fault."""
    from tsunagu.core.errors import ValidationError

    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"the body is not JSON: {exc}", field="body") from exc
    events = document.get("events") if isinstance(document, dict) else None
    if not isinstance(events, list):
        raise ValidationError("must be a list of events", field="events")
    reports = []
    for index, event in enumerate(events):
        where = f"events[{index}]"
        if not isinstance(event, dict):
            raise ValidationError("must be an object", field=where)
        kind, receipt, message_id = event.get("type"), event.get("id"), event.get("message_id")
        if kind not in ("bounce", "complaint"):
            raise ValidationError('must be "bounce" or "complaint"', field=f"{where}.type")
        if not isinstance(receipt, str) or not receipt.strip():
            raise ValidationError("is required", field=f"{where}.id")
        if not isinstance(message_id, str) or not message_id.strip().strip("<>"):
            raise ValidationError("is required", field=f"{where}.message_id")
        permanent = event.get("permanent", True)
        if not isinstance(permanent, bool):
            raise ValidationError("must be true or false", field=f"{where}.permanent")
        at = None
        if event.get("at") is not None:
            try:
                at = dt.datetime.fromisoformat(str(event["at"]))
            except ValueError as exc:
                raise ValidationError("must be an ISO 8601 time", field=f"{where}.at") from exc
            at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
        reason = str(event.get("reason") or "")
        if kind == "complaint":
            status, permanent, reason = "bounced", True, f"complaint: {reason or 'abuse'}"
        else:
            status = "bounced" if permanent else "failed"
        email_address = str(event.get("email") or "")
        if email_address and email_address not in reason:
            reason = f"{reason} ({email_address})".strip()
        reports.append(
            StatusReport(
                receipt=f"webhook:{receipt.strip()}",
                provider_id="<" + message_id.strip().strip("<>") + ">",
                status=status,
                reason=reason,
                permanent=permanent,
                at=at,
            )
        )
    return reports


__all__ = ["MailboxError", "bounce_config_clean", "bounce_webhook_parse", "bounces_fetch", "dsn_parse"]
