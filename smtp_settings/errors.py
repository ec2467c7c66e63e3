"""SMTP failures as a small family of exceptions, each with a sentence an admin can act on.

Every class inherits ``smtplib.SMTPException`` (and so ``OSError``), so code that already
catches those keeps working. Each carries the route name, the step that failed, the SMTP
code and text, a hint, and two decisions the send path needs: may the message go to the
next route (``try_next_route``), and is the failure permanent for this message
(``permanent``). ``classify()`` turns whatever smtplib, ssl or socket raised into one of
them.

Server text is untrusted: a server may quote the AUTH exchange in a reply (the base64 lines
as the client sent them, or the credentials decoded), at AUTH or later in the session.
``scrubber()`` is the one function that masks a password in such text, and
``SmtpError.scrub()`` applies it to everything an error shows; ``smtp_settings.connection``
scrubs every error it raises with the secret it authenticated with, so no hint or server
text leaving it holds the password in any form AUTH sends it.
"""

from __future__ import annotations

import base64
import smtplib
import socket
import ssl
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from smtp_settings.crypto import CryptoError

CONNECT, TLS, AUTH, SENDER, RECIPIENT, DATA = (
    "connect",
    "tls",
    "auth",
    "sender",
    "recipient",
    "data",
)
# The steps at which a failure says the route itself is unusable (not this one message).
ROUTE_STEPS = (CONNECT, TLS, AUTH)
MASK = "********"

APP_PASSWORD_PROVIDERS = {
    "gmail": "Gmail",
    "google": "Gmail",
    "office365": "Microsoft 365",
    "outlook": "Microsoft 365",
    "zoho": "Zoho",
    "fastmail": "Fastmail",
    "yahoo": "Yahoo",
    "icloud": "iCloud",
}


class SmtpError(smtplib.SMTPException):
    """Base of the family. ``str()`` is the hint: the sentence an admin acts on."""

    step = ""
    try_next_route = True
    permanent = False

    def __init__(
        self,
        hint: str,
        *,
        route: str = "",
        address: str = "",
        code: int | None = None,
        smtp_text: str = "",
        step: str | None = None,
    ) -> None:
        super().__init__(hint)
        self.hint = hint
        self.route = route
        self.address = address
        self.smtp_code = code
        self.smtp_text = smtp_text
        if step:
            self.step = step

    def scrub(self, scrub: Callable[[str], str]) -> SmtpError:
        """Mask a secret (see ``scrubber``) in everything this error shows; returns self."""
        self.hint = scrub(self.hint)
        self.smtp_text = scrub(self.smtp_text)
        self.args = (self.hint,)
        return self

    def as_dict(self) -> dict[str, Any]:
        """What a result page, the health JSON or the delivery log may show."""
        return {
            "error": type(self).__name__,
            "step": self.step,
            "route": self.route,
            "server": self.address,
            "smtp_code": self.smtp_code,
            "smtp_text": self.smtp_text,
            "hint": self.hint,
        }


class SmtpConnectError(SmtpError):
    step = CONNECT


class SmtpTimeout(SmtpConnectError):
    pass


class SmtpTlsError(SmtpError):
    step = TLS


class SmtpAuthError(SmtpError):
    step = AUTH


class SmtpSenderRefused(SmtpError):
    step = SENDER


class SmtpRecipientsRefused(SmtpError):
    step = RECIPIENT

    def __init__(self, hint: str, *, recipients: dict | None = None, **kwargs: Any) -> None:
        super().__init__(hint, **kwargs)
        self.recipients = recipients or {}
        # All refused, none temporarily: another route would refuse them too.
        self.permanent = bool(self.recipients) and all(
            code >= 500 for code, _ in self.recipients.values()
        )
        self.try_next_route = not self.permanent

    def scrub(self, scrub: Callable[[str], str]) -> SmtpError:
        self.recipients = {
            address: (code, scrub(text) if isinstance(text, str) else text)
            for address, (code, text) in self.recipients.items()
        }
        return super().scrub(scrub)


class SmtpMessageRefused(SmtpError):
    """The server refused the message at or after DATA."""

    step = DATA

    def __init__(self, hint: str, **kwargs: Any) -> None:
        super().__init__(hint, **kwargs)
        code = self.smtp_code or 0
        self.permanent = code >= 500
        self.try_next_route = not self.permanent


class SmtpOutcomeUnknown(SmtpError):
    """The line was lost after the whole message was sent and before the server answered.

    The server may have accepted it. Offering it to another route, or retrying it later,
    could deliver it twice, so neither happens: it is reported, not retried."""

    step = DATA
    try_next_route = False
    permanent = True


class SmtpNotConfigured(SmtpError, ImproperlyConfigured):
    """No route is configured at all. A configuration error: never silenced."""

    step = CONNECT
    try_next_route = False


def scrubber(secret: str, username: str = "") -> Callable[[str], str]:
    """A function that masks ``secret`` in server text: in clear, and base64-encoded as AUTH
    LOGIN sends it and inside the AUTH PLAIN blob ``\\0username\\0secret`` (padded or not)."""
    if not secret:
        return _unchanged
    forms = {secret}
    for raw in (secret.encode(), f"\0{username}\0{secret}".encode()):
        forms.add(base64.b64encode(raw).decode().rstrip("="))
    ordered = sorted(forms, key=len, reverse=True)

    def scrub(text: str) -> str:
        for form in ordered:
            text = text.replace(form, MASK)
        return text

    return scrub


def _unchanged(text: str) -> str:
    return text


def _text(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return str(raw or "")


def _app_password_advice(host: str) -> str:
    for marker, provider in APP_PASSWORD_PROVIDERS.items():
        if marker in host.lower():
            return (
                f" {provider} needs an app password (not the account password) when two-step "
                "verification is on, and some accounts must allow SMTP sending first."
            )
    return (
        " Providers such as Gmail, Microsoft 365, Zoho and Fastmail need an app password, "
        "not the account password, when two-step verification is on."
    )


def _tls_hint(exc: ssl.SSLError, *, host: str, port: int, security: str) -> str:
    reason = f"{getattr(exc, 'reason', '')} {exc}".lower()
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = (getattr(exc, "verify_message", "") or "").lower()
        if "hostname" in detail or "not valid for" in detail or "ip address mismatch" in detail:
            return (
                f"The certificate of {host} is issued for another host name. Use the exact host "
                "name your provider documents (the one on its certificate), not an alias or IP."
            )
        return (
            f"The certificate of {host} is not trusted ({detail or 'unknown issuer'}). Use the "
            "provider's documented host name; for a relay with a private CA set SMTP_CA_FILE, "
            "or turn off certificate verification for this server only if you control it."
        )
    if "wrong version number" in reason or "unknown protocol" in reason or "record layer" in reason:
        if security == "SSL":
            return (
                f"Port {port} answered in plain text: it expects STARTTLS, not SSL. Choose "
                "security TLS (STARTTLS); port 587 usually expects STARTTLS, 465 expects SSL."
            )
        return "The TLS handshake failed (wrong version number): SSL and STARTTLS look swapped."
    return f"The TLS handshake with {host}:{port} failed: {exc}."


_STEP_CLASSES: dict[str, type[SmtpError]] = {
    CONNECT: SmtpConnectError,
    TLS: SmtpTlsError,
    AUTH: SmtpAuthError,
    SENDER: SmtpSenderRefused,
}


def _timed_out(exc: BaseException) -> bool:
    """smtplib reports a read that timed out as ``SMTPServerDisconnected(... timed out)``."""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return True
    return isinstance(exc, smtplib.SMTPServerDisconnected) and "timed out" in str(exc)


def _timeout_hint(
    exc: BaseException, *, step: str, where: str, security: str, timeout: float
) -> str:
    if step == CONNECT and isinstance(exc, smtplib.SMTPServerDisconnected):
        # The TCP connection was made, but no "220" greeting came. That is what a client
        # without TLS sees at an implicit-TLS port: the server waits for a TLS handshake.
        if security != "SSL":
            return (
                f"{where} accepted the connection but sent no greeting within {timeout:g} s. "
                "The port probably expects implicit TLS: choose security SSL (usually port "
                "465), or use the provider's STARTTLS port (usually 587) with security TLS."
            )
        return f"{where} accepted the connection but sent no greeting within {timeout:g} s."
    hint = f"{where} did not answer within {timeout:g} s at the {step} step."
    if step == CONNECT:
        hint += (
            " A firewall may drop the connection (many hosts block port 25), or the server is down."
        )
    return hint


def classify_on(route: Any, exc: BaseException, *, step: str, sender: str = "") -> SmtpError:
    """``classify`` for an exception met on ``route`` (an ``SmtpRoute``): its name, address,
    security and timeout go into the error and its hint."""
    return classify(
        exc,
        step=step,
        route=route.name,
        host=route.host,
        port=route.port,
        security=route.security,
        timeout=route.timeout,
        sender=sender,
    )


def classify(
    exc: BaseException,
    *,
    step: str,
    route: str = "",
    host: str = "",
    port: int = 0,
    security: str = "",
    timeout: float = 0,
    sender: str = "",
) -> SmtpError:
    """Map an exception raised at ``step`` to an ``SmtpError`` with a hint."""
    if isinstance(exc, SmtpError):
        return exc
    where = f"{host}:{port}"
    common = {"route": route, "address": where}
    if _timed_out(exc):
        hint = _timeout_hint(exc, step=step, where=where, security=security, timeout=timeout)
        return SmtpTimeout(hint, step=step, **common)
    if isinstance(exc, CryptoError):
        # Its message says which key to restore; it never contains the secret.
        return SmtpAuthError(str(exc), step=AUTH, **common)
    if isinstance(exc, socket.gaierror):
        return SmtpConnectError(
            f"The server name {host!r} does not resolve. Check its spelling (no scheme, no port).",
            **common,
        )
    if isinstance(exc, ConnectionRefusedError):
        return SmtpConnectError(
            f"Connection to {where} was refused: nothing listens there. Check the server and "
            "port, and that the server is running.",
            **common,
        )
    if isinstance(exc, ssl.SSLError):
        return SmtpTlsError(_tls_hint(exc, host=host, port=port, security=security), **common)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        if "STARTTLS" in str(exc):
            return SmtpTlsError(
                f"{where} does not offer STARTTLS. Choose SSL if the port is 465, or security "
                "None only for a trusted local relay.",
                **common,
            )
        if security == "NONE":
            return SmtpAuthError(
                f"{where} does not offer AUTH on a plain connection; most servers offer it only "
                "after STARTTLS. Choose security TLS (STARTTLS) or SSL.",
                **common,
            )
        return SmtpAuthError(
            f"{where} does not offer authentication. If it is a relay that allows your IP, "
            "leave the username and password empty.",
            **common,
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return SmtpAuthError(
            f"{where} rejected the username or password ({exc.smtp_code})."
            + _app_password_advice(host),
            code=exc.smtp_code,
            smtp_text=_text(exc.smtp_error),
            **common,
        )
    if isinstance(exc, smtplib.SMTPSenderRefused):
        text = _text(exc.smtp_error)
        if exc.smtp_code >= 500:
            hint = (
                f"{where} refused the sender {sender or _text(exc.sender)} ({exc.smtp_code}). The "
                "sender email must be a mailbox or verified domain this account may send from."
            )
        else:
            hint = f"{where} refused the sender for now ({exc.smtp_code}); it will be retried."
        return SmtpSenderRefused(hint, code=exc.smtp_code, smtp_text=text, **common)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = {addr: (code, _text(text)) for addr, (code, text) in exc.recipients.items()}
        first_code = next(iter(refused.values()))[0] if refused else None
        permanent = refused and all(code >= 500 for code, _ in refused.values())
        hint = (
            f"{where} refused the recipient(s) {', '.join(refused)}: check the address."
            if permanent
            else f"{where} refused the recipient(s) for now ({first_code}); it will be retried."
        )
        return SmtpRecipientsRefused(
            hint,
            recipients=refused,
            code=first_code,
            smtp_text=next(iter(refused.values()))[1] if refused else "",
            **common,
        )
    if isinstance(exc, smtplib.SMTPDataError):
        return SmtpMessageRefused(
            f"{where} refused the message ({exc.smtp_code}: {_text(exc.smtp_error)}).",
            code=exc.smtp_code,
            smtp_text=_text(exc.smtp_error),
            **common,
        )
    cls = _STEP_CLASSES.get(step, SmtpError)
    if isinstance(exc, smtplib.SMTPResponseException):
        return cls(
            f"{where} answered {exc.smtp_code} at the {step} step: {_text(exc.smtp_error)}.",
            code=exc.smtp_code,
            smtp_text=_text(exc.smtp_error),
            step=step,
            **common,
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        hint = f"{where} closed the connection at the {step} step."
        if step == CONNECT and security != "SSL":
            hint += " If the port expects implicit TLS (usually 465), choose security SSL."
        return cls(hint, step=step, **common)
    if isinstance(exc, OSError):
        return cls(
            f"Network error talking to {where} at the {step} step: {exc.strerror or exc}.",
            step=step,
            **common,
        )
    return SmtpError(
        f"Unexpected error at the {step} step: {type(exc).__name__}.", step=step, **common
    )
