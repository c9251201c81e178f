"""Encryption at rest for connection secrets (bind passwords, client secrets).

Keys come from BLINK_ENCRYPTION_KEYS. The first key encrypts; every key decrypts,
so a new key is rotated in by putting it first and running
``manage.py rotate_encryption_keys``, after which old keys can be dropped.
"""

from __future__ import annotations

import json
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretsUnreadable(Exception):
    """Stored secrets were encrypted with a key that is no longer configured."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.BLINK_ENCRYPTION_KEYS))


def secrets_encrypt(values: dict[str, str]) -> str:
    """Encrypt a small dict of secrets into a token safe to store."""
    return _current().encrypt(json.dumps(values, sort_keys=True).encode()).decode()


def secrets_decrypt(token: str) -> dict[str, str]:
    """The secrets in ``token``; an empty token holds none."""
    if not token:
        return {}
    try:
        data: dict[str, str] = json.loads(_current().decrypt(token.encode()))
    except InvalidToken:
        raise SecretsUnreadable(
            "These secrets were encrypted with a key that is not in BLINK_ENCRYPTION_KEYS. "
            "Restore the old key, or enter the secrets again."
        ) from None
    return data


def secrets_rotate(token: str) -> str:
    """Re-encrypt ``token`` with the first configured key."""
    return _current().rotate(token.encode()).decode() if token else token
