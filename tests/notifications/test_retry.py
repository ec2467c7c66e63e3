"""The retry worker's rules, one delivery at a time: sent once with its MIME dropped, failed on
a permanent refusal, deferred again with a longer wait, given up with an alarm, released
when its worker vanished; and the stored message is the message the app built."""

from __future__ import annotations

import email.policy
import logging
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from notifications.claims import claim_next
from notifications.models import Delivery, Status
from notifications.retry import send_due, sweep
from notifications.schedule import backoff_seconds
from notifications.tasks import retry_deliveries
from tests.smtp_servers import Behaviour, SmtpServer


def _defer_one(server: SmtpServer, subject: str = "Deferred") -> Delivery:
    """Send while ``server`` is stopped; return the deferred delivery, due now."""
    server.stop()
    assert mail.send_mail(subject, "Body", None, ["user@example.net"]) == 1
    delivery = Delivery.objects.get(subject=subject)
    assert delivery.status == Status.DEFERRED
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    return delivery


@pytest.fixture
def admin_server(smtp_factory, configure_admin, fast_retries) -> SmtpServer:
    server = smtp_factory()
    configure_admin(server)
    return server


@pytest.mark.django_db
def test_retry_sends_a_deferred_message_once_and_drops_its_mime(admin_server):
    deferred = _defer_one(admin_server, "Your invoice")
    admin_server.start()

    assert send_due() == 1

    [received] = admin_server.wait_for(1)
    assert received.message_id == deferred.message_id
    assert received.message["Subject"] == "Your invoice"
    # Sent with the default sender, so the route's sender applies, as on the first try.
    assert received.message["From"] == "Example Alerts <noreply@example.com>"
    assert received.mail_from == "noreply@example.com"
    delivery = Delivery.objects.get(pk=deferred.pk)
    assert delivery.status == Status.SENT
    assert delivery.sender == "Example Alerts <noreply@example.com>"  # as it went out
    assert delivery.raw_message is None
    assert delivery.attempts == 2
    assert delivery.lease_expires_at is None
    assert [a.outcome for a in delivery.attempt_log.all()] == [Status.DEFERRED, Status.SENT]
    # Idempotent: a second task run for the same Message-ID finds nothing to do.
    assert retry_deliveries.apply(args=([delivery.message_id],)).get() == 0
    assert send_due() == 0
    assert admin_server.recorder.data_commands == 1


@pytest.mark.django_db
def test_permanent_refusal_on_retry_fails_the_delivery_and_drops_its_mime(admin_server):
    deferred = _defer_one(admin_server)
    admin_server.behaviour.rcpt = "550 5.1.1 Mailbox does not exist"
    admin_server.start()

    assert send_due() == 1

    delivery = Delivery.objects.get(pk=deferred.pk)
    assert delivery.status == Status.FAILED
    assert delivery.last_smtp_code == 550
    assert delivery.raw_message is None
    assert delivery.finished_at is not None
    assert send_due() == 0  # failed is final


@pytest.mark.django_db
def test_failed_retry_waits_longer_and_keeps_the_message(admin_server, settings):
    settings.EMAIL_RETRY_BASE_SECONDS = 10
    settings.EMAIL_RETRY_MAX_SECONDS = 3600
    deferred = _defer_one(admin_server)  # and the server stays down

    before = timezone.now()
    assert send_due() == 1

    delivery = Delivery.objects.get(pk=deferred.pk)
    assert delivery.status == Status.DEFERRED
    assert delivery.attempts == 2
    assert delivery.raw_message is not None
    wait = (delivery.next_attempt_at - before).total_seconds()
    assert 16 <= wait <= 21  # the second step: 2 x 10 s, less up to 20 % jitter
    assert [a.outcome for a in delivery.attempt_log.all()] == [Status.DEFERRED] * 2


@pytest.mark.django_db
def test_gives_up_after_the_give_up_time_with_an_alarm(admin_server, settings, caplog):
    deferred = _defer_one(admin_server)
    settings.EMAIL_RETRY_GIVE_UP_SECONDS = 0

    with caplog.at_level(logging.ERROR, logger="notifications.alerts"):
        assert send_due() == 1

    delivery = Delivery.objects.get(pk=deferred.pk)
    assert delivery.status == Status.FAILED
    assert delivery.raw_message is None
    [alarm] = [r.getMessage() for r in caplog.records if "delivery_gave_up" in r.getMessage()]
    assert f"message_id={deferred.message_id}" in alarm
    assert "attempts=2" in alarm


def test_backoff_doubles_from_the_base_up_to_the_cap_with_jitter(settings):
    settings.EMAIL_RETRY_BASE_SECONDS = 60
    settings.EMAIL_RETRY_MAX_SECONDS = 3600
    for attempt, step in [(1, 60), (2, 120), (3, 240), (6, 1920), (7, 3600), (40, 3600)]:
        waits = [backoff_seconds(attempt) for _ in range(200)]
        assert all(0.8 * step <= wait <= step for wait in waits), (attempt, min(waits))
        assert max(waits) - min(waits) > 0.05 * step  # spread, not one fixed value


@pytest.mark.django_db
def test_sweeper_releases_an_expired_lease_and_the_message_is_sent_once(admin_server, settings):
    deferred = _defer_one(admin_server)
    settings.EMAIL_SENDING_LEASE_SECONDS = 0  # the claim below expires at once
    claimed = claim_next()
    assert claimed.pk == deferred.pk
    assert Delivery.objects.get(pk=deferred.pk).status == Status.SENDING
    assert claim_next() is None  # a held lease is not claimed twice
    # ...and its worker dies here, before any result is recorded.

    outcome = sweep()

    assert outcome["released"] == 1
    assert outcome["queued"] == 1
    released = Delivery.objects.get(pk=deferred.pk)
    assert released.status == Status.DEFERRED
    assert "stopped before it finished" in released.attempt_log.get(number=2).error
    settings.EMAIL_SENDING_LEASE_SECONDS = 60
    admin_server.start()
    assert send_due() == 1
    assert [m.message_id for m in admin_server.wait_for(1)] == [deferred.message_id]
    assert Delivery.objects.get(pk=deferred.pk).attempts == 3


@pytest.mark.django_db
def test_not_yet_due_deliveries_are_left_alone(admin_server):
    deferred = _defer_one(admin_server)
    Delivery.objects.filter(pk=deferred.pk).update(
        next_attempt_at=timezone.now() + timedelta(minutes=5)
    )

    assert send_due() == 0
    assert send_due([deferred.message_id]) == 0
    assert sweep()["due"] == 0
    assert Delivery.objects.get(pk=deferred.pk).attempts == 1


@pytest.mark.django_db
def test_stored_message_is_sent_as_the_app_built_it(admin_server):
    admin_server.stop()
    message = mail.EmailMessage(
        "Café menu ☕",
        "Body with ünïcode\n.line starting with a dot\n",
        "Team <team@example.com>",
        ["to@example.net"],
        cc=["cc@example.net"],
        bcc=["hidden@example.net"],
        headers={"X-Trace": "abc"},
    )
    message.attach("report.csv", "a,b\n1,2\n", "text/csv")
    assert message.send() == 1
    deferred = Delivery.objects.get()
    Delivery.objects.filter(pk=deferred.pk).update(next_attempt_at=timezone.now())
    admin_server.start()

    assert send_due() == 1

    [received] = admin_server.wait_for(1)
    parsed = received.message
    assert received.message_id == deferred.message_id
    assert sorted(received.rcpt_tos) == ["cc@example.net", "hidden@example.net", "to@example.net"]
    assert "hidden@example.net" not in received.data.decode()
    assert b"\r\r\n" not in received.data
    assert b"\n\n\n" not in received.data
    assert received.mail_from == "team@example.com"  # an explicit sender is kept
    assert parsed["From"] == "Team <team@example.com>"
    assert parsed["Subject"] == "Café menu ☕"
    assert parsed["X-Trace"] == "abc"
    body, attachment = [part for part in parsed.iter_parts()]
    # 8bit parts keep the wire's CRLF line ends when decoded, as for a first-try send.
    text = body.get_content().replace("\r\n", "\n")
    assert text == "Body with ünïcode\n.line starting with a dot\n"
    assert attachment.get_filename() == "report.csv"
    assert attachment.get_content().replace("\r\n", "\n") == "a,b\n1,2\n"
    assert isinstance(parsed.policy, email.policy.EmailPolicy)


@pytest.mark.django_db
def test_giving_up_mails_the_admins_through_a_route_that_works(
    smtp_factory, configure_admin, fast_retries, settings
):
    server = smtp_factory(behaviour=Behaviour(rcpt={"user@example.net": "451 4.2.0 Mailbox busy"}))
    configure_admin(server)
    settings.ADMINS = [("Ops", "ops@example.com")]
    assert mail.send_mail("Invoice 7", "Body", None, ["user@example.net"]) == 1
    deferred = Delivery.objects.get(subject="Invoice 7")
    assert deferred.status == Status.DEFERRED
    settings.EMAIL_RETRY_GIVE_UP_SECONDS = 0
    Delivery.objects.filter(pk=deferred.pk).update(next_attempt_at=timezone.now())

    send_due()

    [alert] = server.wait_for(1)
    assert alert.rcpt_tos == ["ops@example.com"]
    assert "Email given up after retrying: Invoice 7" in str(alert.message["Subject"])
    assert deferred.message_id in alert.message.get_content()
    assert Delivery.objects.get(pk=deferred.pk).status == Status.FAILED


@pytest.mark.django_db
def test_an_alert_that_is_given_up_raises_no_further_alert(admin_server, settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    deferred = _defer_one(admin_server, "[Django] Email given up after retrying: Invoice 8")
    settings.EMAIL_RETRY_GIVE_UP_SECONDS = 0

    send_due()

    assert Delivery.objects.get(pk=deferred.pk).status == Status.FAILED
    assert not Delivery.objects.exclude(pk=deferred.pk).exists()
