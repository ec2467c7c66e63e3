"""Fixtures for the email health tests: a health token, a staff user, and helpers that run
the periodic check and read the endpoint the way a monitor does."""

from __future__ import annotations

from collections.abc import Callable

import pytest

TOKEN = "health-token-for-tests-0123456789"
URL = "/admin/health/email"


@pytest.fixture(autouse=True)
def _no_health_from_an_earlier_test():
    from smtp_settings.health import recent_health

    recent_health.clear()
    yield
    recent_health.clear()


@pytest.fixture(autouse=True)
def _health_settings(settings) -> None:
    settings.EMAIL_HEALTH_TOKEN = TOKEN
    settings.EMAIL_HEALTH_CHECK_INTERVAL = 300
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.SMTP_ENVIRONMENT_ROUTE = {"server": "", "port": 587}
    settings.SMTP_BACKUP_ROUTE = {"server": "", "port": 587}


@pytest.fixture
def monitor_get(client) -> Callable[..., object]:
    """GET a URL with the bearer token, as a monitor does."""

    def get(url: str = URL, token: str = TOKEN):
        return client.get(url, headers={"Authorization": f"Bearer {token}"})

    return get


@pytest.fixture
def run_check() -> Callable[[], dict]:
    from smtp_settings.health_tasks import run_health_check

    return run_health_check
