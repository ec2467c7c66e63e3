"""Turn what the send path hands over (a message, a route, SMTP errors) into delivery-log values.

Shared by the recorder (sent and failed records, deferrals) and the retry worker, so that a
row looks the same whichever wrote it. Error text comes only from the hints of
``smtp_settings.errors`` (which never hold a password); the server's own reply to AUTH is
never copied, and nothing here reads a route's secret.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from django.core.mail.message import EmailMessage

    from smtp_settings.errors import SmtpError
    from smtp_settings.routes import SmtpRoute

ERROR_LIMIT = 2000


class Outcome(NamedTuple):
    """One record waiting in the write buffer. Cheap to build: plain values only."""

    status: str
    message_id: str
    subject: str
    sender: str
    recipients: tuple[str, ...]
    route: str
    server: str
    smtp_code: int | None
    error: str
    at: float  # time.time() when the send finished

    @property
    def when(self) -> datetime:
        return datetime.fromtimestamp(self.at, tz=UTC)


def message_id_of(message: EmailMessage) -> str:
    """The Message-ID the backend fixed before the first attempt (any header case), as the
    log's key: clipped to the column (an app-made ID that long is not seen in practice)."""
    for name, value in message.extra_headers.items():
        if name.lower() == "message-id":
            return clip(str(value), 255)
    return ""


def clip(text: str, limit: int) -> str:
    text = str(text or "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_failures(failures: list[SmtpError]) -> str:
    """One line per route tried: the hint an admin can act on."""
    lines = []
    for failure in failures:
        where = " ".join(part for part in (failure.route, failure.address) if part) or "-"
        lines.append(f"{where}: {failure.hint}")
    return clip("\n".join(lines), ERROR_LIMIT)


def describe_refused(refused: dict) -> str:
    """Recipients a server refused while accepting the message for the others."""
    if not refused:
        return ""
    parts = []
    for address, answer in refused.items():
        code = answer[0] if isinstance(answer, tuple | list) and answer else answer
        parts.append(f"{address} ({code})")
    return clip("refused by the server: " + ", ".join(parts), ERROR_LIMIT)


def last_code(failures: list[SmtpError]) -> int | None:
    """The SMTP code of the last failure that had one (the code only, never the reply)."""
    for failure in reversed(failures):
        if failure.smtp_code:
            return int(failure.smtp_code)
    return None


def failed_route(failures: list[SmtpError]) -> tuple[str, str]:
    last = failures[-1] if failures else None
    if last is None:
        return "", ""
    return last.route or "", last.address or ""


def sent_outcome(message: EmailMessage, route: SmtpRoute, refused: dict) -> Outcome:
    return Outcome(
        "sent",
        message_id_of(message),
        clip(message.subject, 255),
        clip(message.from_email, 500),
        tuple(message.recipients()),
        route.name,
        route.address,
        250,
        describe_refused(refused),
        time.time(),
    )


def failed_outcome(message: EmailMessage, failures: list[SmtpError]) -> Outcome:
    route, server = failed_route(failures)
    return Outcome(
        "failed",
        message_id_of(message),
        clip(message.subject, 255),
        clip(message.from_email, 500),
        tuple(message.recipients()),
        route,
        server,
        last_code(failures),
        describe_failures(failures) or "No route accepted the message.",
        time.time(),
    )
