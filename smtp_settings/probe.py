"""Probe one SMTP route without sending mail: connect, TLS, AUTH, MAIL FROM, RCPT TO, RSET, QUIT.

The probe answers "would a message go through, and if not, what must the admin change?".
It reuses ``connection.open_connection`` (the send path's own connect/TLS/AUTH with step
timings and classified errors), then asks the server whether it would take the sender and
the recipient, and leaves with RSET and QUIT. It never sends DATA, so no mail is delivered.

It works on unsaved values (``route_from_values``) and accepts a password override. The
password is revealed here, in the process that opens the connection, and nowhere else; it
is scrubbed from any server text (``errors.scrubber``, shared with the send path) before that
text reaches the result, which is stored in the database and shown in admin. The result
never holds the password or the username.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from smtp_settings.connection import open_connection
from smtp_settings.crypto import CryptoError
from smtp_settings.errors import (
    AUTH,
    CONNECT,
    RECIPIENT,
    SENDER,
    TLS,
    SmtpAuthError,
    SmtpError,
    SmtpRecipientsRefused,
    SmtpSenderRefused,
    SmtpTimeout,
    SmtpTlsError,
    classify_on,
    scrubber,
)
from smtp_settings.routes import ADMIN, SecretRef, SmtpRoute
from smtp_settings.snapshot import snapshot_from_row

STEPS = (CONNECT, TLS, AUTH, SENDER, RECIPIENT)
# How long the follow-up check for a swapped SSL/STARTTLS setting may wait: it runs only
# after a silent server, so it must not double a long timeout.
TLS_SNIFF_TIMEOUT = 3.0


@dataclass
class ProbeResult:
    """What the probe found. ``as_dict()`` is the JSON stored in the database."""

    ok: bool
    route: str
    server: str
    security: str
    sender: str = ""
    recipient: str = ""
    step: str = ""  # the step that failed; "" when ok
    error: str = ""
    smtp_code: int | None = None
    smtp_text: str = ""
    hint: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    checked_at: datetime = field(default_factory=timezone.now)

    @property
    def elapsed(self) -> float:
        return round(sum(self.timings.values()), 4)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = "connection"
        data["checked_at"] = self.checked_at.isoformat()
        data["elapsed"] = self.elapsed
        return data

    def summary(self) -> str:
        """One line for a terminal or a log."""
        where = f"{self.route} ({self.security} {self.server})"
        if self.ok:
            steps = ", ".join(f"{name} {secs:.3f}s" for name, secs in self.timings.items())
            return f"OK: {where} would accept mail from {self.sender} to {self.recipient} [{steps}]"
        code = f" {self.smtp_code}" if self.smtp_code else ""
        return f"FAILED at {self.step}{code}: {where}. {self.hint}"


def route_from_values(
    values: Mapping[str, Any], *, name: str = ADMIN, secret: SecretRef | None = None
) -> SmtpRoute:
    """A route from AdminConfig field names (a form's cleaned data or a snapshot)."""
    return SmtpRoute(
        name=name,
        host=str(values["smtp_server"]).strip(),
        port=int(values["smtp_port"]),
        security=str(values.get("smtp_security") or "TLS").upper(),
        username=values.get("smtp_username") or "",
        secret=secret or SecretRef(),
        timeout=float(values.get("smtp_timeout") or settings.SMTP_TIMEOUT),
        verify_certificates=bool(values.get("smtp_verify_certificates", True)),
        sender_email=values.get("sender_email") or "",
        sender_name=values.get("sender_name") or "",
    )


def admin_route_from_row(row: Any) -> SmtpRoute:
    """The saved AdminConfig as a route, enabled or not (a test may precede enabling it)."""
    values = snapshot_from_row(row)
    return route_from_values(values, secret=SecretRef(token=values["password_token"]))


def default_sender(route: SmtpRoute) -> str:
    """The envelope sender app mail would use on this route (see backends._sendmail)."""
    return route.sender_email or settings.DEFAULT_FROM_EMAIL


def probe(
    route: SmtpRoute,
    *,
    password: str | None = None,
    sender: str = "",
    recipient: str = "",
) -> ProbeResult:
    """Walk ``route`` up to RCPT TO and back out; never raises an ``SmtpError``.

    ``password`` overrides the route's secret (an admin testing a password not saved yet).
    """
    sender = sender or default_sender(route)
    result = ProbeResult(
        ok=False,
        route=route.name,
        server=route.address,
        security=route.security,
        sender=sender,
        recipient=recipient or sender,
    )
    try:
        secret = _secret_for(route, password)
    except SmtpError as exc:
        return _failed(result, exc, route, "")
    try:
        connection = open_connection(route, password=secret, timings=result.timings)
    except SmtpError as exc:
        return _failed(result, _swapped_or(exc, route), route, secret)
    try:
        _envelope(connection, route, result)
        result.ok = True
    except SmtpError as exc:
        _failed(result, exc, route, secret)
    finally:
        # A server that answered can be left politely; a silent or dead one is just closed,
        # so that RSET and QUIT do not each wait out another timeout.
        _leave(connection, polite=result.ok or result.smtp_code is not None)
    return result


def _secret_for(route: SmtpRoute, password: str | None) -> str:
    if not route.username:
        return ""
    try:
        secret = route.password() if password is None else password
    except CryptoError as exc:
        raise SmtpAuthError(str(exc), route=route.name, address=route.address) from None
    if not secret:
        raise SmtpAuthError(
            "A username is set but there is no password: type the password and test again.",
            route=route.name,
            address=route.address,
        )
    return secret


def _envelope(connection: smtplib.SMTP, route: SmtpRoute, result: ProbeResult) -> None:
    """MAIL FROM and RCPT TO: would the server take this sender and this recipient?"""
    with _step(SENDER, route, result):
        # After AUTH this is a no-op; without AUTH nothing has said EHLO yet.
        connection.ehlo_or_helo_if_needed()
        code, text = connection.mail(result.sender)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, text, result.sender)
    with _step(RECIPIENT, route, result):
        code, text = connection.rcpt(result.recipient)
        if code not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({result.recipient: (code, text)})


@contextlib.contextmanager
def _step(step: str, route: SmtpRoute, result: ProbeResult) -> Iterator[None]:
    """Time one command and turn whatever it raised into a classified ``SmtpError``."""
    started = time.perf_counter()
    try:
        yield
    except (smtplib.SMTPException, OSError) as exc:
        raise classify_on(route, exc, step=step, sender=result.sender) from None
    finally:
        result.timings[step] = round(time.perf_counter() - started, 4)


def _leave(connection: smtplib.SMTP, *, polite: bool) -> None:
    if polite:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            connection.rset()
        with contextlib.suppress(smtplib.SMTPException, OSError):
            connection.quit()
    with contextlib.suppress(OSError):
        connection.close()


# -- hints -------------------------------------------------------------------------------------
def _swapped_or(exc: SmtpError, route: SmtpRoute) -> SmtpError:
    """A server that stays silent after the TCP connect may be waiting for a TLS handshake
    (an implicit-TLS port tested with STARTTLS or no security). Find out, and say which."""
    if not isinstance(exc, SmtpTimeout) or exc.step != CONNECT or route.use_ssl:
        return exc
    timeout = min(route.timeout, TLS_SNIFF_TIMEOUT)
    answer = _sniff_tls(route.host, route.port, timeout)
    if answer == "tls":
        return SmtpTlsError(
            f"{route.address} expects implicit TLS (SSL) from the first byte: it waited for a "
            "TLS handshake instead of greeting. Choose security SSL (usually port 465), or use "
            "port 587 with TLS (STARTTLS).",
            route=route.name,
            address=route.address,
        )
    if answer == "silent":
        return SmtpTimeout(
            f"{route.address} accepted the connection but sent no greeting within "
            f"{route.timeout:g} s, and it does not answer a TLS handshake either: the server "
            "is hung or overloaded, or this port is not an SMTP service. Check the port, then "
            "the server.",
            route=route.name,
            address=route.address,
            step=CONNECT,
        )
    return exc  # not even a TCP connection: the original hint (firewall, server down) stands


def _sniff_tls(host: str, port: int, timeout: float) -> str:
    """ "tls" if the port completes a TLS handshake, "silent" if it takes the TCP connection
    but not the handshake, "unreachable" if it does not take the connection."""
    # Nothing is sent over this connection, so the certificate does not matter here; the
    # real connection verifies it.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return "unreachable"
    try:
        with context.wrap_socket(sock, server_hostname=host):
            return "tls"
    except OSError:
        return "silent"
    finally:
        sock.close()


def _probe_hint(exc: SmtpError, route: SmtpRoute, result: ProbeResult) -> str:
    """Hints the send path words differently: a probe retries nothing, and an admin reading
    it needs the likely cause of a temporary refusal."""
    code = exc.smtp_code or 0
    if isinstance(exc, (SmtpSenderRefused, SmtpRecipientsRefused)) and 400 <= code < 500:
        who = "sender" if exc.step == SENDER else "recipient"
        return (
            f"{route.address} refused the {who} for now ({code}): the server may be "
            "greylisting, rate-limiting or short of resources. Test again in a few minutes; "
            "if it persists, ask the provider."
        )
    if isinstance(exc, SmtpRecipientsRefused) and _is_policy(exc):
        return (
            f"{route.address} refused to relay to {result.recipient} ({code}): this account "
            "may not send to that address. Check that authentication is on (username and "
            "password) and that the provider allows this sender to relay."
        )
    if exc.step == CONNECT and 400 <= code < 500:
        return (
            f"{route.address} is not accepting connections right now ({code}): it is busy, "
            "rate-limiting, or blocking this server's IP address. Test again later; if it "
            "persists, ask the provider."
        )
    return exc.hint


def _is_policy(exc: SmtpError) -> bool:
    return (exc.smtp_code or 0) >= 500 and exc.smtp_text.strip().startswith("5.7.")


def _failed(result: ProbeResult, exc: SmtpError, route: SmtpRoute, secret: str) -> ProbeResult:
    scrub = scrubber(secret, route.username)
    result.ok = False
    result.step = exc.step or CONNECT
    result.error = type(exc).__name__
    result.smtp_code = exc.smtp_code
    result.smtp_text = scrub(exc.smtp_text)
    result.hint = scrub(_probe_hint(exc, route, result))
    return result
