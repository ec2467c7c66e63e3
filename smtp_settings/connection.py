"""Talk SMTP to one route: open an authenticated connection, and run one mail transaction.

``open_connection`` is shared by the send path (``backends``) and the probe: connect,
STARTTLS or implicit TLS, AUTH, with step timings. Every socket operation is bounded by the
route's timeout. A failure closes whatever was half-opened (a half-open plain connection
must never be reused; see CVE-2026-7666) and raises an ``SmtpError`` that names the step.
The password is revealed here and used for AUTH; what it keeps is a scrubber for it
(``errors.scrubber``), because a server may quote the AUTH exchange in any later reply: every
error raised here, at AUTH or in the mail transaction, has the password masked in its hint
and server text before it leaves this module (for the logs, the delivery log, results).

``send_transaction`` is ``smtplib.SMTP.sendmail`` with the step tracked, so that the send
path knows whether the server can have accepted the message: a line lost after the last
byte of DATA went out raises ``SmtpOutcomeUnknown`` (never offered to another route), a
refusal or a lost line before that raises an error that may fail over.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
import time
from functools import lru_cache

from django.conf import settings
from django.core.mail.utils import DNS_NAME
from django.views.decorators.debug import sensitive_variables

from smtp_settings.errors import (
    AUTH,
    CONNECT,
    DATA,
    RECIPIENT,
    SENDER,
    TLS,
    SmtpError,
    SmtpOutcomeUnknown,
    classify_on,
    scrubber,
)
from smtp_settings.routes import SmtpRoute


@lru_cache(maxsize=16)
def client_context(
    verify: bool = True, cafile: str = "", certfile: str = "", keyfile: str = ""
) -> ssl.SSLContext:
    """A TLS client context, built once per process for each combination.

    Unlike Django's (which loads no CA at all when a client certificate is given), this one
    always verifies against the system CAs plus ``SMTP_CA_FILE`` unless ``verify`` is off.
    """
    context = ssl.create_default_context(cafile=cafile or None)
    if cafile:
        context.load_default_certs()
    if certfile or keyfile:
        context.load_cert_chain(certfile, keyfile or None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def context_for(route: SmtpRoute, certfile: str = "", keyfile: str = "") -> ssl.SSLContext:
    return client_context(
        route.verify_certificates, settings.SMTP_CA_FILE, certfile or "", keyfile or ""
    )


def _close_quietly(connection: smtplib.SMTP | None) -> None:
    if connection is None:
        return
    with contextlib.suppress(OSError):
        connection.close()


# The error raised here keeps this frame in its traceback: Django's error pages and error
# trackers must not show the password held in its locals.
@sensitive_variables("secret", "password")
def open_connection(
    route: SmtpRoute,
    *,
    password: str | None = None,
    context: ssl.SSLContext | None = None,
    timings: dict[str, float] | None = None,
) -> smtplib.SMTP:
    """Return a connection to ``route``, ready for MAIL FROM; raise ``SmtpError`` otherwise.

    ``password`` overrides the route's stored secret (the probe tests unsaved form values);
    ``timings`` receives the seconds each step took.
    """
    if context is None and route.security != "NONE":
        context = context_for(route)
    step, connection, secret = CONNECT, None, ""
    started = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal started
        if timings is None:
            return  # the send path does not ask; only the probe reports step times
        now = time.perf_counter()
        timings[name] = round(now - started, 4)
        started = now

    try:
        if route.use_ssl:
            step = TLS  # the handshake happens inside the constructor
            connection = smtplib.SMTP_SSL(
                route.host,
                route.port,
                local_hostname=DNS_NAME.get_fqdn(),
                timeout=route.timeout,
                context=context,
            )
            lap(CONNECT)
        else:
            connection = smtplib.SMTP(
                route.host, route.port, local_hostname=DNS_NAME.get_fqdn(), timeout=route.timeout
            )
            lap(CONNECT)
            if route.use_tls:
                step = TLS
                connection.starttls(context=context)
                lap(TLS)
        if route.username:
            step = AUTH
            secret = route.password() if password is None else password
            if secret:
                login(connection, route.username, secret)
                # For the errors of the mail transaction on this connection (send_transaction).
                connection.scrub_server_text = scrubber(secret, route.username)
            lap(AUTH)
        return connection
    except BaseException as exc:
        _close_quietly(connection)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        if (
            step == TLS
            and route.use_ssl
            and isinstance(exc, (ConnectionRefusedError, OSError))
            and not isinstance(exc, ssl.SSLError)
        ):
            step = CONNECT  # refused or unresolvable before any TLS byte was sent
        error = classify_on(route, exc, step=step)
        raise error.scrub(scrubber(secret, route.username)) from None


# Final AUTH answers that judge the credentials, not the mechanism: trying the next
# mechanism would only repeat a failed login, and providers lock accounts that fail often.
CREDENTIALS_REFUSED = frozenset({454, 530, 534, 535})


@sensitive_variables("password")
def login(connection: smtplib.SMTP, username: str, password: str) -> None:
    """``smtplib.SMTP.login``, but one failed login per wrong password, not one per
    mechanism: smtplib tries PLAIN and then LOGIN with the same refused credentials."""
    connection.ehlo_or_helo_if_needed()
    if not connection.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
    advertised = connection.esmtp_features["auth"].split()
    mechanisms = [m for m in ("CRAM-MD5", "PLAIN", "LOGIN") if m in advertised]
    if not mechanisms:
        raise smtplib.SMTPException("No suitable authentication method found.")
    connection.user, connection.password = username, password
    failure: smtplib.SMTPAuthenticationError | None = None
    for mechanism in mechanisms:
        method = getattr(connection, "auth_" + mechanism.lower().replace("-", "_"))
        try:
            code, _ = connection.auth(mechanism, method, initial_response_ok=True)
        except smtplib.SMTPAuthenticationError as exc:
            failure = exc
            if exc.smtp_code in CREDENTIALS_REFUSED:
                break
            continue  # a mechanism advertised but not really supported: try the next
        if code in (235, 503):
            connection.password = None  # smtplib keeps it for the life of the connection
            return
    connection.password = None
    raise failure


_LEADING_DOT = re.compile(rb"(?m)^\.")


def send_transaction(
    connection: smtplib.SMTP,
    route: SmtpRoute,
    from_addr: str,
    recipients: list[str],
    payload: bytes,
) -> dict[str, tuple[int, bytes]]:
    """MAIL FROM, RCPT TO, DATA on an open connection; return the refused recipients
    in ``sendmail``'s shape (address -> (code, server text)).

    The same commands and options as ``smtplib.SMTP.sendmail`` (so the same work as
    Django's backend), with the step tracked. ``payload`` has CRLF line ends.
    """
    step = SENDER
    try:
        connection.ehlo_or_helo_if_needed()
        options = [f"size={len(payload)}"] if connection.has_extn("size") else []
        code, reply = connection.mail(from_addr, options)
        if code != 250:
            _abandon(connection, code)
            raise smtplib.SMTPSenderRefused(code, reply, from_addr)
        step = RECIPIENT
        refused: dict[str, tuple[int, bytes]] = {}
        for recipient in recipients:
            code, reply = connection.rcpt(recipient)
            if code not in (250, 251):
                refused[recipient] = (code, reply)
            if code == 421:
                connection.close()
                raise smtplib.SMTPRecipientsRefused(refused)
        if len(refused) == len(recipients):
            _abandon(connection, 0)
            raise smtplib.SMTPRecipientsRefused(refused)
        step = DATA
        code, reply = connection.docmd("data")
        if code != 354:
            _abandon(connection, code)
            raise smtplib.SMTPDataError(code, reply)
        body = _LEADING_DOT.sub(b"..", payload)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        connection.send(body + b".\r\n")
    except smtplib.SMTPException as exc:
        # Includes a line lost while the message was still going out: without the final
        # dot no server takes it, so another route may.
        raise _classified(connection, exc, step, route, from_addr) from None
    # From here on the server has the whole message; only its answer is missing. Whatever
    # interrupts the wait (a lost line, a garbled answer, a task's time limit) leaves the
    # outcome unknown: it may have been delivered, so it must never be offered again.
    try:
        code, reply = connection.getreply()
    except Exception as exc:
        _close_quietly(connection)
        raise SmtpOutcomeUnknown(
            f"{route.address} received the whole message but no answer came back "
            f"({exc.__class__.__name__}). It may have been delivered, so it is neither "
            "retried nor sent through another route; check the recipient's inbox.",
            route=route.name,
            address=route.address,
        ) from None
    if code != 250:
        _abandon(connection, code)
        refusal = smtplib.SMTPDataError(code, reply)
        raise _classified(connection, refusal, DATA, route, from_addr) from None
    return refused


def _abandon(connection: smtplib.SMTP, code: int) -> None:
    """End a refused transaction the way smtplib does: 421 means the server is closing."""
    if code == 421:
        connection.close()
        return
    with contextlib.suppress(smtplib.SMTPServerDisconnected):
        connection.rset()


def _classified(
    connection: smtplib.SMTP, exc: BaseException, step: str, route: SmtpRoute, from_addr: str
) -> SmtpError:
    error = classify_on(route, exc, step=step, sender=from_addr)
    scrub = getattr(connection, "scrub_server_text", None)
    return error.scrub(scrub) if scrub is not None else error
