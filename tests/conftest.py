"""Shared fixtures: real SMTP servers, a trusted test CA, a clean Redis database per test,
the AdminConfig row pointed at a server, and a real Celery worker on the Redis broker.

A missing service fails the test loudly (see ``_require_redis``); nothing here skips.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import trustme
from django.conf import settings

from smtp_settings import resolver, snapshot
from smtp_settings.connection import client_context
from smtp_settings.crypto import decrypt
from tests.smtp_servers import Behaviour, RawServer, SmtpServer, free_port

SMTP_PASSWORD = "s3cret-Pa55word-for-tests"
SMTP_USER = "system@example.com"


# -- services --------------------------------------------------------------------------------
def _require_redis() -> redis.Redis:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:  # pragma: no cover - CI starts Redis in .ci/run
        pytest.fail(
            f"Redis at {settings.REDIS_URL} is not reachable ({exc}); start it (see README)"
        )
    return client


@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:
    return _require_redis()


@pytest.fixture(autouse=True)
def _clean_state(redis_client: redis.Redis) -> Iterator[None]:
    """Each test starts with an empty test Redis database, a fresh resolver and an empty
    delivery-log buffer (no record of one test is written into another's database)."""
    from notifications.buffer import buffer

    redis_client.flushdb()
    snapshot.get_store.cache_clear()
    resolver.reset_resolver()
    decrypt.cache_clear()
    buffer.discard()
    yield
    buffer.discard()
    resolver.reset_resolver()


# -- TLS ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "test-ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(names or ("localhost", "127.0.0.1"))).configure_cert(context)
    return context


@pytest.fixture(autouse=True)
def _real_backend_trusting_test_ca(settings, ca_file: Path) -> None:
    """Send through the real backend (Django's test setup swaps in locmem), trusting the
    test CA as it would a provider's: certificate verification stays on."""
    settings.EMAIL_BACKEND = "smtp_settings.backends.DynamicSMTPBackend"
    settings.SMTP_CA_FILE = str(ca_file)
    client_context.cache_clear()


# -- SMTP servers ------------------------------------------------------------------------------
@pytest.fixture
def smtp_factory(tls_ca: trustme.CA) -> Iterator[Callable[..., SmtpServer]]:
    """Start SMTP servers: ``smtp_factory(security="TLS", auth=True, behaviour=Behaviour(...))``."""
    started: list[SmtpServer] = []

    def make(
        security: str = "NONE",
        *,
        auth: bool = False,
        credentials: dict[str, str] | None = None,
        behaviour: Behaviour | None = None,
        cert_names: tuple[str, ...] = ("localhost", "127.0.0.1"),
        port: int | None = None,
    ) -> SmtpServer:
        context = server_context(tls_ca, *cert_names) if security in ("TLS", "SSL") else None
        creds = (
            credentials
            if credentials is not None
            else ({SMTP_USER: SMTP_PASSWORD} if auth else None)
        )
        server = SmtpServer(
            security=security,
            server_context=context,
            credentials=creds,
            behaviour=behaviour,
            port=port,
        )
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def raw_factory() -> Iterator[Callable[[str], RawServer]]:
    started: list[RawServer] = []

    def make(mode: str) -> RawServer:
        server = RawServer(mode)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def refused_port() -> int:
    """A loopback port with nothing listening."""
    return free_port()


@pytest.fixture
def smtp_server(smtp_factory) -> SmtpServer:
    return smtp_factory()


# -- Celery ------------------------------------------------------------------------------------
@pytest.fixture
def celery_worker(transactional_db) -> Iterator[object]:
    """A real Celery worker (a thread of this process) consuming the test Redis broker.

    Tests that use it must be ``transaction=True`` (the worker thread has its own database
    connection and sees only committed rows).
    """
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    with start_worker(
        app, pool="solo", concurrency=1, perform_ping_check=False, loglevel="WARNING"
    ) as worker:
        yield worker


# -- configuration -----------------------------------------------------------------------------
@pytest.fixture
def configure_admin(db) -> Callable[..., object]:
    """Save the AdminConfig row pointing at ``server`` (enabled, complete)."""
    from smtp_settings.models import AdminConfig

    def configure(server: SmtpServer | None = None, **fields: object) -> AdminConfig:
        config = AdminConfig.get_solo()
        values = {
            "smtp_enabled": True,
            "smtp_server": server.host if server else "127.0.0.1",
            "smtp_port": server.port if server else 2525,
            "smtp_security": server.security if server else "NONE",
            "smtp_username": SMTP_USER if server is not None and server.credentials else "",
            "sender_email": "noreply@example.com",
            "sender_name": "Example Alerts",
            "smtp_timeout": 3,
        }
        values.update(fields)
        password = values.pop("password", SMTP_PASSWORD if values["smtp_username"] else "")
        for name, value in values.items():
            setattr(config, name, value)
        config.set_password(password)
        config.save()
        return config

    return configure


def route_settings(server: SmtpServer | None = None, **extra: object) -> dict:
    """Values for SMTP_ENVIRONMENT_ROUTE / SMTP_BACKUP_ROUTE pointing at ``server``."""
    values = {
        "server": server.host if server else "",
        "port": server.port if server else 587,
        "username": SMTP_USER if server is not None and server.credentials else "",
        "password": SMTP_PASSWORD if server is not None and server.credentials else "",
        "security": server.security if server else "TLS",
        "sender_email": "",
        "sender_name": "",
    }
    values.update(extra)
    return values


__all__ = ["SMTP_PASSWORD", "SMTP_USER", "Behaviour", "route_settings", "server_context"]
