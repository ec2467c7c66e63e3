"""Alarms about deliveries that need a person: for now, a message the queue gave up on.

``delivery_gave_up`` is called once per message that stayed undelivered for
``EMAIL_RETRY_GIVE_UP_SECONDS``. It logs an error line today; the health monitor routes it
through the health alert path. It must never raise (it runs inside the retry worker) and
never includes the message body or a secret: Message-ID, age, attempts and the last error
hint are enough to act on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.utils import timezone

if TYPE_CHECKING:
    from notifications.models import Delivery

logger = logging.getLogger("notifications.alerts")


def delivery_gave_up(delivery: Delivery) -> None:
    """A deferred message will not be retried any more: tell someone."""
    try:
        age = (timezone.now() - delivery.created_at).total_seconds()
        logger.error(
            "delivery_gave_up message_id=%s attempts=%d age_seconds=%d last_code=%s "
            "recipients=%d last_error=%r",
            delivery.message_id,
            delivery.attempts,
            age,
            delivery.last_smtp_code or "-",
            len(delivery.recipient_list),
            delivery.last_error.splitlines()[-1] if delivery.last_error else "",
        )
    except Exception:
        logger.exception("delivery_gave_up: could not report message %s", delivery.pk)
