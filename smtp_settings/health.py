"""Email health as data: can mail go out now, through which route, and what the checks found.

``EmailHealthMonitor.check()`` combines three things, none of which opens an SMTP
connection: the routes this process would send over (the resolver's in-memory snapshot),
the probe results the periodic check recorded (``EmailHealthRecord``, read in one query
together with the admin row's last test), and the delivery-log counts that check cached.
The view, the ``smtp_status`` command, the admin panel and ``/metrics`` all render it.

Each configured route's last probe is in one of four states: ``ok`` (succeeded within two
check intervals), ``failed`` (the last probe failed), ``stale`` (the last probe is older than
two intervals: the periodic check is not running) or ``untested`` (never probed with the
route's current settings: a changed server, account or config version resets it).

``status``, the first rule that matches:

- ``disabled``: no route is configured and the admin route is switched off on purpose
  (``SMTP_ADMIN_CONFIG_ENABLED=false`` or "use these settings" unticked), nothing else set;
- ``error``: no route is configured at all; or the database is unreachable (the records
  cannot be read); or the active route's last probe failed or is stale and no fallback's
  probe succeeded; or deferred mail is piling up (the oldest deferred message is older than
  ``EMAIL_HEALTH_DEFERRED_MAX_AGE``, default one hour);
- ``untested``: the active route has not been probed with its current settings;
- ``degraded``: the active route's last probe failed or is stale but a fallback's succeeded
  (mail flows through it); or Redis is unreachable (every process reads the database);
- ``using_default``: the active route works and it is not the admin route (the admin
  settings are off or incomplete; the ``SMTP_*`` environment route is serving);
- ``healthy``: the admin route is active and works.

``deliverable`` answers the one question the HTTP status code answers (200 or 503): did
the active route's last probe, or a fallback's, succeed within two check intervals?

Nothing here may return a secret: no password or token, the username only masked, and
server texts are stripped of the username before they are recorded.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, models
from django.db.models import Subquery
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from smtp_settings.models import AdminConfig, EmailHealthRecord, mask_username
from smtp_settings.resolver import get_resolver, routes_from_snapshot
from smtp_settings.routes import ADMIN, BACKUP, SmtpRoute

logger = logging.getLogger(__name__)

HEALTHY, DEGRADED, ERROR, UNTESTED, USING_DEFAULT, DISABLED = (
    "healthy",
    "degraded",
    "error",
    "untested",
    "using_default",
    "disabled",
)
# Statuses in which nothing needs attention (``smtp_status`` exits 0).
GOOD_STATUSES = (HEALTHY, USING_DEFAULT)

OK, FAILED, STALE, NEVER = "ok", "failed", "stale", "untested"

# Keys of a probe result (or of the admin's last test result) that may be shown; anything
# else a result carries is dropped rather than risk showing it.
RESULT_KEYS = ("ok", "step", "smtp_code", "smtp_text", "hint", "error", "timings", "checked_at")


# -- small helpers shared with the periodic check ------------------------------------------------
def check_interval() -> int:
    return int(settings.EMAIL_HEALTH_CHECK_INTERVAL)


def freshness_window() -> timedelta:
    """A probe counts as current for two check intervals (one missed run is tolerated)."""
    return timedelta(seconds=2 * check_interval())


def route_fingerprint(route: SmtpRoute, config_version: int) -> str:
    """What a probe was a probe of: a result is valid only for the same fingerprint.

    The admin route includes the config version, so a saved change (a new password keeps
    host and user) needs a new probe; environment routes change only with a restart.
    """
    parts = [route.name, route.address, route.security, mask_username(route.username)]
    if route.name == ADMIN:
        parts.append(f"v{config_version}")
    return "|".join(parts)


def redact(value: Any, username: str) -> Any:
    """``value`` with every occurrence of ``username`` masked (servers may echo it)."""
    if not username:
        return value
    if isinstance(value, str):
        return value.replace(username, mask_username(username))
    if isinstance(value, dict):
        return {key: redact(item, username) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item, username) for item in value]
    return value


def safe_result(result: dict[str, Any] | None, username: str = "") -> dict[str, Any]:
    """The showable part of a probe or test result."""
    if not isinstance(result, dict):
        return {}
    kept = {key: result[key] for key in RESULT_KEYS if key in result}
    return redact(kept, username)


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return parse_datetime(value)
    return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# -- what check() returns -----------------------------------------------------------------------
@dataclass(frozen=True)
class RouteHealth:
    """One configured route and its last recorded probe."""

    route: str
    server: str
    security: str
    username: str  # masked
    state: str  # ok / failed / stale / untested
    checked_at: str | None = None
    ok: bool | None = None
    step: str = ""
    smtp_code: int | None = None
    hint: str = ""
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EmailHealth:
    status: str
    deliverable: bool
    reason: str
    smtp_source: str | None
    smtp_server: str | None
    username: str
    last_test: str | None
    last_test_result: dict[str, Any]
    routes: list[RouteHealth]
    fallback_available: bool
    backup_available: bool
    last_email_sent: str | None
    sends_last_hour: dict[str, int] | None
    sends_last_hour_by_route: dict[str, dict[str, int]] | None
    deferred: dict[str, Any] | None
    delivery_stats_as_of: str | None
    config_version: int
    database_available: bool
    redis_available: bool
    last_check_at: str | None
    check_interval_seconds: int
    checked_at: str

    @property
    def good(self) -> bool:
        return self.status in GOOD_STATUSES

    @property
    def http_status(self) -> int:
        return 200 if self.deliverable else 503

    def as_dict(self) -> dict[str, Any]:
        # Shallow on purpose (dataclasses.asdict deep-copies): the result is only serialized.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["routes"] = [dict(vars(route)) for route in self.routes]
        return data


# -- reading the records ------------------------------------------------------------------------
@dataclass
class Records:
    """What the periodic check stored, and the admin row's last test."""

    probes: dict[str, Any] = field(default_factory=dict)
    delivery: dict[str, Any] = field(default_factory=dict)
    checked_at: datetime | None = None
    admin_tested_at: datetime | None = None
    admin_test_result: dict[str, Any] = field(default_factory=dict)


def load_records() -> Records:
    """One query: the health row, with the admin row's last test as subqueries.

    Raises ``DatabaseError`` when the database is unreachable.
    """
    admin = AdminConfig.objects.filter(pk=1)
    row = (
        EmailHealthRecord.objects.filter(pk=1)
        .annotate(
            admin_tested_at=Subquery(admin.values("smtp_last_tested_at")),
            admin_test_result=Subquery(
                admin.values("smtp_test_result"), output_field=models.JSONField()
            ),
        )
        .values("probes", "delivery", "checked_at", "admin_tested_at", "admin_test_result")
        .first()
    )
    if row is None:  # only a flushed test database lacks the row the migration created
        return Records()
    return Records(
        probes=row["probes"] or {},
        delivery=row["delivery"] or {},
        checked_at=row["checked_at"],
        admin_tested_at=row["admin_tested_at"],
        admin_test_result=row["admin_test_result"] or {},
    )


def route_health(
    route: SmtpRoute, recorded: dict[str, Any] | None, config_version: int, now: datetime
) -> RouteHealth:
    """The state of ``route`` given its recorded probe (see the module docstring)."""
    base = {
        "route": route.name,
        "server": route.address,
        "security": route.security,
        "username": mask_username(route.username),
    }
    if not recorded or recorded.get("fingerprint") != route_fingerprint(route, config_version):
        return RouteHealth(state=NEVER, **base)
    checked_at = _as_datetime(recorded.get("checked_at"))
    if not recorded.get("ok"):
        state = FAILED
    elif checked_at is None or now - checked_at > freshness_window():
        state = STALE
    else:
        state = OK
    return RouteHealth(
        state=state,
        checked_at=_iso(checked_at),
        ok=bool(recorded.get("ok")),
        step=recorded.get("step") or "",
        smtp_code=recorded.get("smtp_code"),
        hint=recorded.get("hint") or "",
        timings=recorded.get("timings") or {},
        **base,
    )


# -- deciding ----------------------------------------------------------------------------------
def _deferred_piling_up(delivery: dict[str, Any]) -> bool:
    age = delivery.get("oldest_deferred_age_seconds")
    return age is not None and age > settings.EMAIL_HEALTH_DEFERRED_MAX_AGE


def _no_route_status(snapshot: dict[str, Any]) -> tuple[str, str]:
    switched_off = not settings.SMTP_ADMIN_CONFIG_ENABLED or (
        snapshot.get("version", 0) > 0 and not snapshot.get("smtp_enabled")
    )
    if switched_off:
        return (
            DISABLED,
            "Sending is off: the admin SMTP settings are disabled and no other route is set.",
        )
    return ERROR, (
        "No SMTP route is configured: complete and enable the SMTP settings in admin, "
        "or set SMTP_SERVER."
    )


def _route_status(routes: list[RouteHealth]) -> tuple[str, str]:
    active, fallbacks = routes[0], routes[1:]
    working = next((r for r in fallbacks if r.state == OK), None)
    if active.state == OK:
        if active.route == ADMIN:
            return HEALTHY, f"The {active.route} route ({active.server}) works."
        return USING_DEFAULT, (
            f"The admin SMTP settings are not in use; the {active.route} route "
            f"({active.server}) works."
        )
    if active.state == NEVER:
        meanwhile = f" Meanwhile the {working.route} route works." if working else ""
        return UNTESTED, (
            f"The {active.route} route ({active.server}) has not been probed with its current "
            f"settings yet; the next health check will.{meanwhile}"
        )
    why = (
        f"its last probe failed at the {active.step or 'unknown'} step: {active.hint}"
        if active.state == FAILED
        else "its last probe is older than two check intervals (is Celery beat running?)"
    )
    if working is not None:
        return DEGRADED, (
            f"The {active.route} route ({active.server}) is failing ({why}); mail goes "
            f"through the {working.route} route ({working.server})."
        )
    return ERROR, f"No route works: the {active.route} route ({active.server}) is failing ({why})."


def _overlay(
    status: str, reason: str, *, redis_ok: bool, delivery: dict[str, Any]
) -> tuple[str, str]:
    if _deferred_piling_up(delivery):
        age = int(delivery["oldest_deferred_age_seconds"])
        return ERROR, (
            f"{reason} Deferred mail is piling up: {delivery.get('deferred_count', '?')} "
            f"message(s), the oldest waiting {age} s."
        ).strip()
    if status in GOOD_STATUSES and not redis_ok:
        return DEGRADED, f"{reason} Redis is unreachable: processes read the database instead."
    return status, reason


# -- the monitor -------------------------------------------------------------------------------
class EmailHealthMonitor:
    """``EmailHealthMonitor().check()``: see the module docstring.

    ``live_delivery=True`` reads the delivery counts from the delivery log now instead of
    the copy the periodic check cached (a few more queries; for /metrics and the admin
    panel, not for the health endpoint).
    """

    def __init__(self, *, live_delivery: bool = False) -> None:
        self.live_delivery = live_delivery

    def check(self) -> EmailHealth:
        now = timezone.now()
        resolver = get_resolver()
        snapshot = resolver.snapshot  # routes and version from one snapshot, in memory
        configured = routes_from_snapshot(snapshot)
        version = int(snapshot.get("version", 0) or 0)
        try:
            records = load_records()
            database_ok = resolver.database_available
        except DatabaseError as exc:
            logger.error("email health: database unreachable (%s)", exc.__class__.__name__)
            records, database_ok = Records(), False
        if self.live_delivery and database_ok:
            from smtp_settings.delivery_stats import read_delivery_stats

            delivery = read_delivery_stats()
        else:
            delivery = records.delivery
        routes = [route_health(r, records.probes.get(r.name), version, now) for r in configured]
        return self._decide(configured, routes, records, delivery, snapshot, database_ok, now)

    def _decide(
        self,
        configured: tuple[SmtpRoute, ...],
        routes: list[RouteHealth],
        records: Records,
        delivery: dict[str, Any],
        snapshot: dict[str, Any],
        database_ok: bool,
        now: datetime,
    ) -> EmailHealth:
        redis_ok = get_resolver().redis_available
        if not database_ok:
            status, reason = (
                ERROR,
                (
                    "The database is unreachable: recorded probe results cannot be read (mail "
                    "still goes out with the last known settings)."
                ),
            )
        elif not routes:
            status, reason = _no_route_status(snapshot)
        else:
            status, reason = _overlay(*_route_status(routes), redis_ok=redis_ok, delivery=delivery)
        active = configured[0] if configured else None
        has_counts = bool(delivery.get("available"))
        return EmailHealth(
            status=status,
            deliverable=database_ok and any(r.state == OK for r in routes),
            reason=reason,
            smtp_source=active.name if active else None,
            smtp_server=active.address if active else None,
            username=mask_username(active.username) if active else "",
            last_test=_iso(records.admin_tested_at),
            last_test_result=safe_result(
                records.admin_test_result, snapshot.get("smtp_username", "")
            ),
            routes=routes,
            fallback_available=any(r.state == OK for r in routes[1:]),
            backup_available=any(r.route == BACKUP and r.state == OK for r in routes),
            last_email_sent=delivery.get("last_sent_at") if has_counts else None,
            sends_last_hour=delivery.get("last_hour") if has_counts else None,
            sends_last_hour_by_route=delivery.get("by_route") if has_counts else None,
            deferred=(
                {
                    "count": delivery.get("deferred_count"),
                    "oldest_age_seconds": delivery.get("oldest_deferred_age_seconds"),
                }
                if has_counts
                else None
            ),
            delivery_stats_as_of=delivery.get("as_of"),
            config_version=int(snapshot.get("version", 0) or 0),
            database_available=database_ok,
            redis_available=redis_ok,
            last_check_at=_iso(records.checked_at),
            check_interval_seconds=check_interval(),
            checked_at=now.isoformat(),
        )


class RecentHealth:
    """The health this process computed last, reused for up to ``max_age`` seconds.

    Under a monitor's or a load balancer's polling, the health endpoint then reads the
    database at most once per ``EMAIL_HEALTH_CACHE_SECONDS`` per process, as the resolver
    reads Redis at most once per ``SMTP_CONFIG_REFRESH_SECONDS``. The records it is built
    from change once per check interval, so a second's lag changes nothing a monitor can
    act on; ``checked_at`` says when it was computed. The process that runs a check clears
    it, so that process serves the new results at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entry: tuple[float, EmailHealth] | None = None

    def get(self, max_age: float) -> EmailHealth:
        entry = self._entry
        if entry is not None and time.monotonic() - entry[0] < max_age:
            return entry[1]
        with self._lock:
            entry = self._entry
            if entry is not None and time.monotonic() - entry[0] < max_age:
                return entry[1]  # another thread computed it while this one waited
            health = EmailHealthMonitor().check()
            self._entry = (time.monotonic(), health)
            return health

    def clear(self) -> None:
        self._entry = None


recent_health = RecentHealth()
