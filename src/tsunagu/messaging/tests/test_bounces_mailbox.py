"""The bounce mailbox read over real IMAP and POP3 on loopback: small servers below speak the commands
imaplib and poplib send (with TLS, STARTTLS/STLS and a password), over a socket."""

from __future__ import annotations

import re
import socket
import socketserver
import ssl
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tsunagu.messaging.bounces import MailboxError, bounces_fetch
from tsunagu.messaging.tests.test_bounces import arf_complaint, original, postfix_dsn
from tsunagu.testing.standins.smtp import self_signed_certificate

USER, PASSWORD = "bounces@example.jp", 'pa ss"word'


@dataclass
class Stored:
    uid: int
    raw: bytes
    seen: bool = False
    deleted: bool = False


@dataclass
class Mailbox:
    messages: list[Stored] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    tls_sessions: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, raw: bytes) -> None:
        self.messages.append(Stored(uid=len(self.messages) + 101, raw=raw))

    def live(self) -> list[Stored]:
        return [m for m in self.messages if not m.deleted]


class _Base(socketserver.StreamRequestHandler):
    server: Any

    def setup(self) -> None:
        if self.server.implicit_tls:
            self.request = self.server.tls.wrap_socket(self.request, server_side=True)
            self.server.mailbox.tls_sessions += 1
        super().setup()

    def send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def upgrade(self) -> None:
        self.wfile.flush()
        self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        self.server.mailbox.tls_sessions += 1
        self.rfile = self.request.makefile("rb")
        self.wfile = self.request.makefile("wb")


class POP3Handler(_Base):
    """RFC 1939 with CAPA and STLS (RFC 2449, 2595)."""

    def handle(self) -> None:
        box: Mailbox = self.server.mailbox
        self.send(b"+OK POP3 stand-in ready\r\n")
        user, authed, listing = "", False, []
        while line := self.rfile.readline():
            command, _, arg = line.decode().strip().partition(" ")
            command = command.upper()
            box.commands.append(command)
            if command == "CAPA":
                self.send(b"+OK\r\nUSER\r\nUIDL\r\n" + (b"STLS\r\n" if self.server.tls else b"") + b".\r\n")
            elif command == "STLS":
                self.send(b"+OK Begin TLS negotiation\r\n")
                self.upgrade()
            elif command == "USER":
                user = arg
                self.send(b"+OK\r\n")
            elif command == "PASS":
                authed = user == USER and arg == PASSWORD
                listing = box.live()
                self.send(b"+OK logged in\r\n" if authed else b"-ERR [AUTH] invalid user or password\r\n")
            elif not authed and command != "QUIT":
                self.send(b"-ERR log in first\r\n")
            elif command == "LIST":
                entries = b"".join(f"{i + 1} {len(m.raw)}\r\n".encode() for i, m in enumerate(listing))
                self.send(f"+OK {len(listing)} messages\r\n".encode() + entries + b".\r\n")
            elif command == "RETR":
                raw = listing[int(arg) - 1].raw
                lines = [b"." + ln if ln.startswith(b".") else ln for ln in raw.rstrip(b"\r\n").split(b"\r\n")]
                self.send(f"+OK {len(raw)} octets\r\n".encode() + b"\r\n".join(lines) + b"\r\n.\r\n")
            elif command == "DELE":
                listing[int(arg) - 1].deleted = True  # applied at QUIT in a real server; fine here
                self.send(b"+OK marked\r\n")
            elif command == "QUIT":
                self.send(b"+OK bye\r\n")
                return
            else:
                self.send(b"-ERR unknown command\r\n")


class IMAPHandler(_Base):
    """The IMAP4rev1 commands imaplib sends for LOGIN, SELECT, UID SEARCH/FETCH/STORE and EXPUNGE."""

    def handle(self) -> None:
        box: Mailbox = self.server.mailbox
        self.send(b"* OK IMAP4rev1 stand-in ready\r\n")
        authed = False
        while line := self.rfile.readline():
            tag, _, rest = line.decode().strip().partition(" ")
            command, _, args = rest.partition(" ")
            command = command.upper()
            if command == "UID":
                sub, _, args = args.partition(" ")
                command = f"UID {sub.upper()}"
            box.commands.append(command)
            ok = f"{tag} OK {command} completed\r\n".encode()
            if command == "CAPABILITY":
                starttls = b" STARTTLS" if self.server.tls and not self.server.implicit_tls else b""
                self.send(b"* CAPABILITY IMAP4rev1" + starttls + b" AUTH=PLAIN\r\n" + ok)
            elif command == "STARTTLS":
                self.send(ok)
                self.upgrade()
            elif command == "LOGIN":
                words = [
                    w[1:-1].replace('\\"', '"').replace("\\\\", "\\") if w.startswith('"') else w
                    for w in re.findall(r'"(?:[^"\\]|\\.)*"|\S+', args)
                ]
                authed = words == [USER, PASSWORD]
                self.send(ok if authed else f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials\r\n".encode())
            elif command == "LOGOUT":
                self.send(b"* BYE logging out\r\n" + ok)
                return
            elif not authed:
                self.send(f"{tag} BAD log in first\r\n".encode())
            elif command == "SELECT":
                self.send(
                    f"* {len(box.live())} EXISTS\r\n* FLAGS (\\Seen \\Deleted)\r\n".encode()
                    + f"{tag} OK [READ-WRITE] SELECT completed\r\n".encode()
                )
            elif command == "UID SEARCH":
                wanted = [m for m in box.live() if not (args.upper() == "UNSEEN" and m.seen)]
                self.send(b"* SEARCH" + b"".join(f" {m.uid}".encode() for m in wanted) + b"\r\n" + ok)
            elif command == "UID FETCH":
                uid = int(args.split()[0])
                number, stored = next((i + 1, m) for i, m in enumerate(box.live()) if m.uid == uid)
                if "PEEK" not in args.upper():
                    stored.seen = True
                head = f"* {number} FETCH (UID {uid} BODY[] {{{len(stored.raw)}}}\r\n".encode()
                self.send(head + stored.raw + b")\r\n" + ok)
            elif command == "UID STORE":
                uid = int(args.split()[0])
                number, stored = next((i + 1, m) for i, m in enumerate(box.live()) if m.uid == uid)
                stored.seen = stored.seen or "\\SEEN" in args.upper()
                flagged = "\\DELETED" in args.upper()
                stored.__dict__["flag_deleted"] = stored.__dict__.get("flag_deleted", False) or flagged
                self.send(f"* {number} FETCH (UID {uid} FLAGS (\\Seen))\r\n".encode() + ok)
            elif command in ("EXPUNGE", "CLOSE"):
                for m in box.messages:
                    if m.__dict__.get("flag_deleted"):
                        m.deleted = True
                self.send(ok)
            else:
                self.send(f"{tag} BAD unknown command\r\n".encode())


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client refusing our certificate is a test's point, not noise for its output


@dataclass
class MailServer:
    protocol: str
    security: str
    mailbox: Mailbox
    port: int
    ca_file: Path


@pytest.fixture
def mail_server(request: pytest.FixtureRequest) -> Iterator[MailServer]:
    protocol, security = request.param
    with tempfile.TemporaryDirectory() as directory:
        cert, key = self_signed_certificate(Path(directory))
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        server = _Server(("127.0.0.1", 0), POP3Handler if protocol == "pop3" else IMAPHandler)
        server.mailbox = Mailbox()  # type: ignore[attr-defined]
        server.tls = tls if security != "none" else None  # type: ignore[attr-defined]
        server.implicit_tls = security == "tls"  # type: ignore[attr-defined]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield MailServer(protocol, security, server.mailbox, server.server_address[1], cert)  # type: ignore[attr-defined]
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


def fetch(server: MailServer, *, delete: bool, password: str = PASSWORD) -> list[Any]:
    return bounces_fetch(
        protocol=server.protocol,
        host="127.0.0.1",
        port=server.port,
        username=USER,
        password=password,
        security=server.security,
        delete=delete,
        timeout=10,
        ssl_context=ssl.create_default_context(cafile=str(server.ca_file)),
    )


def fill(box: Mailbox) -> tuple[str, str]:
    bounced_raw, bounced_id = original("b0unce1")
    complained_raw, complained_id = original("c0mpl41n", to="tanaka@example.com")
    box.add(postfix_dsn(bounced_raw))
    box.add(
        b"From: tanaka@example.com\r\nTo: shop@example.jp\r\nSubject: Re: order\r\n"
        b"Message-ID: <reply@example.com>\r\n\r\n.Thanks, a line starting with a dot.\r\n"
    )
    box.add(arf_complaint(complained_raw))
    return bounced_id, complained_id


BOTH = [("imap", "tls"), ("imap", "starttls"), ("pop3", "tls"), ("pop3", "starttls")]


@pytest.mark.parametrize("mail_server", BOTH, indirect=True)
def test_reports_are_read_and_only_reports_deleted(mail_server: MailServer) -> None:
    bounced_id, complained_id = fill(mail_server.mailbox)
    reports = fetch(mail_server, delete=True)
    assert [(r.provider_id, r.status) for r in reports] == [(bounced_id, "bounced"), (complained_id, "bounced")]
    assert reports[1].reason.startswith("complaint")
    # The person's reply stays in the mailbox; the DSN and the complaint are gone; TLS was used.
    assert [m.uid for m in mail_server.mailbox.live()] == [102]
    assert mail_server.mailbox.tls_sessions == 1
    assert fetch(mail_server, delete=True) == []


@pytest.mark.parametrize("mail_server", [("imap", "tls")], indirect=True)
def test_imap_without_delete_flags_messages_read_and_does_not_read_them_twice(mail_server: MailServer) -> None:
    fill(mail_server.mailbox)
    assert len(fetch(mail_server, delete=False)) == 2
    assert all(m.seen for m in mail_server.mailbox.messages)
    assert len(mail_server.mailbox.live()) == 3
    assert fetch(mail_server, delete=False) == []
    mail_server.mailbox.add(postfix_dsn(original("later")[0]))
    [later] = fetch(mail_server, delete=False)
    assert later.provider_id == "<later@example.jp>"


@pytest.mark.parametrize("mail_server", [("pop3", "starttls")], indirect=True)
def test_pop3_without_delete_reads_again_with_the_same_receipts(mail_server: MailServer) -> None:
    fill(mail_server.mailbox)
    first, again = fetch(mail_server, delete=False), fetch(mail_server, delete=False)
    assert [r.receipt for r in first] == [r.receipt for r in again] and len(first) == 2
    assert len(mail_server.mailbox.live()) == 3


@pytest.mark.parametrize("mail_server", [("imap", "tls"), ("pop3", "tls")], indirect=True)
def test_a_wrong_password_is_a_mailbox_error_and_touches_nothing(mail_server: MailServer) -> None:
    fill(mail_server.mailbox)
    with pytest.raises(MailboxError):
        fetch(mail_server, delete=True, password="wrong")
    assert len(mail_server.mailbox.live()) == 3 and not any(m.seen for m in mail_server.mailbox.messages)


@pytest.mark.parametrize("mail_server", [("imap", "tls")], indirect=True)
def test_an_untrusted_certificate_is_a_mailbox_error(mail_server: MailServer) -> None:
    with pytest.raises(MailboxError):
        bounces_fetch(
            protocol="imap",
            host="127.0.0.1",
            port=mail_server.port,
            username=USER,
            password=PASSWORD,
            security="tls",
            delete=False,
            timeout=10,
            ssl_context=ssl.create_default_context(),  # the system's store does not know the stand-in
        )


def test_nothing_listening_is_a_mailbox_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(MailboxError):
        bounces_fetch(
            protocol="pop3",
            host="127.0.0.1",
            port=port,
            username=USER,
            password=PASSWORD,
            security="none",
            delete=False,
            timeout=5,
        )
