"""Mail the site's admins about email delivery itself (a route down, recovered, mail given up).

``send_admin_alert(subject, body, routes=...)`` is the one way this project warns admins by
mail: the health check uses it on each change of state, and the delivery log uses it when a
message is given up. Passing ``routes`` sends through those routes only, so an alert about a
broken route goes out through one that works. Recipients are ``ADMINS``, or every active
superuser with an email address when ``ADMINS`` is empty.

It never raises into its caller (an alert that cannot go out is logged and reported as
False) and never puts a secret in a message: callers pass texts built from masked values.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from smtp_settings.routes import SmtpRoute

logger = logging.getLogger(__name__)


def admin_recipients() -> list[str]:
    """``ADMINS`` addresses, else active superusers' addresses (one query in that case)."""
    addresses = [address for _name, address in settings.ADMINS if address]
    if addresses:
        return addresses
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(is_superuser=True, is_active=True).exclude(email="")
    return sorted(set(users.values_list("email", flat=True)))


def send_admin_alert(subject: str, body: str, *, routes: Sequence[SmtpRoute] | None = None) -> bool:
    """Send one alert to the admins; True when a server (or the deferred queue) took it."""
    recipients = admin_recipients()
    if not recipients:
        logger.warning("admin alert not sent, no ADMINS and no superuser email: %s", subject)
        return False
    if routes:
        from smtp_settings.backends import DynamicSMTPBackend

        connection = DynamicSMTPBackend(routes=tuple(routes))
    else:
        connection = get_connection()
    message = EmailMessage(
        subject=f"{settings.EMAIL_SUBJECT_PREFIX}{subject}",
        body=body,
        from_email=settings.SERVER_EMAIL,
        to=recipients,
        connection=connection,
    )
    try:
        sent = message.send() == 1
    except Exception as exc:  # an alert must never break the check that raised it
        logger.error("admin alert %r not sent: %s", subject, exc.__class__.__name__)
        return False
    logger.warning("admin alert sent to %d recipient(s): %s", len(recipients), subject)
    return sent
