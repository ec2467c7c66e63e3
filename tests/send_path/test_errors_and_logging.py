"""The error family (standard type, route, SMTP code, an admin hint), routes that never show
their secret, and one structured log line per send that never holds the password."""

import logging
import smtplib

import pytest
from cryptography.fernet import Fernet
from django.core import mail

from smtp_settings import errors
from smtp_settings.crypto import EncryptedSecret
from smtp_settings.resolver import current_routes
from smtp_settings.routes import SecretRef, SmtpRoute
from tests.conftest import SMTP_PASSWORD, SMTP_USER, route_settings
from tests.smtp_servers import Behaviour

pytestmark = pytest.mark.django_db(transaction=True)

FAMILY = [
    errors.SmtpConnectError,
    errors.SmtpTlsError,
    errors.SmtpAuthError,
    errors.SmtpSenderRefused,
    errors.SmtpRecipientsRefused,
    errors.SmtpTimeout,
    errors.SmtpMessageRefused,
    errors.SmtpOutcomeUnknown,
    errors.SmtpNotConfigured,
]


@pytest.mark.parametrize("cls", FAMILY, ids=lambda cls: cls.__name__)
def test_every_error_is_an_smtp_exception_with_route_code_and_hint(cls):
    exc = cls("Do this.", route="backup", code=451, address="mx.example.net:587")

    assert isinstance(exc, smtplib.SMTPException)
    assert (exc.route, exc.smtp_code, exc.hint, str(exc)) == ("backup", 451, "Do this.", "Do this.")
    assert exc.as_dict()["error"] == cls.__name__


def test_refused_auth_carries_route_code_and_app_password_hint(smtp_factory, configure_admin):
    server = smtp_factory("TLS", auth=True)
    configure_admin(server, password="wrong-password")

    with pytest.raises(errors.SmtpAuthError) as caught:
        mail.send_mail("Hi", "Body", None, ["u@example.net"])

    assert caught.value.route == "admin"
    assert caught.value.smtp_code == 535
    assert "app password" in caught.value.hint
    assert "wrong-password" not in str(caught.value.as_dict())


def test_sender_refused_hint_names_the_sender(smtp_factory, configure_admin):
    server = smtp_factory(behaviour=Behaviour(mail="553 5.7.1 not your address"))
    configure_admin(server)

    with pytest.raises(errors.SmtpSenderRefused) as caught:
        mail.send_mail("Hi", "Body", None, ["u@example.net"])

    assert caught.value.smtp_code == 553
    assert "noreply@example.com" in caught.value.hint


def test_password_no_key_decrypts_fails_over_with_the_key_hint(
    smtp_factory, configure_admin, settings
):
    admin = smtp_factory("TLS", auth=True)
    env = smtp_factory("TLS", auth=True)
    config = configure_admin(admin)
    foreign = Fernet(Fernet.generate_key()).encrypt(SMTP_PASSWORD.encode()).decode()
    config.smtp_password = EncryptedSecret(foreign)
    config.save()
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env)

    assert mail.send_mail("Hi", "Body", None, ["u@example.net"]) == 1

    assert env.wait_for(1)
    assert admin.auth_attempts == []  # the token was never sent as a password
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings()
    with pytest.raises(errors.SmtpAuthError, match="FIELD_ENCRYPTION_KEY"):
        mail.send_mail("Hi", "Body", None, ["u@example.net"])


def test_route_repr_and_str_never_show_the_secret(configure_admin, smtp_factory, settings):
    token = EncryptedSecret.from_plaintext(SMTP_PASSWORD).token
    routes = [
        SmtpRoute("admin", "mx.example.net", 587, username=SMTP_USER, secret=SecretRef(token)),
        SmtpRoute("override", "mx.example.net", 25, secret=SecretRef(plaintext=SMTP_PASSWORD)),
    ]
    configure_admin(smtp_factory("TLS", auth=True))
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(smtp_factory("TLS", auth=True))
    routes += list(current_routes())

    for route in routes:
        for text in (repr(route), str(route), repr(route.secret), str(route.secret)):
            assert SMTP_PASSWORD not in text
            assert token not in text
    assert [route.password() for route in routes[-2:]] == [SMTP_PASSWORD, SMTP_PASSWORD]


def send_records(caplog):
    return [r for r in caplog.records if r.name == "smtp_settings.send"]


def test_one_structured_line_per_sent_message(smtp_factory, configure_admin, caplog):
    server = smtp_factory("TLS", auth=True)
    configure_admin(server)
    caplog.set_level(logging.INFO)

    mail.get_connection().send_messages(
        [mail.EmailMessage(f"#{i}", "Body", None, ["u@example.net"]) for i in range(3)]
    )

    records = send_records(caplog)
    received_ids = [m.message_id for m in server.wait_for(3)]
    assert [r.message_id for r in records] == received_ids
    for record in records:
        assert (record.smtp_route, record.smtp_host) == ("admin", f"127.0.0.1:{server.port}")
        assert (record.outcome, record.smtp_code, record.attempts) == ("sent", 250, 1)
        assert f"message_id={record.message_id}" in record.getMessage()
        assert "outcome=sent route=admin" in record.getMessage()


def test_failover_logs_the_failed_attempt_and_the_outcome(
    smtp_factory, configure_admin, settings, caplog
):
    admin = smtp_factory("TLS", auth=True)
    env = smtp_factory("TLS", auth=True)
    configure_admin(admin, password="wrong-password")
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env)
    caplog.set_level(logging.INFO)

    mail.send_mail("Hi", "Body", None, ["u@example.net"])

    attempt, outcome = send_records(caplog)
    assert (attempt.outcome, attempt.smtp_route, attempt.smtp_code) == (
        "attempt_failed",
        "admin",
        535,
    )
    assert attempt.levelno == logging.WARNING
    assert "app password" in attempt.getMessage()
    assert (outcome.outcome, outcome.smtp_route, outcome.attempts) == ("sent", "environment", 2)
    assert attempt.message_id == outcome.message_id == env.wait_for(1)[0].message_id


def test_failed_send_logs_outcome_failed_with_the_code(smtp_factory, configure_admin, caplog):
    server = smtp_factory(behaviour=Behaviour(rcpt="550 5.1.1 no such user"))
    configure_admin(server)
    caplog.set_level(logging.INFO)

    with pytest.raises(errors.SmtpRecipientsRefused):
        mail.send_mail("Hi", "Body", None, ["u@example.net"])

    outcome = send_records(caplog)[-1]
    assert (outcome.outcome, outcome.smtp_code, outcome.levelno) == ("failed", 550, logging.WARNING)


def test_no_log_record_holds_the_password(smtp_factory, configure_admin, settings, caplog):
    admin = smtp_factory("TLS", auth=True)
    env = smtp_factory("SSL", auth=True)
    configure_admin(admin, password="wrong-password")
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env)
    caplog.set_level(logging.DEBUG)

    mail.send_mail("Hi", "Body", None, ["u@example.net"])
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env, password="also-wrong")
    with pytest.raises(errors.SmtpAuthError):
        mail.send_mail("Hi", "Body", None, ["u@example.net"])

    # "mail.log" is the test SMTP server's own debug log of what it received, not ours.
    ours = [r for r in caplog.records if r.name != "mail.log"]
    assert len(send_records(caplog)) >= 4
    for record in ours:
        text = record.getMessage() + repr(vars(record))
        for secret in (SMTP_PASSWORD, "wrong-password", "also-wrong"):
            assert secret not in text
