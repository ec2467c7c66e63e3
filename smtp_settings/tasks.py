"""Celery tasks behind the admin's "Test connection" and "Send test email" buttons.

Both run in a worker, so the admin page never waits on the network, and both end well
inside the broker's visibility timeout (``SOFT_TIME_LIMIT`` / ``TIME_LIMIT`` against
``CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]`` = 3600 s): a slow server cannot
make the broker hand the same test to a second worker. Every outcome is written to the
database (``SmtpTestRun``, and for saved settings AdminConfig's last test), not only to a
result backend.

What travels through the broker is JSON: the route values, and the password only as a
Fernet token the web process encrypted, or as "use the stored one". Never plaintext, and
the token only in the message body: the headers Celery logs have it masked
(``secret_args``). Errors come from the connection code with the password already masked
in any server text (``errors.scrubber``), so nothing here reveals a secret to clean up. The
worker uses the stored password only for the host, port and username it was saved with,
over a connection at least as protected, and checks that again here, at the moment of use.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.core.mail import get_connection
from django.utils import timezone

from notifications.test_email import build_test_email
from smtp_settings.backends import DynamicSMTPBackend
from smtp_settings.errors import AUTH, SmtpError
from smtp_settings.models import AdminConfig, SmtpTestRun
from smtp_settings.probe import probe, route_from_values
from smtp_settings.resolver import current_routes, get_resolver
from smtp_settings.routes import ADMIN, SecretRef, SmtpRoute
from smtp_settings.secret_args import SecretArgsTask

# Seconds. A probe is a handful of round trips each bounded by the route's timeout (at
# most 60 s in the form); the soft limit records "timed out" before the hard one kills.
SOFT_TIME_LIMIT = 60
TIME_LIMIT = 90

_STRENGTH = {"NONE": 0, "TLS": 1, "SSL": 1}


class StoredPasswordRefused(SmtpError):
    """The stored password may not go where these values point."""

    step = AUTH
    try_next_route = False


def same_host(a: str, b: str) -> bool:
    return a.strip().rstrip(".").lower() == b.strip().rstrip(".").lower()


def stored_password_refusal(row: AdminConfig | None, values: Mapping[str, Any]) -> str:
    """Why the stored password may not be used for ``values`` ("" when it may).

    It may go only to the server, port and username it was saved with, and not over a
    weaker connection (no TLS, or certificates unchecked) than the one it was saved for.
    """
    if row is None or not row.has_password:
        return "No password is stored: type the password to test these settings."
    changed = [
        label
        for label, differs in (
            ("server", not same_host(str(values.get("smtp_server", "")), row.smtp_server)),
            ("port", int(values.get("smtp_port") or 0) != row.smtp_port),
            ("username", (values.get("smtp_username") or "") != row.smtp_username),
        )
        if differs
    ]
    if changed:
        return (
            f"You changed the {' and '.join(changed)}, so the stored password will not be "
            "sent there: type the password to test these settings."
        )
    weaker_security = _STRENGTH.get(str(values.get("smtp_security")), 0) < _STRENGTH.get(
        row.smtp_security, 0
    )
    weaker_checks = row.smtp_verify_certificates and not values.get("smtp_verify_certificates")
    if weaker_security or weaker_checks:
        return (
            "These settings protect the connection less than the saved ones (no TLS, or no "
            "certificate check), so the stored password will not be sent over it: type the "
            "password to test them."
        )
    return ""


def route_for_test(
    values: Mapping[str, Any], *, password_token: str = "", use_stored_password: bool = False
) -> SmtpRoute:
    """The route to probe; raises ``StoredPasswordRefused`` instead of misusing a secret."""
    if password_token:
        secret = SecretRef(token=password_token)
    elif use_stored_password:
        row = AdminConfig.objects.filter(pk=1).first()
        refusal = stored_password_refusal(row, values)
        if refusal:
            raise StoredPasswordRefused(refusal, route=ADMIN)
        secret = SecretRef(token=row.smtp_password.token)
    else:
        secret = SecretRef()
    return route_from_values(values, secret=secret)


@shared_task(
    name="smtp_settings.tasks.test_smtp_connection",
    base=SecretArgsTask,
    secret_args=("password_token",),
    soft_time_limit=SOFT_TIME_LIMIT,
    time_limit=TIME_LIMIT,
    ignore_result=True,
)
def test_smtp_connection(
    run_id: str,
    values: dict[str, Any],
    password_token: str,
    use_stored_password: bool,
    recipient: str,
) -> dict[str, Any]:
    """Probe ``values`` (a route not necessarily saved) and store the outcome in the run.

    ``password_token`` is a Fernet token from the web process, or "" to use the stored
    password (``use_stored_password``) or none at all."""
    address = f"{values.get('smtp_server', '')}:{values.get('smtp_port', '')}"
    try:
        route = route_for_test(
            values, password_token=password_token, use_stored_password=use_stored_password
        )
        result = probe(route, recipient=recipient).as_dict()
    except SmtpError as exc:
        result = error_result("connection", exc, server=address)
    except SoftTimeLimitExceeded:
        result = time_limit_result("connection", server=address)
    SmtpTestRun.finish(run_id, result)
    return result


@shared_task(
    name="smtp_settings.tasks.send_test_email",
    soft_time_limit=SOFT_TIME_LIMIT,
    time_limit=TIME_LIMIT,
    ignore_result=True,
)
def send_test_email(run_id: str, recipient: str) -> dict[str, Any]:
    """Send the test email through the routes as app mail goes, and store the outcome."""
    run = SmtpTestRun.objects.select_related("requested_by").filter(pk=run_id).first()
    requested_by = run.requested_by.get_username() if run and run.requested_by else ""
    try:
        result = deliver_test_email(
            recipient,
            requested_at=run.created_at if run else None,
            requested_by=requested_by,
        )
    except SoftTimeLimitExceeded:
        result = time_limit_result("email", server="")
    # Only a test that was meant for the admin route says something about the admin's
    # settings; one that went to the environment route (admin settings off) does not.
    SmtpTestRun.finish(run_id, result, record_on_config=result.get("intended_route") == ADMIN)
    return result


def deliver_test_email(
    recipient: str, *, requested_at: Any = None, requested_by: str = ""
) -> dict[str, Any]:
    """Send the test email with ``django.core.mail`` and the configured backend; return the
    outcome as stored JSON. Raises nothing an SMTP server can cause."""
    get_resolver().refresh(force=True)  # the settings saved a moment ago, not 1 s old ones
    routes = current_routes()
    intended = routes[0] if routes else None
    message = build_test_email(
        recipient, route=intended, requested_at=requested_at, requested_by=requested_by
    )
    result: dict[str, Any] = {
        "kind": "email",
        "ok": False,
        "delivered": False,
        "recipient": recipient,
        "intended_route": intended.name if intended else "",
        "route": "",
        "server": intended.address if intended else "",
        "message_id": message.extra_headers["Message-ID"],
        "step": "",
        "hint": "",
        "checked_at": timezone.now().isoformat(),
    }
    started = time.perf_counter()
    try:
        # As app code would: the configured EMAIL_BACKEND (the dynamic backend), its routes,
        # failover and sender; the connection is opened here only to learn which route
        # accepted the message (None: it was deferred).
        with get_connection(fail_silently=False) as connection:
            sent = connection.send_messages([message])
            used = getattr(connection, "accepted_by", None)
            dynamic = isinstance(connection, DynamicSMTPBackend)
    except SmtpError as exc:
        result.update(error_fields(exc))
        result["server"] = exc.address or result["server"]
    else:
        _describe_delivery(result, sent=bool(sent), used=used, dynamic=dynamic)
    result["elapsed"] = round(time.perf_counter() - started, 4)
    result["timings"] = {"send": result["elapsed"]}
    return result


def _describe_delivery(
    result: dict[str, Any], *, sent: bool, used: SmtpRoute | None, dynamic: bool
) -> None:
    intended = result["intended_route"]
    if dynamic and sent and used is None:
        # The backend handed it to the deferred queue: no route took it now.
        result["hint"] = (
            "No route accepted the test email now; it was queued and will be retried. "
            "Use Test connection to see why the server refused it."
        )
        return
    result["delivered"] = sent
    if used is not None:
        result["route"], result["server"] = used.name, used.address
    if not sent:
        result["hint"] = "The backend did not send the message (it had no recipient)."
    elif used is not None and used.name != intended:
        result["hint"] = (
            f"Delivered, but through the {used.name} route ({used.address}): the {intended} "
            "route did not take it. Use Test connection to see why."
        )
    else:
        result["ok"] = True


def error_fields(exc: SmtpError) -> dict[str, Any]:
    """What a failure adds to a result, with the same keys as a probe's."""
    return {
        "ok": False,
        "route": exc.route,
        "step": exc.step,
        "error": type(exc).__name__,
        "smtp_code": exc.smtp_code,
        "smtp_text": exc.smtp_text,
        "hint": exc.hint,
    }


def error_result(kind: str, exc: SmtpError, *, server: str) -> dict[str, Any]:
    """A failure before anything was probed, as stored JSON."""
    return {
        "kind": kind,
        **error_fields(exc),
        "server": exc.address or server,
        "timings": {},
        "checked_at": timezone.now().isoformat(),
    }


def time_limit_result(kind: str, *, server: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "ok": False,
        "route": "",
        "server": server,
        "step": "",
        "error": "SmtpTimeout",
        "smtp_code": None,
        "smtp_text": "",
        "hint": (
            f"The test did not finish within {SOFT_TIME_LIMIT} s: the server answers too "
            "slowly. Lower the timeout, or check the server."
        ),
        "timings": {},
        "checked_at": timezone.now().isoformat(),
    }
