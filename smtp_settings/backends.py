"""DynamicSMTPBackend: Django's SMTP backend, sending over the routes an admin configured.

It keeps the stock backend's contract (keyword overrides win, ``fail_silently`` comes from
the caller, one connection is reused across ``send_messages``, and only the call that opened
a connection closes it) and adds, per message:

- the routes from ``resolver`` (admin, environment, backup), read from memory;
- failover to the next route only while the message is certainly not accepted: connect,
  TLS, AUTH, MAIL FROM, a temporary RCPT refusal, or a 4xx at DATA. A message the server
  accepted is never offered to another server; a permanent recipient refusal neither;
- one structured log line per message (route, host, message-id, outcome, SMTP code);
- a hand-off to ``notifications`` that records the outcome and defers what no route took.

The password is decrypted in ``connection.open_connection`` and nowhere else.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from email.utils import make_msgid
from typing import Any

from django.conf import settings
from django.core.mail.backends.smtp import EmailBackend
from django.core.mail.message import EmailMessage, sanitize_address
from django.core.mail.utils import DNS_NAME

from smtp_settings import errors
from smtp_settings.connection import context_for, open_connection
from smtp_settings.resolver import current_routes
from smtp_settings.routes import OVERRIDE, SecretRef, SmtpRoute

logger = logging.getLogger("smtp_settings.send")


def ensure_message_id(message: EmailMessage) -> str:
    """Fix the Message-ID before the first attempt, so that every route, retry and log line
    sees the same one (Django would otherwise make a new one per ``message()`` call)."""
    for name, value in message.extra_headers.items():
        if name.lower() == "message-id":
            return value
    message_id = make_msgid(domain=DNS_NAME)
    message.extra_headers["Message-ID"] = message_id
    return message_id


class DynamicSMTPBackend(EmailBackend):
    """See the module docstring."""

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool | None = None,
        fail_silently: bool = False,
        use_ssl: bool | None = None,
        timeout: float | None = None,
        ssl_keyfile: str | None = None,
        ssl_certfile: str | None = None,
        routes: tuple[SmtpRoute, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            host=host,
            port=port,
            username=username,
            password=password,
            use_tls=use_tls,
            fail_silently=fail_silently,
            use_ssl=use_ssl,
            timeout=timeout,
            ssl_keyfile=ssl_keyfile,
            ssl_certfile=ssl_certfile,
            **kwargs,
        )
        # The stock backend keeps a plaintext password on the instance; this one keeps
        # explicit overrides only, and reveals stored secrets at connect time.
        self.password = None
        self._fixed_routes = routes
        self._overrides = {
            "host": host,
            "port": port,
            "username": username,
            "password": password,
            "use_tls": use_tls,
            "use_ssl": use_ssl,
            "timeout": timeout,
        }
        self.route: SmtpRoute | None = None
        self._routes: tuple[SmtpRoute, ...] = ()
        self._position = 0

    # -- routes ------------------------------------------------------------------------------
    def current_routes(self) -> tuple[SmtpRoute, ...]:
        """The routes for this backend: explicit ones, keyword overrides, or the resolver's."""
        if self._fixed_routes is not None:
            return self._fixed_routes
        given = {k: v for k, v in self._overrides.items() if v is not None}
        if given.get("host"):
            return (self._override_route(),)
        routes = current_routes()
        if given:
            routes = tuple(self._apply_overrides(route, given) for route in routes)
        return routes

    def _override_route(self) -> SmtpRoute:
        security = "SSL" if self.use_ssl else "TLS" if self.use_tls else "NONE"
        return SmtpRoute(
            name=OVERRIDE,
            host=self.host,
            port=int(self.port),
            security=security,
            username=self.username or "",
            secret=SecretRef(plaintext=self._overrides["password"] or ""),
            timeout=float(self.timeout or settings.SMTP_TIMEOUT),
        )

    @staticmethod
    def _apply_overrides(route: SmtpRoute, given: dict[str, Any]) -> SmtpRoute:
        changes: dict[str, Any] = {}
        if "port" in given:
            changes["port"] = int(given["port"])
        if "username" in given:
            changes["username"] = given["username"]
        if "password" in given:
            changes["secret"] = SecretRef(plaintext=given["password"])
        if given.get("use_ssl"):
            changes["security"] = "SSL"
        elif given.get("use_tls"):
            changes["security"] = "TLS"
        if "timeout" in given:
            changes["timeout"] = float(given["timeout"])
        return replace(route, **changes)

    # -- connection --------------------------------------------------------------------------
    def open(self) -> bool | None:
        """Connect to the first route that takes a connection. Same return values as the
        stock backend: True if opened here, False if already open, None if failed silently."""
        if self.connection:
            return False
        self._routes = self.current_routes()
        if not self._routes:
            raise errors.SmtpNotConfigured(
                "No SMTP server is configured: enable the SMTP settings in admin or set "
                "SMTP_SERVER."
            )
        failure: errors.SmtpError | None = None
        for position in range(len(self._routes)):
            try:
                self._open_route(position)
                return True
            except errors.SmtpError as exc:
                failure = exc
        if self.fail_silently:
            return None
        raise failure

    def _open_route(self, position: int) -> None:
        route = self._routes[position]
        self.close()
        self.connection = open_connection(
            route, context=context_for(route, self.ssl_certfile, self.ssl_keyfile)
        )
        self.route, self._position = route, position

    def close(self) -> None:
        super().close()
        self.route = None

    # -- sending -----------------------------------------------------------------------------
    def send_messages(self, email_messages: list[EmailMessage]) -> int:
        if not email_messages:
            return 0
        with self._lock:
            opened_here = not self.connection
            if opened_here:
                self._routes = self.current_routes()
                self._position = 0
            try:
                return sum(1 for message in email_messages if self._deliver(message))
            finally:
                if opened_here:
                    self.close()

    def _deliver(self, message: EmailMessage) -> bool:
        """Send one message over the routes; True if a server (or the deferred queue) took it."""
        if not message.recipients():
            return False
        if not self._routes:
            if self.fail_silently:
                return False
            raise errors.SmtpNotConfigured(
                "No SMTP server is configured: enable the SMTP settings in admin or set "
                "SMTP_SERVER."
            )
        message_id = ensure_message_id(message)
        original_from = message.from_email
        failures: list[errors.SmtpError] = []
        try:
            for position in range(self._position, len(self._routes)):
                try:
                    self._send_on(position, message, original_from)
                except errors.SmtpError as exc:
                    failures.append(exc)
                    self._log(message_id, self._routes[position], "failed", exc.smtp_code)
                    self.close()
                    if not exc.try_next_route:
                        break
                    continue
                self._position = position
                return True
        finally:
            message.from_email = original_from
        return self._not_delivered(message, message_id, failures)

    def _send_on(self, position: int, message: EmailMessage, original_from: str | None) -> None:
        route = self._routes[position]
        fresh = False
        if self.connection is None or self.route is not route:
            self._open_route(position)
            fresh = True
        try:
            self._sendmail(route, message, original_from)
        except errors.SmtpError as exc:
            # A reused connection the server dropped while idle: one fresh try on the same
            # route before giving up on it. Nothing was accepted on a dead line.
            if fresh or exc.step not in (errors.SENDER, errors.CONNECT) or exc.smtp_code:
                raise
            self._open_route(position)
            self._sendmail(route, message, original_from)

    def _sendmail(self, route: SmtpRoute, message: EmailMessage, original_from: str | None) -> None:
        if route.sender and original_from in (None, "", settings.DEFAULT_FROM_EMAIL):
            message.from_email = route.sender
        else:
            message.from_email = original_from
        encoding = message.encoding or settings.DEFAULT_CHARSET
        from_email = sanitize_address(message.from_email, encoding)
        recipients = [sanitize_address(addr, encoding) for addr in message.recipients()]
        payload = message.message().as_bytes(linesep="\r\n")
        try:
            refused = self.connection.sendmail(from_email, recipients, payload)
        except Exception as exc:
            raise errors.classify(
                exc,
                step=_step_of(exc),
                route=route.name,
                host=route.host,
                port=route.port,
                security=route.security,
                timeout=route.timeout,
                sender=from_email,
            ) from None
        self._log(message.extra_headers["Message-ID"], route, "sent", 250, refused)
        from notifications.recorder import record_sent

        record_sent(message, route, refused)

    def _not_delivered(
        self, message: EmailMessage, message_id: str, failures: list[errors.SmtpError]
    ) -> bool:
        from notifications.recorder import defer, record_failed

        last = failures[-1] if failures else None
        if last is not None and not last.permanent and defer(message, failures):
            self._log(message_id, None, "deferred", last.smtp_code)
            return True
        record_failed(message, failures)
        if self.fail_silently or last is None:
            return False
        raise last

    @staticmethod
    def _log(
        message_id: str,
        route: SmtpRoute | None,
        outcome: str,
        code: int | None,
        refused: dict | None = None,
    ) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        logger.info(
            "send route=%s host=%s message_id=%s outcome=%s code=%s%s",
            route.name if route else "-",
            route.address if route else "-",
            message_id,
            outcome,
            code if code is not None else "-",
            f" refused={len(refused)}" if refused else "",
        )


def _step_of(exc: BaseException) -> str:
    import smtplib

    if isinstance(exc, smtplib.SMTPSenderRefused):
        return errors.SENDER
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return errors.RECIPIENT
    if isinstance(exc, smtplib.SMTPDataError):
        return errors.DATA
    return errors.SENDER  # lost line or timeout during the transaction: not accepted
