"""The probe against real servers that misbehave in each way an admin meets: the failed
step and a hint that names the fix; against a good server, ok with no DATA sent."""

from __future__ import annotations

import json

import pytest
import trustme

from smtp_settings.probe import probe, route_from_values
from smtp_settings.routes import SecretRef, SmtpRoute
from tests.conftest import SMTP_PASSWORD, SMTP_USER, server_context
from tests.smtp_servers import Behaviour, SmtpServer


def route_to(server, *, security=None, username=None, password=SMTP_PASSWORD, timeout=2.0):
    if username is None:
        username = SMTP_USER if server.credentials else ""
    return SmtpRoute(
        name="admin",
        host=server.host,
        port=server.port,
        security=security or server.security,
        username=username,
        secret=SecretRef(plaintext=password if username else ""),
        timeout=timeout,
        sender_email="noreply@example.com",
    )


@pytest.mark.parametrize("security", ["NONE", "TLS", "SSL"])
def test_good_server_is_ok_and_receives_no_data(smtp_factory, security):
    server = smtp_factory(security, auth=True)

    result = probe(route_to(server), recipient="someone@example.net")

    assert result.ok, result.hint
    assert result.step == ""
    assert server.recorder.mail_commands == 1
    assert server.recorder.data_commands == 0
    assert server.messages == []
    assert server.auth_attempts == [(SMTP_USER, SMTP_PASSWORD, True)]
    expected_steps = {"connect", "auth", "sender", "recipient"} | (
        {"tls"} if security == "TLS" else set()
    )
    assert set(result.timings) == expected_steps
    assert all(seconds >= 0 for seconds in result.timings.values())
    assert result.recipient == "someone@example.net"


def test_recipient_defaults_to_the_sender(smtp_factory):
    server = smtp_factory()

    result = probe(route_to(server))

    assert result.ok
    assert result.sender == result.recipient == "noreply@example.com"


def test_connection_refused(refused_port):
    route = SmtpRoute(name="admin", host="127.0.0.1", port=refused_port, security="NONE")

    result = probe(route)

    assert (result.ok, result.step) == (False, "connect")
    assert "refused" in result.hint
    assert "nothing listens there" in result.hint


def test_server_that_never_greets_times_out(raw_factory):
    server = raw_factory("stall")
    route = SmtpRoute(name="admin", host=server.host, port=server.port, security="TLS", timeout=1)

    result = probe(route)

    assert (result.ok, result.step, result.error) == (False, "connect", "SmtpTimeout")
    assert "sent no greeting within 1 s" in result.hint
    # The follow-up check proved it is not an implicit-TLS port either: no SSL advice.
    assert "does not answer a TLS handshake either" in result.hint
    assert "choose security SSL" not in result.hint.lower()


def test_name_that_does_not_resolve():
    route = SmtpRoute(name="admin", host="smtp.does-not-exist.invalid", port=587, timeout=2)

    result = probe(route)

    assert (result.ok, result.step) == (False, "connect")
    assert "does not resolve" in result.hint


def test_server_that_drops_the_line_after_ehlo(raw_factory):
    server = raw_factory("drop_after_ehlo")
    route = SmtpRoute(
        name="admin",
        host=server.host,
        port=server.port,
        security="NONE",
        username=SMTP_USER,
        secret=SecretRef(plaintext=SMTP_PASSWORD),
    )

    result = probe(route)

    assert (result.ok, result.step) == (False, "auth")
    assert "closed the connection" in result.hint


def test_greeting_421_says_the_server_refuses_connections_for_now(raw_factory):
    server = raw_factory("greet_421")
    route = SmtpRoute(name="admin", host=server.host, port=server.port, security="NONE")

    result = probe(route)

    assert (result.ok, result.step, result.smtp_code) == (False, "connect", 421)
    assert "not accepting connections right now" in result.hint


@pytest.mark.parametrize(
    ("reply", "step", "code", "hint"),
    [
        ("451 4.7.1 Greylisted, try later", "sender", 451, "refused the sender for now"),
        (
            "550 5.7.1 Sender address not owned by user",
            "sender",
            550,
            "must be a mailbox or verified domain this account may send from",
        ),
    ],
)
def test_sender_refused(smtp_factory, reply, step, code, hint):
    server = smtp_factory("TLS", auth=True, behaviour=Behaviour(mail=reply))

    result = probe(route_to(server))

    assert (result.ok, result.step, result.smtp_code) == (False, step, code)
    assert hint in result.hint
    assert result.smtp_text == reply[4:]
    assert "it will be retried" not in result.hint  # a probe retries nothing
    assert server.recorder.data_commands == 0


@pytest.mark.parametrize(
    ("reply", "code", "hint"),
    [
        ("451 4.3.0 Mailbox busy", 451, "refused the recipient for now"),
        ("550 5.1.1 No such user", 550, "check the address"),
        ("550 5.7.1 Relaying denied", 550, "may not send to that address"),
    ],
)
def test_recipient_refused(smtp_factory, reply, code, hint):
    server = smtp_factory("TLS", auth=True, behaviour=Behaviour(rcpt=reply))

    result = probe(route_to(server), recipient="nobody@example.net")

    assert (result.ok, result.step, result.smtp_code) == (False, "recipient", code)
    assert hint in result.hint
    assert server.recorder.data_commands == 0


def test_certificate_for_another_host(smtp_factory):
    server = smtp_factory("TLS", auth=True, cert_names=("mail.other-host.example",))

    result = probe(route_to(server))

    assert (result.ok, result.step) == (False, "tls")
    assert "issued for another host name" in result.hint
    assert server.auth_attempts == []


def test_certificate_from_an_untrusted_authority():
    stranger = trustme.CA()  # not the CA the client trusts
    server = SmtpServer(
        security="SSL",
        server_context=server_context(stranger),
        credentials={SMTP_USER: SMTP_PASSWORD},
    ).start()
    try:
        result = probe(route_to(server))
    finally:
        server.stop()

    assert (result.ok, result.step) == (False, "tls")
    assert "is not trusted" in result.hint
    assert server.auth_attempts == []


def test_wrong_password_suggests_an_app_password(smtp_factory):
    server = smtp_factory("TLS", auth=True)

    result = probe(route_to(server, password="not-the-password"))

    assert (result.ok, result.step, result.smtp_code) == (False, "auth", 535)
    assert "rejected the username or password" in result.hint
    assert "app password" in result.hint


def test_ssl_chosen_for_a_starttls_port(smtp_factory):
    server = smtp_factory("TLS", auth=True)

    result = probe(route_to(server, security="SSL"))

    assert (result.ok, result.step) == (False, "tls")
    assert "expects STARTTLS, not SSL" in result.hint


@pytest.mark.parametrize("security", ["TLS", "NONE"])
def test_starttls_or_plain_chosen_for_an_implicit_tls_port(smtp_factory, security):
    server = smtp_factory("SSL", auth=True)

    result = probe(route_to(server, security=security, timeout=1))

    assert (result.ok, result.step, result.error) == (False, "tls", "SmtpTlsError")
    assert "expects implicit TLS (SSL)" in result.hint
    assert "Choose security SSL" in result.hint
    assert server.auth_attempts == []


def test_starttls_chosen_for_a_server_without_it(smtp_factory):
    server = smtp_factory("NONE")

    result = probe(route_to(server, security="TLS"))

    assert (result.ok, result.step) == (False, "tls")
    assert "does not offer STARTTLS" in result.hint


def test_auth_not_offered_on_a_plain_connection(smtp_factory):
    server = smtp_factory("TLS", auth=True)  # offers AUTH only after STARTTLS

    result = probe(route_to(server, security="NONE"))

    assert (result.ok, result.step) == (False, "auth")
    assert "does not offer AUTH on a plain connection" in result.hint
    assert server.auth_attempts == []


def test_username_without_password_fails_at_auth_before_connecting(smtp_factory):
    server = smtp_factory("TLS", auth=True)

    result = probe(route_to(server, password=""))

    assert (result.ok, result.step) == (False, "auth")
    assert "type the password" in result.hint
    assert server.recorder.sessions == 0


def test_password_override_is_used_instead_of_the_stored_one(smtp_factory):
    server = smtp_factory("TLS", auth=True)
    route = route_to(server, password="stale-stored-password")

    result = probe(route, password=SMTP_PASSWORD)

    assert result.ok
    assert server.auth_attempts == [(SMTP_USER, SMTP_PASSWORD, True)]


def test_server_text_echoing_the_password_is_scrubbed_from_the_result(smtp_factory):
    server = smtp_factory(
        "TLS", auth=True, behaviour=Behaviour(mail=f"550 5.7.1 no thanks {SMTP_PASSWORD}")
    )

    result = probe(route_to(server))

    assert result.step == "sender"
    stored = json.dumps(result.as_dict())
    assert SMTP_PASSWORD not in stored
    assert "no thanks ********" in result.smtp_text


def test_result_as_dict_is_json_and_holds_no_secret_or_username(smtp_factory):
    server = smtp_factory("TLS", auth=True)

    data = probe(route_to(server)).as_dict()

    assert json.loads(json.dumps(data)) == data
    assert {"ok", "route", "server", "step", "smtp_code", "hint", "timings", "checked_at"} <= set(
        data
    )
    assert data["kind"] == "connection"
    assert data["server"] == f"127.0.0.1:{server.port}"
    text = json.dumps(data)
    assert SMTP_PASSWORD not in text
    assert SMTP_USER not in text


def test_route_from_form_values_uses_the_field_names_of_the_settings_row():
    route = route_from_values(
        {
            "smtp_server": " smtp.example.com ",
            "smtp_port": "465",
            "smtp_security": "ssl",
            "smtp_username": "me@example.com",
            "smtp_timeout": 7,
            "smtp_verify_certificates": False,
            "sender_email": "me@example.com",
        }
    )

    assert (route.host, route.port, route.security, route.timeout) == (
        "smtp.example.com",
        465,
        "SSL",
        7.0,
    )
    assert route.verify_certificates is False
    assert not route.secret
