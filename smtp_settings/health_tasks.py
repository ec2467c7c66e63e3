"""The periodic email health check (Celery beat: ``run_email_health_check``).

Every ``EMAIL_HEALTH_CHECK_INTERVAL`` seconds: republish the config snapshot from the
database (Redis heals itself if a publish was lost), probe every configured route (no mail
is sent: the probe stops after RCPT TO), record the results and the delivery-log counts in
``EmailHealthRecord`` for the health endpoint, stamp the admin row's last test without
bumping its version (a test result is not a config change, and a bump would make an
admin's open page stale), and tell the admins by mail when the active route starts or stops
failing: one mail per change of state, through a route that works.

It must never send an alert per run while a route stays down, never stamp a test result on
a config version it did not probe, and never store a secret.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from smtp_settings import alerts
from smtp_settings.delivery_stats import read_delivery_stats
from smtp_settings.health import (
    EmailHealthMonitor,
    check_interval,
    recent_health,
    route_fingerprint,
    safe_result,
)
from smtp_settings.models import AdminConfig, EmailHealthRecord, mask_username
from smtp_settings.probe import ProbeResult, probe
from smtp_settings.resolver import get_resolver, routes_from_snapshot
from smtp_settings.routes import ADMIN, SmtpRoute
from smtp_settings.snapshot import publish_from_database

logger = logging.getLogger(__name__)

UP = "up"


def recorded_probe(route: SmtpRoute, config_version: int, result: ProbeResult) -> dict[str, Any]:
    """What is stored for one route: its fingerprint and the showable part of the result."""
    data = safe_result(result.as_dict(), route.username)
    data["fingerprint"] = route_fingerprint(route, config_version)
    data["server"] = route.address
    return data


def record_admin_test(config_version: int, result: dict[str, Any]) -> bool:
    """Stamp the admin row's last test, only if it is still the version that was probed
    (``record_test_result`` neither bumps the version nor republishes)."""
    updated = AdminConfig.objects.filter(pk=1).record_test_result(
        result, timezone.now(), version=config_version
    )
    return bool(updated)


def run_health_check() -> dict[str, Any]:
    """Probe, record, alert; returns the resulting health as a dict (see module docstring)."""
    try:
        publish_from_database()
    except DatabaseError as exc:
        logger.error("email health check: database unreachable (%s)", exc.__class__.__name__)
        return {"status": "error", "reason": "database unreachable"}
    snapshot = get_resolver().snapshot  # routes and version from one snapshot
    routes = routes_from_snapshot(snapshot)
    version = int(snapshot.get("version", 0) or 0)
    results = {route.name: probe(route) for route in routes}
    probes = {route.name: recorded_probe(route, version, results[route.name]) for route in routes}
    delivery = read_delivery_stats()
    if ADMIN in results:
        # The probe's own dict (it holds neither password nor username), as the admin
        # page shows the result of its "Test connection" button.
        record_admin_test(version, {**results[ADMIN].as_dict(), "source": "health check"})
    if routes:
        notify_on_change(routes, results)
    # Written last: a new checked_at means the whole check, alert included, is done.
    EmailHealthRecord.objects.update_or_create(
        pk=1, defaults={"probes": probes, "delivery": delivery, "checked_at": timezone.now()}
    )
    recent_health.clear()  # this process serves the new results at once
    for route in routes:
        logger.info("email health: %s", results[route.name].summary())
    return EmailHealthMonitor().check().as_dict()


# -- alerts: one per change of state -----------------------------------------------------------
def alert_state(routes: tuple[SmtpRoute, ...], results: dict[str, ProbeResult]) -> str:
    """``up`` while the active route works, else ``down:<route>|<server>``."""
    active = routes[0]
    if results[active.name].ok:
        return UP
    return f"down:{active.name}|{active.address}"


def notify_on_change(routes: tuple[SmtpRoute, ...], results: dict[str, ProbeResult]) -> None:
    """Send one alert when the state changed since the last one the admins were told about.

    The new state is claimed with a conditional update before the mail goes out, so two
    checks running at once send it once; if the mail cannot go out the claim is undone and
    the next check tries again.
    """
    new = alert_state(routes, results)
    record, _ = EmailHealthRecord.objects.get_or_create(pk=1)
    old = record.alert_state
    if new == old:
        return
    if not old and new == UP:  # first check ever: nothing to recover from
        _claim(old, new)
        return
    if not _claim(old, new):
        return  # another check claimed this change and sends the mail
    subject, body, via = _alert_message(routes, results, new)
    if not alerts.send_admin_alert(subject, body, routes=via):
        _claim(new, old)


def _claim(old: str, new: str) -> bool:
    return bool(
        EmailHealthRecord.objects.filter(pk=1, alert_state=old).update(
            alert_state=new, alert_changed_at=timezone.now()
        )
    )


def _alert_message(
    routes: tuple[SmtpRoute, ...], results: dict[str, ProbeResult], state: str
) -> tuple[str, str, tuple[SmtpRoute, ...]]:
    """Subject, body and the routes to send it through (one that works, if any does)."""
    active = routes[0]
    result = results[active.name]
    where = f"the {active.name} route ({active.security} {active.address}, user "
    where += f"{mask_username(active.username) or '-'})"
    if state == UP:
        body = f"Email delivery recovered: {where} works again (probed {_when(result)})."
        return f"Email delivery recovered: {active.name} route", body, (active,)
    working = tuple(r for r in routes[1:] if results[r.name].ok)
    fallback = (
        f"Mail now goes through the {working[0].name} route ({working[0].address})."
        if working
        else "No other route works: messages are deferred and retried until one does."
    )
    body = (
        f"Email delivery problem: {where} failed its health probe {_when(result)} at the "
        f"{result.step} step"
        + (f" (SMTP {result.smtp_code})" if result.smtp_code else "")
        + f".\n\n{safe_result(result.as_dict(), active.username).get('hint', '')}\n\n"
        + f"{fallback}\n\nYou will get one more mail when it recovers."
    )
    return f"Email delivery failing: {active.name} route", body, working[:1] or routes


def _when(result: ProbeResult) -> str:
    return f"at {result.checked_at:%Y-%m-%d %H:%M:%S %Z}"


@shared_task(
    name="smtp_settings.health_tasks.run_email_health_check",
    ignore_result=True,
    soft_time_limit=120,
    time_limit=150,
)
def run_email_health_check() -> dict[str, Any]:
    """Beat entry point (CELERY_BEAT_SCHEDULE["email-health-check"])."""
    return run_health_check()


def check_soon() -> None:
    """Queue a health check for when the current transaction commits.

    After a settings change the admin route is "untested" until it is probed, and with no
    fallback the endpoint answers 503 until then: waiting for beat could mean minutes of a
    false alarm. Nothing is queued when tasks run eagerly (no broker): the probe would then
    run inside the admin's save request.
    """
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return
    transaction.on_commit(_queue_check)


def _queue_check() -> None:
    try:
        run_email_health_check.apply_async(expires=check_interval())
    except Exception as exc:  # a broker outage must not fail the admin's save
        logger.warning("email health check not queued after a change: %s", exc.__class__.__name__)
