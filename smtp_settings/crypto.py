"""Strict encryption of stored secrets, over the keys of django-encrypted-model-fields.

The field library, left to itself, returns the raw token when no key decrypts a value and
encrypts that token again on the next save. This module is the only place that turns a
token into a secret, and it never does either: a value no key decrypts raises
``UndecryptableSecret``, and an ``EncryptedSecret`` is saved as the token it holds.

The token format is the library's (a Fernet token over UTF-8), so rows stay readable by it.
Keys come from ``settings.FIELD_ENCRYPTION_KEYS``: the first encrypts, every one decrypts.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver


class CryptoError(Exception):
    """Base class for everything that can go wrong with a stored secret."""


class EncryptionKeyError(CryptoError, ImproperlyConfigured):
    """FIELD_ENCRYPTION_KEY is missing or malformed; the message says how to fix it."""


class UndecryptableSecret(CryptoError):
    """No configured key decrypts the stored value (wrong key, or a key was dropped)."""

    def __init__(self) -> None:
        super().__init__(
            "The stored SMTP password cannot be decrypted with any key in "
            "FIELD_ENCRYPTION_KEY. Put the key it was saved with back in the list (new key "
            "first, old key after it), or enter the password again in admin."
        )


@lru_cache(maxsize=1)
def _keyring() -> MultiFernet:
    problem = getattr(settings, "FIELD_ENCRYPTION_KEY_PROBLEM", "")
    if problem:
        raise EncryptionKeyError(problem)
    keys = list(getattr(settings, "FIELD_ENCRYPTION_KEYS", []))
    if not keys:
        raise EncryptionKeyError("FIELD_ENCRYPTION_KEY is not set.")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError) as exc:
        raise EncryptionKeyError(f"FIELD_ENCRYPTION_KEY is malformed: {exc}") from None


@receiver(setting_changed)
def _forget_keys(*, setting: str, **kwargs: object) -> None:
    """Unlike the library's import-time crypter, follow override_settings in tests."""
    if setting.startswith("FIELD_ENCRYPTION_KEY"):
        _keyring.cache_clear()
        decrypt.cache_clear()


def encrypt(plaintext: str) -> str:
    """Encrypt ``plaintext`` with the first key and return the token as text."""
    return _keyring().encrypt(plaintext.encode("utf-8")).decode("ascii")


@lru_cache(maxsize=8)
def decrypt(token: str) -> str:
    """Return the secret in ``token``; raise ``UndecryptableSecret`` if no key opens it.

    Cached per token so that a send does not pay for the HMAC and AES each time; the cache
    lives only in the memory of the process that sends, which is where the secret must be.
    """
    try:
        return _keyring().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise UndecryptableSecret() from None


def looks_like_token(value: str) -> bool:
    """True when ``value`` has the shape of a Fernet token (version byte, timestamp, IV,
    whole AES blocks, HMAC). Tells a stored token from a plaintext password without a key."""
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii"))
    except (ValueError, UnicodeError):
        return False
    return len(raw) >= 73 and raw[0] == 0x80 and (len(raw) - 57) % 16 == 0


def encrypted_with_current_key(token: str) -> bool:
    """True when the first (current) key alone decrypts ``token``."""
    first = _keyring()._fernets[0]
    try:
        first.decrypt(token.encode("ascii"))
    except InvalidToken:
        return False
    return True


def rotate(token: str) -> str:
    """Re-encrypt ``token`` with the first key; raise ``UndecryptableSecret`` if unreadable."""
    try:
        return _keyring().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken:
        raise UndecryptableSecret() from None


class EncryptedSecret:
    """A stored secret as its token. ``reveal()`` decrypts; nothing else ever shows it.

    ``str`` and ``repr`` say only that a secret is set, so that a template, a log line or
    a traceback that touches the object shows no token and no plaintext.
    """

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    @classmethod
    def from_plaintext(cls, plaintext: str) -> EncryptedSecret:
        return cls(encrypt(plaintext))

    def reveal(self) -> str:
        return decrypt(self.token)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EncryptedSecret) and other.token == self.token

    def __hash__(self) -> int:
        return hash(self.token)

    def __bool__(self) -> bool:
        return bool(self.token)

    def __repr__(self) -> str:
        return "<EncryptedSecret: set>"

    __str__ = __repr__
