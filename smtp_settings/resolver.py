"""Which SMTP servers to use right now, in order, without a database query per message.

Each process keeps the last snapshot in memory and looks at Redis at most once per
``SMTP_CONFIG_REFRESH_SECONDS``: one MGET of the poll counter and the snapshot. A changed
counter means a new snapshot; a missing snapshot is rebuilt from the database and written
back. When Redis is unreachable the database is read instead, at most once per interval,
and the outage is logged once. When the database is unreachable too, the last snapshot keeps
serving. Between checks ``routes()`` is a clock comparison and an attribute read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.core.signals import setting_changed
from django.db import DatabaseError
from django.dispatch import receiver

from smtp_settings.routes import (
    ADMIN,
    BACKUP,
    ENVIRONMENT,
    SecretRef,
    SmtpRoute,
    route_from_settings,
)
from smtp_settings.snapshot import get_store, load_snapshot_from_database

logger = logging.getLogger(__name__)


def admin_route_from_snapshot(snapshot: dict[str, Any]) -> SmtpRoute | None:
    """The admin route, or None when the row is disabled, incomplete or switched off."""
    if not settings.SMTP_ADMIN_CONFIG_ENABLED or not snapshot.get("smtp_enabled"):
        return None
    host, token = snapshot.get("smtp_server"), snapshot.get("password_token", "")
    username = snapshot.get("smtp_username", "")
    if not host or not snapshot.get("sender_email") or (username and not token):
        return None
    return SmtpRoute(
        name=ADMIN,
        host=host,
        port=int(snapshot["smtp_port"]),
        security=snapshot["smtp_security"],
        username=username,
        secret=SecretRef(token=token),
        timeout=float(snapshot.get("smtp_timeout") or settings.SMTP_TIMEOUT),
        verify_certificates=bool(snapshot.get("smtp_verify_certificates", True)),
        sender_email=snapshot["sender_email"],
        sender_name=snapshot.get("sender_name", ""),
    )


def _built(name: str, build: Callable[[], SmtpRoute | None]) -> SmtpRoute | None:
    # A route with an impossible value (an unknown security mode, a port that is not a
    # number) is left out and said loudly, once per snapshot; the other routes still send.
    try:
        return build()
    except (ValueError, TypeError, KeyError) as exc:
        logger.error("smtp config: the %s route is not usable and is skipped: %s", name, exc)
        return None


def routes_from_snapshot(snapshot: dict[str, Any]) -> tuple[SmtpRoute, ...]:
    """admin, environment, backup: each only if configured (DESIGN.md, step 3)."""
    candidates = (
        _built(ADMIN, lambda: admin_route_from_snapshot(snapshot)),
        _built(ENVIRONMENT, lambda: route_from_settings(ENVIRONMENT, "SMTP_ENVIRONMENT_ROUTE")),
        _built(BACKUP, lambda: route_from_settings(BACKUP, "SMTP_BACKUP_ROUTE")),
    )
    return tuple(route for route in candidates if route is not None)


class RouteResolver:
    """Per-process holder of the current routes; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counter: int | None = None
        self._snapshot: dict[str, Any] | None = None
        self._routes: tuple[SmtpRoute, ...] = ()
        self._next_check = 0.0
        self._redis_down = False
        self._database_down = False

    # -- what callers use --------------------------------------------------------------------
    def routes(self) -> tuple[SmtpRoute, ...]:
        if time.monotonic() >= self._next_check:
            self.refresh()
        return self._routes

    @property
    def snapshot(self) -> dict[str, Any]:
        self.routes()
        return dict(self._snapshot or {})

    @property
    def redis_available(self) -> bool:
        return get_store() is not None and not self._redis_down

    @property
    def database_available(self) -> bool:
        return not self._database_down

    def apply(self, snapshot: dict[str, Any]) -> None:
        """Serve ``snapshot`` from now on (used by the saving process after commit).

        The next poll then compares versions with Redis whatever the counter says, so a
        snapshot whose publish failed is published again once Redis answers."""
        routes = routes_from_snapshot(snapshot)
        self._snapshot, self._routes = snapshot, routes
        self._counter = None

    # -- refresh -----------------------------------------------------------------------------
    def refresh(self, *, force: bool = False) -> None:
        # With a snapshot in hand, a thread that finds another one refreshing sends with
        # the current routes instead of waiting for a slow Redis or database.
        if not self._lock.acquire(blocking=self._snapshot is None or force):
            return
        try:
            now = time.monotonic()
            if not force and now < self._next_check:
                return  # another thread refreshed while this one waited
            self._next_check = now + settings.SMTP_CONFIG_REFRESH_SECONDS
            self._refresh()
        finally:
            self._lock.release()

    def _refresh(self) -> None:
        store = get_store()
        if store is None:
            self._load_from_database()
            return
        try:
            counter, raw = store.read_raw()
        except redis.RedisError as exc:
            self._on_redis_error(exc)
            return
        recovering = self._redis_down
        if recovering:
            self._redis_down = False
            logger.warning("smtp config: Redis reachable again")
        if counter == self._counter and raw is not None and not recovering:
            return  # the steady state: one MGET, nothing parsed
        snapshot = store.parse(raw)
        if snapshot is None or self._newer_than(snapshot):
            # Nothing in Redis, or Redis lags behind what this process already serves (a
            # save whose publish failed while Redis was away): publish from the database.
            self._load_from_database(write_back=store)
        else:
            self.apply(snapshot)
            self._counter = counter

    def _newer_than(self, snapshot: dict[str, Any]) -> bool:
        return bool(self._snapshot) and self._snapshot.get("version", 0) > snapshot.get(
            "version", 0
        )

    def _on_redis_error(self, exc: Exception) -> None:
        if not self._redis_down:
            self._redis_down = True
            logger.warning(
                "smtp config: Redis unreachable (%s); reading the database at most every %ss",
                exc.__class__.__name__,
                settings.SMTP_CONFIG_REFRESH_SECONDS,
            )
        self._load_from_database()

    def _load_from_database(self, write_back: Any = None) -> None:
        try:
            snapshot = load_snapshot_from_database()
        except DatabaseError as exc:
            if not self._database_down:
                self._database_down = True
                logger.error(
                    "smtp config: database unreachable (%s); sending with the last snapshot",
                    exc.__class__.__name__,
                )
            if self._snapshot is None:
                self.apply({"version": 0, "smtp_enabled": False})
            return  # _counter stays unset: the next poll tries again
        if self._database_down:
            self._database_down = False
            logger.warning("smtp config: database reachable again")
        self.apply(snapshot)
        if write_back is not None:
            try:
                written = write_back.write(snapshot)
            except redis.RedisError:
                return  # the next refresh notices the outage and logs it once
            if written >= 0:
                self._counter = written  # our own write: nothing new to read next time


_resolver = RouteResolver()
_resolver_lock = threading.Lock()


def get_resolver() -> RouteResolver:
    return _resolver


def reset_resolver() -> RouteResolver:
    """Start from nothing (tests, or after settings change); returns the new resolver."""
    global _resolver
    with _resolver_lock:
        _resolver = RouteResolver()
    return _resolver


def current_routes() -> tuple[SmtpRoute, ...]:
    return _resolver.routes()


@receiver(setting_changed)
def _forget_routes(*, setting: str, **kwargs: object) -> None:
    if setting.startswith(("SMTP_", "REDIS_URL", "BACKUP_")):
        reset_resolver()
