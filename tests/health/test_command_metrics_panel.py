"""smtp_status exit codes, /metrics, and the admin index panel."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from tests.conftest import route_settings
from tests.health.conftest import TOKEN

pytestmark = pytest.mark.django_db


def smtp_status(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    try:
        call_command("smtp_status", *args, stdout=out)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, json.loads(out.getvalue())


def test_smtp_status_exits_0_when_healthy(smtp_factory, configure_admin, run_check):
    configure_admin(smtp_factory())
    run_check()

    code, body = smtp_status()

    assert (code, body["status"]) == (0, "healthy")


def test_smtp_status_exits_1_when_no_route_works(configure_admin, refused_port, run_check):
    configure_admin(None, smtp_port=refused_port)
    run_check()

    code, body = smtp_status()

    assert (code, body["status"]) == (1, "error")


def test_smtp_status_exits_1_when_untested_and_probe_option_tests_now(
    smtp_factory, configure_admin
):
    server = smtp_factory()
    configure_admin(server)

    assert smtp_status()[0] == 1
    code, body = smtp_status("--probe")

    assert (code, body["status"]) == (0, "healthy")
    assert server.recorder.sessions == 1


def test_metrics_require_the_token(client, monitor_get):
    assert client.get("/metrics").status_code == 401
    assert monitor_get("/metrics", token="wrong").status_code == 401


def test_metrics_report_probes_status_and_version(
    smtp_factory, configure_admin, refused_port, settings, run_check, monitor_get
):
    config = configure_admin(None, smtp_port=refused_port)
    settings.SMTP_BACKUP_ROUTE = route_settings(smtp_factory())
    run_check()

    response = monitor_get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response["Cache-Control"] == "no-store"
    text = response.content.decode()
    assert 'smtp_route_probe_success{route="admin"} 0.0' in text
    assert 'smtp_route_probe_success{route="backup"} 1.0' in text
    assert 'smtp_health_status{status="degraded"} 1.0' in text
    assert f"smtp_config_version {float(config.version)}" in text
    assert "smtp_mail_deliverable 1.0" in text
    assert "smtp_route_probe_timestamp_seconds" in text
    assert TOKEN not in text


def test_admin_index_shows_the_email_health_panel(
    admin_client, smtp_factory, configure_admin, run_check
):
    server = smtp_factory()
    configure_admin(server)
    run_check()

    html = admin_client.get("/admin/").content.decode()

    assert 'id="email-health-panel"' in html
    assert "email-health-healthy" in html
    assert f"127.0.0.1:{server.port}" in html
    assert "Recent actions" in html  # the stock sidebar is still there
