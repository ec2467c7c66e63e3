"""Each bad value in the SMTP settings form is a field error, and nothing is saved."""

from __future__ import annotations

import pytest

from smtp_settings.models import AdminConfig
from tests.foundation.helpers import change_url, form_data, form_errors, row_state

pytestmark = pytest.mark.django_db

REQUIRED = "Required while “use these settings” is on."
LINE_BREAK = "Line breaks are not allowed here"
NOT_A_HOST = "Enter a host name (like smtp.example.com) or an IP address"

# (what is posted over the configured row, the field that must complain, part of the message)
BAD_INPUTS = [
    ({"smtp_server": ""}, "smtp_server", REQUIRED),
    ({"smtp_username": ""}, "smtp_username", REQUIRED),
    ({"sender_email": ""}, "sender_email", REQUIRED),
    ({"sender_name": ""}, "sender_name", REQUIRED),
    ({"smtp_port": ""}, "smtp_port", "This field is required."),
    ({"smtp_security": ""}, "smtp_security", "This field is required."),
    ({"smtp_server": "relay.example.net"}, "new_password", "type the password again"),
    ({"smtp_port": "2526"}, "smtp_port", "Port 2526 is not allowed here; allowed ports: 25,"),
    ({"smtp_port": "70000"}, "smtp_port", "Port 70000 is not allowed here"),
    ({"smtp_port": "-1"}, "smtp_port", "greater than or equal to 0"),
    ({"smtp_port": "587abc"}, "smtp_port", "Enter a whole number."),
    ({"smtp_security": "STARTTLS"}, "smtp_security", "Select a valid choice."),
    ({"smtp_security": "SSL"}, "smtp_security", "Port 587 expects STARTTLS (TLS), not SSL"),
    (
        {"smtp_security": "TLS", "smtp_port": "465"},
        "smtp_security",
        "Port 465 expects SSL, not TLS/STARTTLS",
    ),
    ({"smtp_server": "smtp://smtp.example.com"}, "smtp_server", "without a scheme"),
    ({"smtp_server": "https://smtp.example.com"}, "smtp_server", "without a scheme"),
    ({"smtp_server": "smtp.example.com:587"}, "smtp_server", "Put the port in the Port field"),
    ({"smtp_server": "smtp example.com"}, "smtp_server", "cannot contain spaces"),
    ({"smtp_server": "smtp\texample.com"}, "smtp_server", "cannot contain spaces"),
    ({"smtp_server": "smtp_relay.example.com"}, "smtp_server", NOT_A_HOST),
    ({"smtp_server": "-smtp.example.com"}, "smtp_server", NOT_A_HOST),
    ({"smtp_server": "smtp..example.com"}, "smtp_server", NOT_A_HOST),
    ({"smtp_server": "a" * 64 + ".example.com"}, "smtp_server", NOT_A_HOST),
    ({"smtp_server": "256.1.1.1"}, "smtp_server", "Enter a valid IPv4 address"),
    ({"smtp_server": "smtp.example.com\r\n"}, "smtp_server", LINE_BREAK),
    ({"smtp_username": "system@example.com\r\nRSET"}, "smtp_username", LINE_BREAK),
    ({"sender_name": "Alerts\r\nBcc: victim@example.net"}, "sender_name", LINE_BREAK),
    ({"sender_name": "Alerts\n"}, "sender_name", LINE_BREAK),
    ({"sender_email": "noreply@example.com\r\nBcc: v@example.net"}, "sender_email", LINE_BREAK),
    ({"sender_email": "not-an-email"}, "sender_email", "Enter a valid email address."),
    ({"sender_email": "noreply@example"}, "sender_email", "Enter a valid email address."),
    ({"smtp_timeout": "0"}, "smtp_timeout", "greater than or equal to 1"),
    ({"smtp_timeout": "61"}, "smtp_timeout", "less than or equal to 60"),
    ({"smtp_timeout": ""}, "smtp_timeout", "This field is required."),
    ({"loaded_version": ""}, "loaded_version", "This field is required."),
    ({"smtp_security": "NONE"}, "smtp_security", "would send the username and password in clear"),
]


def test_the_table_has_at_least_twenty_bad_inputs():
    assert len(BAD_INPUTS) >= 20


@pytest.mark.parametrize(
    ("posted", "field", "message"),
    BAD_INPUTS,
    ids=[f"{field}={next(iter(posted.values()))!r}" for posted, field, _ in BAD_INPUTS],
)
def test_bad_input_is_a_field_error_and_saves_nothing(
    admin_client, configured_row, posted, field, message
):
    before = row_state()

    response = admin_client.post(change_url(), form_data(configured_row, **posted))

    assert response.status_code == 200, "the page must be shown again, not redirect"
    errors = form_errors(response)
    assert any(message in error for error in errors.get(field, [])), errors
    assert row_state() == before


@pytest.mark.parametrize(
    ("server", "stored"),
    [
        ("smtp.example.com", "smtp.example.com"),
        ("SMTP.Example.COM.", "smtp.example.com"),
        ("localhost", "localhost"),
        ("192.0.2.10", "192.0.2.10"),
        ("2001:db8::25", "2001:db8::25"),
        ("mail.bücher.example", "mail.xn--bcher-kva.example"),
    ],
)
def test_valid_server_names_are_accepted(admin_client, configured_row, server, stored):
    response = admin_client.post(
        change_url(), form_data(configured_row, smtp_server=server, new_password="pw")
    )

    assert response.status_code == 302, form_errors(response)
    configured_row.refresh_from_db()
    assert configured_row.smtp_server == stored


def test_allowed_ports_follow_the_setting(admin_client, configured_row, settings):
    settings.SMTP_ALLOWED_PORTS = [1025]

    refused = admin_client.post(change_url(), form_data(configured_row))
    accepted = admin_client.post(
        change_url(),
        form_data(configured_row, smtp_port="1025", new_password="pw"),
    )

    assert form_errors(refused)["smtp_port"] == [
        "Port 587 is not allowed here; allowed ports: 1025 (SMTP_ALLOWED_PORTS)."
    ]
    assert accepted.status_code == 302


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_security_none_with_a_username_is_accepted_for_a_relay_on_this_machine(
    admin_client, configured_row, host
):
    response = admin_client.post(
        change_url(),
        form_data(configured_row, smtp_server=host, smtp_security="NONE", new_password="pw"),
    )

    assert response.status_code == 302
    assert AdminConfig.get_solo().smtp_security == "NONE"
