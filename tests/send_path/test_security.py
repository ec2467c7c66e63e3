"""Security modes against real servers: plain, STARTTLS and implicit TLS send; a certificate
for another host name is refused unless verification is off; swapped SSL/STARTTLS settings
fail with a hint that names the swap."""

import smtplib

import pytest
from django.core import mail

from smtp_settings.errors import SmtpAuthError, SmtpTimeout, SmtpTlsError
from tests.conftest import SMTP_PASSWORD, SMTP_USER, route_settings

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("security", ["NONE", "TLS", "SSL"])
def test_each_security_mode_delivers_the_envelope_without_auth(
    smtp_factory, configure_admin, security
):
    server = smtp_factory(security)
    configure_admin(server)

    sent = mail.send_mail("Hello", "Body", None, ["a@example.net", "b@example.net"])

    assert sent == 1
    [received] = server.wait_for(1)
    assert received.mail_from == "noreply@example.com"
    assert received.rcpt_tos == ["a@example.net", "b@example.net"]
    assert received.message["Subject"] == "Hello"
    assert server.auth_attempts == []


def test_environment_route_accepts_starttls_spelled_out(smtp_factory, settings):
    server = smtp_factory("TLS", auth=True)
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(server, security="starttls")

    assert mail.send_mail("Hi", "Body", "app@example.com", ["user@example.net"]) == 1

    assert server.wait_for(1)[0].rcpt_tos == ["user@example.net"]
    assert server.auth_attempts == [(SMTP_USER, SMTP_PASSWORD, True)]


def test_unknown_security_value_skips_the_route_instead_of_sending_in_plain_text(
    smtp_factory, settings, caplog
):
    plain = smtp_factory("NONE", auth=True)
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(plain, security="TSL")

    with pytest.raises(smtplib.SMTPException, match="No SMTP server is configured"):
        mail.send_mail("Hi", "Body", None, ["user@example.net"], fail_silently=True)

    assert plain.auth_attempts == []
    assert plain.recorder.sessions == 0
    assert any("environment route is not usable" in r.getMessage() for r in caplog.records)


def test_certificate_for_another_host_name_is_refused(smtp_factory, configure_admin):
    server = smtp_factory("TLS", auth=True, cert_names=("mail.other.test",))
    configure_admin(server)

    with pytest.raises(SmtpTlsError) as caught:
        mail.send_mail("Hi", "Body", None, ["user@example.net"])

    assert "issued for another host name" in caught.value.hint
    assert caught.value.route == "admin"
    assert caught.value.step == "tls"
    assert server.auth_attempts == []  # the password never went to the impostor
    assert server.messages == []


def test_certificate_for_another_host_name_is_refused_over_implicit_tls(
    smtp_factory, configure_admin
):
    server = smtp_factory("SSL", auth=True, cert_names=("mail.other.test",))
    configure_admin(server)

    with pytest.raises(SmtpTlsError, match="issued for another host name"):
        mail.send_mail("Hi", "Body", None, ["user@example.net"])

    assert server.auth_attempts == []


def test_certificate_check_off_sends_to_a_host_with_another_name(smtp_factory, configure_admin):
    server = smtp_factory("TLS", auth=True, cert_names=("mail.other.test",))
    configure_admin(server, smtp_verify_certificates=False)

    assert mail.send_mail("Hi", "Body", None, ["user@example.net"]) == 1

    assert server.wait_for(1)[0].rcpt_tos == ["user@example.net"]


def test_ssl_against_a_starttls_port_says_the_port_expects_starttls(smtp_factory, configure_admin):
    server = smtp_factory("TLS", auth=True)
    configure_admin(server, smtp_security="SSL")

    with pytest.raises(SmtpTlsError) as caught:
        mail.send_mail("Hi", "Body", None, ["user@example.net"])

    assert "expects STARTTLS" in caught.value.hint
    assert str(caught.value) == caught.value.hint


@pytest.mark.parametrize("security", ["TLS", "NONE"])
def test_no_tls_against_an_implicit_tls_port_says_choose_ssl_within_the_timeout(
    smtp_factory, configure_admin, security
):
    # What a real implicit-TLS server does to a client that waits for a greeting: it waits
    # for a TLS handshake, so nothing comes; smtplib reports the read timing out.
    server = smtp_factory("SSL", auth=True)
    configure_admin(server, smtp_security=security, smtp_timeout=1)

    with pytest.raises(SmtpTimeout) as caught:
        mail.send_mail("Hi", "Body", None, ["user@example.net"])

    assert caught.value.step == "connect"
    assert "expects implicit TLS: choose security SSL" in caught.value.hint
    assert server.auth_attempts == []


@pytest.mark.django_db(transaction=True)
def test_a_wrong_password_costs_one_failed_login_not_one_per_mechanism(
    smtp_factory, configure_admin
):
    server = smtp_factory("TLS", auth=True)
    configure_admin(server, password="wrong-password")

    with pytest.raises(SmtpAuthError):
        mail.send_mail("Hi", "Body", None, ["user@example.net"])

    assert server.auth_attempts == [(SMTP_USER, "wrong-password", False)]
