"""Web push channel config (the VAPID key pair and subject) and the notification's fields."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid

from tsunagu.core.errors import ValidationError
from tsunagu.messaging.channels import channel_class
from tsunagu.messaging.channels.webpush import MAX_PLAINTEXT, Channel, vapid_keys_generate


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _config(**overrides: str) -> dict[str, str]:
    private, public = vapid_keys_generate()
    return {"vapid_private_key": private, "vapid_public_key": public, "subject": "mailto:ops@example.com", **overrides}


def test_the_registry_finds_the_webpush_channel() -> None:
    assert channel_class("webpush") is Channel
    assert Channel.secret_fields == ("vapid_private_key",)


def test_generated_keys_are_base64url_raw_and_a_pair() -> None:
    private, public = vapid_keys_generate()
    assert "=" not in private + public
    assert (len(private), len(public)) == (43, 87)
    raw_public = _b64url_decode(public)
    assert len(raw_public) == 65 and raw_public[0] == 4
    # py_vapid (what pywebpush signs with) reads the private key and derives the same public key.
    vapid = Vapid.from_string(private)
    point = vapid.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    assert point == raw_public
    assert vapid_keys_generate() != (private, public)


def test_a_generated_pair_is_accepted_as_it_is() -> None:
    config = _config(subject="https://shop.example.jp/contact")
    assert Channel.clean_config(config) == config


@pytest.mark.parametrize("encoding", ["pkcs8", "sec1"])
def test_a_pem_private_key_is_stored_in_the_raw_form(encoding: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8 if encoding == "pkcs8" else serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = base64.urlsafe_b64encode(
        key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    ).rstrip(b"=").decode()
    cleaned = Channel.clean_config(_config(vapid_private_key=pem, vapid_public_key=public))
    raw = _b64url_decode(cleaned["vapid_private_key"])
    assert int.from_bytes(raw, "big") == key.private_numbers().private_value


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("vapid_private_key", "c2hvcnQ", "must be the 32-byte raw private key in base64url (this one is 5 bytes)"),
        ("vapid_private_key", "not a key", "must be base64url (the 32-byte raw private key) or a PEM private key"),
        ("vapid_private_key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "is not a readable PEM"),
        ("vapid_private_key", "A" * 43, "is not a valid P-256 private key"),  # zero is not a private key
        ("vapid_public_key", "BAAA", "must be the 65-byte uncompressed P-256 public key in base64url"),
        ("vapid_public_key", vapid_keys_generate()[1], "does not belong to vapid_private_key"),
        ("subject", "ops@example.com", "must be a mailto: address or an https: URL"),
        ("subject", "mailto:ops", "must be a mailto: address or an https: URL"),
        ("subject", "http://shop.example.jp", "must be a mailto: address or an https: URL"),
        ("subject", "", "is required"),
    ],
)
def test_bad_config_is_refused_naming_the_key(field: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Channel.clean_config(_config(**{field: value}))
    assert refused.value.field == f"config.{field}"
    assert message in refused.value.message


def test_an_rsa_pem_key_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with pytest.raises(ValidationError, match="must be a P-256"):
        Channel.clean_config(_config(vapid_private_key=pem))


def test_a_private_key_naming_a_file_is_not_read_as_a_path() -> None:
    """pywebpush reads a key string that names an existing file; config never reaches it as a string."""
    with pytest.raises(ValidationError) as refused:
        Channel.clean_config(_config(vapid_private_key="/etc/hostname"))
    assert refused.value.field == "config.vapid_private_key"


def test_the_notification_fields() -> None:
    assert Channel.finish({"title": " 発送 ", "body": "本文", "url": "/orders/1"}) == {
        "title": "発送",
        "body": "本文",
        "url": "/orders/1",
        "icon": "",
    }
    assert Channel.summary(Channel.finish({"title": "T", "body": "B"})) == ("T", "B")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"title": "", "body": "b"}, "title is empty after rendering"),
        ({"title": "t", "body": "  "}, "body is empty after rendering"),
        ({"title": "t", "body": "b", "url": "javascript:alert(1)"}, "url must be an http(s) URL or a path"),
        ({"title": "t", "body": "b", "url": "//evil.example/x"}, "url must be an http(s) URL or a path"),
        ({"title": "t", "body": "b", "icon": "data:image/png;base64,AAAA"}, "icon must be an http(s) URL"),
        ({"title": "t", "body": "あ" * 1400}, f"push services accept at most {MAX_PLAINTEXT}"),
    ],
)
def test_notifications_that_cannot_be_sent_are_refused(content: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Channel.finish(content)
