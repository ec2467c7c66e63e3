"""When a deferred message is tried again, and how the retry task gets queued.

Backoff is exponential from ``EMAIL_RETRY_BASE_SECONDS`` (1 min), capped at
``EMAIL_RETRY_MAX_SECONDS`` (1 h), with jitter so that a backlog does not hit a recovering
server all at once. Long waits live in the database (``Delivery.next_attempt_at``): a task
is queued with a countdown only when the wait is short, far below the broker's visibility
timeout (a longer countdown on Redis is delivered again and again); the beat sweeper queues
whatever came due in the meantime. Queueing never raises: the row is already durable.
"""

from __future__ import annotations

import functools
import logging
import random

from django.conf import settings
from django.db import transaction

logger = logging.getLogger("notifications.schedule")

JITTER = 0.2  # a delay is drawn from [80 %, 100 %] of the exponential step
COUNTDOWN_LIMIT = 300.0  # seconds; never more than a quarter of the visibility timeout


def backoff_seconds(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 = the first send)."""
    base = float(settings.EMAIL_RETRY_BASE_SECONDS)
    cap = float(settings.EMAIL_RETRY_MAX_SECONDS)
    step = min(cap, base * 2 ** min(max(attempt - 1, 0), 32))
    return step * (1 - JITTER * random.random())


def max_countdown() -> float:
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}
    visibility = float(options.get("visibility_timeout", 3600))
    return min(COUNTDOWN_LIMIT, visibility / 4)


def enqueue(message_ids: list[str] | None = None, countdown: float = 0.0) -> bool:
    """Queue the retry task (for these Message-IDs, or for whatever is due).

    False when it was not queued: the wait is long (the sweeper will queue it when due) or
    the broker is unreachable (logged; the sweeper catches up).
    """
    if countdown > max_countdown():
        return False
    from notifications.tasks import retry_deliveries

    try:
        retry_deliveries.apply_async(
            args=(message_ids,), countdown=max(0.0, countdown), retry=False
        )
    except Exception as exc:
        logger.warning(
            "delivery retry: could not queue the retry task (%s); the sweeper will",
            type(exc).__name__,
        )
        return False
    return True


def enqueue_on_commit(message_ids: list[str], countdown: float) -> None:
    """``delay_on_commit`` with a countdown: queue once the row is committed, never before."""
    transaction.on_commit(functools.partial(enqueue, list(message_ids), countdown))
