"""First proof that the send path works end to end against real servers."""

import pytest
from django.core import mail

from tests.conftest import SMTP_PASSWORD, SMTP_USER, route_settings


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("security", ["NONE", "TLS", "SSL"])
def test_each_security_mode_delivers_with_auth(smtp_factory, configure_admin, security):
    server = smtp_factory(security, auth=True)
    configure_admin(server)

    sent = mail.send_mail("Hello", "Body", None, ["user@example.net"])

    assert sent == 1
    [received] = server.wait_for(1)
    assert received.mail_from == "noreply@example.com"
    assert received.rcpt_tos == ["user@example.net"]
    assert received.message["From"] == "Example Alerts <noreply@example.com>"
    assert server.auth_attempts == [(SMTP_USER, SMTP_PASSWORD, True)]


@pytest.mark.django_db(transaction=True)
def test_failover_to_environment_route_when_admin_auth_refused(
    smtp_factory, configure_admin, settings
):
    admin_server = smtp_factory("TLS", auth=True)
    env_server = smtp_factory("TLS", auth=True)
    configure_admin(admin_server, password="wrong-password")
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env_server)

    assert mail.send_mail("Hi", "Body", "app@example.com", ["user@example.net"]) == 1

    assert env_server.wait_for(1)[0].rcpt_tos == ["user@example.net"]
    assert admin_server.messages == []
    assert admin_server.auth_attempts[0][2] is False
