"""Failover between admin, environment and backup routes, only while the message is certainly
not accepted; never a second copy of a message a server took (or may have taken)."""

import time

import pytest
from django.core import mail

from smtp_settings.errors import (
    SmtpAuthError,
    SmtpConnectError,
    SmtpOutcomeUnknown,
    SmtpRecipientsRefused,
    SmtpTimeout,
)
from tests.conftest import route_settings
from tests.send_path.conftest import message_id_counts
from tests.smtp_servers import Behaviour

pytestmark = pytest.mark.django_db(transaction=True)


def send(**kwargs):
    return mail.send_mail("Hi", "Body", None, ["user@example.net"], **kwargs)


def test_failover_to_environment_when_admin_refuses_auth(smtp_factory, configure_admin, settings):
    admin = smtp_factory("TLS", auth=True)
    env = smtp_factory("TLS", auth=True)
    configure_admin(admin, password="wrong-password")
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env)

    assert send() == 1

    assert env.wait_for(1)[0].rcpt_tos == ["user@example.net"]
    assert admin.messages == []
    # One refused login, not one per offered mechanism (see connection.login).
    assert [ok for _, _, ok in admin.auth_attempts] == [False]


def test_backup_takes_the_message_when_admin_and_environment_are_down(
    smtp_factory, configure_admin, settings, refused_port
):
    env = smtp_factory("TLS", auth=True)
    backup = smtp_factory("SSL", auth=True)
    configure_admin(smtp_server="127.0.0.1", smtp_port=refused_port)
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env)
    settings.SMTP_BACKUP_ROUTE = route_settings(backup)
    env.stop()  # the environment's server is down too

    assert send() == 1

    assert backup.wait_for(1)[0].rcpt_tos == ["user@example.net"]


def test_permanent_recipient_refusal_is_not_retried_elsewhere(
    smtp_factory, configure_admin, settings
):
    admin = smtp_factory(behaviour=Behaviour(rcpt="550 5.1.1 no such user"))
    backup = smtp_factory()
    configure_admin(admin)
    settings.SMTP_BACKUP_ROUTE = route_settings(backup)

    with pytest.raises(SmtpRecipientsRefused) as caught:
        send()

    assert caught.value.permanent is True
    assert caught.value.smtp_code == 550
    assert caught.value.route == "admin"
    assert "user@example.net" in caught.value.hint
    assert backup.recorder.sessions == 0
    assert backup.messages == []


def test_partly_refused_recipients_still_send_to_the_others(smtp_factory, configure_admin):
    admin = smtp_factory(behaviour=Behaviour(rcpt={"gone@example.net": "550 5.1.1 no such user"}))
    configure_admin(admin)

    sent = mail.send_mail("Hi", "Body", None, ["gone@example.net", "here@example.net"])

    assert sent == 1
    assert admin.wait_for(1)[0].rcpt_tos == ["here@example.net"]


@pytest.mark.parametrize(
    "behaviour",
    [
        Behaviour(mail="451 4.3.0 try again later"),
        Behaviour(mail="550 5.7.1 sender not allowed"),
        Behaviour(rcpt="451 4.3.0 greylisted"),
        Behaviour(data="451 4.3.0 queue full"),
    ],
    ids=["4xx-mail-from", "5xx-mail-from", "4xx-rcpt", "4xx-data"],
)
def test_refusal_before_acceptance_fails_over_once(
    smtp_factory, configure_admin, settings, behaviour
):
    admin = smtp_factory(behaviour=behaviour)
    env = smtp_factory()
    configure_admin(admin)
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env)

    assert send() == 1

    env.wait_for(1)
    assert admin.messages == []
    assert list(message_id_counts(admin, env).values()) == [1]


def test_stalled_server_is_bounded_by_the_route_timeout_and_fails_over(
    raw_factory, smtp_factory, configure_admin, settings
):
    stall = raw_factory("stall")
    env = smtp_factory()
    configure_admin(smtp_server=stall.host, smtp_port=stall.port, smtp_timeout=1)
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env)

    started = time.monotonic()
    assert send() == 1
    elapsed = time.monotonic() - started

    assert env.wait_for(1)
    assert 0.9 <= elapsed < 2.5  # one timeout, not several, and not the default 10 s


def test_stalled_server_alone_raises_a_timeout_with_a_hint(raw_factory, configure_admin):
    stall = raw_factory("stall")
    configure_admin(smtp_server=stall.host, smtp_port=stall.port, smtp_timeout=1)

    with pytest.raises(SmtpTimeout) as caught:
        send()

    assert caught.value.step == "connect"
    assert "sent no greeting within 1 s" in caught.value.hint


def test_line_dropped_after_ehlo_fails_over(raw_factory, smtp_factory, configure_admin, settings):
    drop = raw_factory("drop_after_ehlo")
    env = smtp_factory()
    configure_admin(smtp_server=drop.host, smtp_port=drop.port)
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env)

    assert send() == 1

    assert env.wait_for(1)
    assert drop.connections == 1  # not retried on the same broken server


def test_greeting_421_fails_over(raw_factory, smtp_factory, configure_admin, settings):
    busy = raw_factory("greet_421")
    env = smtp_factory()
    configure_admin(smtp_server=busy.host, smtp_port=busy.port)
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env)

    assert send() == 1

    assert env.wait_for(1)


def test_line_lost_after_the_whole_message_is_not_sent_again(
    swallow_server, smtp_factory, configure_admin, settings
):
    env = smtp_factory()
    backup = smtp_factory()
    configure_admin(smtp_server=swallow_server.host, smtp_port=swallow_server.port)
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env)
    settings.SMTP_BACKUP_ROUTE = route_settings(backup)

    with pytest.raises(SmtpOutcomeUnknown) as caught:
        send()

    assert b"Body" in swallow_server.received[0]  # the first server may have delivered it
    assert caught.value.permanent is True
    assert "may have been delivered" in caught.value.hint
    assert env.recorder.sessions == 0
    assert backup.recorder.sessions == 0


def test_no_message_is_sent_twice_across_mixed_failures(
    smtp_factory, configure_admin, settings, refused_port
):
    # The admin server takes some recipients and refuses others for now at RCPT; the
    # environment route refuses at DATA now and then; the backup takes what is left.
    admin = smtp_factory(behaviour=Behaviour(rcpt={"later@example.net": "451 4.3.0 later"}))
    env = smtp_factory(behaviour=Behaviour(data="451 4.3.0 busy"))
    backup = smtp_factory()
    configure_admin(admin)
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env)
    settings.SMTP_BACKUP_ROUTE = route_settings(backup)
    recipients = ["now@example.net", "later@example.net"]

    sent = sum(mail.send_mail(f"#{i}", "Body", None, [recipients[i % 2]]) for i in range(10))

    assert sent == 10
    counts = message_id_counts(admin, env, backup)
    assert len(counts) == 10
    assert set(counts.values()) == {1}
    assert len(admin.messages) == 5
    assert len(backup.messages) == 5
    assert env.messages == []


def test_batch_waits_for_an_unreachable_route_once(
    raw_factory, configure_admin, settings, refused_port
):
    stall = raw_factory("stall")
    configure_admin(smtp_server=stall.host, smtp_port=stall.port, smtp_timeout=1)
    settings.SMTP_ENVIRONMENT_ROUTE = {
        **route_settings(),
        "server": "127.0.0.1",
        "port": refused_port,
        "security": "NONE",
    }
    messages = [mail.EmailMessage(f"#{i}", "Body", None, ["u@example.net"]) for i in range(3)]

    started = time.monotonic()
    sent = mail.get_connection(fail_silently=True).send_messages(messages)
    elapsed = time.monotonic() - started

    assert sent == 0
    assert stall.connections == 1
    assert elapsed < 2.5


def test_all_routes_down_raises_the_last_routes_error(
    configure_admin, settings, refused_port, smtp_factory
):
    env = smtp_factory("TLS", auth=True)
    configure_admin(smtp_server="127.0.0.1", smtp_port=refused_port)
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env, password="wrong")

    with pytest.raises(SmtpAuthError) as caught:
        send()

    assert caught.value.route == "environment"
    assert caught.value.smtp_code == 535


def test_all_routes_down_with_fail_silently_returns_zero(configure_admin, refused_port):
    configure_admin(smtp_server="127.0.0.1", smtp_port=refused_port)

    assert send(fail_silently=True) == 0
    with pytest.raises(SmtpConnectError, match="refused"):
        send()
