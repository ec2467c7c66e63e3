"""Parse FIELD_ENCRYPTION_KEY for settings.py, without ever failing the import of settings.

django-encrypted-model-fields builds its crypter when its module is imported and raises
ImproperlyConfigured on a missing or malformed key, before Django's system checks can say
what to do about it. So settings hands the library a throwaway placeholder key when the
configured one is unusable and records the problem; ``smtp_settings.checks`` then stops
start-up with a sentence that names the fix, and ``smtp_settings.crypto`` refuses to encrypt
or decrypt anything while the problem stands. The placeholder is never used to store data.

This module must not import Django: settings.py imports it.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet

PLACEHOLDER_NOTE = "placeholder"


def split_keys(raw: str) -> list[str]:
    """Split a comma-separated key list, dropping blanks and surrounding spaces."""
    return [part.strip() for part in raw.split(",") if part.strip()]


def key_problem(keys: list[str]) -> str:
    """Return a sentence describing what is wrong with ``keys``, or "" when they are usable."""
    if not keys:
        return (
            'FIELD_ENCRYPTION_KEY is not set. Generate one with `python -c "from '
            'cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"` '
            "and set it in the environment of every web, worker and beat process."
        )
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            return (
                f"FIELD_ENCRYPTION_KEY entry {position} is not a Fernet key (32 url-safe "
                "base64-encoded bytes). Check for a truncated or quoted value; generate a new "
                "key only if no stored secret needs the old one."
            )
    return ""


def field_encryption_keys(
    raw: str, *, debug: bool, dev_key_file: Path
) -> tuple[list[str], list[str], str, str]:
    """Return (our keys, keys for the library, problem sentence, where the keys came from).

    In DEBUG with no key configured, a development key is generated once into
    ``dev_key_file`` (git-ignored) so that ``make run`` works on a fresh clone.
    """
    keys = split_keys(raw)
    source = "environment"
    if not keys and debug:
        if not dev_key_file.exists():
            dev_key_file.write_text(Fernet.generate_key().decode() + "\n")
            dev_key_file.chmod(0o600)
            print(
                f"Generated a development FIELD_ENCRYPTION_KEY into {dev_key_file} "
                "(git-ignored). Do not use it in production."
            )
        keys = split_keys(dev_key_file.read_text())
        source = str(dev_key_file)
    problem = key_problem(keys)
    library_keys = keys if not problem else [Fernet.generate_key().decode()]
    return keys, library_keys, problem, source if not problem else PLACEHOLDER_NOTE
