"""``smtp_test_connection`` (probe a route, exit 0/1) and Django's own ``sendtestemail``
through the dynamic backend, against real servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from smtp_settings.models import AdminConfig, SmtpTestRun
from tests.conftest import SMTP_PASSWORD, SMTP_USER, route_settings

pytestmark = pytest.mark.django_db

ROOT = Path(django_settings.BASE_DIR)


def run_command(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("smtp_test_connection", *args, stdout=out, stderr=StringIO())
    except SystemExit as exc:
        return int(exc.code), out.getvalue()
    return 0, out.getvalue()


def test_good_admin_route_exits_0_and_is_recorded(smtp_factory, configure_admin):
    server = smtp_factory("TLS", auth=True)
    config = configure_admin(server)

    code, output = run_command("--route", "admin", "--to", "ops@example.net")

    assert code == 0
    assert output.startswith(f"OK: admin (TLS 127.0.0.1:{server.port}) would accept mail")
    assert "to ops@example.net" in output
    assert server.recorder.data_commands == 0
    row = AdminConfig.objects.get()
    assert row.smtp_test_result["ok"] is True
    assert row.version == config.version
    assert SmtpTestRun.objects.get().status == "ok"


def test_bad_password_exits_1_with_the_step_and_hint(smtp_factory, configure_admin):
    server = smtp_factory("TLS", auth=True)
    configure_admin(server, password="wrong-password")

    code, output = run_command("--route", "admin")

    assert code == 1
    assert output.startswith(f"FAILED at auth 535: admin (TLS 127.0.0.1:{server.port}).")
    assert "app password" in output
    assert "wrong-password" not in output
    assert SMTP_USER not in output


def test_json_output(smtp_factory, settings):
    server = smtp_factory("SSL", auth=True)
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(server)

    code, output = run_command("--route", "environment", "--json")

    data = json.loads(output)
    assert code == 0
    assert (data["ok"], data["route"], data["server"]) == (
        True,
        "environment",
        f"127.0.0.1:{server.port}",
    )
    assert SMTP_PASSWORD not in output
    # An environment route is not the admin's settings: nothing stamped on the row.
    assert AdminConfig.objects.filter(smtp_last_tested_at__isnull=False).count() == 0


def test_without_route_it_probes_the_first_route_app_mail_would_use(
    smtp_factory, configure_admin, settings, refused_port
):
    env_server = smtp_factory("NONE")
    configure_admin(None, smtp_enabled=False, smtp_port=refused_port)
    settings.SMTP_ENVIRONMENT_ROUTE = route_settings(env_server)

    code, output = run_command()

    assert code == 0
    assert output.startswith(f"OK: environment (NONE 127.0.0.1:{env_server.port})")


def test_unconfigured_route_is_an_error_with_exit_code_1(settings):
    settings.SMTP_BACKUP_ROUTE = route_settings(None)

    with pytest.raises(CommandError, match=r"BACKUP_SMTP_SERVER is empty") as error:
        call_command("smtp_test_connection", "--route", "backup")

    assert error.value.returncode == 1


def test_recipient_must_be_an_address():
    with pytest.raises(CommandError, match="is not an email address"):
        call_command("smtp_test_connection", "--to", "ops@example.net\nBcc: x@example.org")


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_process_exit_codes_for_a_good_and_a_bad_server(smtp_factory, refused_port, tmp_path):
    good = smtp_factory("TLS", auth=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        # A database of its own (never migrated here): the probe still answers.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        "SMTP_CA_FILE": django_settings.SMTP_CA_FILE,
        "SMTP_SERVER": good.host,
        "SMTP_PORT": str(good.port),
        "SMTP_SECURITY": "TLS",
        "SMTP_USERNAME": SMTP_USER,
        "SMTP_PASSWORD": SMTP_PASSWORD,
    }

    ok = _manage(env, "smtp_test_connection", "--route", "environment")
    down = _manage({**env, "SMTP_PORT": str(refused_port)}, "smtp_test_connection")

    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK: environment")
    assert down.returncode == 1, down.stderr
    assert down.stdout.startswith("FAILED at connect")
    assert "refused" in down.stdout
    assert SMTP_PASSWORD not in ok.stdout + ok.stderr + down.stdout + down.stderr


def test_djangos_sendtestemail_goes_through_the_dynamic_backend(smtp_factory, configure_admin):
    server = smtp_factory("TLS", auth=True)
    configure_admin(server)

    call_command("sendtestemail", "ops@example.net", stdout=StringIO())

    [received] = server.wait_for(1)
    assert received.rcpt_tos == ["ops@example.net"]
    assert received.message["Subject"].startswith("Test email from")
    # The route's sender replaced DEFAULT_FROM_EMAIL, as for any app mail.
    assert received.message["From"] == "Example Alerts <noreply@example.com>"
    assert server.auth_attempts == [(SMTP_USER, SMTP_PASSWORD, True)]
