"""The recorder hooks the send path calls: sent records written off the send path, deferred
messages written before ``send_mail`` returns, permanent refusals failed at once."""

from __future__ import annotations

import base64
import email
import logging
import os
import subprocess
import sys
import textwrap

import pytest
from django.core import mail
from django.db import transaction

from notifications import recorder
from notifications.buffer import buffer
from notifications.models import Delivery, DeliveryAttempt, Status
from notifications.records import Outcome
from notifications.retry import send_due, sweep
from smtp_settings.errors import SmtpConnectError, SmtpRecipientsRefused
from tests.conftest import SMTP_USER
from tests.notifications.conftest import REPO
from tests.smtp_servers import Behaviour
from tests.waiting import wait_until


def _send(subject: str = "Hello", to: str = "user@example.net") -> int:
    return mail.send_mail(subject, "Body", None, [to])


@pytest.mark.django_db(transaction=True)
def test_sent_message_is_logged_in_the_background_without_a_query_on_the_send_path(
    shared_db, smtp_factory, configure_admin, fast_retries, django_assert_num_queries
):
    server = smtp_factory()
    configure_admin(server)
    assert _send("warm-up") == 1  # the first send of a process loads the routes

    with django_assert_num_queries(0):
        assert _send("Quarterly report", "boss@example.net") == 1

    [received] = [m for m in server.wait_for(2) if m.message["Subject"] == "Quarterly report"]
    delivery = wait_until(
        lambda: Delivery.objects.filter(message_id=received.message_id).first(),
        timeout=5,
        what="the flusher thread writing the sent record",
    )
    assert delivery.status == Status.SENT
    assert delivery.route == "admin"
    assert delivery.server == f"{server.host}:{server.port}"
    assert delivery.recipient_list == ["boss@example.net"]
    assert delivery.subject == "Quarterly report"
    assert delivery.sender == "Example Alerts <noreply@example.com>"
    assert delivery.attempts == 1
    assert delivery.last_smtp_code == 250
    assert delivery.raw_message is None
    assert delivery.finished_at is not None
    [attempt] = delivery.attempt_log.all()
    assert (attempt.number, attempt.outcome, attempt.route) == (1, Status.SENT, "admin")


@pytest.mark.django_db
def test_delivery_log_off_records_nothing_for_sent_messages(
    smtp_factory, configure_admin, settings
):
    settings.EMAIL_DELIVERY_LOG = False
    server = smtp_factory()
    configure_admin(server)

    assert _send() == 1

    assert server.wait_for(1)
    assert recorder.pending() == 0
    assert recorder.flush() is True
    assert Delivery.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_recipient_refused_with_5xx_is_failed_at_once_and_never_retried(
    smtp_factory, configure_admin, fast_retries
):
    server = smtp_factory(behaviour=Behaviour(rcpt="550 5.1.1 No such user here"))
    configure_admin(server)

    with pytest.raises(SmtpRecipientsRefused):
        _send(to="nobody@example.net")
    assert recorder.flush() is True

    delivery = Delivery.objects.get()
    assert delivery.status == Status.FAILED
    assert delivery.attempts == 1
    assert delivery.last_smtp_code == 550
    assert delivery.raw_message is None
    assert "nobody@example.net" in delivery.last_error
    assert [a.outcome for a in delivery.attempt_log.all()] == [Status.FAILED]
    # Nothing is due, so neither the sweeper nor a retry task sends it again.
    assert sweep()["due"] == 0
    assert send_due() == 0
    assert server.recorder.mail_commands == 1


@pytest.mark.django_db
def test_with_deferral_off_an_undeliverable_message_raises_and_is_logged_failed(
    configure_admin, refused_port, settings
):
    settings.EMAIL_DEFER_ON_FAILURE = False
    configure_admin(None, smtp_port=refused_port)

    with pytest.raises(SmtpConnectError):
        _send()

    assert recorder.flush() is True
    delivery = Delivery.objects.get()
    assert delivery.status == Status.FAILED
    assert delivery.raw_message is None
    assert "refused" in delivery.last_error


@pytest.mark.django_db
def test_deferred_message_is_stored_before_send_mail_returns(
    configure_admin, refused_port, fast_retries
):
    configure_admin(None, smtp_port=refused_port)

    assert _send("Password changed", "user@example.net") == 1

    # No flush: the row is already in the database, with the message to send later.
    delivery = Delivery.objects.get()
    assert delivery.status == Status.DEFERRED
    assert delivery.attempts == 1
    assert delivery.next_attempt_at > delivery.created_at
    assert delivery.route == "admin"
    assert b"Subject: Password changed" in bytes(delivery.raw_message)
    assert f"Message-ID: {delivery.message_id}".encode() in bytes(delivery.raw_message)
    [attempt] = delivery.attempt_log.all()
    assert attempt.outcome == Status.DEFERRED
    assert "refused" in attempt.error


@pytest.mark.django_db(transaction=True)
def test_deferral_follows_the_callers_transaction(
    configure_admin, refused_port, fast_retries, redis_client
):
    configure_admin(None, smtp_port=refused_port)
    queued = redis_client.llen("celery")

    def request_that_fails_after_sending() -> None:
        with transaction.atomic():
            assert _send("Rolled back") == 1
            assert Delivery.objects.count() == 1
            assert redis_client.llen("celery") == queued  # nothing queued before the commit
            raise RuntimeError("the request failed after send_mail")

    with pytest.raises(RuntimeError):
        request_that_fails_after_sending()

    assert Delivery.objects.count() == 0
    assert redis_client.llen("celery") == queued

    with transaction.atomic():
        assert _send("Committed") == 1
        assert redis_client.llen("celery") == queued
    assert Delivery.objects.get().subject == "Committed"
    assert redis_client.llen("celery") == queued + 1  # the retry, queued after the commit


@pytest.mark.django_db
def test_no_secret_reaches_the_delivery_log_when_auth_is_refused(
    smtp_factory, configure_admin, fast_retries
):
    wrong = "Wr0ng-but-Secret-Pa55word"
    server = smtp_factory("TLS", auth=True)
    configure_admin(server, password=wrong)

    assert _send() == 1  # AUTH refused on the only route: deferred

    assert server.auth_attempts  # smtplib tries PLAIN, then LOGIN
    assert set(server.auth_attempts) == {(SMTP_USER, wrong, False)}
    delivery = Delivery.objects.get()
    assert delivery.status == Status.DEFERRED
    assert delivery.last_smtp_code == 535
    forms = [wrong, base64.b64encode(wrong.encode()).decode()]
    rows = list(Delivery.objects.values()) + list(DeliveryAttempt.objects.values())
    stored = repr(rows)
    for form in forms:
        assert form not in stored
        assert form.encode() not in bytes(delivery.raw_message)


@pytest.mark.django_db
def test_full_buffer_drops_the_oldest_records_with_one_log_line_each(
    smtp_factory, configure_admin, settings, caplog
):
    settings.EMAIL_DELIVERY_LOG_BUFFER = 3
    settings.EMAIL_DELIVERY_LOG_FLUSH_SECONDS = 60  # the flusher stays asleep
    server = smtp_factory()
    configure_admin(server)

    with caplog.at_level(logging.ERROR, logger="notifications.buffer"):
        for number in range(5):
            assert _send(f"Message {number}") == 1

    ids = [m.message_id for m in server.wait_for(5)]
    dropped = [r.getMessage() for r in caplog.records if "delivery_log_dropped" in r.getMessage()]
    assert len(dropped) == 2
    for line, message_id in zip(dropped, ids[:2], strict=True):
        assert "reason=buffer_full" in line
        assert f"message_id={message_id}" in line
        assert "status=sent" in line
    assert recorder.pending() == 3
    assert recorder.flush() is True
    assert set(Delivery.objects.values_list("message_id", flat=True)) == set(ids[2:])


def test_forked_child_starts_with_an_empty_buffer_and_a_flusher_of_its_own(settings):
    settings.EMAIL_DELIVERY_LOG_FLUSH_SECONDS = 60
    record = Outcome("sent", "<fork@test>", "s", "a@b", ("c@d",), "admin", "h:1", 250, "", 0.0)
    buffer.add(record)
    parent_thread = buffer._thread
    reader, writer = os.pipe()

    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's handlers
        try:
            before = (buffer.pending(), buffer._thread is None)
            buffer.add(record)
            after = (buffer.pending(), buffer._thread is not None and buffer._thread.is_alive())
            os.write(writer, repr((before, after)).encode())
        finally:
            os._exit(0)
    os.close(writer)
    report = os.read(reader, 1000).decode()
    os.waitpid(pid, 0)
    os.close(reader)

    assert report == "((0, True), (1, True))"
    assert buffer.pending() == 1  # the parent keeps its own record
    assert buffer._thread is parent_thread
    assert parent_thread.is_alive()


@pytest.mark.django_db(transaction=True)
def test_records_still_buffered_at_process_exit_are_written(
    shared_db, smtp_factory, configure_admin
):
    server = smtp_factory()
    configure_admin(server)
    script = textwrap.dedent(
        """
        import django
        django.setup()
        from django.core import mail
        assert mail.send_mail("At exit", "Body", None, ["user@example.net"]) == 1
        # No flush: the process ends with the record still in the buffer.
        """
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": shared_db.url,
        "EMAIL_DELIVERY_LOG_FLUSH_SECONDS": "60",
    }
    env.pop("TEST_DATABASE_NAME", None)

    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, timeout=60
    )

    assert done.returncode == 0, done.stderr.decode()[-2000:]
    [received] = server.wait_for(1)
    delivery = Delivery.objects.get()
    assert (delivery.message_id, delivery.status) == (received.message_id, Status.SENT)


@pytest.mark.django_db
def test_a_record_the_database_refuses_does_not_block_the_others(caplog):
    from django.db import connection

    good = Outcome("sent", "<good@test>", "s", "a@b", ("c@d",), "admin", "h:1", 250, "", 0.0)
    too_long = good._replace(message_id="<bad@test>", route="r" * 50)  # the column holds 20
    buffer.add(too_long)
    buffer.add(good)

    with caplog.at_level(logging.ERROR, logger="notifications.buffer"):
        assert recorder.flush() is True

    stored = set(Delivery.objects.values_list("message_id", flat=True))
    dropped = [r.getMessage() for r in caplog.records if "delivery_log_dropped" in r.getMessage()]
    if connection.vendor == "postgresql":
        assert stored == {"<good@test>"}
        assert len(dropped) == 1
        assert "reason=rejected_by_database" in dropped[0]
        assert "message_id=<bad@test>" in dropped[0]
    else:  # SQLite does not enforce a varchar length: both rows fit
        assert stored == {"<good@test>", "<bad@test>"}
        assert dropped == []
    assert recorder.pending() == 0


@pytest.mark.django_db
def test_an_overlong_message_id_is_clipped_to_the_column_and_still_deferred(
    configure_admin, refused_port, fast_retries
):
    configure_admin(None, smtp_port=refused_port)
    long_id = "<" + "x" * 300 + "@example.com>"
    message = mail.EmailMessage("Long id", "Body", None, ["u@example.net"])
    message.extra_headers["Message-ID"] = long_id

    assert message.send() == 1

    delivery = Delivery.objects.get()
    assert len(delivery.message_id) == 255
    stored = email.message_from_bytes(bytes(delivery.raw_message))
    assert "".join(stored["Message-ID"].split()) == long_id  # the message keeps its own
