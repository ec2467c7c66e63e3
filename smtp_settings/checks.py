"""System checks that stop start-up when the stored SMTP password cannot be used.

A missing or malformed FIELD_ENCRYPTION_KEY, or a key that does not decrypt the stored
row, is an error with a sentence that says what to do. Never a silent pass: a process that
starts anyway would send the ciphertext as a password, or fail on the first send.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.db import DatabaseError

from smtp_settings import crypto
from smtp_settings.routes import normalize_security


@register(Tags.security, deploy=False)
def check_encryption_key(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    problem = getattr(settings, "FIELD_ENCRYPTION_KEY_PROBLEM", "")
    if problem:
        return [Error(problem, id="smtp_settings.E001")]
    return []


@register(Tags.security)
def check_stored_password_decrypts(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Reads the row, so that ``runserver``, ``migrate``, ``check`` and the worker's start-up
    refuse a key that cannot decrypt it. Without a reachable, migrated database it passes:
    Django reports database problems itself."""
    if getattr(settings, "FIELD_ENCRYPTION_KEY_PROBLEM", ""):
        return []
    from smtp_settings.models import AdminConfig

    try:
        row = AdminConfig.objects.filter(pk=1).only("smtp_password").first()
    except DatabaseError:
        return []  # not migrated yet; Django reports database problems itself
    if row is None or not row.smtp_password:
        return []
    try:
        row.smtp_password.reveal()
    except crypto.UndecryptableSecret as exc:
        return [Error(str(exc), id="smtp_settings.E002")]
    return []


ROUTE_SETTINGS = (("SMTP_ENVIRONMENT_ROUTE", "SMTP_"), ("SMTP_BACKUP_ROUTE", "BACKUP_SMTP_"))


@register(Tags.security)
def check_route_security(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """An unknown SMTP_SECURITY would leave that route out at send time (never a plain-text
    fallback); say so at start-up, where it is cheap to fix, not in a log at the first send."""
    found = []
    for setting, prefix in ROUTE_SETTINGS:
        values = getattr(settings, setting, {})
        if not values.get("server"):
            continue
        try:
            normalize_security(values.get("security", ""))
        except ValueError as exc:
            found.append(
                Error(
                    f"{prefix}SECURITY: {exc} The {prefix}SERVER route is left out until it is "
                    "fixed.",
                    id="smtp_settings.E003",
                )
            )
    return found


@register(Tags.security)
def check_route_sender(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """The sender of an environment route becomes a From header: a line break in it would
    fail every send of that route (or, worse, add headers). The admin form refuses it; the
    environment has no form, so start-up does."""
    found = []
    for setting, prefix in ROUTE_SETTINGS:
        values = getattr(settings, setting, {})
        for key in ("sender_name", "sender_email"):
            if any(char in (values.get(key) or "") for char in "\r\n"):
                found.append(
                    Error(
                        f"{prefix}{key.upper()} contains a line break; remove it (it would "
                        "inject mail headers).",
                        id="smtp_settings.E004",
                    )
                )
    return found
