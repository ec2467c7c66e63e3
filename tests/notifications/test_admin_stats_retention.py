"""The delivery log as people and the health panel see it: the admin list, detail and
actions, the counts, the retention task and the beat schedule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone

from notifications import stats
from notifications.models import Delivery, DeliveryAttempt, Status
from notifications.retention import purge_sent
from notifications.tasks import purge_sent_deliveries

LIST_URL = "admin:notifications_delivery_changelist"


def _delivery(status: str, **fields: object) -> Delivery:
    now = timezone.now()
    values = {
        "message_id": f"<{status}-{Delivery.objects.count()}@test>",
        "subject": f"A {status} message",
        "sender": "app@example.com",
        "recipients": "alice@example.net\nbob@example.net",
        "route": "admin",
        "server": "smtp.example.com:587",
        "status": status,
        "attempts": 1,
        "created_at": now,
        "finished_at": now if status in (Status.SENT, Status.FAILED) else None,
        "next_attempt_at": now if status == Status.DEFERRED else None,
        "raw_message": b"Subject: x\r\n\r\nbody\r\n" if status == Status.DEFERRED else None,
    }
    values.update(fields)
    delivery = Delivery.objects.create(**values)
    DeliveryAttempt.objects.create(delivery=delivery, number=1, outcome=status, route="admin")
    return delivery


@pytest.mark.django_db
def test_admin_list_filters_by_status_and_route_and_searches_recipient_and_message_id(
    admin_client,
):
    sent = _delivery(Status.SENT, recipients="carol@example.net")
    deferred = _delivery(Status.DEFERRED, route="backup")
    url = reverse(LIST_URL)

    page = admin_client.get(url).content.decode()
    assert sent.message_id.strip("<>") in page
    assert deferred.message_id.strip("<>") in page

    by_status = admin_client.get(url, {"status__exact": "deferred"}).content.decode()
    assert "A deferred message" in by_status
    assert "A sent message" not in by_status
    by_route = admin_client.get(url, {"route": "backup"}).content.decode()
    assert "A deferred message" in by_route
    assert "A sent message" not in by_route
    by_recipient = admin_client.get(url, {"q": "carol@"}).content.decode()
    assert "A sent message" in by_recipient
    assert "A deferred message" not in by_recipient
    by_id = admin_client.get(url, {"q": deferred.message_id}).content.decode()
    assert "A deferred message" in by_id
    assert "A sent message" not in by_id
    by_date = admin_client.get(
        url, {"created_at__gte": str(timezone.now() + timedelta(days=1))}
    ).content.decode()
    assert "A sent message" not in by_date


@pytest.mark.django_db
def test_admin_detail_is_read_only_shows_attempts_and_never_the_raw_message(admin_client):
    deferred = _delivery(Status.DEFERRED, raw_message=b"Subject: x\r\n\r\nreset-token-123\r\n")
    url = reverse("admin:notifications_delivery_change", args=[deferred.pk])

    response = admin_client.get(url)

    page = response.content.decode()
    assert response.status_code == 200
    assert "reset-token-123" not in page
    assert "bytes, kept until it is sent" in page
    assert 'name="_save"' not in page
    for field in ("subject", "recipients", "status", "last_error"):
        assert f'name="{field}"' not in page  # shown, not editable
    assert "A deferred message" in page
    assert "delivery attempts" in page.lower()  # the inline with the attempts
    saved = admin_client.post(url, {"subject": "changed"})
    assert saved.status_code == 403
    assert Delivery.objects.get(pk=deferred.pk).subject == "A deferred message"
    assert admin_client.get(reverse("admin:notifications_delivery_add")).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_admin_actions_retry_now_and_cancel_touch_only_deferred_messages(
    admin_client, redis_client
):
    later = timezone.now() + timedelta(hours=1)
    waiting = _delivery(Status.DEFERRED, next_attempt_at=later)
    doomed = _delivery(Status.DEFERRED, next_attempt_at=later)
    sent = _delivery(Status.SENT)
    url = reverse(LIST_URL)
    queued = redis_client.llen("celery")

    response = admin_client.post(
        url, {"action": "retry_now", "_selected_action": [waiting.pk, sent.pk]}, follow=True
    )

    assert "1 deferred message(s) queued for a retry" in response.content.decode()
    assert "1 selected message(s) were not deferred" in response.content.decode()
    assert Delivery.objects.get(pk=waiting.pk).next_attempt_at <= timezone.now()
    assert redis_client.llen("celery") == queued + 1

    admin_client.post(url, {"action": "cancel", "_selected_action": [doomed.pk, sent.pk]})

    cancelled = Delivery.objects.get(pk=doomed.pk)
    assert cancelled.status == Status.CANCELLED
    assert cancelled.raw_message is None
    assert Delivery.objects.get(pk=sent.pk).status == Status.SENT


@pytest.mark.django_db
def test_counts_for_the_health_panel():
    assert stats.counts_last_hour() == {"sent": 0, "deferred": 0, "failed": 0}
    assert stats.oldest_deferred_age() is None
    two_hours_ago = timezone.now() - timedelta(hours=2)
    for _ in range(3):
        _delivery(Status.SENT)
    _delivery(Status.SENT, finished_at=two_hours_ago)  # outside the hour
    _delivery(Status.FAILED)
    _delivery(Status.DEFERRED, created_at=timezone.now() - timedelta(minutes=10))
    _delivery(Status.DEFERRED, created_at=two_hours_ago)  # still waiting: counted
    _delivery(Status.SENDING)

    assert stats.counts_last_hour() == {"sent": 3, "deferred": 3, "failed": 1}
    assert 7100 < stats.oldest_deferred_age() < 7300


@pytest.mark.django_db
def test_retention_deletes_only_sent_records_older_than_the_setting(settings):
    settings.EMAIL_DELIVERY_RETENTION_DAYS = 30
    old = timezone.now() - timedelta(days=31)
    expired = [_delivery(Status.SENT, finished_at=old, created_at=old) for _ in range(3)]
    recent = _delivery(Status.SENT, finished_at=timezone.now() - timedelta(days=29))
    old_failed = _delivery(Status.FAILED, finished_at=old, created_at=old)
    old_deferred = _delivery(Status.DEFERRED, created_at=old)

    assert purge_sent_deliveries.apply().get() == 3

    left = set(Delivery.objects.values_list("pk", flat=True))
    assert left == {recent.pk, old_failed.pk, old_deferred.pk}
    assert not DeliveryAttempt.objects.filter(delivery_id__in=[d.pk for d in expired]).exists()
    assert purge_sent(days=0) == 1  # the recent one, with a shorter retention


def test_beat_runs_the_sweeper_often_and_the_retention_daily():
    schedule = django_settings.CELERY_BEAT_SCHEDULE
    sweep = schedule["notifications-sweep-deliveries"]
    purge = schedule["notifications-purge-sent-deliveries"]
    assert sweep["task"] == "notifications.sweep_deliveries"
    assert float(sweep["schedule"]) == django_settings.EMAIL_RETRY_SWEEP_SECONDS == 30
    assert purge["task"] == "notifications.purge_sent_deliveries"
    assert float(purge["schedule"]) == 86400
    visibility = django_settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert visibility > django_settings.EMAIL_SENDING_LEASE_SECONDS
