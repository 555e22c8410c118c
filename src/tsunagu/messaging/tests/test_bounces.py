"""DSNs (RFC 3464) and complaints (ARF, RFC 5965) as relays and mailbox providers send them, and the
provider-neutral bounce webhook, become the reports that find their delivery by Message-ID."""

from __future__ import annotations

import base64
import datetime as dt

import orjson
import pytest
import standardwebhooks

from tsunagu.core.errors import AuthenticationError, ValidationError
from tsunagu.messaging.bounces import bounce_webhook_parse, dsn_parse
from tsunagu.messaging.channels.base import InboundRequest, Message
from tsunagu.messaging.channels.email import Channel

CONFIG = Channel.clean_config(
    {"host": "127.0.0.1", "port": 25, "security": "none", "from_email": "shop@example.jp", "from_name": "つなぐ"}
)


def original(key: str = "7c1e2d9a", to: str = "gone@example.com") -> tuple[bytes, str]:
    """The .eml our channel would send, and its Message-ID."""
    content = Channel.finish({"subject": "ご注文の確認", "html": "<p>ありがとうございます</p>"})
    raw, _, message_id = Channel(CONFIG).build(
        Message(key=key, channel_type="email", topic="transactional", address=to, content=content)
    )
    return raw, message_id


def postfix_dsn(returned: bytes, *, action: str = "failed", status: str = "5.1.1", diagnostic: str = "") -> bytes:
    diagnostic = diagnostic or (
        "smtp; 550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown in virtual mailbox table"
    )
    return (
        b"Return-Path: <>\r\n"
        b"From: MAILER-DAEMON@mail.example.jp (Mail Delivery System)\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n"
        b"To: shop@example.jp\r\n"
        b"Auto-Submitted: auto-replied\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status;\r\n"
        b'\tboundary="3F2A1C0E.1764581400/mail.example.jp"\r\n'
        b"Message-Id: <20261201093000.3F2A1C0E@mail.example.jp>\r\n"
        b"Date: Tue,  1 Dec 2026 18:30:00 +0900 (JST)\r\n"
        b"\r\n"
        b"This is a MIME-encapsulated message.\r\n"
        b"\r\n"
        b"--3F2A1C0E.1764581400/mail.example.jp\r\n"
        b"Content-Description: Notification\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"\r\n"
        b"This is the mail system at host mail.example.jp.\r\n"
        b"\r\n"
        b"I'm sorry to have to inform you that your message could not\r\n"
        b"be delivered to one or more recipients.\r\n"
        b"\r\n"
        b"--3F2A1C0E.1764581400/mail.example.jp\r\n"
        b"Content-Description: Delivery report\r\n"
        b"Content-Type: message/delivery-status\r\n"
        b"\r\n"
        b"Reporting-MTA: dns; mail.example.jp\r\n"
        b"X-Postfix-Queue-ID: 3F2A1C0E\r\n"
        b"X-Postfix-Sender: rfc822; shop@example.jp\r\n"
        b"Arrival-Date: Tue,  1 Dec 2026 18:29:58 +0900 (JST)\r\n"
        b"\r\n"
        b"Final-Recipient: rfc822; gone@example.com\r\n"
        b"Original-Recipient: rfc822;gone@example.com\r\n"
        b"Action: " + action.encode() + b"\r\n"
        b"Status: " + status.encode() + b"\r\n"
        b"Remote-MTA: dns; mx.example.com\r\n"
        b"Diagnostic-Code: " + diagnostic.encode() + b"\r\n"
        b"\r\n"
        b"--3F2A1C0E.1764581400/mail.example.jp\r\n"
        b"Content-Description: Undelivered Message\r\n"
        b"Content-Type: message/rfc822\r\n"
        b"\r\n" + returned + b"\r\n"
        b"--3F2A1C0E.1764581400/mail.example.jp--\r\n"
    )


def gmail_dsn(returned_headers: bytes, *, recipients: list[tuple[str, str, str]]) -> bytes:
    """Gmail returns only the headers (text/rfc822-headers); one report may name several recipients."""
    blocks = b"".join(
        b"Final-Recipient: rfc822; "
        + r.encode()
        + b"\r\nAction: "
        + a.encode()
        + b"\r\nStatus: "
        + s.encode()
        + b"\r\n"
        b"Diagnostic-Code: smtp; " + s.encode() + b" The email account that you tried to reach does not exist.\r\n"
        b"Last-Attempt-Date: Tue, 01 Dec 2026 01:30:05 -0800 (PST)\r\n\r\n"
        for r, a, s in recipients
    )
    return (
        b"Delivered-To: shop@example.jp\r\n"
        b"From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\n"
        b"To: shop@example.jp\r\n"
        b"Subject: Delivery Status Notification (Failure)\r\n"
        b"Message-ID: <6756ab12.050a0220.1f3c2.a9b1.GMR@mx.google.com>\r\n"
        b"Date: Tue, 01 Dec 2026 01:30:05 -0800 (PST)\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; boundary="000000000000a1b2c3"; report-type=delivery-status\r\n'
        b"\r\n"
        b"--000000000000a1b2c3\r\n"
        b'Content-Type: text/plain; charset="UTF-8"\r\n'
        b"\r\n"
        b"** Address not found **\r\n"
        b"\r\n"
        b"--000000000000a1b2c3\r\n"
        b"Content-Type: message/delivery-status\r\n"
        b"\r\n"
        b"Reporting-MTA: dns; googlemail.com\r\n"
        b"Received-From-MTA: dns; mail.example.jp\r\n"
        b"Arrival-Date: Tue, 01 Dec 2026 01:30:04 -0800 (PST)\r\n"
        b"X-Original-Message-ID: <ignored@example.jp>\r\n"
        b"\r\n" + blocks + b"--000000000000a1b2c3\r\n"
        b"Content-Type: text/rfc822-headers\r\n"
        b"\r\n" + returned_headers + b"\r\n"
        b"--000000000000a1b2c3--\r\n"
    )


def arf_complaint(returned: bytes, *, feedback_type: str = "abuse") -> bytes:
    return (
        b"From: <staff@hotmail.com>\r\n"
        b"To: <fbl@example.jp>\r\n"
        b"Subject: complaint about message from 203.0.113.25\r\n"
        b"Message-ID: <arf-20261201-0001@fbl.hotmail.com>\r\n"
        b"Date: Tue, 1 Dec 2026 10:02:00 +0000\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="part1_13d.2e68ed54_boundary"\r\n'
        b"\r\n"
        b"--part1_13d.2e68ed54_boundary\r\n"
        b'Content-Type: text/plain; charset="US-ASCII"\r\n'
        b"\r\n"
        b"This is an email abuse report for an email message received from IP 203.0.113.25.\r\n"
        b"\r\n"
        b"--part1_13d.2e68ed54_boundary\r\n"
        b"Content-Type: message/feedback-report\r\n"
        b"\r\n"
        b"Feedback-Type: " + feedback_type.encode() + b"\r\n"
        b"User-Agent: Hotmail FBL\r\n"
        b"Version: 1\r\n"
        b"Original-Mail-From: <shop@example.jp>\r\n"
        b"Original-Rcpt-To: <tanaka@example.com>\r\n"
        b"Arrival-Date: Tue, 1 Dec 2026 09:58:00 +0000\r\n"
        b"Source-IP: 203.0.113.25\r\n"
        b"Reported-Domain: example.jp\r\n"
        b"\r\n"
        b"--part1_13d.2e68ed54_boundary\r\n"
        b"Content-Type: message/rfc822\r\n"
        b"Content-Disposition: inline\r\n"
        b"\r\n" + returned + b"\r\n"
        b"--part1_13d.2e68ed54_boundary--\r\n"
    )


def test_a_postfix_hard_bounce_names_the_original_message_id() -> None:
    raw, message_id = original()
    [report] = dsn_parse(postfix_dsn(raw))
    assert report.provider_id == message_id == "<7c1e2d9a@example.jp>"
    assert report.status == "bounced" and report.permanent is True
    assert report.receipt == "<20261201093000.3F2A1C0E@mail.example.jp>"
    assert "5.1.1" in report.reason and "User unknown" in report.reason
    assert report.at == dt.datetime(2026, 12, 1, 9, 29, 58, tzinfo=dt.UTC)


def test_a_gmail_dsn_with_returned_headers_and_two_recipients() -> None:
    raw, message_id = original("aa11bb22")
    headers = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    reports = dsn_parse(
        gmail_dsn(
            headers,
            recipients=[("gone@example.com", "failed", "5.1.1"), ("slow@example.com", "delayed", "4.4.7")],
        )
    )
    # The delay is not an outcome (the relay keeps trying); only the failure is reported.
    [report] = reports
    assert report.provider_id == message_id
    assert report.status == "bounced"
    assert report.receipt == "<6756ab12.050a0220.1f3c2.a9b1.GMR@mx.google.com>"
    assert report.at == dt.datetime(2026, 12, 1, 9, 30, 5, tzinfo=dt.UTC)


def test_several_failures_in_one_report_get_distinct_receipts() -> None:
    raw, _ = original("cc33")
    headers = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    reports = dsn_parse(
        gmail_dsn(headers, recipients=[("a@example.com", "failed", "5.1.1"), ("b@example.com", "failed", "5.1.1")])
    )
    assert len({r.receipt for r in reports}) == 2


@pytest.mark.parametrize(
    ("action", "status", "expected", "permanent"),
    [
        ("failed", "5.4.4", "bounced", True),  # no such domain: the address is undeliverable
        ("failed", "5.7.1", "failed", True),  # refused as spam or by policy: nobody is suppressed
        ("failed", "5.2.2", "failed", True),  # mailbox full
        ("failed", "5.4.7", "failed", True),  # the relay gave up after days of retries
        ("failed", "5.0.0", "bounced", True),  # Postfix's "unknown user" without a finer code
        ("failed", "4.4.1", "failed", False),  # gave up after temporary failures
        ("delivered", "2.0.0", "delivered", True),
    ],
)
def test_status_codes_decide_bounce_failure_or_delivery(
    action: str, status: str, expected: str, permanent: bool
) -> None:
    raw, _ = original()
    [report] = dsn_parse(postfix_dsn(raw, action=action, status=status, diagnostic=f"smtp; 550 {status} x"))
    assert (report.status, report.permanent) == (expected, permanent)


def test_a_delay_notice_reports_nothing() -> None:
    raw, _ = original()
    assert dsn_parse(postfix_dsn(raw, action="delayed", status="4.4.7")) == []


def test_an_arf_complaint_marks_the_address_undeliverable() -> None:
    raw, message_id = original("dd44", to="tanaka@example.com")
    [report] = dsn_parse(arf_complaint(raw))
    assert report.provider_id == message_id
    assert report.status == "bounced" and report.permanent is True
    assert report.reason.startswith("complaint: abuse")
    assert report.receipt == "<arf-20261201-0001@fbl.hotmail.com>"


def test_a_not_spam_feedback_report_is_not_a_complaint() -> None:
    raw, _ = original()
    assert dsn_parse(arf_complaint(raw, feedback_type="not-spam")) == []


def test_a_persons_reply_is_not_a_report() -> None:
    reply = (
        b"From: Tanaka <tanaka@example.com>\r\nTo: shop@example.jp\r\nSubject: Re: your order\r\n"
        b"Message-ID: <reply1@example.com>\r\nIn-Reply-To: <7c1e2d9a@example.jp>\r\n\r\nThanks!\r\n"
    )
    assert dsn_parse(reply) == []


def test_a_report_without_the_original_message_id_reports_nothing() -> None:
    raw, _ = original()
    headless = raw.replace(b"Message-ID: <7c1e2d9a@example.jp>\r\n", b"")
    assert dsn_parse(postfix_dsn(headless)) == []


def test_the_bounce_webhook() -> None:
    body = orjson.dumps(
        {
            "events": [
                {
                    "id": "evt_1",
                    "type": "bounce",
                    "message_id": "7c1e2d9a@example.jp",
                    "email": "gone@example.com",
                    "reason": "550 5.1.1 user unknown",
                    "permanent": True,
                    "at": "2026-12-01T18:30:00+09:00",
                },
                {"id": "evt_2", "type": "bounce", "message_id": "<k2@example.jp>", "permanent": False},
                {"id": "evt_3", "type": "complaint", "message_id": "<k3@example.jp>", "email": "c@example.com"},
            ]
        }
    )
    first, second, third = bounce_webhook_parse(body)
    assert (first.provider_id, first.status, first.permanent) == ("<7c1e2d9a@example.jp>", "bounced", True)
    assert first.receipt == "webhook:evt_1"
    assert first.reason == "550 5.1.1 user unknown (gone@example.com)"
    assert first.at == dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
    assert (second.status, second.permanent) == ("failed", False)
    assert (third.status, third.permanent) == ("bounced", True) and third.reason.startswith("complaint")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b'{"event": []}', "events"),
        (b'{"events": [{"id": "1", "type": "open", "message_id": "<a@b>"}]}', "events[0].type"),
        (b'{"events": [{"type": "bounce", "message_id": "<a@b>"}]}', "events[0].id"),
        (b'{"events": [{"id": "1", "type": "bounce"}]}', "events[0].message_id"),
        (
            b'{"events": [{"id": "1", "type": "bounce", "message_id": "<a@b>", "permanent": "yes"}]}',
            "events[0].permanent",
        ),
        (b'{"events": [{"id": "1", "type": "bounce", "message_id": "<a@b>", "at": "monday"}]}', "events[0].at"),
    ],
)
def test_a_bad_webhook_body_names_the_field(body: bytes, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        bounce_webhook_parse(body)
    assert caught.value.field == field


SECRET = "whsec_" + base64.b64encode(b"bounce-webhook-secret-32-bytes!!").decode()


def signed(body: bytes, secret: str = SECRET, msg_id: str = "msg_1") -> InboundRequest:
    now = dt.datetime.now(tz=dt.UTC)
    signature = standardwebhooks.Webhook(secret).sign(msg_id=msg_id, timestamp=now, data=body.decode())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}
    return InboundRequest(url="https://cx.example.jp/hooks/email/bounces", headers=headers, body=body)


def test_the_channel_takes_the_bounce_webhook_signed_with_its_secret() -> None:
    channel = Channel({**CONFIG, "bounce_webhook_secret": SECRET})
    body = b'{"events": [{"id": "e1", "type": "bounce", "message_id": "<k@example.jp>"}]}'
    request = signed(body)
    channel.verify(webhook="bounces", request=request)
    [report] = channel.parse(webhook="bounces", request=request)
    assert report.provider_id == "<k@example.jp>"


def test_a_forged_or_unsigned_bounce_webhook_is_refused() -> None:
    body = b'{"events": [{"id": "e1", "type": "bounce", "message_id": "<k@example.jp>"}]}'
    channel = Channel({**CONFIG, "bounce_webhook_secret": SECRET})
    other = "whsec_" + base64.b64encode(b"another-secret-another-secret-!!").decode()
    with pytest.raises(AuthenticationError):
        channel.verify(webhook="bounces", request=signed(body, secret=other))
    tampered = signed(body)
    with pytest.raises(AuthenticationError):
        channel.verify(
            webhook="bounces", request=InboundRequest(url=tampered.url, headers=tampered.headers, body=body + b" ")
        )
    with pytest.raises(AuthenticationError):
        channel.verify(webhook="bounces", request=InboundRequest(url=tampered.url, headers={}, body=body))
    with pytest.raises(AuthenticationError):  # no secret configured: nothing is accepted
        Channel(CONFIG).verify(webhook="bounces", request=signed(body))
