"""Alarms about deliveries that need a person: for now, a message the queue gave up on.

``delivery_gave_up`` is called once per message that stayed undelivered for
``EMAIL_RETRY_GIVE_UP_SECONDS``. It logs an error line and mails the admins through the
health alert path (``smtp_settings.alerts.send_admin_alert``); when no route works that mail
is itself deferred, so it arrives when mail flows again. An alert about an alert is not sent
(no chain of alarms every three days). It must never raise (it runs inside the retry worker)
and never includes the message body or a secret: Message-ID, age, attempts and the last
error hint are enough to act on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils import timezone

if TYPE_CHECKING:
    from notifications.models import Delivery

logger = logging.getLogger("notifications.alerts")

GAVE_UP_SUBJECT = "Email given up after retrying"


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
        if GAVE_UP_SUBJECT not in delivery.subject:
            _mail_admins(delivery, age)
    except Exception:
        logger.exception("delivery_gave_up: could not report message %s", delivery.pk)


def _mail_admins(delivery: Delivery, age: float) -> None:
    from smtp_settings.alerts import send_admin_alert

    last_hint = delivery.last_error.splitlines()[-1] if delivery.last_error else "none recorded"
    send_admin_alert(
        f"{GAVE_UP_SUBJECT}: {delivery.subject[:80]}",
        "A message could not be delivered and will not be retried any more.\n\n"
        f"Message-ID: {delivery.message_id}\n"
        f"Recipients: {len(delivery.recipient_list)}\n"
        f"Attempts: {delivery.attempts} over {age / 3600:.1f} hours\n"
        f"Last SMTP code: {delivery.last_smtp_code or '-'}\n"
        f"Last error: {last_hint}\n\n"
        f"Retry it from admin (Email deliveries) once the cause is fixed. "
        f"Messages are retried for {settings.EMAIL_RETRY_GIVE_UP_SECONDS / 86400:g} days.",
    )
