"""Channel credentials encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The key comes from ``TSUNAGU_SECRETS_KEY`` (a Fernet key, urlsafe base64 of 32 bytes); without it one is
generated once into the data directory with mode 0600, as the Django secret key is. A database copied
without that file (a backup, a leaked dump) holds no usable provider credentials.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

from tsunagu.core.errors import TsunaguError


class SecretsUnavailable(TsunaguError):
    """The stored credentials cannot be decrypted with this key (the key file or variable changed)."""

    http_status = 500
    code = "secrets_unavailable"


def _load_key() -> bytes:
    env = os.environ.get("TSUNAGU_SECRETS_KEY")
    if env:
        return env.encode()
    data_dir = settings.DATA_DIR
    path = data_dir / "secrets_key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
            fh.write(key)
    except FileExistsError:
        # Another process created it between our read and our create: use theirs.
        return path.read_bytes().strip()
    return key


@functools.cache
def _fernet() -> Fernet:
    return Fernet(_load_key())


def secrets_encrypt(values: dict[str, Any]) -> str:
    """Encrypt a dict of secret values into one opaque token."""
    return _fernet().encrypt(orjson.dumps(values)).decode()


def secrets_decrypt(token: str) -> dict[str, Any]:
    """Decrypt what ``secrets_encrypt`` made; an empty token is an empty dict."""
    if not token:
        return {}
    try:
        return dict(orjson.loads(_fernet().decrypt(token.encode())))
    except InvalidToken:
        raise SecretsUnavailable(
            "stored channel credentials cannot be decrypted: TSUNAGU_SECRETS_KEY or DATA_DIR/secrets_key changed"
        ) from None


def reset_cache() -> None:
    """Forget the loaded key (tests that change the key or the data directory)."""
    _fernet.cache_clear()
