"""The private-address guard: which addresses are refused, that the check is made on what a name resolves
to, and that the connection goes to the checked address."""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import socket
from typing import Any

import pytest
import time_machine

from tsunagu.messaging import netguard
from tsunagu.testing.standins.webhook import WebhookReceiver

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.10", "private"),
    ("169.254.1.1", "link-local"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.170.2", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("192.0.0.192", "cloud metadata"),
    ("100.64.0.1", "shared address space"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "reserved"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("fd00:ec2::254", "cloud metadata"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("100::1", "reserved"),
    ("2001::1", "reserved"),  # Teredo
    ("::127.0.0.1", "reserved"),  # IPv4-compatible, deprecated
    ("4000::1", "reserved"),  # outside global unicast 2000::/3
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped private"),
    ("::ffff:169.254.169.254", "IPv4-mapped cloud metadata"),
    ("::ffff:0.0.0.0", "IPv4-mapped unspecified"),
    ("2002:7f00:1::1", "IPv4-mapped loopback"),  # 6to4 of 127.0.0.1
    ("2002:c0a8:101::1", "IPv4-mapped private"),  # 6to4 of 192.168.1.1
    ("64:ff9b::a9fe:a9fe", "IPv4-mapped cloud metadata"),  # NAT64 of 169.254.169.254
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "172.32.0.1",  # just past 172.16.0.0/12
    "100.128.0.1",  # just past 100.64.0.0/10
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
]


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_non_public_addresses_are_named(address: str, kind: str) -> None:
    assert netguard.address_kind(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert netguard.address_kind(ipaddress.ip_address(address)) is None


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """Make ``socket.getaddrinfo`` answer ``answers`` for those names (others resolve as usual); returns the
    list of names asked, in order."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name in answers:
            asked.append(name)
            out = []
            for text in answers[name]:
                family = socket.AF_INET6 if ":" in text else socket.AF_INET
                sockaddr = (text, int(port), 0, 0) if family == socket.AF_INET6 else (text, int(port))
                out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
            return out
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_every_address_of_a_name_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dns(monkeypatch, {"mixed.example.com": ["93.184.215.14", "10.0.0.5"]})
    with pytest.raises(netguard.AddressRefused) as refused:
        netguard.resolve_checked("mixed.example.com", 443, allow_private=False)
    assert str(refused.value) == "refused: mixed.example.com resolves to a private address (10.0.0.5, private)"
    assert netguard.resolve_checked("mixed.example.com", 443, allow_private=True) == ["93.184.215.14", "10.0.0.5"]


def test_a_public_name_resolves_to_its_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dns(monkeypatch, {"hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})
    assert netguard.resolve_checked("hooks.example.com", 443, allow_private=False) == [
        "93.184.215.14",
        "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
    ]


@pytest.mark.parametrize("literal", ["127.1", "2130706433", "0x7f000001", "0177.0.0.1"])
def test_odd_spellings_of_loopback_are_judged_after_resolution(literal: str) -> None:
    with pytest.raises(netguard.AddressRefused) as refused:
        netguard.resolve_checked(literal, 80, allow_private=False)
    assert refused.value.address == "127.0.0.1"
    assert refused.value.kind == "loopback"


def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name is resolved once; were it resolved again, the second answer (an address
    nothing listens on) would fail the request."""
    with WebhookReceiver() as hook:
        answers = iter([["127.0.0.1"], ["127.0.0.9"]])
        real = socket.getaddrinfo
        asked: list[str] = []

        def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host == "rebind.example.com":
                asked.append(host)
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers)[0], int(port)))]
            return real(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        body = b'{"a":1}'
        from standardwebhooks import Webhook

        signer = Webhook(hook.secret)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        headers = {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(msg_id="msg_1", timestamp=now, data=body.decode()),
        }
        response = netguard.post(
            hook.url("/x", host="rebind.example.com"), body=body, headers=headers, allow_private=True
        )
    assert response.status == 200
    assert asked == ["rebind.example.com"]
    [got] = hook.received
    assert got.headers["host"] == f"rebind.example.com:{hook.port}"
    assert got.payload == {"a": 1}


def test_a_name_that_does_not_resolve_is_a_network_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(OSError, match="not known"):
        netguard.resolve_checked("nowhere.invalid", 443, allow_private=False)


def test_only_http_and_https_urls_are_posted() -> None:
    with pytest.raises(ValueError, match="not an http"):
        netguard.post("file:///etc/passwd", body=b"", headers={}, allow_private=True)
    with pytest.raises(ValueError, match="not an http"):
        netguard.post("gopher://127.0.0.1:70/", body=b"", headers={}, allow_private=True)


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    assert netguard.retry_after_seconds("120") == 120.0
    assert netguard.retry_after_seconds(None) is None
    assert netguard.retry_after_seconds("soon") is None
    with time_machine.travel(dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC), tick=False):
        later = email.utils.format_datetime(dt.datetime(2026, 12, 1, 12, 1, 30, tzinfo=dt.UTC), usegmt=True)
        assert netguard.retry_after_seconds(later) == 90.0
        earlier = email.utils.format_datetime(dt.datetime(2026, 12, 1, 11, 0, 0, tzinfo=dt.UTC), usegmt=True)
        assert netguard.retry_after_seconds(earlier) == 0.0


def _certificate(name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for ``name`` and its key, both PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _signed(secret: str, body: bytes) -> dict[str, str]:
    from standardwebhooks import Webhook

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return {
        "webhook-id": "msg_tls",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id="msg_tls", timestamp=now, data=body.decode()),
    }


def test_https_to_a_pinned_address_sends_the_name_in_sni_and_checks_the_certificate_against_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import ssl

    cert_pem, key_pem = _certificate("hooks.example.test")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    names: list[str | None] = []
    server_side.sni_callback = lambda sock, name, ctx: names.append(name)
    trust = ssl.create_default_context(cadata=cert_pem.decode())
    _fake_dns(monkeypatch, {"hooks.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]})
    body = b'{"tls":true}'
    with WebhookReceiver(tls=server_side) as hook:
        response = netguard.post(
            hook.url("/secure", host="hooks.example.test"), body=body, headers=_signed(hook.secret, body),
            allow_private=True, tls_context=trust,
        )
        assert response.status == 200
        assert names == ["hooks.example.test"]
        assert hook.wait_for(1)[0].headers["host"] == f"hooks.example.test:{hook.port}"
        # The same address under a name the certificate does not carry is refused by the TLS check.
        with pytest.raises(ssl.SSLCertVerificationError, match="other.example.test"):
            netguard.post(
                hook.url("/secure", host="other.example.test"), body=body, headers=_signed(hook.secret, body),
                allow_private=True, tls_context=trust,
            )
    assert len(hook.received) == 1
