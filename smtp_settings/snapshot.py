"""The ciphertext-only JSON snapshot of AdminConfig, and where it lives in Redis.

Keys (prefix ``SMTP_CONFIG_REDIS_PREFIX``, default ``smtp:config``):

- ``<prefix>:snapshot``: JSON of the admin route fields, the password as its Fernet token;
- ``<prefix>:row_version``: the AdminConfig.version the snapshot was built from;
- ``<prefix>:version``: a counter bumped on every publish; processes poll only this.

A snapshot is published after each committed write of the row, and by a process that found
no snapshot in Redis. A slower publisher never overwrites a newer row version. The
snapshot and row version expire (``SMTP_CONFIG_SNAPSHOT_TTL``) so that Redis heals itself
from the database if a publish was ever lost. Nothing here may hold a plaintext secret or a
pickled object.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

# The AdminConfig fields that say how to reach the server and as whom (a test of unsaved
# form values carries the same ones).
ROUTE_FIELDS = (
    "smtp_server",
    "smtp_port",
    "smtp_security",
    "smtp_username",
    "smtp_timeout",
    "smtp_verify_certificates",
    "sender_email",
    "sender_name",
)
SNAPSHOT_FIELDS = ("smtp_enabled", *ROUTE_FIELDS, "version")

# Write only if no newer row version is stored; bump the poll counter when written.
_PUBLISH_SCRIPT = """
local stored = tonumber(redis.call('GET', KEYS[2]) or '-1')
if stored > tonumber(ARGV[2]) then return -1 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return redis.call('INCR', KEYS[3])
"""


def snapshot_from_row(row: Any | None) -> dict[str, Any]:
    """The JSON-able snapshot of an AdminConfig row (or of no row at all)."""
    if row is None:
        return {"version": 0, "smtp_enabled": False}
    data = {name: getattr(row, name) for name in SNAPSHOT_FIELDS}
    password = row.smtp_password
    data["password_token"] = password.token if password else ""
    return data


def load_snapshot_from_database() -> dict[str, Any]:
    """One query. Raises the database's error when it is unreachable."""
    from smtp_settings.models import AdminConfig

    return snapshot_from_row(AdminConfig.objects.filter(pk=1).first())


class SnapshotStore:
    """The snapshot in Redis, read and written with short timeouts and no retries:
    when Redis is slow or gone, callers fall back at once rather than wait."""

    def __init__(self, url: str, prefix: str, ttl: int) -> None:
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self.keys = (f"{prefix}:snapshot", f"{prefix}:row_version", f"{prefix}:version")
        self.ttl = ttl
        self._publish = self.client.register_script(_PUBLISH_SCRIPT)

    def read(self) -> tuple[int, dict[str, Any] | None]:
        """(poll counter, snapshot or None). One round trip. Raises redis.RedisError."""
        counter, raw = self.read_raw()
        return counter, self.parse(raw)

    def read_raw(self) -> tuple[int, bytes | None]:
        """(poll counter, snapshot JSON or None): the poll, without parsing what did not
        change. One round trip. Raises redis.RedisError."""
        raw_snapshot, raw_version = self.client.mget(self.keys[0], self.keys[2])
        return int(raw_version or 0), raw_snapshot

    @staticmethod
    def parse(raw: bytes | None) -> dict[str, Any] | None:
        return json.loads(raw) if raw else None

    def write(self, snapshot: dict[str, Any]) -> int:
        """Store ``snapshot`` unless a newer one is there; return the new counter or -1."""
        return int(
            self._publish(
                keys=list(self.keys),
                args=[json.dumps(snapshot, sort_keys=True), int(snapshot["version"]), self.ttl],
            )
        )


@lru_cache(maxsize=1)
def get_store() -> SnapshotStore | None:
    """The process's store, or None when no REDIS_URL is configured."""
    if not settings.REDIS_URL:
        return None
    return SnapshotStore(
        settings.REDIS_URL, settings.SMTP_CONFIG_REDIS_PREFIX, settings.SMTP_CONFIG_SNAPSHOT_TTL
    )


@receiver(setting_changed)
def _forget_store(*, setting: str, **kwargs: object) -> None:
    if setting in {"REDIS_URL", "SMTP_CONFIG_REDIS_PREFIX", "SMTP_CONFIG_SNAPSHOT_TTL"}:
        get_store.cache_clear()


def publish_from_database() -> None:
    """Read the committed row and publish it; called from ``transaction.on_commit``.

    Also tells this process's resolver at once, so a save is visible to the saving
    process without waiting for its next poll (and without Redis).
    """
    from smtp_settings.resolver import get_resolver

    snapshot = load_snapshot_from_database()
    store = get_store()
    if store is not None:
        try:
            store.write(snapshot)
        except redis.RedisError as exc:
            # Other processes keep their snapshot until Redis is back and the TTL or the
            # next health check republishes; this is logged, not raised, so the admin's save
            # still succeeds.
            logger.warning("smtp config snapshot not published to Redis: %s", exc)
    get_resolver().apply(snapshot)
