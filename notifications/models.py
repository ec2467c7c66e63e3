"""The delivery log: one ``Delivery`` per message the send path handled, one
``DeliveryAttempt`` per try.

A deferred message keeps its raw MIME here (``raw_message``) so that a worker can send it
later; the bytes are dropped as soon as the message is sent, failed or cancelled. Nothing
here may hold a secret: the columns carry what the message itself carries (headers,
recipients) and the admin-actionable hints of ``smtp_settings.errors``, never an AUTH
exchange or a password.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Status(models.TextChoices):
    SENT = "sent", "Sent"
    DEFERRED = "deferred", "Deferred (will be retried)"
    SENDING = "sending", "Sending (a worker holds it)"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


# A message in one of these states still needs its raw MIME.
PENDING = (Status.DEFERRED, Status.SENDING)


class Delivery(models.Model):
    """What happened to one message, keyed by its Message-ID."""

    message_id = models.CharField("Message-ID", max_length=255, unique=True)
    subject = models.CharField(max_length=255, blank=True)
    sender = models.CharField(max_length=500, blank=True)
    # One envelope address per line (To, Cc and Bcc as the message gave them).
    recipients = models.TextField(blank=True)
    route = models.CharField(
        "route", max_length=20, blank=True, help_text="admin, environment or backup"
    )
    server = models.CharField(max_length=300, blank=True, help_text="host:port")
    status = models.CharField(max_length=10, choices=Status.choices)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_smtp_code = models.PositiveSmallIntegerField("last SMTP code", null=True, blank=True)
    last_error = models.TextField(blank=True)
    raw_message = models.BinaryField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was sent, failed or cancelled."
    )

    class Meta:
        verbose_name = "delivery"
        verbose_name_plural = "deliveries"
        ordering = ("-created_at",)
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
            models.Index(fields=["status", "finished_at"], name="delivery_finished"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} ({self.status})"

    @property
    def recipient_list(self) -> list[str]:
        return [line for line in self.recipients.splitlines() if line]


class DeliveryAttempt(models.Model):
    """One try at sending a delivery (one pass over the routes)."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=10, choices=Status.choices)
    route = models.CharField(max_length=20, blank=True)
    server = models.CharField(max_length=300, blank=True)
    smtp_code = models.PositiveSmallIntegerField("SMTP code", null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ("number",)
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="one_row_per_attempt")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.outcome}"
