"""send_admin_alert: the one way to mail the admins about delivery, reusable by others."""

from __future__ import annotations

import pytest

from smtp_settings.alerts import admin_recipients, send_admin_alert
from smtp_settings.routes import SmtpRoute

pytestmark = pytest.mark.django_db


def route_to(server) -> SmtpRoute:
    return SmtpRoute(name="backup", host=server.host, port=server.port, security="NONE")


def test_alert_goes_only_through_the_routes_given(smtp_factory, configure_admin):
    primary, chosen = smtp_factory(), smtp_factory()
    configure_admin(primary)

    assert send_admin_alert("Route down", "Details", routes=(route_to(chosen),)) is True

    [message] = chosen.wait_for(1)
    assert message.rcpt_tos == ["ops@example.com"]
    assert message.message["Subject"] == "[Django] Route down"
    assert primary.messages == []


def test_alert_without_routes_uses_the_current_routes(smtp_factory, configure_admin):
    server = smtp_factory()
    configure_admin(server)

    assert send_admin_alert("Gave up", "Message <id> was not delivered in 3 days") is True

    assert "3 days" in server.wait_for(1)[0].message.get_content()


def test_no_recipient_means_no_alert_and_false(settings, smtp_factory, configure_admin):
    server = smtp_factory()
    configure_admin(server)
    settings.ADMINS = []

    assert admin_recipients() == []
    assert send_admin_alert("Route down", "Details") is False
    assert server.recorder.sessions == 0
