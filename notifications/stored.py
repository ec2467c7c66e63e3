"""A deferred message, rebuilt from its stored raw MIME so the real backend can send it again.

``StoredMessage`` is a Django ``EmailMessage`` whose ``message()`` returns the stored bytes
(parsed, so that the backend's per-route sender still applies: when the message went out
with the default sender, the route's sender replaces the From header, exactly as on the
first attempt). Its envelope recipients are the stored ones, Bcc included. The Message-ID
stays the one of the first attempt, which is what makes a retry recognisable downstream.
It never builds a new body and never reads a secret.
"""

from __future__ import annotations

import email
from email import generator
from io import BytesIO

from django.conf import settings
from django.core.mail.message import EmailMessage, forbid_multi_line_headers


class ParsedMessage(email.message.Message):
    """A parsed MIME message that serialises like Django's (``as_bytes(linesep=...)``)."""

    def as_bytes(self, unixfrom: bool = False, linesep: str = "\n") -> bytes:  # type: ignore[override]
        out = BytesIO()
        generator.BytesGenerator(out, mangle_from_=False).flatten(
            self, unixfrom=unixfrom, linesep=linesep
        )
        return out.getvalue()


def _encoded_from(value: str, encoding: str | None) -> str:
    return forbid_multi_line_headers("From", value, encoding)[1]


def _unfolded(value: str | None) -> str:
    return " ".join(str(value or "").split())


class StoredMessage(EmailMessage):
    """See the module docstring."""

    def __init__(
        self,
        raw: bytes,
        *,
        message_id: str,
        from_email: str,
        recipients: list[str],
        subject: str = "",
    ) -> None:
        super().__init__(
            subject=subject,
            from_email=from_email or settings.DEFAULT_FROM_EMAIL,
            to=list(recipients),
            headers={"Message-ID": message_id},
        )
        self.raw = bytes(raw)
        self.original_from = self.from_email

    def recipients(self) -> list[str]:
        return [address for address in self.to if address]

    def message(self) -> ParsedMessage:  # type: ignore[override]
        parsed = email.message_from_bytes(self.raw, _class=ParsedMessage)
        if self.from_email != self.original_from:
            stored = _unfolded(parsed.get("From"))
            if stored == _unfolded(_encoded_from(self.original_from, self.encoding)):
                parsed.replace_header("From", _encoded_from(self.from_email, self.encoding))
        return parsed
