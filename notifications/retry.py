"""Send deferred messages again: claim, send over the current routes, record the attempt.

``send_due`` is the body of the retry task: it claims due deliveries one at a time
(``notifications.claims``: ``sending`` with a lease before any SMTP I/O), sends each through
the real ``DynamicSMTPBackend`` with deferral switched off for that call (the recorder's
``capture_outcome``), and then marks it ``sent`` (raw MIME dropped), ``deferred`` again with
backoff, or ``failed`` (a permanent refusal, or still undelivered after
``EMAIL_RETRY_GIVE_UP_SECONDS``: then ``alerts.delivery_gave_up`` raises the alarm).
A message that is no longer due (already sent, cancelled, or claimed by another worker) is
left alone, so running the task twice for one Message-ID sends it at most once.

``sweep`` is the beat task's body: release expired leases, queue what is due. Secrets are
decrypted only inside the backend's connection code; nothing here handles one.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifications import alerts
from notifications.claims import claim_next, release_expired_leases
from notifications.models import PENDING, Delivery, DeliveryAttempt, Status
from notifications.recorder import CapturedOutcome, capture_outcome
from notifications.records import (
    clip,
    describe_failures,
    describe_refused,
    failed_route,
    last_code,
)
from notifications.schedule import backoff_seconds, enqueue, enqueue_on_commit
from notifications.stored import StoredMessage
from smtp_settings.errors import SmtpError

logger = logging.getLogger("notifications.retry")

BATCH = 100  # deliveries one task sends at most
TIME_BUDGET = 120.0  # seconds; well inside the task's soft time limit
MAX_FANOUT = 20  # retry tasks one sweep queues at most


def send_due(message_ids: list[str] | None = None, limit: int = BATCH) -> int:
    """Claim and send due deliveries until none is left, ``limit`` or the time budget."""
    deadline = time.monotonic() + TIME_BUDGET
    done = 0
    while done < limit and time.monotonic() < deadline:
        delivery = claim_next(message_ids)
        if delivery is None:
            break
        send_claimed(delivery)
        done += 1
    return done


def send_claimed(delivery: Delivery) -> str:
    """Send one claimed delivery and record the outcome; returns the new status."""
    from smtp_settings.backends import DynamicSMTPBackend

    started = timezone.now()
    if not delivery.raw_message:
        return _finish(delivery, started, _failure("The stored message is missing."), None)
    message = StoredMessage(
        delivery.raw_message,
        message_id=delivery.message_id,
        from_email=delivery.sender,
        recipients=delivery.recipient_list,
        subject=delivery.subject,
    )
    error: BaseException | None = None
    with capture_outcome() as outcome:
        try:
            DynamicSMTPBackend(fail_silently=False).send_messages([message])
        except Exception as exc:
            error = exc
    return _finish(delivery, started, outcome, error)


def _failure(text: str) -> CapturedOutcome:
    outcome = CapturedOutcome()
    outcome.failures = [SmtpError(text)]
    return outcome


def _finish(
    delivery: Delivery,
    started: datetime,
    outcome: CapturedOutcome,
    error: BaseException | None,
) -> str:
    now = timezone.now()
    if outcome.route is not None:
        # A server accepted it: whatever went wrong afterwards, sending again would duplicate.
        fields, attempt = _sent_fields(outcome, now)
        delay = None
    else:
        fields, attempt, delay = _failed_fields(delivery, outcome, error, now)
    status = fields["status"]
    with transaction.atomic():
        # Still ours? A lease that expired mid-send may have been released to another worker.
        updated = Delivery.objects.filter(
            pk=delivery.pk, attempts=delivery.attempts, status__in=PENDING
        ).update(updated_at=now, lease_expires_at=None, **fields)
        DeliveryAttempt.objects.update_or_create(
            delivery_id=delivery.pk,
            number=delivery.attempts,
            defaults={"started_at": started, "outcome": status, **attempt},
        )
        if updated and delay is not None:
            enqueue_on_commit([delivery.message_id], delay)
    if not updated:
        logger.warning(
            "delivery retry: message_id=%s changed hands while sending (lease expired?)",
            delivery.message_id,
        )
    elif status == Status.FAILED and _gave_up(delivery, now) and not _permanent(error):
        alerts.delivery_gave_up(Delivery.objects.get(pk=delivery.pk))
    logger.info(
        "delivery retry message_id=%s attempt=%d outcome=%s code=%s",
        delivery.message_id,
        delivery.attempts,
        status,
        attempt.get("smtp_code") or "-",
    )
    return status


def _sent_fields(outcome: CapturedOutcome, now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    route = outcome.route
    error = describe_refused(outcome.refused)
    fields = {
        "status": Status.SENT,
        "route": route.name,
        "server": route.address,
        "last_smtp_code": 250,
        "last_error": error,
        "raw_message": None,
        "next_attempt_at": None,
        "finished_at": now,
    }
    if outcome.sender:
        fields["sender"] = clip(outcome.sender, 500)
    attempt = {"route": route.name, "server": route.address, "smtp_code": 250, "error": error}
    return fields, attempt


def _failed_fields(
    delivery: Delivery, outcome: CapturedOutcome, error: BaseException | None, now: datetime
) -> tuple[dict[str, Any], dict[str, Any], float | None]:
    failures = list(outcome.failures)
    if not failures and isinstance(error, SmtpError):
        failures = [error]
    text = describe_failures(failures)
    if not text:
        text = f"Unexpected error: {type(error).__name__}." if error else "Nothing was sent."
    code = last_code(failures)
    route, server = failed_route(failures)
    attempt = {"route": route, "server": server, "smtp_code": code, "error": text}
    fields: dict[str, Any] = {
        "route": route,
        "server": server,
        "last_smtp_code": code,
        "last_error": text,
    }
    if _permanent(error) or error is None or _gave_up(delivery, now):
        fields.update(status=Status.FAILED, raw_message=None, next_attempt_at=None, finished_at=now)
        return fields, attempt, None
    delay = backoff_seconds(delivery.attempts)
    fields.update(status=Status.DEFERRED, next_attempt_at=now + timedelta(seconds=delay))
    return fields, attempt, delay


def _permanent(error: BaseException | None) -> bool:
    return bool(getattr(error, "permanent", False))


def _gave_up(delivery: Delivery, now: datetime) -> bool:
    give_up = timedelta(seconds=settings.EMAIL_RETRY_GIVE_UP_SECONDS)
    return now - delivery.created_at >= give_up


def sweep() -> dict[str, int]:
    """Release expired leases and queue retry tasks for what is due (the beat task)."""
    released = release_expired_leases()
    due = Delivery.objects.filter(
        status=Status.DEFERRED, next_attempt_at__lte=timezone.now()
    ).count()
    queued = 0
    for _ in range(min(MAX_FANOUT, math.ceil(due / BATCH))):
        queued += enqueue(None, 0.0)
    return {"released": released, "due": due, "queued": queued}
