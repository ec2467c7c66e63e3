"""Open an authenticated SMTP connection to one route, step by step, with timing.

Shared by the send path (``backends``) and the probe: connect, STARTTLS or implicit TLS,
AUTH. Every socket operation is bounded by the route's timeout. A failure closes whatever
was half-opened (a half-open plain connection must never be reused; see CVE-2026-7666) and
raises an ``SmtpError`` that names the step. The password is revealed here, used for AUTH,
and not kept.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import time
from functools import lru_cache

from django.conf import settings
from django.core.mail.utils import DNS_NAME

from smtp_settings.errors import AUTH, CONNECT, TLS, classify
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
    context = context or context_for(route)
    timings = timings if timings is not None else {}
    step, connection = CONNECT, None
    started = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal started
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
                connection.login(route.username, secret)
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
        raise classify(
            exc,
            step=step,
            route=route.name,
            host=route.host,
            port=route.port,
            security=route.security,
            timeout=route.timeout,
        ) from None
