"""DynamicSMTPBackend keeps the contract of Django's SMTP backend: keyword overrides win,
fail_silently comes from the caller, one connection serves a whole send_messages call, and
only the call that opened a connection closes it. The route decides the default From."""

import pytest
from django.core import mail
from django.core.mail.backends.smtp import EmailBackend

from smtp_settings.backends import DynamicSMTPBackend
from smtp_settings.errors import SmtpNotConfigured
from tests.conftest import SMTP_PASSWORD, SMTP_USER, route_settings

pytestmark = pytest.mark.django_db(transaction=True)


def messages(count, **kwargs):
    return [
        mail.EmailMessage(f"#{i}", "Body", kwargs.get("from_email"), ["user@example.net"])
        for i in range(count)
    ]


def test_backend_is_a_plain_django_smtp_backend():
    assert issubclass(DynamicSMTPBackend, EmailBackend)
    assert isinstance(mail.get_connection(), DynamicSMTPBackend)


def test_host_and_port_keywords_win_over_the_admin_route(smtp_factory, configure_admin):
    admin = smtp_factory()
    other = smtp_factory()
    configure_admin(admin)

    connection = mail.get_connection(host=other.host, port=other.port)
    assert mail.send_mail("Hi", "Body", "app@example.com", ["u@example.net"], connection=connection)

    assert other.wait_for(1)[0].rcpt_tos == ["u@example.net"]
    assert admin.recorder.sessions == 0


def test_credential_keywords_win_over_the_stored_password(smtp_factory, configure_admin):
    admin = smtp_factory("TLS", auth=True)
    configure_admin(admin, password="stale-password")

    sent = mail.send_mail(
        "Hi", "Body", None, ["u@example.net"], auth_user=SMTP_USER, auth_password=SMTP_PASSWORD
    )

    assert sent == 1
    assert admin.auth_attempts == [(SMTP_USER, SMTP_PASSWORD, True)]


def test_fail_silently_from_the_caller_returns_zero_without_raising(configure_admin, refused_port):
    configure_admin(smtp_server="127.0.0.1", smtp_port=refused_port)

    assert mail.get_connection(fail_silently=True).send_messages(messages(2)) == 0
    assert mail.get_connection(fail_silently=True).open() is None


def test_one_smtp_session_serves_all_messages_of_a_call(smtp_factory, configure_admin):
    server = smtp_factory()
    configure_admin(server)

    assert mail.get_connection().send_messages(messages(5)) == 5

    server.wait_for(5)
    assert server.recorder.sessions == 1


def test_connection_opened_by_the_caller_stays_open_across_calls(smtp_factory, configure_admin):
    server = smtp_factory()
    configure_admin(server)
    connection = mail.get_connection()

    assert connection.open() is True
    assert connection.open() is False
    assert connection.send_messages(messages(2)) == 2
    assert connection.connection is not None  # not closed by send_messages
    assert connection.send_messages(messages(3)) == 3
    connection.close()

    server.wait_for(5)
    assert server.recorder.sessions == 1
    assert connection.connection is None


def test_context_manager_opens_once_and_closes_at_exit(smtp_factory, configure_admin):
    server = smtp_factory()
    configure_admin(server)

    with mail.get_connection() as connection:
        connection.send_messages(messages(2))
        connection.send_messages(messages(2))
        assert connection.connection is not None

    assert connection.connection is None
    server.wait_for(4)
    assert server.recorder.sessions == 1


def test_connection_the_server_dropped_while_idle_is_reopened_once(smtp_factory, configure_admin):
    server = smtp_factory("NONE", auth=True)
    configure_admin(server)
    connection = mail.get_connection()
    connection.open()
    server.restart()  # the server closes the idle connection

    assert connection.send_messages(messages(1)) == 1

    assert len(server.wait_for(1)) == 1
    assert server.recorder.sessions == 2  # the first login, and the one after the drop
    connection.close()


def test_from_defaults_to_the_route_sender(smtp_factory, configure_admin, settings):
    server = smtp_factory()
    configure_admin(server)

    mail.send_mail("Hi", "Body", None, ["u@example.net"])
    mail.send_mail("Hi", "Body", settings.DEFAULT_FROM_EMAIL, ["u@example.net"])

    for received in server.wait_for(2):
        assert received.mail_from == "noreply@example.com"
        assert received.message["From"] == "Example Alerts <noreply@example.com>"


def test_explicit_from_is_kept(smtp_factory, configure_admin):
    server = smtp_factory()
    configure_admin(server)

    mail.send_mail("Hi", "Body", "Billing <billing@example.org>", ["u@example.net"])

    [received] = server.wait_for(1)
    assert received.mail_from == "billing@example.org"
    assert received.message["From"] == "Billing <billing@example.org>"


def test_route_without_a_sender_keeps_djangos_default_from(smtp_factory, settings):
    server = smtp_factory()
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(server)

    mail.send_mail("Hi", "Body", None, ["u@example.net"])

    assert server.wait_for(1)[0].mail_from == settings.DEFAULT_FROM_EMAIL


def test_callers_message_is_left_as_it_was(smtp_factory, configure_admin, settings):
    server = smtp_factory()
    configure_admin(server)
    message = mail.EmailMessage("Hi", "Body", None, ["u@example.net"])

    mail.get_connection().send_messages([message])
    mail.get_connection().send_messages([message])

    assert message.from_email == settings.DEFAULT_FROM_EMAIL
    assert "Message-ID" not in message.extra_headers
    first, second = server.wait_for(2)
    assert first.message_id != second.message_id  # a second send is a new message


def test_callers_message_id_is_kept(smtp_factory, configure_admin):
    server = smtp_factory()
    configure_admin(server)
    message = mail.EmailMessage(
        "Hi", "Body", None, ["u@example.net"], headers={"Message-ID": "<fixed@example.org>"}
    )

    mail.get_connection().send_messages([message])

    assert server.wait_for(1)[0].message_id == "<fixed@example.org>"


def test_no_route_at_all_is_a_configuration_error_even_when_failing_silently(settings):
    settings.SMTP_ADMIN_CONFIG_ENABLED = False

    with pytest.raises(SmtpNotConfigured, match="No SMTP server is configured"):
        mail.send_mail("Hi", "Body", None, ["u@example.net"], fail_silently=True)


def test_kill_switch_drops_the_admin_route(smtp_factory, configure_admin, settings):
    admin = smtp_factory()
    env = smtp_factory()
    configure_admin(admin)
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env)
    settings.SMTP_ADMIN_CONFIG_ENABLED = False

    assert mail.send_mail("Hi", "Body", None, ["u@example.net"]) == 1

    assert env.wait_for(1)
    assert admin.recorder.sessions == 0


def test_message_without_recipients_is_not_sent(smtp_factory, configure_admin):
    server = smtp_factory()
    configure_admin(server)

    assert mail.get_connection().send_messages([mail.EmailMessage("Hi", "Body", None, [])]) == 0
    assert server.recorder.sessions == 0
