"""Nothing lost, nothing twice: whole scenarios with real servers going down and coming back,
the real Redis broker and a real Celery worker (in-process) doing the retries, and two
workers racing for the same deferred rows."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection

from notifications import recorder
from notifications.models import Delivery, DeliveryAttempt, Status
from notifications.retry import send_due
from tests.conftest import route_settings
from tests.notifications.helpers import message_id_counts, send_numbered
from tests.waiting import wait_until


def _all_sent(total: int) -> bool:
    recorder.flush()
    return Delivery.objects.filter(status=Status.SENT).count() == total


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_1000_sends_with_the_primary_down_from_300_to_700_lose_and_repeat_nothing(
    shared_db, live_worker, smtp_factory, configure_admin, fast_retries
):
    primary = smtp_factory()
    backup = smtp_factory()
    configure_admin(primary)
    fast_retries.SMTP_BACKUP_ROUTE = route_settings(backup)

    def events(number: int) -> None:
        if number == 300:
            primary.stop()
        elif number == 450:
            backup.behaviour.mail = "421 4.3.2 Try again later"  # now no route takes mail
        elif number == 470:
            backup.behaviour.mail = None
        elif number == 700:
            primary.start()

    results = send_numbered(1000, before=events)

    assert results == [1] * 1000  # send_mail never raised, every message was taken
    wait_until(
        lambda: len(primary.messages) + len(backup.messages) >= 1000,
        timeout=60,
        what="1,000 messages at the servers",
    )
    counts = message_id_counts(primary, backup)
    assert len(counts) == 1000  # 0 lost
    assert set(counts.values()) == {1}  # 0 duplicated
    wait_until(lambda: _all_sent(1000), timeout=60, what="1,000 sent rows")
    by_route = Counter(Delivery.objects.values_list("route", flat=True))
    assert by_route == {"admin": len(primary.messages), "backup": len(backup.messages)}
    first_try = Counter(Delivery.objects.filter(attempts=1).values_list("route", flat=True))
    assert first_try == {"admin": 600, "backup": 380}
    assert set(Delivery.objects.values_list("message_id", flat=True)) == set(counts)
    # The 20 messages no route took waited in the queue and were sent by the worker.
    assert Delivery.objects.filter(attempts__gt=1).count() == 20
    assert not Delivery.objects.exclude(raw_message=None).exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_every_route_down_for_500_sends_then_back_all_delivered_once_by_the_worker(
    shared_db, live_worker, smtp_factory, configure_admin, fast_retries
):
    # The first retry window ends after the 500 sends; later ones are not much longer.
    fast_retries.EMAIL_RETRY_BASE_SECONDS = 1.5
    fast_retries.EMAIL_RETRY_MAX_SECONDS = 3.0
    primary = smtp_factory()
    backup = smtp_factory()
    configure_admin(primary)
    fast_retries.SMTP_BACKUP_ROUTE = route_settings(backup)
    primary.stop()
    backup.stop()

    results = send_numbered(500)

    assert results == [1] * 500  # send_mail never raised
    assert Delivery.objects.filter(status__in=(Status.DEFERRED, Status.SENDING)).count() == 500
    # Every message has been through its first retry window, still with no route up.
    wait_until(
        lambda: not Delivery.objects.filter(attempts__lt=2).exists(),
        timeout=60,
        what="a first retry of every message",
    )
    assert not primary.messages
    assert not backup.messages
    primary.start()
    backup.start()

    wait_until(
        lambda: len(primary.messages) + len(backup.messages) >= 500,
        timeout=90,
        what="500 messages at the servers",
    )
    counts = message_id_counts(primary, backup)
    assert len(counts) == 500
    assert set(counts.values()) == {1}
    wait_until(lambda: _all_sent(500), timeout=30, what="500 sent rows")
    assert set(Delivery.objects.values_list("message_id", flat=True)) == set(counts)
    assert not Delivery.objects.exclude(raw_message=None).exists()


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_for_the_same_due_rows_send_each_message_once(
    shared_db, smtp_factory, configure_admin, fast_retries
):
    fast_retries.EMAIL_RETRY_BASE_SECONDS = 3600  # only the racing workers send
    server = smtp_factory()
    configure_admin(server)
    server.stop()
    send_numbered(200)
    ids = list(Delivery.objects.values_list("message_id", flat=True))
    assert len(ids) == 200
    Delivery.objects.update(next_attempt_at=Delivery.objects.first().created_at)
    server.start()
    start = threading.Barrier(2)
    sent_by: dict[str, int] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            start.wait(timeout=10)
            sent_by[name] = send_due(ids, limit=10_000)  # both go after the same rows
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()  # each thread had a database connection of its own

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert sent_by["one"] + sent_by["two"] == 200
    assert sent_by["one"] > 0
    assert sent_by["two"] > 0
    counts = message_id_counts(server)
    assert len(counts) == 200
    assert set(counts.values()) == {1}
    assert Delivery.objects.filter(status=Status.SENT, attempts=2).count() == 200
    assert DeliveryAttempt.objects.filter(outcome=Status.SENT).count() == 200
