"""Email over SMTP: a company's own relay, or a provider's SMTP endpoint (SendGrid, SES, Mailgun, …).

``finish`` turns a variant into what is sent: MJML compiled to HTML (mjml-python), CSS inlined (css-inline,
never fetching remote stylesheets), a plain-text part generated from the HTML when none was written.
``send`` builds the MIME message itself rather than through ``email.message.EmailMessage``: the standard
library's generator costs ~5 ms a message, more than the whole budget of the 500 emails/s target, while
the few headers and two parts an email here has are simple to write exactly (RFC 5322, RFC 2045–2047). The
result is checked against Python's ``email`` parser in the tests. The SMTP connection is kept across sends
and reopened once when the relay has dropped it while idle.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import re
import secrets
import smtplib
import socket
import ssl
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

from tsunagu.core import clock
from tsunagu.messaging.channels.base import (
    ChannelBase,
    CustomerEvent,
    DeliveryError,
    InboundRequest,
    Message,
    Outcome,
    StatusReport,
)
from tsunagu.messaging.channels.email_text import html_to_text

SECURITY = ("starttls", "tls", "none")
DEFAULT_TIMEOUT = 30.0
# SMTP connections one worker keeps to a relay, each with one message on the wire at a time: the round
# trips of a send are waiting, not work, so a few connections overlap them (docs/performance.md).
DEFAULT_CONNECTIONS = 4
MAX_CONNECTIONS = 20

# RFC 5322 dot-atom local part (ASCII; addresses needing SMTPUTF8 are refused) and a DNS domain.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}"
_ADDRESS = re.compile(rf"{_LOCAL}@{_DOMAIN}")
_MSGID_LEFT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_CRLF = re.compile(r"[\r\n]+")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_LINE_DOT = re.compile(rb"(?m)^\.")
_QP_ESCAPED = bytes(range(128, 256))  # with "=": the bytes quoted-printable writes as =XX


def address_is_valid(address: str) -> bool:
    """An ASCII addr-spec with a domain of at least two labels (``name@example.jp``)."""
    return isinstance(address, str) and len(address) <= 254 and _ADDRESS.fullmatch(address) is not None


def address_for_smtp(address: str) -> str:
    """``address`` as it goes on the wire: an internationalised domain (``店.jp``) in its ASCII form
    (``xn--...``); ``""`` when it is not a deliverable address. A non-ASCII local part would need SMTPUTF8,
    which few relays offer, and is refused."""
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return ""
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return ""
    candidate = f"{local}@{domain}"
    return candidate if address_is_valid(candidate) else ""


def _ascii_domain(address: str) -> str:
    domain = address.rpartition("@")[2].strip().lower()
    return domain if domain.isascii() else domain.encode("idna").decode("ascii")


def message_id_for(key: str, from_email: str) -> str:
    """The ``Message-ID`` of the delivery ``key`` sent from ``from_email``: ``<key@domain>``. Bounces and
    complaints name it, which is how they find their delivery."""
    if not _MSGID_LEFT.fullmatch(key):
        raise ValueError(f"a delivery key cannot be the left part of a Message-ID: {key!r}")
    return f"<{key}@{_ascii_domain(from_email)}>"


def key_from_message_id(message_id: str) -> str:
    """The delivery key in a Message-ID made by ``message_id_for`` (``""`` for a foreign one)."""
    inner = message_id.strip().strip("<>")
    left, at, _ = inner.rpartition("@")
    return left if at else ""


# --------------------------------------------------------------------------------------------- headers
def _encode_words(value: str, room: int) -> str:
    """RFC 2047 B-encoded words of UTF-8, each at most 75 characters and holding whole characters (a
    character split across words is what makes some clients show mojibake), folded onto lines."""
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    # A line carries "=?UTF-8?B?" + base64 + "?=" (12) after the header name or the fold's space.
    limit = max(15, (min(room, 75) - 12) // 4 * 3)
    for char in value:
        width = len(char.encode("utf-8"))
        if size + width > limit and chunk:
            words.append("".join(chunk))
            chunk, size = [], 0
            limit = (75 - 12) // 4 * 3
        chunk.append(char)
        size += width
    if chunk:
        words.append("".join(chunk))
    return "\r\n ".join("=?UTF-8?B?" + base64.b64encode(word.encode("utf-8")).decode("ascii") + "?=" for word in words)


def _fold_ascii(value: str, room: int) -> str:
    """Fold a plain ASCII header value at spaces so lines stay within 78 characters where possible."""
    if len(value) <= room:
        return value
    lines: list[str] = []
    line = ""
    for word in value.split(" "):
        candidate = f"{line} {word}" if line else word
        if len(candidate) > room and line:
            lines.append(line)
            line, room = word, 77
        else:
            line = candidate
    lines.append(line)
    return "\r\n ".join(lines)


def encode_header(name: str, value: str) -> str:
    """``Name: value`` ready for the wire: plain when it is printable ASCII, RFC 2047 otherwise. Line
    breaks in the value are replaced by spaces (a rendered template must not be able to add headers)."""
    value = _CRLF.sub(" ", value).strip()
    room = 78 - len(name) - 2
    if value.isascii() and value.isprintable() and "=?" not in value:
        return f"{name}: {_fold_ascii(value, room)}"
    return f"{name}: {_encode_words(value, room)}"


def _quote_phrase(name: str) -> str:
    """A display name as an RFC 5322 phrase (quoted when it has specials) or encoded words."""
    name = _CRLF.sub(" ", name).strip()
    if not name.isascii() or not name.isprintable():
        return _encode_words(name, 60)
    if re.fullmatch(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+", name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_address(email_address: str, name: str = "") -> str:
    return f"{_quote_phrase(name)} <{email_address}>" if name else email_address


# --------------------------------------------------------------------------------------------- bodies
def _body(text: str) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, encoded body with CRLF line ends): 7bit for short-lined ASCII, else the
    shorter of quoted-printable and base64 (Japanese text: base64; English with a few accents: QP)."""
    data = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n").encode("utf-8")
    if data.isascii() and all(len(line) <= 998 for line in data.split(b"\r\n")):
        return "7bit", data
    # Which is shorter is clear from the bytes QP must escape, except near a tie: only then are both made.
    escaped = len(data) - len(data.translate(None, _QP_ESCAPED)) + data.count(b"=")
    qp_estimate, b64_size = (len(data) + 2 * escaped) * 76 / 73, (len(data) + 2) // 3 * 4 * 78 / 76
    if qp_estimate > 1.2 * b64_size:
        return "base64", _base64(data)
    # b2a_qp breaks long lines with the line end it sees first, and with a bare LF when the text has none:
    # a bare LF is not a line end on the wire, so a "." after one would miss SMTP's dot-stuffing.
    qp = _BARE_LF.sub(b"\r\n", binascii.b2a_qp(data, istext=True))
    if qp_estimate < 0.8 * b64_size:
        return "quoted-printable", qp
    b64 = _base64(data)
    if len(qp) <= len(b64):
        return "quoted-printable", qp
    return "base64", b64


def _base64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n").rstrip(b"\r\n")


@functools.cache
def _inliner() -> Any:
    import css_inline

    # Media queries stay in a <style> (responsive MJML needs them); remote stylesheets are never fetched.
    return css_inline.CSSInliner(keep_at_rules=True, keep_link_tags=True, load_remote_stylesheets=False)


@functools.cache
def _local_hostname() -> str:
    # smtplib asks for the FQDN on every connection; a reverse lookup per connection is wasted time.
    return socket.getfqdn()


def _dot_stuffed(raw: bytes) -> bytes:
    """The message as DATA carries it (RFC 5321 4.5.2): a line starting with "." gets another, and the
    final "." line."""
    data = _LINE_DOT.sub(b"..", raw)
    return data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n"


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()


def status_is_bounce(status: str) -> bool:
    """Whether an enhanced status code (RFC 3463, ``5.1.1``) says the address itself is undeliverable, so
    it is suppressed: a permanent (5.x.x) failure, except those about the message or the sender rather than
    the address: a full mailbox or too large a message (5.2.2, 5.2.3), the receiving system (5.3.x), a relay
    that gave up after days of retries (5.4.7), the content (5.6.x) and policy or security (5.7.x: spam,
    DMARC, a blocked sender)."""
    match = _ENHANCED.match(status)
    if match is None or match.group(1) != "5":
        return False
    subject, detail = match.group(2), match.group(3)
    return subject not in ("3", "6", "7") and (subject, detail) not in (("2", "2"), ("2", "3"), ("4", "7"))


def _refusal(stage: str, code: int, text: bytes | str, address: str) -> DeliveryError:
    """The error for a relay's answer other than success. 5xx is permanent, and a bounce when the enhanced
    status says the address is undeliverable (``status_is_bounce``; a 5xx without one, at RCPT, is taken as
    the address refused). 4xx and anything else is temporary."""
    reason = f"{stage} refused: {_reply(code, text)} ({address})"
    if not 500 <= code < 600:
        return DeliveryError(reason, permanent=False)
    body = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    bounced = status_is_bounce(body) if _ENHANCED.match(body) else stage == "recipient"
    return DeliveryError(reason, permanent=True, bounced=bounced)


# The bounce mailbox (read by ``messaging.bounces.bounces_fetch``) and the bounce webhook's secret.
BOUNCE_FIELDS = (
    "bounce_protocol",
    "bounce_host",
    "bounce_port",
    "bounce_security",
    "bounce_username",
    "bounce_password",
    "bounce_delete",
    "bounce_webhook_secret",
)


class Channel(ChannelBase):
    """One SMTP relay. An instance is used by one thread at a time: it keeps one connection open across
    ``send`` calls until ``close``. The engine keeps ``lanes`` (``connections``) instances a worker."""

    type = "email"
    finish_first = True
    secret_fields = ("password", "bounce_password", "bounce_webhook_secret")
    required_fields = ("host", "port", "security", "from_email")
    optional_fields = ("username", "password", "from_name", "reply_to", "timeout", "connections") + BOUNCE_FIELDS
    # A provider-neutral bounce webhook (``messaging.bounces.bounce_webhook_parse``), signed per Standard
    # Webhooks with ``bounce_webhook_secret``.
    webhooks = ("bounces",)
    variant_fields = ("subject", "html", "mjml", "text")
    variant_required = (("subject",), ("html", "mjml"))

    def __init__(self, config: dict[str, Any], *, allow_private: bool = False) -> None:
        super().__init__(config, allow_private=allow_private)
        self._conn: smtplib.SMTP | None = None
        self.connections_opened = 0
        self.ssl_context: ssl.SSLContext | None = None  # None: the system's trust store (SSL_CERT_FILE)
        # The sender's headers are the same on every message: encoded once.
        self.from_email = str(config["from_email"])
        name = str(config.get("from_name") or "")
        self._from = "From: " + format_address(self.from_email, name)
        self._from_shown = f"{name} <{self.from_email}>" if name else self.from_email
        reply_to = str(config.get("reply_to") or "")
        self._reply_to = encode_header("Reply-To", reply_to) if reply_to else ""
        self.lanes = int(config.get("connections") or DEFAULT_CONNECTIONS)

    # ---------------------------------------------------------------- configuration and content
    @classmethod
    def clean_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        from tsunagu.core.errors import ValidationError

        cleaned = super().clean_config(config)
        host = cleaned["host"]
        if not isinstance(host, str) or not host.strip() or any(c.isspace() for c in host.strip()):
            raise ValidationError("must be a host name or address", field="config.host")
        cleaned["host"] = host.strip()
        port = cleaned["port"]
        if isinstance(port, str) and port.strip().isdigit():
            port = int(port.strip())
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValidationError("must be a port number from 1 to 65535", field="config.port")
        cleaned["port"] = port
        security = cleaned["security"]
        if not isinstance(security, str) or security.strip().lower() not in SECURITY:
            raise ValidationError('must be "starttls", "tls" or "none"', field="config.security")
        cleaned["security"] = security.strip().lower()
        for key in ("from_email", "reply_to"):
            value = cleaned.get(key)
            if value in (None, "") and key == "reply_to":
                continue
            if not isinstance(value, str) or not address_is_valid(value.strip()):
                raise ValidationError("must be an email address (name@example.jp)", field=f"config.{key}")
            cleaned[key] = value.strip()
        for key in ("username", "password", "from_name"):
            value = cleaned.get(key)
            if value is not None and not isinstance(value, str):
                raise ValidationError("must be a string", field=f"config.{key}")
            if key == "from_name" and value and _CRLF.search(value):
                raise ValidationError("must be one line", field="config.from_name")
        if cleaned.get("username") and not cleaned.get("password"):
            raise ValidationError("is required with a username", field="config.password")
        from tsunagu.messaging.bounces import bounce_config_clean

        bounce_config_clean(cleaned)
        secret = cleaned.get("bounce_webhook_secret")
        if secret not in (None, ""):
            import standardwebhooks

            try:
                standardwebhooks.Webhook(secret if isinstance(secret, str) else b"")
            except Exception as exc:  # not base64, empty, or not a string
                raise ValidationError(
                    "must be a Standard Webhooks secret (whsec_ and base64)", field="config.bounce_webhook_secret"
                ) from exc
        timeout = cleaned.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 600
        ):
            raise ValidationError("must be a number of seconds, at most 600", field="config.timeout")
        connections = cleaned.get("connections")
        if connections is not None and (
            isinstance(connections, bool) or not isinstance(connections, int) or not 1 <= connections <= MAX_CONNECTIONS
        ):
            raise ValidationError(f"must be a whole number from 1 to {MAX_CONNECTIONS}", field="config.connections")
        return cleaned

    @classmethod
    def finish(cls, content: dict[str, Any]) -> dict[str, Any]:
        """{"subject", "html", "text"}: MJML compiled, CSS inlined, text generated when not given."""
        subject = _CRLF.sub(" ", str(content.get("subject") or "")).strip()
        if not subject:
            raise ValueError("an email needs a subject")
        html = str(content.get("html") or "")
        mjml_source = str(content.get("mjml") or "")
        if mjml_source.strip():
            import mjml

            try:
                html = mjml.mjml2html(mjml_source, disable_comments=True)
            except Exception as exc:  # mjml-python raises its own error types; all mean "bad MJML"
                raise ValueError(f"the MJML does not compile: {exc}") from exc
        if not html.strip():
            raise ValueError("an email needs HTML or MJML")
        try:
            html = _inliner().inline(html)
        except Exception as exc:  # css-inline's InlineError: invalid CSS it could not apply
            raise ValueError(f"the CSS could not be inlined: {exc}") from exc
        text = str(content.get("text") or "")
        if not text.strip():
            text = html_to_text(html)
        return {"subject": subject, "html": html, "text": text}

    def bounce_mailbox(self) -> dict[str, Any] | None:
        """The keyword arguments of ``messaging.bounces.bounces_fetch`` for this channel's bounce mailbox,
        or None when none is configured."""
        if not self.config.get("bounce_host"):
            return None
        return {
            "protocol": self.config["bounce_protocol"],
            "host": self.config["bounce_host"],
            "port": int(self.config["bounce_port"]),
            "username": self.config["bounce_username"],
            "password": self.config["bounce_password"],
            "security": self.config.get("bounce_security") or "tls",
            "delete": bool(self.config.get("bounce_delete")),
            "timeout": self._timeout(),
        }

    def verify(self, *, webhook: str, request: InboundRequest) -> None:
        """The bounce webhook is signed per Standard Webhooks (``webhook-id``, ``webhook-timestamp``,
        ``webhook-signature``) with ``bounce_webhook_secret``; without a secret every call is refused."""
        import standardwebhooks

        from tsunagu.core.errors import AuthenticationError

        secret = self.config.get("bounce_webhook_secret")
        if webhook != "bounces" or not secret:
            raise AuthenticationError("this channel takes no signed bounce webhook (no bounce_webhook_secret)")
        try:
            standardwebhooks.Webhook(str(secret)).verify(request.body, request.headers, json_parse=False)
        except Exception as exc:  # WebhookVerificationError, and malformed headers (ValueError, binascii)
            raise AuthenticationError("the bounce webhook's signature does not verify") from exc

    def parse(self, *, webhook: str, request: InboundRequest) -> list[StatusReport | CustomerEvent]:
        from tsunagu.messaging.bounces import bounce_webhook_parse

        return list(bounce_webhook_parse(request.body))

    # ---------------------------------------------------------------- the message
    def build(self, message: Message) -> tuple[bytes, dict[str, str], str]:
        """(the .eml, the headers as the recipient reads them, the Message-ID) of ``message``."""
        address = address_for_smtp(message.address)
        if not address:
            raise DeliveryError(f"not a deliverable email address: {message.address!r}", permanent=True)
        content = message.content
        subject = str(content.get("subject") or "")
        message_id = message_id_for(message.key, self.from_email)
        date = format_datetime(clock.now())
        headers = {"From": self._from_shown, "To": address, "Subject": _CRLF.sub(" ", subject).strip()}
        lines = [self._from, f"To: {address}", encode_header("Subject", subject), f"Date: {date}"]
        lines.append(f"Message-ID: {message_id}")
        headers.update({"Date": date, "Message-ID": message_id})
        if self._reply_to:
            lines.append(self._reply_to)
            headers["Reply-To"] = str(self.config["reply_to"])
        if message.unsubscribe_url and message.topic in ("marketing", "service"):
            # A header is ASCII and the URL sits between < >: anything else is percent-encoded.
            url = quote(_CRLF.sub("", message.unsubscribe_url).strip(), safe=":/?#[]@!$&'()*+,;=%~")
            lines.append(f"List-Unsubscribe: <{url}>")
            lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
            headers["List-Unsubscribe"] = f"<{url}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        boundary = "=_tsunagu_" + secrets.token_hex(12)
        lines.append("MIME-Version: 1.0")
        lines.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"')
        headers["MIME-Version"] = "1.0"
        headers["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
        parts = [("\r\n".join(lines) + "\r\n\r\n").encode("ascii")]
        marker = f"--{boundary}".encode("ascii")
        for subtype, body in (("plain", str(content.get("text") or "")), ("html", str(content.get("html") or ""))):
            cte, data = _body(body)
            part_headers = f'\r\nContent-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}'
            parts.append(marker + part_headers.encode("ascii") + b"\r\n\r\n" + data + b"\r\n")
        parts.append(marker + b"--\r\n")
        return b"".join(parts), headers, message_id

    # ---------------------------------------------------------------- SMTP
    def _timeout(self) -> float:
        return float(self.config.get("timeout") or DEFAULT_TIMEOUT)

    def _context(self) -> ssl.SSLContext:
        if self.ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        return self.ssl_context

    def _open(self) -> smtplib.SMTP:
        host, port, security = str(self.config["host"]), int(self.config["port"]), self.config["security"]
        where = f"{host}:{port}"
        conn: smtplib.SMTP | None = None
        try:
            if security == "tls":
                conn = smtplib.SMTP_SSL(
                    host, port, timeout=self._timeout(), context=self._context(), local_hostname=_local_hostname()
                )
            else:
                conn = smtplib.SMTP(host, port, timeout=self._timeout(), local_hostname=_local_hostname())
            conn.ehlo()
            if security == "starttls":
                # Never fall back to plain text when STARTTLS is configured and missing: that is a downgrade.
                conn.starttls(context=self._context())
                conn.ehlo()
            username = self.config.get("username")
            if username:
                conn.login(str(username), str(self.config.get("password") or ""))
        except smtplib.SMTPAuthenticationError as exc:
            self._discard(conn)
            # The channel's credentials are wrong: no message is at fault, so nothing is made permanent.
            raise DeliveryError(
                f"SMTP login to {where} failed ({_reply(exc.smtp_code, exc.smtp_error)}): check the channel's "
                "username and password",
                permanent=False,
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            self._discard(conn)
            what = "STARTTLS" if "STARTTLS" in str(exc).upper() else "AUTH"
            raise DeliveryError(f"{where} does not offer {what}: check the channel's config", permanent=False) from exc
        except ssl.SSLError as exc:
            self._discard(conn)
            raise DeliveryError(f"TLS with {where} failed: {exc}", permanent=False) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._discard(conn)
            raise DeliveryError(f"cannot talk to the SMTP server {where}: {exc}", permanent=False) from exc
        self.connections_opened += 1
        return conn

    @staticmethod
    def _discard(conn: smtplib.SMTP | None) -> None:
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    def _drop(self) -> None:
        self._discard(self._conn)
        self._conn = None

    def send(self, message: Message) -> Outcome:
        raw, headers, message_id = self.build(message)
        self.transmit(headers["To"], raw)
        return Outcome(status="sent", provider_id=message_id, headers=headers, raw=raw)

    def transmit(self, address: str, raw: bytes) -> None:
        """Hand ``raw`` to the relay for ``address``. Raises ``DeliveryError``.

        With a relay that offers PIPELINING (RFC 2920; Postfix, Exim, the big providers' endpoints do)
        MAIL, RCPT and DATA go in one write and their replies are read together: two round trips a
        message instead of four."""
        for attempt in (1, 2):
            reused = self._conn is not None
            conn = self._conn or self._open()
            self._conn = conn
            pipelined = conn.has_extn("pipelining")
            try:
                replies = self._envelope(conn, address) if pipelined else [conn.mail(self.from_email)]
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                # Nothing was handed over yet, so a connection the relay closed while idle is reopened once.
                self._drop()
                if reused and attempt == 1:
                    continue
                raise DeliveryError(f"the SMTP server hung up: {exc}", permanent=False) from exc
            if replies[0][0] == 421 and reused and attempt == 1:
                self._drop()
                continue
            break
        try:
            code, text = replies[0]
            if code != 250:
                self._reset()
                # Whatever the code, the sender is the channel's, not the message's: never permanent.
                hint = ""
                if code == 530:
                    hint = ": the server wants TLS or a login first; check the channel's security and username"
                elif 500 <= code < 600:
                    hint = ": check the channel's from_email"
                raise DeliveryError(f"sender {self.from_email} refused: {_reply(code, text)}{hint}", permanent=False)
            code, text = replies[1] if pipelined else conn.rcpt(address)
            if code not in (250, 251):
                if pipelined and replies[2][0] == 354:
                    self._drop()  # a relay that took DATA without a recipient: no clean way back but hanging up
                else:
                    self._reset()
                raise _refusal("recipient", code, text, address)
            if pipelined:
                code, text = replies[2]
                if code != 354:
                    self._reset()
                    raise _refusal("message", code, text, address)
                conn.send(_dot_stuffed(raw))
                code, text = conn.getreply()
            else:
                try:
                    code, text = conn.data(raw)
                except smtplib.SMTPDataError as exc:
                    self._reset()
                    raise _refusal("message", exc.smtp_code, exc.smtp_error, address) from exc
            if code != 250:
                self._reset()
                raise _refusal("message", code, text, address)
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPException, OSError) as exc:
            # Past MAIL the relay may already hold the message: no retry here; the engine decides.
            self._drop()
            raise DeliveryError(f"the SMTP conversation broke off: {exc}", permanent=False) from exc

    def _envelope(self, conn: smtplib.SMTP, address: str) -> list[tuple[int, bytes]]:
        """MAIL, RCPT and DATA in one write (PIPELINING); their three replies."""
        conn.send(f"MAIL FROM:<{self.from_email}>\r\nRCPT TO:<{address}>\r\nDATA\r\n".encode("ascii"))
        mail = conn.getreply()
        if mail[0] == 421:  # the relay is closing the connection: nothing more will be answered
            return [mail]
        return [mail, conn.getreply(), conn.getreply()]

    def _reset(self) -> None:
        if self._conn is None:
            return
        try:
            code, _ = self._conn.rset()
            if code != 250:
                self._drop()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                self._discard(conn)
