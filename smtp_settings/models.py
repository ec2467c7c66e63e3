"""The one admin-edited row of SMTP settings, and the history of changes to it.

Every write of ``AdminConfig``, through ``save()`` or ``QuerySet.update()``, bumps the row's
``version`` and publishes a new ciphertext-only snapshot after the transaction commits
(``smtp_settings.snapshot``). Nothing here pickles the row into a cache, and nothing here
decrypts the password.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import F
from django.utils import timezone
from solo.models import SingletonModel

from smtp_settings.crypto import EncryptedSecret
from smtp_settings.fields import EncryptedSecretField

# A test older than this is "outdated" on the status line.
TEST_FRESHNESS = timedelta(days=7)


class Security(models.TextChoices):
    STARTTLS = "TLS", "STARTTLS (usually port 587)"
    SSL = "SSL", "Implicit TLS / SSL (usually port 465)"
    NONE = "NONE", "None (plain text; only for a trusted local relay)"


class ConfigStatus(models.TextChoices):
    NOT_CONFIGURED = "not_configured", "Not configured"
    UNTESTED = "untested", "Configured but not tested"
    WORKING = "working", "Working (tested recently)"
    OUTDATED = "outdated", "Working (test outdated)"
    ERROR = "error", "Error (needs attention)"


def _publish_after_commit() -> None:
    from smtp_settings.snapshot import publish_from_database

    transaction.on_commit(publish_from_database)


class AdminConfigQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        """Unlike django-solo's, a bulk update also bumps the version and republishes."""
        kwargs.setdefault("version", F("version") + 1)
        count = super().update(**kwargs)
        if count:
            _publish_after_commit()
        return count

    def record_test_result(
        self, result: dict[str, Any], tested_at: datetime, *, version: int
    ) -> int:
        """Store a test outcome of settings ``version`` on the row, without bumping
        ``version`` or republishing; returns 0 when the settings changed since the test.

        A test result is not SMTP configuration (it is not in the snapshot, no process
        routes by it), and a version bump would make an admin's open page stale: their
        next save would be refused as "changed by someone else". The version tested
        travels with the result so the status line can tell a result for these settings
        from one for settings saved over since.
        """
        return models.QuerySet.update(
            self.filter(version=version),
            smtp_last_tested_at=tested_at,
            smtp_test_result={**result, "config_version": version},
        )


class AdminConfig(SingletonModel):
    """Outgoing SMTP settings edited in Django admin (a singleton, pk=1)."""

    smtp_enabled = models.BooleanField(
        "use these settings",
        default=False,
        help_text="Off: mail goes through the SMTP_* environment settings instead.",
    )
    smtp_server = models.CharField("server", max_length=253, blank=True)
    smtp_port = models.PositiveIntegerField("port", default=587)
    smtp_security = models.CharField(
        "security", max_length=4, choices=Security.choices, default=Security.STARTTLS
    )
    smtp_username = models.CharField("username", max_length=254, blank=True)
    smtp_password = EncryptedSecretField("password", blank=True, default="")
    smtp_timeout = models.PositiveSmallIntegerField(
        "timeout (seconds)", default=10, help_text="Bounds every connect, read and write."
    )
    smtp_verify_certificates = models.BooleanField(
        "verify TLS certificates",
        default=True,
        help_text="Turn off only for a relay with a self-signed certificate you control.",
    )
    sender_email = models.EmailField("sender email", blank=True)
    sender_name = models.CharField("sender name", max_length=100, blank=True)
    smtp_last_tested_at = models.DateTimeField("last tested", null=True, blank=True)
    smtp_test_result = models.JSONField("last test result", default=dict, blank=True)
    version = models.PositiveIntegerField(default=1, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AdminConfigQuerySet.as_manager()

    class Meta:
        verbose_name = "SMTP settings"
        verbose_name_plural = "SMTP settings"

    def __str__(self) -> str:
        return "SMTP settings"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if (
            self._state.adding
            and not type(self).objects.filter(pk=self.singleton_instance_id).exists()
        ):
            self.version = 1
        else:
            self.version = F("version") + 1
        super().save(*args, **kwargs)
        self.refresh_from_db(fields=["version"])
        _publish_after_commit()

    # -- password: write-only ----------------------------------------------------------------
    def set_password(self, plaintext: str) -> None:
        self.smtp_password = EncryptedSecret.from_plaintext(plaintext) if plaintext else ""

    def clear_password(self) -> None:
        self.smtp_password = ""

    @property
    def has_password(self) -> bool:
        return bool(self.smtp_password)

    # -- derived, read-only ------------------------------------------------------------------
    @property
    def is_complete(self) -> bool:
        """Everything a send needs is present (authentication is optional only without a
        username)."""
        needs_password = bool(self.smtp_username)
        return bool(
            self.smtp_server
            and self.smtp_port
            and self.sender_email
            and (self.has_password or not needs_password)
        )

    @property
    def masked_username(self) -> str:
        return mask_username(self.smtp_username)

    @property
    def status(self) -> ConfigStatus:
        if not self.smtp_enabled or not self.is_complete:
            return ConfigStatus.NOT_CONFIGURED
        tested_version = self.smtp_test_result.get("config_version")
        if not self.smtp_last_tested_at or tested_version not in (None, self.version):
            # Never tested, or the last test was of settings saved over since.
            return ConfigStatus.UNTESTED
        if not self.smtp_test_result.get("ok"):
            return ConfigStatus.ERROR
        if timezone.now() - self.smtp_last_tested_at > TEST_FRESHNESS:
            return ConfigStatus.OUTDATED
        return ConfigStatus.WORKING


def mask_username(username: str) -> str:
    """``system@example.com`` -> ``sys***@example.com``; never more than 3 characters shown."""
    if not username:
        return ""
    local, at, domain = username.partition("@")
    return f"{local[:3]}***{at}{domain}"


class ConfigChange(models.Model):
    """Who changed what and when.

    ``changes`` maps a field name to ``{"from": old, "to": new}``; for the password it holds
    only what happened to it (``"set"``, ``"changed"`` or ``"cleared"``), never a value.
    """

    changed_at = models.DateTimeField(default=timezone.now, db_index=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    changes = models.JSONField(default=dict)
    version = models.PositiveIntegerField()

    class Meta:
        ordering = ["-changed_at"]

    def __str__(self) -> str:
        who = self.changed_by or "system"
        return f"v{self.version} by {who}: {', '.join(self.changes) or 'no field changes'}"


class EmailHealthRecord(models.Model):
    """What the periodic email health check found (one row, pk=1; smtp_settings.health).

    ``probes`` maps a route name to its last probe: the route's fingerprint (which server,
    account and config version it probed), ok, the failed step, SMTP code and text, hint,
    timings and time; the username only masked, never a secret. ``delivery`` caches the
    delivery-log counts as of ``checked_at`` so that the health endpoint reads one row.
    ``alert_state`` is the state the admins were last told about, so that each change of
    state sends one alert, never one per check.
    """

    probes = models.JSONField(default=dict, blank=True)
    delivery = models.JSONField(default=dict, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    alert_state = models.CharField(max_length=300, blank=True, default="")
    alert_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "email health record"

    def __str__(self) -> str:
        return f"email health checked at {self.checked_at or 'never'}"


class SmtpTestRun(models.Model):
    """One "Test connection" or "Send test email" request and its outcome.

    Written by the web process (pending) and finished by the Celery task, so the admin page
    can poll it and the outcome outlives the broker and any result backend. ``result`` is
    the probe's or the send's JSON: never a password, never the username.
    ``config_version`` is the AdminConfig version the test was of, when it tested the saved
    settings; only then does the outcome also land on the AdminConfig row.
    """

    class Kind(models.TextChoices):
        CONNECTION = "connection", "Test connection"
        EMAIL = "email", "Send test email"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        OK = "ok", "OK"
        ERROR = "error", "Error"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=7, choices=Status.choices, default=Status.PENDING)
    result = models.JSONField(default=dict, blank=True)
    for_saved_settings = models.BooleanField(default=False)
    config_version = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "SMTP test run"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.status} at {self.created_at:%Y-%m-%d %H:%M}"

    @classmethod
    def finish(cls, run_id: Any, result: dict[str, Any], *, record_on_config: bool = True) -> None:
        """Store ``result`` on the run and, for a test of the saved settings that are still
        the saved settings, on the AdminConfig row."""
        now = timezone.now()
        status = cls.Status.OK if result.get("ok") else cls.Status.ERROR
        cls.objects.filter(pk=run_id).update(status=status, result=result, finished_at=now)
        run = cls.objects.filter(pk=run_id).values("for_saved_settings", "config_version").first()
        if not (record_on_config and run and run["for_saved_settings"]):
            return
        if run["config_version"] is None:
            return
        AdminConfig.objects.filter(pk=1).record_test_result(
            result, now, version=run["config_version"]
        )
