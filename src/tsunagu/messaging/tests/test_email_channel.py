"""The email channel against a real SMTP server on loopback (aiosmtpd): MIME, Japanese, RFC 8058 headers,
connection reuse, TLS and login, and how the relay's refusals become delivery errors."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from tsunagu.messaging.channels import channel_class
from tsunagu.messaging.channels.base import DeliveryError, Message
from tsunagu.messaging.channels.email import Channel, key_from_message_id, message_id_for
from tsunagu.testing.live import free_port
from tsunagu.testing.standins.smtp import SMTPStandin

HTML = '<html><body><h1>ご注文ありがとうございます</h1><p>田中様、<a href="https://shop.example.jp/o/1">注文を確認</a></p></body></html>'


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelining"])
def smtp(request: pytest.FixtureRequest) -> Iterator[SMTPStandin]:
    # Every conversation twice: with a relay that offers PIPELINING (MAIL, RCPT and DATA sent together)
    # and with one that does not.
    with SMTPStandin(pipelining=request.param) as server:
        yield server


def config_for(server: SMTPStandin, **extra: Any) -> dict[str, Any]:
    config = {
        "host": server.host,
        "port": server.port,
        "security": server.security,
        "from_email": "shop@example.jp",
        "from_name": "つなぐストア",
        **extra,
    }
    return Channel.clean_config(config)


def message(
    key: str = "d1a2b3", *, topic: str = "transactional", address: str = "tanaka@example.com", **kw: Any
) -> Message:
    content = kw.pop("content", None) or Channel.finish({"subject": "【発送】ご注文の商品を発送しました", "html": HTML})
    return Message(key=key, channel_type="email", topic=topic, address=address, content=content, **kw)


def parsed(raw: bytes) -> EmailMessage:
    result = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(result, EmailMessage)
    return result


def test_the_registry_finds_the_email_channel() -> None:
    assert channel_class("email") is Channel


def test_mime_structure_japanese_subject_body_and_from_name_decode(smtp: SMTPStandin) -> None:
    channel = Channel(config_for(smtp))
    outcome = channel.send(message())
    channel.close()

    received = smtp.wait_for(1)[0]
    assert received.rcpt_tos == ["tanaka@example.com"]
    assert received.mail_from == "shop@example.jp"
    msg = received.message
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert msg["Subject"] == "【発送】ご注文の商品を発送しました"
    assert msg["From"].addresses[0].display_name == "つなぐストア"
    assert msg["From"].addresses[0].addr_spec == "shop@example.jp"
    assert str(msg["To"]) == "tanaka@example.com"
    assert msg["Date"].datetime is not None
    plain_part, html_part = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain_part is not None and html_part is not None
    text, html = plain_part.get_content(), html_part.get_content()
    assert "田中様、注文を確認 (https://shop.example.jp/o/1)" in text
    assert "ご注文ありがとうございます" in html and 'href="https://shop.example.jp/o/1"' in html
    # The archive keeps exactly what went over the wire, and the headers as the recipient reads them.
    assert outcome.raw == received.data
    assert outcome.headers["Subject"] == "【発送】ご注文の商品を発送しました"
    assert outcome.headers["From"] == "つなぐストア <shop@example.jp>"
    # Every header line is 7-bit and the encoded words are within RFC 2047's 75 characters.
    head = received.data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert all(len(word) <= 75 for word in re.findall(rb"=\?[^?]+\?[BbQq]\?[^?]*\?=", head))


def test_a_long_japanese_subject_is_folded_and_still_decodes(smtp: SMTPStandin) -> None:
    subject = "【重要】" + "年末年始の配送スケジュールと返金手続きについてのお知らせ" * 4
    content = Channel.finish({"subject": subject, "html": "<p>本文</p>"})
    channel = Channel(config_for(smtp))
    channel.send(message(content=content))
    channel.close()
    data = smtp.wait_for(1)[0].data
    head = data.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))
    assert parsed(data)["Subject"] == subject


def test_header_injection_through_a_rendered_subject_is_impossible(smtp: SMTPStandin) -> None:
    content = {"subject": "Hello\r\nBcc: victim@example.org", "html": "<p>x</p>", "text": "x"}
    channel = Channel(config_for(smtp))
    channel.send(message(content=content))
    channel.close()
    msg = smtp.wait_for(1)[0].message
    assert msg["Bcc"] is None
    assert msg["Subject"] == "Hello Bcc: victim@example.org"


def test_message_id_is_the_delivery_key_at_the_from_domain(smtp: SMTPStandin) -> None:
    channel = Channel(config_for(smtp, reply_to="support@example.jp"))
    outcome = channel.send(message("0f3c9d2e41"))
    channel.close()
    msg = smtp.wait_for(1)[0].message
    assert msg["Message-ID"] == "<0f3c9d2e41@example.jp>" == message_id_for("0f3c9d2e41", "shop@example.jp")
    assert outcome.provider_id == "<0f3c9d2e41@example.jp>"
    assert key_from_message_id(outcome.provider_id) == "0f3c9d2e41"
    assert msg["Reply-To"] == "support@example.jp"


@pytest.mark.parametrize("topic", ["marketing", "service"])
def test_rfc8058_one_click_headers_on_marketing_and_service(smtp: SMTPStandin, topic: str) -> None:
    channel = Channel(config_for(smtp))
    channel.send(message(topic=topic, unsubscribe_url="https://cx.example.jp/m/u/abc123"))
    channel.close()
    msg = smtp.wait_for(1)[0].message
    assert msg["List-Unsubscribe"] == "<https://cx.example.jp/m/u/abc123>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_an_unsubscribe_url_with_japanese_characters_is_percent_encoded(smtp: SMTPStandin) -> None:
    channel = Channel(config_for(smtp))
    channel.send(message(topic="marketing", unsubscribe_url="https://cx.example.jp/配信停止?t=a b>"))
    channel.close()
    msg = smtp.wait_for(1)[0].message
    assert msg["List-Unsubscribe"] == "<https://cx.example.jp/%E9%85%8D%E4%BF%A1%E5%81%9C%E6%AD%A2?t=a%20b%3E>"


def test_no_unsubscribe_headers_on_transactional_mail(smtp: SMTPStandin) -> None:
    channel = Channel(config_for(smtp))
    channel.send(message(topic="transactional", unsubscribe_url="https://cx.example.jp/m/u/abc123"))
    channel.close()
    msg = smtp.wait_for(1)[0].message
    assert msg["List-Unsubscribe"] is None
    assert msg["List-Unsubscribe-Post"] is None


def test_one_connection_carries_many_sends(smtp: SMTPStandin) -> None:
    channel = Channel(config_for(smtp))
    for i in range(5):
        channel.send(message(f"key{i}", address=f"c{i}@example.com"))
    channel.close()
    received = smtp.wait_for(5)
    assert smtp.connections == 1
    assert {r.connection for r in received} == {1}
    assert [r.rcpt_tos[0] for r in received] == [f"c{i}@example.com" for i in range(5)]


def test_a_connection_the_server_dropped_is_reopened_once(smtp: SMTPStandin) -> None:
    channel = Channel(config_for(smtp))
    channel.send(message("first"))
    smtp.drop_connections()
    channel.send(message("second"))
    channel.close()
    received = smtp.wait_for(2)
    assert smtp.connections == 2
    assert [r.message["Message-ID"] for r in received] == ["<first@example.jp>", "<second@example.jp>"]


def test_starttls_and_login(monkeypatch: pytest.MonkeyPatch) -> None:
    with SMTPStandin(security="starttls", username="relay-user", password="s3cret") as server:
        assert server.ca_file is not None
        # Operators with a private CA point SSL_CERT_FILE at it; the channel verifies the certificate.
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        channel = Channel(config_for(server, username="relay-user", password="s3cret"))
        channel.send(message())
        channel.send(message("again"))
        channel.close()
        received = server.wait_for(2)
        assert all(r.tls and r.login == "relay-user" for r in received)
        assert server.connections == 1


def test_implicit_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    with SMTPStandin(security="tls") as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        channel = Channel(config_for(server))
        channel.send(message())
        channel.close()
        assert server.wait_for(1)[0].tls


def test_an_untrusted_certificate_is_refused_as_a_temporary_failure() -> None:
    with SMTPStandin(security="starttls") as server:
        channel = Channel(config_for(server))
        with pytest.raises(DeliveryError) as caught:
            channel.send(message())
        assert caught.value.permanent is False
        assert "TLS" in caught.value.reason
        assert server.messages == []


def test_a_wrong_password_is_a_temporary_failure_naming_the_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    with SMTPStandin(security="starttls", username="relay-user", password="s3cret") as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        channel = Channel(config_for(server, username="relay-user", password="wrong"))
        with pytest.raises(DeliveryError) as caught:
            channel.send(message())
        assert caught.value.permanent is False and caught.value.bounced is False
        assert "535" in caught.value.reason and "username and password" in caught.value.reason
        assert server.messages == []
        assert server.auth_attempts and not server.auth_attempts[0][1]


def test_a_550_recipient_is_a_permanent_bounce(smtp: SMTPStandin) -> None:
    smtp.refuse("gone@example.com", 550)
    channel = Channel(config_for(smtp))
    with pytest.raises(DeliveryError) as caught:
        channel.send(message(address="gone@example.com"))
    assert caught.value.permanent is True and caught.value.bounced is True
    assert "550" in caught.value.reason and "5.1.1" in caught.value.reason
    # The connection was reset, not lost: the next message goes out on it.
    channel.send(message("next"))
    channel.close()
    assert [r.rcpt_tos for r in smtp.wait_for(1)] == [["tanaka@example.com"]]
    assert smtp.connections == 1


def test_a_451_recipient_is_temporary(smtp: SMTPStandin) -> None:
    smtp.refuse("busy@example.com", 451)
    channel = Channel(config_for(smtp))
    with pytest.raises(DeliveryError) as caught:
        channel.send(message(address="busy@example.com"))
    channel.close()
    assert caught.value.permanent is False and caught.value.bounced is False
    assert "451" in caught.value.reason
    assert smtp.messages == []


def test_a_policy_refusal_is_permanent_but_suppresses_nobody(smtp: SMTPStandin) -> None:
    smtp.refuse("strict@example.com", 554)  # 554 5.7.1: the relay's policy, not the address
    channel = Channel(config_for(smtp))
    with pytest.raises(DeliveryError) as caught:
        channel.send(message(address="strict@example.com"))
    channel.close()
    assert caught.value.permanent is True and caught.value.bounced is False


def test_no_server_is_a_temporary_failure() -> None:
    channel = Channel(
        Channel.clean_config(
            {"host": "127.0.0.1", "port": free_port(), "security": "none", "from_email": "shop@example.jp"}
        )
    )
    with pytest.raises(DeliveryError) as caught:
        channel.send(message())
    assert caught.value.permanent is False


def test_an_invalid_address_is_permanent_without_a_connection(smtp: SMTPStandin) -> None:
    channel = Channel(config_for(smtp))
    with pytest.raises(DeliveryError) as caught:
        channel.send(message(address="not an address"))
    assert caught.value.permanent is True and caught.value.bounced is False
    assert smtp.connections == 0


def test_an_internationalised_domain_goes_out_in_its_ascii_form(smtp: SMTPStandin) -> None:
    channel = Channel(config_for(smtp))
    outcome = channel.send(message(address="tanaka@日本語.jp"))
    channel.close()
    received = smtp.wait_for(1)[0]
    assert received.rcpt_tos == ["tanaka@xn--wgv71a119e.jp"]
    assert outcome.headers["To"] == "tanaka@xn--wgv71a119e.jp"


def test_starttls_configured_but_not_offered_is_never_a_plain_text_fallback(smtp: SMTPStandin) -> None:
    channel = Channel(config_for(smtp, security="starttls"))
    with pytest.raises(DeliveryError) as caught:
        channel.send(message())
    assert caught.value.permanent is False and "STARTTLS" in caught.value.reason
    assert smtp.messages == []


def test_a_send_the_relay_took_but_never_answered_is_a_temporary_failure(smtp: SMTPStandin) -> None:
    """What crash tests build on: the relay has the message, the client never hears back."""
    channel = Channel(config_for(smtp, timeout=1.5))
    smtp.hold()
    with pytest.raises(DeliveryError) as caught:
        channel.send(message("held1"))
    assert caught.value.permanent is False
    smtp.wait_held(1)
    # The relay has the message although the channel could not know: the engine's retry would repeat
    # the same Message-ID, which is what lets a crash test (or a recipient) see a duplicate.
    assert smtp.message_ids() == ["<held1@example.jp>"]
    smtp.release()
    # The broken connection was dropped; the next send opens a new one.
    channel.send(message("after"))
    channel.close()
    assert smtp.wait_for(2) and smtp.connections == 2


def test_a_server_that_wants_starttls_tells_the_operator_what_to_change() -> None:
    with SMTPStandin(security="starttls") as server:
        channel = Channel(config_for(server, security="none"))
        with pytest.raises(DeliveryError) as caught:
            channel.send(message())
        channel.close()
    assert caught.value.permanent is False
    assert "530" in caught.value.reason and "security" in caught.value.reason


def test_lines_starting_with_a_dot_arrive_intact(smtp: SMTPStandin) -> None:
    # DATA ends at a line of a single "."; a line of the message starting with one is sent doubled.
    text = "dots:\n.\n.hidden\n..two\nend ."  # ASCII: the part goes as 7bit, lines as they are
    content = Channel.finish({"subject": "dots", "html": "<p>x</p>", "text": text})
    channel = Channel(config_for(smtp))
    channel.send(message(content=content))
    channel.send(message("second"))  # the conversation goes on after it
    channel.close()
    first, second = smtp.wait_for(2)
    assert parsed(first.data).get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip("\n") == text
    assert str(second.message["Message-ID"]).startswith("<second@")
