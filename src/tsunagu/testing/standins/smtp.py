"""A real SMTP server on loopback (aiosmtpd in a thread) standing in for a company's mail relay.

Use::

    with SMTPStandin() as smtp:                      # plain SMTP on 127.0.0.1, a free port
        channel = Channel({"host": smtp.host, "port": smtp.port, "security": "none", ...})
        channel.send(message)
        smtp.wait_for(1)                             # polls with a deadline; returns the messages
        smtp.messages[0].message                     # an email.message.EmailMessage (policy default)

    SMTPStandin(security="starttls")                 # STARTTLS offered (and required before MAIL)
    SMTPStandin(security="tls")                      # implicit TLS (SMTPS)
    SMTPStandin(username="u", password="p")          # AUTH LOGIN / PLAIN required, with these
    SMTPStandin(pipelining=True)                     # PIPELINING offered (RFC 2920)
    smtp.refuse("gone@example.com", 550)             # RCPT answered 550 5.1.1 (or 451 4.2.0, or any code)
    smtp.drop_connections()                          # the server hangs up on every open connection
    smtp.hold(); smtp.wait_held(1); smtp.release()   # DATA taken (recorded) but not answered until released
    smtp.connections                                 # how many connections clients opened so far

With TLS the server presents a self-signed certificate for ``localhost`` and ``127.0.0.1``, generated with
``cryptography``; ``smtp.ca_file`` is its PEM, for a client's trust store (``SSL_CERT_FILE``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

_ENHANCED = {550: "5.1.1", 551: "5.1.6", 552: "5.2.2", 553: "5.1.3", 554: "5.7.1", 450: "4.2.1", 451: "4.3.0"}


@dataclass
class Received:
    """One message as the server took it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # the DATA payload, CRLF line ends, dot-stuffing undone
    connection: int  # which connection (1, 2, …) carried it
    tls: bool
    login: str | None  # the user that authenticated, if any

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """(certificate PEM, key PEM) for localhost and 127.0.0.1, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    # The machine's real time, not core.clock: OpenSSL checks the validity against the real clock, and a
    # test that moves tsunagu's clock must not make the certificate look expired.
    now = dt.datetime.now(tz=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class _Handler:
    def __init__(self, standin: SMTPStandin) -> None:
        self.standin = standin

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.standin.pipelining:
            # aiosmtpd reads commands one line at a time, so commands sent together are answered in order.
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        code = self.standin.refused.get(address.lower())
        if code is not None:
            enhanced = _ENHANCED.get(code, f"{str(code)[0]}.0.0")
            return f"{code} {enhanced} Recipient refused by the stand-in: {address}"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content if envelope.original_content is not None else envelope.content
        assert isinstance(data, bytes)
        connection = getattr(server, "_standin_number", 0)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        with self.standin._lock:
            self.standin.messages.append(
                Received(
                    mail_from=str(envelope.mail_from),
                    rcpt_tos=list(envelope.rcpt_tos),
                    data=data,
                    connection=connection,
                    tls=server._tls_protocol is not None or self.standin.security == "tls",
                    login=login,
                )
            )
        if self.standin._held.is_set():
            # Crash tests: the relay has taken the message (as a real one queues it before answering) but the
            # client has no answer yet; if the client goes away now, the message is still delivered.
            with self.standin._lock:
                self.standin.held += 1
            while self.standin._held.is_set():
                await asyncio.sleep(0.01)
        return "250 2.0.0 Message accepted"


class _Controller(Controller):
    def __init__(self, standin: SMTPStandin, **kwargs: Any) -> None:
        self.standin = standin
        super().__init__(_Handler(standin), **kwargs)

    def factory(self) -> SMTP:
        server = super().factory()
        with self.standin._lock:
            self.standin.connections += 1
            server._standin_number = self.standin.connections
            self.standin._servers.append(server)
        return server


class SMTPStandin:
    """See the module docstring. A context manager; ``start``/``stop`` for fixtures that need them."""

    def __init__(
        self,
        *,
        security: str = "none",
        username: str | None = None,
        password: str | None = None,
        host: str = "127.0.0.1",
        pipelining: bool = False,
    ) -> None:
        if security not in ("none", "starttls", "tls"):
            raise ValueError("security is none, starttls or tls")
        self.security = security
        self.pipelining = pipelining  # offer PIPELINING (RFC 2920) in the EHLO reply
        self.host = host
        self.port = 0
        self.username = username
        self.password = password
        self.messages: list[Received] = []
        self.refused: dict[str, int] = {}
        self.connections = 0
        self.auth_attempts: list[tuple[str, bool]] = []
        self.held = 0  # messages whose DATA arrived while held
        self._held = threading.Event()
        self._servers: list[SMTP] = []
        self._lock = threading.Lock()
        self._dir = tempfile.TemporaryDirectory(prefix="smtp-standin-")
        self.ca_file: Path | None = None
        self._controller: _Controller | None = None

    # -- configuration the test changes while running
    def refuse(self, address: str, code: int = 550) -> None:
        """Answer RCPT TO for ``address`` with ``code`` (550 permanent, 451 temporary, …)."""
        self.refused[address.lower()] = code

    def drop_connections(self) -> None:
        """Hang up on every open connection, as a relay does with idle clients."""
        assert self._controller is not None and self._controller.loop is not None
        loop = self._controller.loop
        with self._lock:
            servers = list(self._servers)
        done = threading.Event()

        def close() -> None:
            for server in servers:
                if server.transport is not None:
                    server.transport.close()
            done.set()

        loop.call_soon_threadsafe(close)
        done.wait(5)

    def hold(self) -> None:
        """Take each message (it is recorded) but answer nothing until ``release``: a relay that queued the
        message while its client was killed or timed out."""
        self._held.set()

    def release(self) -> None:
        self._held.clear()

    def wait_held(self, count: int, *, timeout: float = 10.0) -> None:
        """Return once ``count`` messages are waiting on ``hold`` (AssertionError at the deadline)."""
        deadline = time.monotonic() + timeout
        while self.held < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} held messages at the SMTP stand-in, got {self.held}")
            time.sleep(0.01)

    def message_ids(self) -> list[str]:
        """The Message-ID of every message received, in order (a duplicate send shows twice)."""
        with self._lock:
            received = list(self.messages)
        return [str(r.message["Message-ID"]) for r in received]

    def wait_for(self, count: int, *, timeout: float = 10.0) -> list[Received]:
        """The messages once at least ``count`` have arrived (polling; AssertionError at the deadline)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.01)
        raise AssertionError(f"expected {count} messages at the SMTP stand-in, got {len(self.messages)}")

    # -- lifecycle
    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.username
            and data.password.decode() == self.password
        )
        self.auth_attempts.append((mechanism, ok))
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def start(self) -> SMTPStandin:
        kwargs: dict[str, Any] = {"hostname": self.host, "port": 0, "server_hostname": "localhost"}
        if self.security != "none":
            cert, key = self_signed_certificate(Path(self._dir.name))
            self.ca_file = cert
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            if self.security == "tls":
                kwargs["ssl_context"] = context
            else:
                kwargs["tls_context"] = context
                kwargs["require_starttls"] = True
        if self.username is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = self.security != "none"
        self._controller = _Controller(self, **kwargs)
        self._start_on_free_port()
        return self

    def _start_on_free_port(self) -> None:
        assert self._controller is not None
        # aiosmtpd's Controller wants a port up front; ask the OS for one, retry if it was taken meanwhile.
        from tsunagu.testing.live import free_port

        for _ in range(5):
            self._controller.port = free_port()
            try:
                self._start_controller()
            except OSError:
                continue
            self.port = self._controller.port
            return
        raise RuntimeError("no free port for the SMTP stand-in")

    def _start_controller(self) -> None:
        assert self._controller is not None
        self._controller.start()
        # Controller.start probes the server with a connection of its own: that one is not a client's.
        with self._lock:
            self.connections = 0
            self._servers.clear()

    def stop(self) -> None:
        self._held.clear()
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        self._dir.cleanup()

    def __enter__(self) -> SMTPStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["Received", "SMTPStandin", "self_signed_certificate"]
