"""Put a message no route accepted into the deferred queue, durably; retry-now and cancel.

``store_deferred`` runs inside ``send_mail`` (through ``recorder.defer``): it writes the
``Delivery`` row with the raw MIME and its first ``DeliveryAttempt`` in one transaction (a
savepoint of the caller's transaction when there is one, so a rolled-back request leaves no
message behind), and queues the retry only after the commit. The raw MIME is the message as
the app built it; no secret is read or written here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from notifications.models import PENDING, Delivery, DeliveryAttempt, Status
from notifications.records import (
    clip,
    describe_failures,
    failed_route,
    last_code,
    message_id_of,
)
from notifications.schedule import backoff_seconds, enqueue_on_commit

if TYPE_CHECKING:
    from django.core.mail.message import EmailMessage

    from smtp_settings.errors import SmtpError


def store_deferred(message: EmailMessage, failures: list[SmtpError]) -> Delivery:
    """Write ``message`` as deferred and queue its retry after commit. Raises on DB errors."""
    now = timezone.now()
    message_id = message_id_of(message)
    route, server = failed_route(failures)
    delay = backoff_seconds(1)
    fields = {
        "subject": clip(message.subject, 255),
        "sender": clip(message.from_email, 500),
        "recipients": "\n".join(message.recipients()),
        "route": route,
        "server": server,
        "status": Status.DEFERRED,
        "next_attempt_at": now + timedelta(seconds=delay),
        "lease_expires_at": None,
        "last_smtp_code": last_code(failures),
        "last_error": describe_failures(failures),
        "raw_message": message.message().as_bytes(linesep="\r\n"),
        "updated_at": now,
        "finished_at": None,
    }
    with transaction.atomic():
        try:
            with transaction.atomic():
                delivery = Delivery.objects.create(
                    message_id=message_id, attempts=1, created_at=now, **fields
                )
        except IntegrityError:
            delivery = _store_again(message_id, fields)
            if delivery is None:
                return Delivery.objects.get(message_id=message_id)  # already queued
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempts,
            started_at=now,
            outcome=Status.DEFERRED,
            route=route,
            server=server,
            smtp_code=fields["last_smtp_code"],
            error=fields["last_error"],
        )
        enqueue_on_commit([message_id], delay)
    return delivery


def _store_again(message_id: str, fields: dict) -> Delivery | None:
    """The app sent a message object whose Message-ID is already in the log.

    Still waiting for a retry: nothing to add (None). Finished: defer it again, as the
    next attempt of the same row.
    """
    updated = (
        Delivery.objects.filter(message_id=message_id)
        .exclude(status__in=PENDING)
        .update(attempts=F("attempts") + 1, **fields)
    )
    if not updated:
        return None
    return Delivery.objects.get(message_id=message_id)


def retry_now(pks: Iterable[int]) -> int:
    """Make these deferred deliveries due now and queue them; returns how many."""
    now = timezone.now()
    with transaction.atomic():
        due = Delivery.objects.filter(pk__in=list(pks), status=Status.DEFERRED)
        # Write first: on SQLite a transaction that reads before it writes can fail at once.
        count = due.update(next_attempt_at=now, updated_at=now)
        message_ids = list(due.values_list("message_id", flat=True))
        for start in range(0, len(message_ids), 100):
            enqueue_on_commit(message_ids[start : start + 100], 0.0)
    return count


def cancel(pks: Iterable[int]) -> int:
    """Cancel these deferred deliveries (a message a worker is sending is left alone)."""
    now = timezone.now()
    return Delivery.objects.filter(pk__in=list(pks), status=Status.DEFERRED).update(
        status=Status.CANCELLED,
        raw_message=None,
        next_attempt_at=None,
        finished_at=now,
        updated_at=now,
        last_error="Cancelled by an administrator.",
    )
