"""Who may send a deferred message: claims with a lease, and the release of expired leases.

A worker claims one due row at a time and marks it ``sending`` with a lease *before* any
SMTP I/O, so two workers never send the same message. On PostgreSQL the candidate is picked
with ``SELECT ... FOR UPDATE SKIP LOCKED`` (workers take different rows instead of queueing
behind one lock); on SQLite, which has no row locks, the claim is the conditional
``UPDATE ... WHERE status = 'deferred'``, which only one writer can win. Both end in that
same conditional update, so the claim is correct on either database.

A worker that dies holding a lease leaves the row ``sending``; once the lease expires,
``release_expired_leases`` (run by the beat sweeper) makes it due again. Nothing here does
SMTP I/O or reads a secret.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from notifications.models import Delivery, DeliveryAttempt, Status

# A task queued with a countdown may start a moment before the row's due time.
EARLY_TOLERANCE = timedelta(seconds=1)
LOST_WORKER = (
    "The worker sending this message stopped before it finished (its lease expired); "
    "it will be retried."
)


def due_queryset(message_ids: list[str] | None, now: datetime) -> QuerySet[Delivery]:
    if message_ids is None:
        return Delivery.objects.filter(status=Status.DEFERRED, next_attempt_at__lte=now)
    return Delivery.objects.filter(
        status=Status.DEFERRED,
        next_attempt_at__lte=now + EARLY_TOLERANCE,
        message_id__in=list(message_ids),
    )


def _mark_sending(pk: int, now: datetime) -> bool:
    lease = now + timedelta(seconds=settings.EMAIL_SENDING_LEASE_SECONDS)
    return (
        Delivery.objects.filter(pk=pk, status=Status.DEFERRED).update(
            status=Status.SENDING,
            lease_expires_at=lease,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
        == 1
    )


def claim_next(message_ids: list[str] | None = None) -> Delivery | None:
    """Claim one due delivery (optionally among ``message_ids``); None when none is due."""
    now = timezone.now()
    due = due_queryset(message_ids, now).order_by("next_attempt_at")
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            pk = due.select_for_update(skip_locked=True).values_list("pk", flat=True).first()
            if pk is None or not _mark_sending(pk, now):
                return None
        return Delivery.objects.get(pk=pk)
    while True:
        # Read outside a transaction, then race on the conditional update: SQLite turns a
        # read-then-write transaction into an immediate "database is locked".
        candidates = list(due.values_list("pk", flat=True)[:20])
        if not candidates:
            return None
        for pk in candidates:
            if _mark_sending(pk, now):
                return Delivery.objects.get(pk=pk)


def release_expired_leases() -> int:
    """Make deliveries whose sender vanished (lease expired) due again; returns how many."""
    now = timezone.now()
    expired = Delivery.objects.filter(status=Status.SENDING, lease_expires_at__lt=now)
    released = 0
    for pk, attempts in list(expired.values_list("pk", "attempts")):
        with transaction.atomic():
            updated = Delivery.objects.filter(
                pk=pk, status=Status.SENDING, attempts=attempts, lease_expires_at__lt=now
            ).update(
                status=Status.DEFERRED,
                next_attempt_at=now,
                lease_expires_at=None,
                last_error=LOST_WORKER,
                updated_at=now,
            )
            if not updated:
                continue
            DeliveryAttempt.objects.get_or_create(
                delivery_id=pk,
                number=attempts,
                defaults={"started_at": now, "outcome": Status.DEFERRED, "error": LOST_WORKER},
            )
            released += 1
    return released
