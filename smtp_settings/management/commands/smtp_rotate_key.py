"""``manage.py smtp_rotate_key``: re-encrypt the stored SMTP password with the first key.

Run it after putting a new key first in FIELD_ENCRYPTION_KEY (new,old); once it reports
success the old key can be dropped. The rewrite goes through ``QuerySet.update``, which
bumps the row version and publishes the new snapshot, and only applies if nobody saved the
row meanwhile. It never prints or logs the password or a token.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from smtp_settings import crypto
from smtp_settings.models import AdminConfig

REENCRYPTED = "Re-encrypted the SMTP password with the current key (row version {version})."
ALREADY_CURRENT = "The SMTP password is already encrypted with the current key; nothing to do."
NO_PASSWORD = "No SMTP password is stored; nothing to re-encrypt."
RACED = "The SMTP settings were saved while rotating; run smtp_rotate_key again."


class Command(BaseCommand):
    help = "Re-encrypt the stored SMTP password with the first key in FIELD_ENCRYPTION_KEY."
    # The start-up check refuses an undecryptable row with a longer report; this command
    # says the same sentence itself and exits non-zero.
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        row = AdminConfig.objects.filter(pk=AdminConfig.singleton_instance_id).first()
        if row is None or not row.smtp_password:
            self.stdout.write(NO_PASSWORD)
            return
        token = row.smtp_password.token
        try:
            if crypto.encrypted_with_current_key(token):
                self.stdout.write(ALREADY_CURRENT)
                return
            new_token = crypto.rotate(token)
        except crypto.CryptoError as exc:
            raise CommandError(str(exc)) from None
        updated = AdminConfig.objects.filter(pk=row.pk, version=row.version).update(
            smtp_password=crypto.EncryptedSecret(new_token), updated_at=timezone.now()
        )
        if not updated:
            raise CommandError(RACED)
        row.refresh_from_db(fields=["version"])
        self.stdout.write(self.style.SUCCESS(REENCRYPTED.format(version=row.version)))
