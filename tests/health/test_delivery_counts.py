"""The delivery-log figures in the health: real sends, read through notifications.stats."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from notifications import recorder
from notifications.models import Delivery
from smtp_settings.health import EmailHealthMonitor

pytestmark = pytest.mark.django_db


def test_sends_of_the_last_hour_and_last_sent_come_from_the_delivery_log(
    smtp_factory, configure_admin, run_check, monitor_get
):
    server = smtp_factory()
    configure_admin(server)
    recorder.flush()  # records other tests' sends left in this process's buffer
    run_check()
    before = monitor_get().json()["sends_last_hour_by_route"].get("admin", {}).get("sent", 0)
    for n in range(2):
        assert mail.send_mail(f"Hi {n}", "Body", None, ["user@example.net"]) == 1
    recorder.flush()

    run_check()
    body = monitor_get().json()

    assert body["sends_last_hour"]["sent"] >= 2
    assert body["sends_last_hour_by_route"]["admin"]["sent"] == before + 2
    assert body["last_email_sent"] is not None
    metrics = monitor_get("/metrics").content.decode()
    assert f'smtp_sends_last_hour{{outcome="sent",route="admin"}} {before + 2:.1f}' in metrics
    assert "smtp_seconds_since_last_successful_send " in metrics


def test_deferred_mail_older_than_the_limit_makes_the_health_error(
    configure_admin, refused_port, run_check
):
    configure_admin(None, smtp_port=refused_port)
    assert mail.send_mail("Waits", "Body", None, ["user@example.net"]) == 1  # deferred
    # Two hours later, still waiting (the limit is one hour):
    Delivery.objects.update(created_at=timezone.now() - timedelta(hours=2))

    run_check()
    health = EmailHealthMonitor().check()

    assert health.deferred["count"] == 1
    assert health.deferred["oldest_age_seconds"] >= 7200
    assert health.status == "error"
    assert "piling up" in health.reason
