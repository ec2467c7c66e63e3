"""Each health status, reached from real SMTP servers and real settings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from smtp_settings.health import EmailHealthMonitor
from smtp_settings.models import AdminConfig, EmailHealthRecord
from tests.conftest import route_settings

pytestmark = pytest.mark.django_db


def check():
    return EmailHealthMonitor().check()


def test_good_admin_route_is_healthy_and_deliverable(smtp_factory, configure_admin, run_check):
    server = smtp_factory("TLS", auth=True)
    configure_admin(server)

    run_check()
    health = check()

    assert health.status == "healthy"
    assert health.deliverable is True
    assert health.smtp_source == "admin"
    assert health.smtp_server == f"127.0.0.1:{server.port}"
    assert health.username == "sys***@example.com"
    [route] = health.routes
    assert (route.route, route.state, route.ok) == ("admin", "ok", True)
    assert server.messages == []  # the probe stops at RCPT TO: no mail was sent


def test_configured_but_never_probed_is_untested(smtp_factory, configure_admin):
    configure_admin(smtp_factory())

    health = check()

    assert health.status == "untested"
    assert health.deliverable is False
    assert health.routes[0].state == "untested"


@pytest.mark.django_db(transaction=True)  # the save publishes on commit
def test_saving_the_settings_again_makes_the_admin_route_untested(
    smtp_factory, configure_admin, run_check
):
    server = smtp_factory()
    configure_admin(server)
    run_check()
    assert check().status == "healthy"

    configure_admin(server, sender_name="Renamed")  # a new config version

    assert check().status == "untested"


def test_refused_admin_route_without_fallback_is_error(configure_admin, refused_port, run_check):
    configure_admin(None, smtp_port=refused_port)

    run_check()
    health = check()

    assert health.status == "error"
    assert health.deliverable is False
    assert health.routes[0].step == "connect"
    assert "refused" in health.reason


def test_wrong_password_is_error_with_the_auth_hint(smtp_factory, configure_admin, run_check):
    server = smtp_factory("TLS", auth=True)
    configure_admin(server, password="not-the-password")

    run_check()
    health = check()

    assert health.status == "error"
    assert health.routes[0].step == "auth"
    assert "rejected the username or password" in health.routes[0].hint


def test_failing_admin_route_with_working_backup_is_degraded(
    smtp_factory, configure_admin, refused_port, settings, run_check
):
    backup = smtp_factory()
    configure_admin(None, smtp_port=refused_port)
    settings.SMTP_BACKUP_ROUTE = route_settings(backup)

    run_check()
    health = check()

    assert health.status == "degraded"
    assert health.deliverable is True
    assert health.fallback_available is True
    assert health.backup_available is True
    assert "backup route" in health.reason


def test_admin_disabled_with_environment_route_is_using_default(
    smtp_factory, configure_admin, settings, run_check
):
    env_server = smtp_factory()
    configure_admin(smtp_factory(), smtp_enabled=False)
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env_server)

    run_check()
    health = check()

    assert health.status == "using_default"
    assert health.smtp_source == "environment"
    assert health.deliverable is True


def test_admin_disabled_and_nothing_else_is_disabled(smtp_factory, configure_admin, run_check):
    configure_admin(smtp_factory(), smtp_enabled=False)

    run_check()
    health = check()

    assert health.status == "disabled"
    assert health.deliverable is False
    assert health.routes == []


def test_kill_switch_off_and_nothing_else_is_disabled(smtp_factory, configure_admin, settings):
    configure_admin(smtp_factory())
    settings.SMTP_ADMIN_CONFIG_ENABLED = False

    assert check().status == "disabled"


def test_nothing_configured_is_error(run_check):
    assert not AdminConfig.objects.exists()

    run_check()
    health = check()

    assert health.status == "error"
    assert health.smtp_source is None
    assert "No SMTP route is configured" in health.reason


def test_probe_older_than_two_intervals_no_longer_counts(smtp_factory, configure_admin, run_check):
    configure_admin(smtp_factory())
    run_check()
    record = EmailHealthRecord.objects.get(pk=1)
    old = (timezone.now() - timedelta(seconds=601)).isoformat()
    record.probes["admin"]["checked_at"] = old
    record.save()

    health = check()

    assert health.routes[0].state == "stale"
    assert health.status == "error"
    assert health.deliverable is False
    assert "Celery beat" in health.reason


def test_redis_unreachable_degrades_a_working_route(
    smtp_factory, configure_admin, refused_port, settings, run_check
):
    configure_admin(smtp_factory())
    run_check()

    settings.REDIS_URL = f"redis://127.0.0.1:{refused_port}/0"
    health = check()

    assert health.redis_available is False
    assert health.status == "degraded"
    assert health.deliverable is True
    assert "Redis is unreachable" in health.reason


def test_deferred_mail_piling_up_is_error(smtp_factory, configure_admin, run_check):
    configure_admin(smtp_factory())
    run_check()
    EmailHealthRecord.objects.filter(pk=1).update(
        delivery={
            "available": True,
            "last_hour": {"sent": 3, "deferred": 40},
            "deferred_count": 40,
            "oldest_deferred_age_seconds": 7200.0,
            "last_sent_at": None,
            "as_of": timezone.now().isoformat(),
        }
    )

    health = check()

    assert health.status == "error"
    assert health.deferred == {"count": 40, "oldest_age_seconds": 7200.0}
    assert "piling up" in health.reason


def test_check_stamps_admin_test_result_without_bumping_version(
    smtp_factory, configure_admin, run_check
):
    configure_admin(smtp_factory())
    version = AdminConfig.objects.get(pk=1).version

    run_check()

    row = AdminConfig.objects.get(pk=1)
    assert row.version == version
    assert row.smtp_last_tested_at is not None
    assert row.smtp_test_result["ok"] is True
    assert check().last_test_result["ok"] is True


def test_check_republishes_a_lost_snapshot_to_redis(
    smtp_factory, configure_admin, run_check, redis_client, settings
):
    configure_admin(smtp_factory())
    key = f"{settings.SMTP_CONFIG_REDIS_PREFIX}:snapshot"
    redis_client.delete(key)

    run_check()

    assert redis_client.get(key) is not None
    assert b'"smtp_enabled": true' in redis_client.get(key)
