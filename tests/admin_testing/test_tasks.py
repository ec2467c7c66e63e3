"""The Celery tasks, run in this process against real servers: what they store, where the
stored password may go, and how the test email travels."""

from __future__ import annotations

import json

import pytest
from django.conf import settings as django_settings

from smtp_settings import crypto, tasks
from smtp_settings.models import AdminConfig, SmtpTestRun
from tests.conftest import SMTP_PASSWORD, SMTP_USER, route_settings
from tests.smtp_servers import Behaviour

pytestmark = pytest.mark.django_db


def values_for(server, **overrides):
    values = {
        "smtp_server": server.host,
        "smtp_port": server.port,
        "smtp_security": server.security,
        "smtp_username": SMTP_USER if server.credentials else "",
        "smtp_timeout": 3,
        "smtp_verify_certificates": True,
        "sender_email": "noreply@example.com",
        "sender_name": "Example Alerts",
    }
    values.update(overrides)
    return values


def saved_run(config, kind=SmtpTestRun.Kind.CONNECTION):
    return SmtpTestRun.objects.create(
        kind=kind, for_saved_settings=True, config_version=config.version
    )


def probe_task(run, values, *, token="", stored=False, recipient=""):
    # Calling the task object runs it here, synchronously, exactly as the worker would.
    return tasks.test_smtp_connection(str(run.pk), values, token, stored, recipient)


def test_time_limits_end_tasks_well_inside_the_broker_visibility_timeout():
    visibility = django_settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    for task in (tasks.test_smtp_connection, tasks.send_test_email):
        assert task.soft_time_limit < task.time_limit <= visibility / 10


def test_saved_settings_test_is_stored_on_run_and_row_without_a_version_bump(
    smtp_factory, configure_admin, django_capture_on_commit_callbacks
):
    server = smtp_factory("TLS", auth=True)
    config = configure_admin(server)
    version = config.version
    run = saved_run(config)

    with django_capture_on_commit_callbacks() as publishes:
        result = probe_task(run, values_for(server), stored=True)

    assert result["ok"], result["hint"]
    assert server.auth_attempts == [(SMTP_USER, SMTP_PASSWORD, True)]
    assert server.recorder.data_commands == 0
    run.refresh_from_db()
    assert (run.status, run.result["ok"], run.finished_at is not None) == ("ok", True, True)
    config = AdminConfig.objects.get()
    assert config.smtp_test_result["ok"] is True
    assert config.smtp_last_tested_at is not None
    assert config.version == version  # an open admin page is not made stale
    assert publishes == []  # and no snapshot is republished for a test result


def test_result_is_not_stamped_on_settings_saved_after_the_test_started(
    smtp_factory, configure_admin
):
    server = smtp_factory("TLS", auth=True)
    config = configure_admin(server)
    run = saved_run(config)
    configure_admin(server, sender_name="Changed meanwhile")

    probe_task(run, values_for(server), stored=True)

    assert SmtpTestRun.objects.get(pk=run.pk).status == "ok"
    assert AdminConfig.objects.get().smtp_last_tested_at is None


def test_unsaved_values_are_recorded_on_the_run_only(smtp_factory, configure_admin):
    saved_server, other = smtp_factory("TLS", auth=True), smtp_factory("TLS", auth=True)
    configure_admin(saved_server)
    run = SmtpTestRun.objects.create(kind=SmtpTestRun.Kind.CONNECTION)

    result = probe_task(run, values_for(other), token=crypto.encrypt(SMTP_PASSWORD))

    assert result["ok"]
    assert other.auth_attempts == [(SMTP_USER, SMTP_PASSWORD, True)]
    assert saved_server.recorder.sessions == 0
    assert AdminConfig.objects.get().smtp_test_result == {}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"smtp_port": "other"}, "You changed the port"),
        ({"smtp_username": "someone-else@example.com"}, "You changed the username"),
        ({"smtp_security": "NONE"}, "protect the connection less"),
        ({"smtp_verify_certificates": False}, "protect the connection less"),
    ],
)
def test_worker_refuses_to_send_the_stored_password_elsewhere(
    smtp_factory, configure_admin, change, why
):
    saved_server, other = smtp_factory("TLS", auth=True), smtp_factory("TLS", auth=True)
    configure_admin(saved_server)
    target = other if change.get("smtp_port") == "other" else saved_server
    values = values_for(target, **{k: v for k, v in change.items() if k != "smtp_port"})
    run = SmtpTestRun.objects.create(kind=SmtpTestRun.Kind.CONNECTION)

    result = probe_task(run, values, stored=True)

    assert (result["ok"], result["step"], result["error"]) == (
        False,
        "auth",
        "StoredPasswordRefused",
    )
    assert why in result["hint"]
    assert "type the password" in result["hint"]
    assert other.recorder.sessions == 0
    assert saved_server.recorder.sessions == 0


def test_stored_password_refusal_ignores_case_and_trailing_dot_of_the_host(configure_admin):
    config = configure_admin(None, smtp_server="smtp.example.com", smtp_username=SMTP_USER)
    same = {
        "smtp_server": "SMTP.Example.com.",
        "smtp_port": config.smtp_port,
        "smtp_username": SMTP_USER,
        "smtp_security": config.smtp_security,
        "smtp_verify_certificates": True,
    }

    assert tasks.stored_password_refusal(config, same) == ""
    assert "server" in tasks.stored_password_refusal(
        config, {**same, "smtp_server": "smtp.evil.example"}
    )
    config.clear_password()
    assert "No password is stored" in tasks.stored_password_refusal(config, same)


def test_test_email_arrives_through_the_admin_route_and_is_recorded(
    smtp_factory, configure_admin, make_user
):
    server = smtp_factory("TLS", auth=True)
    config = configure_admin(server)
    run = SmtpTestRun.objects.create(
        kind=SmtpTestRun.Kind.EMAIL,
        requested_by=make_user("alice"),
        for_saved_settings=True,
        config_version=config.version,
    )

    result = tasks.send_test_email(str(run.pk), "alice@example.net")

    [received] = server.wait_for(1)
    assert result["ok"]
    assert result["delivered"]
    assert (result["route"], result["server"]) == ("admin", f"127.0.0.1:{server.port}")
    assert received.rcpt_tos == ["alice@example.net"]
    assert received.message_id == result["message_id"]
    assert received.message["From"] == "Example Alerts <noreply@example.com>"
    assert received.message["Subject"] == "SMTP test email (admin route)"
    assert f"127.0.0.1:{server.port}" in received.data.decode()
    assert "alice" in received.data.decode()  # who asked for it
    assert SMTP_PASSWORD not in received.data.decode()
    config = AdminConfig.objects.get()
    assert config.smtp_test_result["kind"] == "email"
    assert config.smtp_test_result["ok"] is True


def test_test_email_that_falls_back_to_the_environment_route_is_not_a_success(
    smtp_factory, configure_admin, settings
):
    admin_server, env_server = smtp_factory("TLS", auth=True), smtp_factory("TLS", auth=True)
    config = configure_admin(admin_server, password="wrong-password")
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env_server)
    run = saved_run(config, SmtpTestRun.Kind.EMAIL)

    result = tasks.send_test_email(str(run.pk), "ops@example.net")

    assert env_server.wait_for(1)[0].rcpt_tos == ["ops@example.net"]
    assert admin_server.messages == []
    assert (result["ok"], result["delivered"], result["route"]) == (False, True, "environment")
    assert "the admin route did not take it" in result["hint"]
    assert AdminConfig.objects.get().smtp_test_result["ok"] is False


def test_test_email_with_every_route_down_says_which_step_failed(configure_admin, refused_port):
    config = configure_admin(None, smtp_port=refused_port)
    run = saved_run(config, SmtpTestRun.Kind.EMAIL)

    result = tasks.send_test_email(str(run.pk), "ops@example.net")

    assert (result["ok"], result["delivered"], result["step"]) == (False, False, "connect")
    assert "refused" in result["hint"]
    assert SmtpTestRun.objects.get(pk=run.pk).status == "error"
    assert AdminConfig.objects.get().smtp_test_result["step"] == "connect"


def test_test_email_with_nothing_configured_says_so(db):
    run = SmtpTestRun.objects.create(kind=SmtpTestRun.Kind.EMAIL)

    result = tasks.send_test_email(str(run.pk), "ops@example.net")

    assert (result["ok"], result["error"]) == (False, "SmtpNotConfigured")
    assert "No SMTP server is configured" in result["hint"]


def test_stored_results_hold_neither_password_nor_token(smtp_factory, configure_admin):
    server = smtp_factory("TLS", auth=True)
    config = configure_admin(server, password="wrong-password")
    token = AdminConfig.objects.get().smtp_password.token
    run = saved_run(config)

    probe_task(run, values_for(server), stored=True)
    tasks.send_test_email(str(saved_run(config, "email").pk), "ops@example.net")

    stored = json.dumps(list(SmtpTestRun.objects.values("result"))) + json.dumps(
        AdminConfig.objects.get().smtp_test_result
    )
    assert "wrong-password" not in stored
    assert token not in stored
    assert SMTP_USER not in json.dumps(SmtpTestRun.objects.get(pk=run.pk).result)


def test_test_email_the_server_refuses_at_data_is_queued_not_reported_delivered(
    smtp_factory, configure_admin
):
    server = smtp_factory(behaviour=Behaviour(data="451 4.3.0 Try again later"))
    config = configure_admin(server)
    run = saved_run(config, SmtpTestRun.Kind.EMAIL)

    result = tasks.send_test_email(str(run.pk), "ops@example.net")

    assert server.messages == []
    assert (result["ok"], result["delivered"]) == (False, False)
    assert "queued and will be retried" in result["hint"]
    assert SmtpTestRun.objects.get(pk=run.pk).status == "error"
