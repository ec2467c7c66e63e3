"""`make run` (scripts/dev_run.py): serves the admin on a fresh database with no services,
with a mail sink that prints what it receives, and stops everything it started."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model

from scripts import dev_run
from tests.smtp_servers import free_port
from tests.waiting import wait_until

ROOT = Path(dev_run.__file__).resolve().parent.parent
STARTUP_DEADLINE = 60.0


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, int, int, Path]]:
    """dev_run.py on free ports, a temp SQLite file and its own key; no Redis, no broker."""
    http_port, sink_port = free_port(), free_port()
    log = tmp_path / "dev_run.log"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'dev.sqlite3'}",
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "PORT": str(http_port),
        "DEV_SMTP_PORT": str(sink_port),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "dev_run.py")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process, http_port, sink_port, log
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.slow
def test_make_run_serves_the_admin_login_and_prints_mail_without_services(dev_server):
    process, http_port, sink_port, log = dev_server
    login_url = f"http://127.0.0.1:{http_port}/admin/login/"

    def up() -> bool:
        if process.poll() is not None:
            pytest.fail(f"dev_run.py exited early:\n{log.read_text()}")
        return http_status(login_url) == 200

    wait_until(up, STARTUP_DEADLINE, "/admin/login/ to answer 200")

    output = log.read_text()
    assert f"Admin:      http://127.0.0.1:{http_port}/admin/" in output
    assert output.count("Login:      admin / ") == 1
    assert f"SMTP_SERVER=127.0.0.1:{sink_port} (SMTP_SECURITY=NONE)" in output
    assert "retried only once a Celery worker and beat run" in output  # no broker here
    assert "email health: OK: environment" in output  # probed once: the panel is not "untested"
    with smtplib.SMTP("127.0.0.1", sink_port, timeout=5) as client:
        client.sendmail("app@example.com", ["user@example.net"], "Subject: sink check\n\nhi")
    wait_until(lambda: "Subject: sink check" in log.read_text(), 10, "the sink to print mail")

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    wait_until(lambda: not listening(http_port), 10, "runserver to stop")
    wait_until(lambda: not listening(sink_port), 10, "the SMTP sink to stop")


def test_dev_environment_routes_mail_to_the_sink_and_allows_its_port():
    env = dev_run.dev_environment({"PATH": "/bin"})

    assert env["SMTP_SERVER"] == "127.0.0.1"
    assert env["SMTP_PORT"] == "1025"
    assert env["SMTP_SECURITY"] == "NONE"
    assert env["SMTP_ALLOWED_PORTS"] == "25,465,587,2525,1025"
    assert env["DEBUG"] == "true"


def test_dev_environment_keeps_a_configured_smtp_server():
    env = dev_run.dev_environment(
        {"SMTP_SERVER": "smtp.example.com", "SMTP_PORT": "587", "SMTP_ALLOWED_PORTS": "587"}
    )

    assert (env["SMTP_SERVER"], env["SMTP_PORT"]) == ("smtp.example.com", "587")
    assert env["SMTP_ALLOWED_PORTS"] == "587,1025"


@pytest.mark.django_db
def test_dev_superuser_is_created_once_with_a_random_password():
    first = dev_run.ensure_dev_superuser()
    second = dev_run.ensure_dev_superuser()

    assert first is not None
    username, password = first
    assert second is None
    user = get_user_model().objects.get(username=username)
    assert user.is_superuser
    assert user.check_password(password)
    assert password not in user.password  # stored hashed only
    assert len(password) >= 16


def test_make_run_refuses_a_busy_sink_port_with_a_sentence(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DEBUG": "true",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'dev.sqlite3'}",
            "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "PORT": str(free_port()),
            "DEV_SMTP_PORT": str(port),
        }
        result = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "dev_run.py")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 1
    assert f"The SMTP sink cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "set DEV_SMTP_PORT to a free port" in result.stderr
