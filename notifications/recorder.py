"""What happens to each message the send path handles: the hand-off point to the delivery log.

``smtp_settings.backends`` calls these three functions and nothing else from this app, so
that the send path does not know how outcomes are stored. They must be cheap on success
(no synchronous database write per sent message) and must never raise into the send path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.core.mail.message import EmailMessage

    from smtp_settings.errors import SmtpError
    from smtp_settings.routes import SmtpRoute


def record_sent(message: EmailMessage, route: SmtpRoute, refused: dict) -> None:
    """A server accepted ``message`` (``refused`` lists recipients it refused)."""


def record_failed(message: EmailMessage, failures: list[SmtpError]) -> None:
    """No route accepted ``message`` and it will not be retried."""


def defer(message: EmailMessage, failures: list[SmtpError]) -> bool:
    """Store ``message`` for a later retry; True when it is stored durably."""
    return False
