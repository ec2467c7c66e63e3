"""DynamicSMTPBackend: Django's SMTP backend, sending over the routes an admin configured.

It keeps the stock backend's contract (keyword overrides win, ``fail_silently`` comes from
the caller, one connection is reused across ``send_messages``, and only the call that opened
a connection closes it) and adds, per message:

- the routes from ``resolver`` (admin, environment, backup), read from memory;
- failover to the next route only while the message is certainly not accepted: connect,
  TLS, AUTH, MAIL FROM, a temporary RCPT refusal, or a 4xx answer to DATA. A message the
  server accepted, or may have accepted (line lost after the last byte of DATA), is never
  offered to another server; a permanent recipient refusal neither;
- one structured log line per message (route, host, message-id, outcome, SMTP code), and a
  warning per failed attempt with the admin hint; never a secret;
- a hand-off to ``notifications`` that records the outcome and defers what no route took.

It must not query the database or Redis per message, and must not decrypt a password: that
happens in ``connection.open_connection`` and nowhere else. It stays a plain
``EmailBackend`` subclass so that Django 6.1's ``MAILERS`` can name it as is.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from email.utils import make_msgid
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.mail.backends.smtp import EmailBackend
from django.core.mail.message import EmailMessage, sanitize_address
from django.core.mail.utils import DNS_NAME

from notifications import recorder
from smtp_settings import errors
from smtp_settings.connection import context_for, open_connection, send_transaction
from smtp_settings.resolver import current_routes
from smtp_settings.routes import OVERRIDE, SecretRef, SmtpRoute

logger = logging.getLogger("smtp_settings.send")

NOT_CONFIGURED = (
    "No SMTP server is configured: enable and complete the SMTP settings in admin, or set "
    "SMTP_SERVER."
)


@lru_cache(maxsize=256)
def _envelope_address(address: str, encoding: str) -> str:
    # sanitize_address parses the address with the email package (tens of microseconds);
    # the sender is nearly always one of a few strings, so it is parsed once per process.
    return sanitize_address(address, encoding)


def ensure_message_id(message: EmailMessage) -> tuple[str, bool]:
    """Fix the Message-ID before the first attempt, so that every route, the log line and
    the deferred copy see the same one (Django would make a new one per ``message()``).
    Returns (id, whether it was added here)."""
    for name, value in message.extra_headers.items():
        if name.lower() == "message-id":
            return value, False
    message_id = make_msgid(domain=DNS_NAME)
    message.extra_headers["Message-ID"] = message_id
    return message_id, True


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
        # The route that accepted the last message handed to send_messages; None when it
        # was deferred, failed or not sent (``route`` is only where the line is open).
        self.accepted_by: SmtpRoute | None = None
        self._routes: tuple[SmtpRoute, ...] = ()
        self._position = 0
        # Routes that failed to connect, start TLS or authenticate during this
        # send_messages call: the rest of the batch does not wait for them again.
        self._unusable: dict[int, errors.SmtpError] = {}

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
        """``get_connection(host=...)``: that server only, as the stock backend would use it
        (EMAIL_* settings for what the caller did not pass)."""
        password = self._overrides["password"]
        return SmtpRoute(
            name=OVERRIDE,
            host=self.host,
            port=int(self.port),
            security="SSL" if self.use_ssl else "TLS" if self.use_tls else "NONE",
            username=self.username or "",
            secret=SecretRef(
                plaintext=settings.EMAIL_HOST_PASSWORD if password is None else password
            ),
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

    def _load_routes(self) -> None:
        self._routes = self.current_routes()
        self._position = 0
        if not self._routes:
            # A configuration error, like anymail's: never silenced by fail_silently.
            raise errors.SmtpNotConfigured(NOT_CONFIGURED)

    # -- connection --------------------------------------------------------------------------
    def open(self) -> bool | None:
        """Connect to the first route that takes a connection. Same return values as the
        stock backend: True if opened here, False if already open, None if failed silently."""
        if self.connection:
            return False
        self._load_routes()
        self._unusable = {}
        failure: errors.SmtpError | None = None
        for position, route in enumerate(self._routes):
            try:
                self._open_route(position)
                return True
            except errors.SmtpError as exc:
                failure = self._unusable[position] = exc
                self._log_attempt("-", route, exc)
        if self.fail_silently:
            return None
        raise failure

    def _open_route(self, position: int) -> None:
        route = self._routes[position]
        self.close()
        context = None  # a plain route needs none (nor does Django's backend build one)
        if route.security != "NONE":
            context = context_for(route, self.ssl_certfile, self.ssl_keyfile)
        self.connection = open_connection(route, context=context)
        self.route, self._position = route, position

    def close(self) -> None:
        super().close()
        self.route = None

    def _drop_if_dead(self) -> None:
        # smtplib closes the socket itself when the line is lost or the server said 421;
        # such a connection is forgotten, not QUIT (which would only fail again).
        if self.connection is not None and self.connection.sock is None:
            self.connection = None
            self.route = None

    # -- sending -----------------------------------------------------------------------------
    def send_messages(self, email_messages: list[EmailMessage]) -> int:
        if not email_messages:
            return 0
        with self._lock:
            opened_here = self.connection is None
            if opened_here:
                self._load_routes()
            self._unusable = {}
            try:
                return sum(1 for message in email_messages if self._deliver(message))
            finally:
                if opened_here:
                    self.close()

    def _deliver(self, message: EmailMessage) -> bool:
        """Send one message over the routes; True if a server (or the deferred queue) took it."""
        self.accepted_by = None
        if not message.recipients():
            return False
        message_id, added_id = ensure_message_id(message)
        original_from = message.from_email
        failures: list[errors.SmtpError] = []
        try:
            # An open connection's route first (where the last message went), else from
            # the top: a later message may go where an earlier one could not.
            start = self._position if self.connection is not None else 0
            for position in range(start, len(self._routes)):
                route = self._routes[position]
                known = self._unusable.get(position)
                if known is not None:
                    failures.append(known)
                    continue
                try:
                    refused = self._send_on(position, message, original_from)
                except errors.SmtpError as exc:
                    failures.append(exc)
                    if exc.step in errors.ROUTE_STEPS:
                        self._unusable[position] = exc
                    self._drop_if_dead()
                    self._log_attempt(message_id, route, exc)
                    if not exc.try_next_route:
                        break
                    continue
                self._log_outcome(message_id, route, "sent", 250, len(failures) + 1, refused)
                recorder.record_sent(message, route, refused)
                self.accepted_by = route
                return True
            message.from_email = original_from
            return self._not_delivered(message, message_id, failures)
        finally:
            message.from_email = original_from
            if added_id:
                # The caller's object is left as it was: sending it again is a new message
                # with a new Message-ID, as with Django's backend.
                del message.extra_headers["Message-ID"]

    def _send_on(
        self, position: int, message: EmailMessage, original_from: str | None
    ) -> dict[str, tuple[int, bytes]]:
        route = self._routes[position]
        reused = self.connection is not None and self.route is route
        if not reused:
            self._open_route(position)
        try:
            return self._transact(route, message, original_from)
        except errors.SmtpError as exc:
            # A reused connection the server dropped or timed out while idle fails at MAIL
            # FROM with no answer (or 421): nothing was accepted, so one fresh connection to
            # the same route is tried before moving on.
            if not reused or exc.step != errors.SENDER or exc.smtp_code not in (None, 421):
                raise
            self._open_route(position)
            return self._transact(route, message, original_from)

    def _transact(
        self, route: SmtpRoute, message: EmailMessage, original_from: str | None
    ) -> dict[str, tuple[int, bytes]]:
        if route.sender and original_from in (None, "", settings.DEFAULT_FROM_EMAIL):
            message.from_email = route.sender
        else:
            message.from_email = original_from
        encoding = message.encoding or settings.DEFAULT_CHARSET
        sender = message.from_email
        from_email = (
            _envelope_address(sender, encoding)
            if type(sender) is str
            else sanitize_address(sender, encoding)  # a (name, address) pair or a lazy string
        )
        recipients = [sanitize_address(addr, encoding) for addr in message.recipients()]
        payload = message.message().as_bytes(linesep="\r\n")
        return send_transaction(self.connection, route, from_email, recipients, payload)

    def _not_delivered(
        self, message: EmailMessage, message_id: str, failures: list[errors.SmtpError]
    ) -> bool:
        last = failures[-1]
        if not last.permanent and recorder.defer(message, failures):
            self._log_outcome(message_id, None, "deferred", last.smtp_code, len(failures))
            return True
        recorder.record_failed(message, failures)
        self._log_outcome(message_id, None, "failed", last.smtp_code, len(failures))
        if self.fail_silently:
            return False
        raise last

    # -- logging -----------------------------------------------------------------------------
    @staticmethod
    def _log_outcome(
        message_id: str,
        route: SmtpRoute | None,
        outcome: str,
        code: int | None,
        attempts: int,
        refused: dict | None = None,
    ) -> None:
        level = logging.INFO if outcome == "sent" else logging.WARNING
        if not logger.isEnabledFor(level):
            return
        fields = {
            "smtp_route": route.name if route else "-",
            "smtp_host": route.address if route else "-",
            "message_id": message_id,
            "outcome": outcome,
            "smtp_code": code,
            "attempts": attempts,
            "refused": len(refused or ()),
        }
        logger.log(
            level,
            "smtp send outcome=%(outcome)s route=%(smtp_route)s host=%(smtp_host)s "
            "message_id=%(message_id)s code=%(smtp_code)s attempts=%(attempts)s "
            "refused=%(refused)s",
            fields,
            extra=fields,
        )

    @staticmethod
    def _log_attempt(message_id: str, route: SmtpRoute, exc: errors.SmtpError) -> None:
        fields = {
            "smtp_route": route.name,
            "smtp_host": route.address,
            "message_id": message_id,
            "outcome": "attempt_failed",
            "smtp_code": exc.smtp_code,
            "smtp_step": exc.step,
            "error": type(exc).__name__,
            "hint": exc.hint,
        }
        logger.warning(
            "smtp send outcome=%(outcome)s route=%(smtp_route)s host=%(smtp_host)s "
            "message_id=%(message_id)s step=%(smtp_step)s code=%(smtp_code)s "
            "error=%(error)s hint=%(hint)s",
            fields,
            extra=fields,
        )
