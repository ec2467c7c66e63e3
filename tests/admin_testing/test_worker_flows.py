"""The tools end to end: the page's requests, a real Celery worker on the Redis broker, real
SMTP servers, and the result the page then shows. The request never waits for a server."""

from __future__ import annotations

import json
import time

import pytest
from django.urls import reverse

from smtp_settings.models import AdminConfig, SmtpTestRun
from tests.admin_testing.conftest import wait_for_run
from tests.conftest import SMTP_PASSWORD, SMTP_USER
from tests.foundation.helpers import change_url, form_data, raw_password_column

pytestmark = pytest.mark.django_db(transaction=True)

TEST_CONNECTION = "admin:smtp_settings_adminconfig_test_connection"
SEND_TEST_EMAIL = "admin:smtp_settings_adminconfig_send_test_email"


def poll(client, accepted) -> dict:
    """What the page's script does: follow the status URL until the run is done."""
    wait_for_run(accepted["id"])
    return client.get(accepted["status_url"]).json()


def test_unsaved_values_on_screen_are_tested_not_the_saved_ones(
    celery_worker, staff_client, smtp_factory, configure_admin, allow_ports
):
    saved_server, on_screen = smtp_factory("TLS", auth=True), smtp_factory("SSL", auth=True)
    allow_ports(saved_server, on_screen)
    config = configure_admin(saved_server)
    data = form_data(
        config,
        smtp_port=str(on_screen.port),
        smtp_security="SSL",
        new_password=SMTP_PASSWORD,
        smtp_test_recipient="ops@example.net",
    )

    accepted = staff_client.post(reverse(TEST_CONNECTION), data)
    status = poll(staff_client, accepted.json())

    assert accepted.status_code == 202
    assert accepted.json()["status"] == "pending"
    assert status["status"] == "ok", status
    assert status["summary"] == (
        f"Connection OK: admin (127.0.0.1:{on_screen.port}) would accept mail from "
        "noreply@example.com to ops@example.net. Nothing was sent."
    )
    assert set(status["result"]["timings"]) == {"connect", "auth", "sender", "recipient"}
    assert on_screen.auth_attempts == [(SMTP_USER, SMTP_PASSWORD, True)]
    assert on_screen.recorder.data_commands == 0
    assert saved_server.recorder.sessions == 0
    # Unsaved values say nothing about the saved settings.
    assert AdminConfig.objects.get().smtp_last_tested_at is None
    assert SMTP_PASSWORD not in accepted.content.decode() + json.dumps(status)


def test_saved_settings_test_uses_the_stored_password_and_the_page_shows_it(
    celery_worker, staff_client, smtp_factory, configure_admin, allow_ports
):
    server = smtp_factory("TLS", auth=True)
    allow_ports(server)
    config = configure_admin(server)

    accepted = staff_client.post(reverse(TEST_CONNECTION), form_data(config)).json()
    status = poll(staff_client, accepted)
    page = staff_client.get(change_url()).content.decode()

    assert status["status"] == "ok"
    assert status["for_saved_settings"] is True
    assert server.auth_attempts == [(SMTP_USER, SMTP_PASSWORD, True)]
    row = AdminConfig.objects.get()
    assert row.smtp_test_result["ok"] is True
    assert row.version == config.version  # the open page is still current
    assert f"Connection OK: admin (127.0.0.1:{server.port})" in page
    assert SMTP_PASSWORD not in page
    assert raw_password_column() not in page


def test_changed_host_without_password_never_reaches_the_new_server(
    celery_worker, staff_client, smtp_factory, configure_admin, allow_ports
):
    saved_server, new_server = smtp_factory("TLS", auth=True), smtp_factory("TLS", auth=True)
    allow_ports(saved_server, new_server)
    config = configure_admin(saved_server, smtp_enabled=False)

    refused = staff_client.post(
        reverse(TEST_CONNECTION), form_data(config, smtp_port=str(new_server.port))
    )
    retyped = staff_client.post(
        reverse(TEST_CONNECTION),
        form_data(config, smtp_port=str(new_server.port), new_password="typed-for-new-host"),
    )
    status = poll(staff_client, retyped.json())

    assert refused.status_code == 400
    assert "type the password" in refused.json()["errors"]["new_password"][0]
    # The only password the new server ever got is the one typed for it (smtplib tries
    # AUTH PLAIN, then LOGIN).
    assert {password for _, password, _ in new_server.auth_attempts} == {"typed-for-new-host"}
    assert SMTP_PASSWORD not in json.dumps(new_server.auth_attempts)
    assert status["result"]["step"] == "auth"  # it is not the right password for that server
    assert "app password" in status["hint"]


def test_send_test_email_arrives_and_the_result_lands_on_the_settings_page(
    celery_worker, staff_client, smtp_factory, configure_admin, allow_ports
):
    server = smtp_factory("TLS", auth=True)
    allow_ports(server)
    config = configure_admin(server)

    accepted = staff_client.post(
        reverse(SEND_TEST_EMAIL), {"smtp_test_recipient": "ops@example.net"}
    ).json()
    [received] = server.wait_for(1)
    status = poll(staff_client, accepted)
    page = staff_client.get(change_url()).content.decode()

    assert received.rcpt_tos == ["ops@example.net"]
    assert received.message["Subject"] == "SMTP test email (admin route)"
    assert received.message_id == status["result"]["message_id"]
    assert status["status"] == "ok"
    assert status["summary"] == (
        f"Test email sent to ops@example.net through admin (127.0.0.1:{server.port})."
    )
    row = AdminConfig.objects.get()
    assert row.smtp_test_result["kind"] == "email"
    assert row.smtp_test_result["ok"] is True
    assert row.smtp_last_tested_at is not None
    assert row.version == config.version
    assert "Test email sent to ops@example.net through admin" in page
    assert SMTP_PASSWORD not in page + received.data.decode() + json.dumps(status)


def test_stalled_server_the_request_returns_at_once_and_the_task_ends_by_timeout(
    celery_worker, staff_client, raw_factory, configure_admin, allow_ports
):
    stalled = raw_factory("stall")
    allow_ports(stalled)
    config = configure_admin(None, smtp_enabled=False)
    data = form_data(
        config,
        smtp_server=stalled.host,
        smtp_port=str(stalled.port),
        smtp_security="NONE",
        smtp_timeout="2",
    )

    started = time.monotonic()
    response = staff_client.post(reverse(TEST_CONNECTION), data)
    answered_in = time.monotonic() - started
    run = wait_for_run(response.json()["id"])
    took = (run.finished_at - run.created_at).total_seconds()

    assert response.status_code == 202
    assert answered_in < 1.0  # the page never waits for the server's 2 s timeout
    assert took >= 2.0  # the worker did
    assert (run.status, run.result["step"], run.result["error"]) == (
        "error",
        "connect",
        "SmtpTimeout",
    )
    assert "sent no greeting within 2 s" in run.result["hint"]
    assert SmtpTestRun.objects.get(pk=run.pk).finished_at is not None
