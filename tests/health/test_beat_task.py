"""run_email_health_check through a real Celery worker: one alert per change of state."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from smtp_settings.health import recent_health
from smtp_settings.health_tasks import run_email_health_check
from smtp_settings.models import AdminConfig, EmailHealthRecord
from tests.conftest import SMTP_PASSWORD, route_settings
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def run_through_worker() -> EmailHealthRecord:
    """Queue the task on the broker and wait until the worker has finished it."""
    before = EmailHealthRecord.objects.filter(pk=1).values_list("checked_at", flat=True).first()
    run_email_health_check.delay()

    def finished():
        record = EmailHealthRecord.objects.filter(pk=1).first()
        return record if record and record.checked_at and record.checked_at != before else None

    return wait_until(finished)


def test_beat_schedule_runs_the_check_every_interval():
    entry = django_settings.CELERY_BEAT_SCHEDULE["email-health-check"]

    assert entry["task"] == run_email_health_check.name
    assert entry["schedule"] == float(django_settings.EMAIL_HEALTH_CHECK_INTERVAL)


def test_route_down_alerts_once_through_backup_then_once_on_recovery(
    celery_worker, smtp_factory, configure_admin, settings
):
    primary = smtp_factory()
    backup = smtp_factory()
    configure_admin(primary)
    settings.SMTP_BACKUP_ROUTE = route_settings(backup)

    assert run_through_worker().alert_state == "up"
    assert backup.messages == []
    assert primary.messages == []

    primary.stop()
    record = run_through_worker()
    [alert] = backup.wait_for(1)
    assert record.alert_state.startswith("down:admin")
    assert alert.rcpt_tos == ["ops@example.com"]
    assert "Email delivery failing: admin route" in alert.message["Subject"]
    assert "backup route" in alert.message.get_content()

    run_through_worker()  # still down: nothing new to say
    assert len(backup.messages) == 1

    primary.start()
    record = run_through_worker()
    [recovery] = primary.wait_for(1)
    assert record.alert_state == "up"
    assert "recovered" in recovery.message["Subject"]
    assert len(backup.messages) == 1

    run_through_worker()  # still up: no more mail
    assert len(primary.messages) == 1
    assert len(backup.messages) == 1


def test_recipients_fall_back_to_superusers_with_an_email(
    celery_worker, smtp_factory, configure_admin, refused_port, settings, django_user_model
):
    settings.ADMINS = []
    django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    django_user_model.objects.create_superuser("noaddress", "", "pw")
    backup = smtp_factory()
    configure_admin(None, smtp_port=refused_port)
    settings.SMTP_BACKUP_ROUTE = route_settings(backup)

    run_through_worker()

    [alert] = backup.wait_for(1)
    assert alert.rcpt_tos == ["root@example.com"]


def test_a_save_in_admin_is_probed_at_once_not_at_the_next_beat(
    celery_worker, smtp_factory, configure_admin, admin_client, monitor_get, settings
):
    from tests.foundation.helpers import change_url, form_data

    old, new = smtp_factory(auth=True), smtp_factory(auth=True)
    settings.SMTP_ALLOWED_PORTS = [old.port, new.port]
    configure_admin(old)
    run_through_worker()
    assert monitor_get().status_code == 200
    row = AdminConfig.get_solo()

    response = admin_client.post(
        change_url(), form_data(row, smtp_port=str(new.port), new_password=SMTP_PASSWORD)
    )

    assert response.status_code == 302
    record = wait_until(
        lambda: (
            (r := EmailHealthRecord.objects.get(pk=1)).probes.get("admin", {}).get("server")
            == f"127.0.0.1:{new.port}"
            and r
        )
    )
    assert record.probes["admin"]["ok"] is True
    recent_health.clear()
    assert monitor_get().json()["status"] == "healthy"
