"""Fixtures for the admin tools tests: users with and without the permission, servers the
settings form accepts (their random ports allowed), and a wait for a test run to finish."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from smtp_settings.models import SmtpTestRun
from tests.waiting import wait_until


@pytest.fixture
def make_user(django_user_model) -> Callable[..., object]:
    def make(name: str = "tester", *, staff: bool = True, can_change: bool = True, **extra):
        extra.setdefault("email", f"{name}@example.com")
        user = django_user_model.objects.create_user(
            name, password="login-pw-1", is_staff=staff, **extra
        )
        if can_change:
            user.user_permissions.add(
                Permission.objects.get(
                    codename="change_adminconfig", content_type__app_label="smtp_settings"
                )
            )
        return user

    return make


@pytest.fixture
def staff_client(make_user) -> Client:
    """Logged in as staff with smtp_settings.change_adminconfig (not a superuser)."""
    client = Client()
    client.force_login(make_user())
    return client


@pytest.fixture
def allow_ports(settings) -> Callable[..., None]:
    """Let the settings form accept the test servers' random ports."""

    def allow(*servers: object) -> None:
        settings.SMTP_ALLOWED_PORTS = [25, 465, 587, 2525, *(s.port for s in servers)]

    return allow


def wait_for_run(run_id: str, timeout: float = 20.0) -> SmtpTestRun:
    """Wait until the worker finished the run (polling the row)."""

    def finished() -> SmtpTestRun | None:
        run = SmtpTestRun.objects.get(pk=run_id)
        return run if run.status != SmtpTestRun.Status.PENDING else None

    return wait_until(finished, timeout, f"test run {run_id} to finish")


def queued_tasks(redis_client) -> list[dict]:
    """The task messages waiting in the Redis broker's default queue, decoded:
    ``{"task": name, "kwargs": {...}, "raw": the message exactly as Redis holds it}``."""
    queued = []
    for raw in redis_client.lrange("celery", 0, -1):
        message = json.loads(raw)
        _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        queued.append({"task": message["headers"]["task"], "kwargs": kwargs, "raw": raw.decode()})
    return queued
