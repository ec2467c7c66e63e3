"""GET /admin/health/email: who may read it, what it says, and what it costs."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from smtp_settings.health import recent_health
from smtp_settings.models import AdminConfig
from smtp_settings.resolver import get_resolver
from tests.conftest import SMTP_PASSWORD, SMTP_USER, route_settings
from tests.health.conftest import TOKEN, URL

pytestmark = pytest.mark.django_db

EXPECTED_KEYS = {
    "status",
    "deliverable",
    "reason",
    "smtp_source",
    "smtp_server",
    "username",
    "last_test",
    "last_test_result",
    "routes",
    "fallback_available",
    "backup_available",
    "last_email_sent",
    "sends_last_hour",
    "sends_last_hour_by_route",
    "deferred",
    "delivery_stats_as_of",
    "config_version",
    "database_available",
    "redis_available",
    "last_check_at",
    "check_interval_seconds",
    "checked_at",
}


def test_working_route_answers_200_with_every_key(
    smtp_factory, configure_admin, run_check, monitor_get
):
    configure_admin(smtp_factory())
    run_check()

    response = monitor_get()

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == EXPECTED_KEYS
    assert body["status"] == "healthy"
    assert body["config_version"] == AdminConfig.objects.get(pk=1).version
    assert set(body["routes"][0]) >= {"route", "server", "state", "checked_at", "hint", "step"}


def test_no_working_route_answers_503_with_the_reason(
    configure_admin, refused_port, run_check, monitor_get
):
    configure_admin(None, smtp_port=refused_port)
    run_check()

    response = monitor_get()

    assert response.status_code == 503
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["deliverable"] is False
    assert f"127.0.0.1:{refused_port}" in body["reason"]
    assert "refused" in body["reason"]


def test_failing_primary_with_working_backup_answers_200(
    smtp_factory, configure_admin, refused_port, settings, run_check, monitor_get
):
    configure_admin(None, smtp_port=refused_port)
    settings.SMTP_BACKUP_ROUTE = route_settings(smtp_factory())
    run_check()

    response = monitor_get()

    assert response.status_code == 200
    assert response.json()["status"] == "degraded"


def test_without_credentials_is_401_json_not_a_login_redirect(client):
    response = client.get(URL)

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"] == "unauthorized"


def test_wrong_token_is_401(monitor_get):
    response = monitor_get(token=TOKEN + "x")

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_empty_configured_token_never_matches(client, settings):
    settings.EMAIL_HEALTH_TOKEN = ""

    for header in ("Bearer ", "Bearer", "Bearer  "):
        assert client.get(URL, headers={"Authorization": header}).status_code == 401


def test_logged_in_non_staff_user_is_401(client):
    user = get_user_model().objects.create_user("reader", "reader@example.com", "pw-123456")
    client.force_login(user)

    assert client.get(URL).status_code == 401


def test_staff_session_may_read_it(client, smtp_factory, configure_admin, run_check):
    configure_admin(smtp_factory())
    run_check()
    staff = get_user_model().objects.create_user("ops", "ops@example.com", "pw", is_staff=True)
    client.force_login(staff)

    response = client.get(URL)

    assert response.status_code == 200
    assert response.json()["status"] == "healthy"


def test_staff_session_with_a_wrong_token_is_still_401(client):
    staff = get_user_model().objects.create_user("ops", "ops@example.com", "pw", is_staff=True)
    client.force_login(staff)

    response = client.get(URL, headers={"Authorization": "Bearer wrong"})

    assert response.status_code == 401


def test_post_is_not_allowed(client):
    response = client.post(URL, headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 405


@pytest.mark.parametrize("password", [SMTP_PASSWORD, "a-wrong-Pa55word"])
def test_body_holds_no_secret_and_only_the_masked_username(
    smtp_factory, configure_admin, run_check, monitor_get, password
):
    server = smtp_factory("TLS", auth=True)
    configure_admin(server, password=password)
    run_check()
    token = AdminConfig.objects.get(pk=1).smtp_password.token

    body = monitor_get().content.decode()

    assert "sys***@example.com" in body
    for secret in (SMTP_PASSWORD, password, SMTP_USER, token, TOKEN):
        assert secret not in body
    assert json.loads(body)["routes"][0]["username"] == "sys***@example.com"


def test_view_opens_no_smtp_connection_and_makes_at_most_one_query(
    smtp_factory, configure_admin, run_check, monitor_get, django_assert_max_num_queries
):
    server = smtp_factory()
    configure_admin(server)
    run_check()
    get_resolver().routes()  # steady state: the snapshot is in memory and in Redis
    sessions = server.recorder.sessions

    for _ in range(3):
        recent_health.clear()  # a cold read each time: the worst case
        with django_assert_max_num_queries(1):
            response = monitor_get()
        assert response.status_code == 200

    assert server.recorder.sessions == sessions


def test_records_read_within_the_cache_window_are_reused(
    smtp_factory, configure_admin, run_check, monitor_get, django_assert_num_queries
):
    configure_admin(smtp_factory())
    run_check()
    get_resolver().routes()
    monitor_get()

    with django_assert_num_queries(0):
        assert monitor_get().json()["status"] == "healthy"


def test_a_new_check_is_served_at_once_by_the_process_that_ran_it(
    smtp_factory, configure_admin, refused_port, run_check, monitor_get, settings
):
    configure_admin(None, smtp_port=refused_port)
    run_check()
    assert monitor_get().status_code == 503

    settings.SMTP_BACKUP_ROUTE = route_settings(smtp_factory())
    run_check()

    assert monitor_get().status_code == 200
