"""What happens to each message the send path handles: the hand-off point to the delivery log.

``smtp_settings.backends`` calls these three functions and nothing else from this app, so
that the send path does not know how outcomes are stored. They must be cheap on success
(no synchronous database write per sent message: ``record_sent`` appends to an in-memory
buffer that a background thread bulk-inserts) and must never raise into the send path.

``defer`` is the exception to "cheap": a message no route accepted is written to the
database before ``send_mail`` returns (in the caller's transaction when there is one),
because that row is the only copy of it. Its retry is queued after the commit.

While the retry worker sends a stored message, ``capture_outcome()`` redirects the three
hooks to an in-memory result for that thread: nothing is buffered, nothing is deferred a
second time, and the worker records the attempt itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings

from notifications.buffer import buffer
from notifications.records import failed_outcome, sent_outcome

if TYPE_CHECKING:
    from django.core.mail.message import EmailMessage

    from smtp_settings.errors import SmtpError
    from smtp_settings.routes import SmtpRoute

logger = logging.getLogger("notifications.recorder")
_local = threading.local()


@dataclass
class CapturedOutcome:
    """What the backend reported for one message sent by the retry worker."""

    route: SmtpRoute | None = None
    sender: str = ""  # the From the accepted message went out with (the route's, or the app's)
    refused: dict = field(default_factory=dict)
    failures: list[SmtpError] = field(default_factory=list)


@contextmanager
def capture_outcome() -> Iterator[CapturedOutcome]:
    """Within this block (this thread only) the hooks fill the yielded result instead."""
    outcome = CapturedOutcome()
    previous = getattr(_local, "capture", None)
    _local.capture = outcome
    try:
        yield outcome
    finally:
        _local.capture = previous


def record_sent(message: EmailMessage, route: SmtpRoute, refused: dict) -> None:
    """A server accepted ``message`` (``refused`` lists recipients it refused)."""
    capture = getattr(_local, "capture", None)
    if capture is not None:
        capture.route, capture.refused = route, dict(refused or {})
        capture.sender = message.from_email or ""
        return
    if not settings.EMAIL_DELIVERY_LOG:
        return
    try:
        buffer.add(sent_outcome(message, route, refused))
    except Exception:
        logger.exception("delivery log: could not record a sent message")


def record_failed(message: EmailMessage, failures: list[SmtpError]) -> None:
    """No route accepted ``message`` and it will not be retried."""
    capture = getattr(_local, "capture", None)
    if capture is not None:
        capture.failures = list(failures)
        return
    try:
        buffer.add(failed_outcome(message, failures))
    except Exception:
        logger.exception("delivery log: could not record a failed message")


def defer(message: EmailMessage, failures: list[SmtpError]) -> bool:
    """Store ``message`` for a later retry; True when it is stored durably."""
    if getattr(_local, "capture", None) is not None:
        return False  # the retry worker decides what happens next
    if not settings.EMAIL_DEFER_ON_FAILURE:
        return False
    from notifications.deferral import store_deferred

    try:
        store_deferred(message, failures)
    except Exception as exc:
        logger.error(
            "delivery log: could not store a message for retry (%s); the send fails",
            type(exc).__name__,
        )
        return False
    return True


def flush() -> bool:
    """Write every buffered record now (tests, shutdown). True when nothing is left."""
    return buffer.flush()


def pending() -> int:
    """How many records wait in this process's buffer."""
    return buffer.pending()
