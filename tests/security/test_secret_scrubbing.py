"""What the leak sweep found, fixed where it starts, proven one path at a time.

- A server's reply quoting the AUTH exchange (at AUTH, or later in a DATA refusal) reached
  the send path's log lines and the delivery log: ``errors.scrubber`` now masks the
  password (in clear, as AUTH LOGIN and as AUTH PLAIN send it) in every error
  ``smtp_settings.connection`` raises, shared with the probe.
- The typed password of "Test connection" travels to the worker as a Fernet token; Celery
  copied it from the task's arguments into its log records. The task's logged argument
  headers now mask it (``secret_args``); the message body keeps it for the worker.
"""

from __future__ import annotations

import base64
import json
import logging

import pytest
from django.conf import settings as django_settings
from django.core import mail

from notifications.models import Delivery, Status
from smtp_settings import crypto, tasks
from smtp_settings.connection import open_connection
from smtp_settings.errors import MASK, SmtpAuthError, SmtpMessageRefused, scrubber
from smtp_settings.routes import SecretRef, SmtpRoute
from tests.security.collectors import BrokerCapture
from tests.security.finder import Finder, Source, needles

PASSWORD = "Scrub-Me-Pa55-9fQ"
USER = "system@example.com"


def leaks(*texts: str) -> list:
    keys = list(django_settings.FIELD_ENCRYPTION_KEYS)
    finder = Finder(needles({"pw": PASSWORD}, [USER]), frozenset({PASSWORD}), keys=keys)
    return finder.search(Source(f"text {n}", text) for n, text in enumerate(texts))


def b64(raw: str) -> str:
    return base64.b64encode(raw.encode()).decode()


def route_to(server: object) -> SmtpRoute:
    return SmtpRoute(
        name="admin",
        host=server.host,
        port=server.port,
        security="NONE",
        username=USER,
        secret=SecretRef(plaintext=PASSWORD),
        timeout=5,
        sender_email="noreply@example.com",
    )


def test_scrubber_masks_the_password_as_auth_sends_it_padded_or_not():
    plain_blob = b64(f"\0{USER}\0{PASSWORD}")
    text = (
        f"535 for {PASSWORD} / AUTH LOGIN {b64(PASSWORD)} / {b64(PASSWORD).rstrip('=')} / "
        f"AUTH PLAIN {plain_blob} / {plain_blob.rstrip('=')}"
    )

    scrubbed = scrubber(PASSWORD, USER)(text)

    assert leaks(text)
    assert leaks(scrubbed) == []
    assert scrubbed.startswith(f"535 for {MASK} / AUTH LOGIN {MASK}")


def test_scrubber_without_a_secret_leaves_text_alone():
    assert scrubber("", USER)("550 5.7.1 nothing secret") == "550 5.7.1 nothing secret"


@pytest.mark.parametrize("mode", ["echo_auth", "echo_auth_plain", "echo_auth_clear"])
def test_auth_refusal_quoting_the_exchange_leaves_connection_code_masked(raw_factory, mode):
    server = raw_factory(mode)

    with pytest.raises(SmtpAuthError) as caught:
        open_connection(route_to(server))

    error = caught.value
    assert leaks(*(r.decode() for r in server.refusals))  # the server did quote it
    assert "Authentication failed for" in error.smtp_text
    assert MASK in error.smtp_text
    assert leaks(error.smtp_text, error.hint, str(error), json.dumps(error.as_dict())) == []


@pytest.mark.django_db
def test_data_refusal_quoting_auth_is_masked_in_the_send_log_and_the_delivery_log(
    raw_factory, configure_admin, caplog
):
    server = raw_factory("echo_auth_at_data")
    configure_admin(
        None,
        smtp_server=server.host,
        smtp_port=server.port,
        smtp_security="NONE",
        smtp_username=USER,
        password=PASSWORD,
    )

    with caplog.at_level(logging.DEBUG):
        assert mail.send_mail("Invoice", "Body", None, ["user@example.net"]) == 1

    delivery = Delivery.objects.get(subject="Invoice")
    assert delivery.status == Status.DEFERRED
    assert f"session was AUTH PLAIN {MASK}" in delivery.last_error
    [attempt] = delivery.attempt_log.all()
    logged = [record.getMessage() + repr(vars(record)) for record in caplog.records]
    assert any("step=data code=451" in line for line in logged)
    assert leaks(delivery.last_error, attempt.error, *logged) == []


@pytest.mark.django_db
def test_data_refusal_raised_to_the_caller_is_masked(raw_factory, configure_admin, settings):
    settings.EMAIL_DEFER_ON_FAILURE = False
    server = raw_factory("echo_auth_at_data")
    configure_admin(
        None,
        smtp_server=server.host,
        smtp_port=server.port,
        smtp_security="NONE",
        smtp_username=USER,
        password=PASSWORD,
    )

    with pytest.raises(SmtpMessageRefused) as caught:
        mail.send_mail("Invoice", "Body", None, ["user@example.net"])

    error = caught.value
    assert error.smtp_code == 451
    assert MASK in error.smtp_text
    assert leaks(error.smtp_text, error.hint, str(error)) == []


def test_test_connection_task_logs_its_token_masked_and_carries_it_in_the_body():
    token = crypto.encrypt(PASSWORD)
    kwargs = {
        "run_id": "00000000-0000-0000-0000-000000000000",
        "values": {"smtp_server": "127.0.0.1"},
        "password_token": token,
        "use_stored_password": False,
        "recipient": "ops@example.net",
    }

    with BrokerCapture() as broker:
        tasks.test_smtp_connection.apply_async(kwargs=kwargs)
        tasks.test_smtp_connection.delay(*kwargs.values())

    by_keyword, by_position = broker.messages
    assert token not in by_keyword["headers"]["kwargsrepr"]
    assert f"'password_token': '{MASK}'" in by_keyword["headers"]["kwargsrepr"]
    assert by_keyword["body"][1]["password_token"] == token
    assert token not in by_position["headers"]["argsrepr"]
    assert MASK in by_position["headers"]["argsrepr"]
    assert by_position["body"][0][2] == token


def test_an_empty_token_is_shown_as_empty_not_masked():
    with BrokerCapture() as broker:
        tasks.test_smtp_connection.apply_async(
            kwargs={
                "run_id": "00000000-0000-0000-0000-000000000000",
                "values": {},
                "password_token": "",
                "use_stored_password": True,
                "recipient": "",
            }
        )

    assert "'password_token': ''" in broker.messages[0]["headers"]["kwargsrepr"]
