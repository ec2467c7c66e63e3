"""Many instances at once: two gunicorn web processes, a Celery worker and beat, as
subprocesses on the real PostgreSQL and Redis, configured only through the environment.

Proves, over real HTTP, that a settings change saved through one web process is used by a
send requested through the other web process, and by a task the worker runs, within the
refresh interval plus 0.2 s; then that a worker killed mid-queue loses nothing.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
import requests

from tests.conftest import SMTP_PASSWORD, SMTP_USER
from tests.e2e.stack import Process, Stack, wait_until
from tests.smtp_servers import SmtpServer

pytestmark = pytest.mark.slow

ADMIN_USER, ADMIN_PASSWORD, ADMIN_EMAIL = "ops", "e2e-Admin-pass-1", "ops@example.com"
CHANGE_URL = "/admin/smtp_settings/adminconfig/"
SEND_TEST_EMAIL_URL = CHANGE_URL + "send-test-email/"
RESET_URL = "/admin/password_reset/"
REFRESH_SECONDS = 1.0
ALLOWED_LAG = REFRESH_SECONDS + 0.2


# -- the stack ------------------------------------------------------------------------------------
@pytest.fixture
def servers(smtp_factory) -> tuple[SmtpServer, SmtpServer]:
    """The server the settings start on, and the one they are changed to."""
    return smtp_factory("NONE", auth=True), smtp_factory("NONE", auth=True)


@pytest.fixture
def stack(tmp_path, servers) -> Iterator[Stack]:
    old, new = servers
    redis_db = int(os.environ.get("E2E_REDIS_DB", "12"))
    stack = Stack(
        tmp_path,
        redis_db,
        extra_env={
            "SMTP_ALLOWED_PORTS": f"{old.port},{new.port}",
            "SMTP_CONFIG_REFRESH_SECONDS": str(REFRESH_SECONDS),
            "SMTP_TEST_RATE": "10000/m",
            "PASSWORD_RESET_RATE": "10000/m",
            "EMAIL_RETRY_BASE_SECONDS": "1",
            "EMAIL_RETRY_MAX_SECONDS": "2",
            "EMAIL_SENDING_LEASE_SECONDS": "3",
            "EMAIL_RETRY_SWEEP_SECONDS": "1",
            "EMAIL_DELIVERY_LOG_FLUSH_SECONDS": "0.2",
        },
    )
    import redis

    redis.Redis.from_url(f"redis://127.0.0.1:6379/{redis_db}").flushdb()
    stack.create_database()
    stack.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        "get_user_model().objects.create_superuser("
        f"{ADMIN_USER!r}, {ADMIN_EMAIL!r}, {ADMIN_PASSWORD!r})",
    )
    try:
        yield stack
    finally:
        stack.stop_all()
        stack.drop_database()


def login(web: Process) -> requests.Session:
    session = requests.Session()
    session.get(f"{web.url}/admin/login/", timeout=10)
    response = session.post(
        f"{web.url}/admin/login/?next=/admin/",
        data={
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        timeout=10,
    )
    assert response.ok
    assert "/admin/login/" not in response.url, "admin login failed"
    return session


def save_settings(session: requests.Session, web: Process, server: SmtpServer) -> None:
    """Post the SMTP settings form as an admin would (the password typed again)."""
    page = session.get(f"{web.url}{CHANGE_URL}", timeout=10)
    version = re.search(r'name="loaded_version" value="(\d+)"', page.text).group(1)
    response = session.post(
        f"{web.url}{CHANGE_URL}",
        data={
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "loaded_version": version,
            "smtp_enabled": "on",
            "smtp_server": server.host,
            "smtp_port": str(server.port),
            "smtp_security": "NONE",
            "smtp_timeout": "5",
            "smtp_verify_certificates": "on",
            "smtp_username": SMTP_USER,
            "new_password": SMTP_PASSWORD,
            "sender_name": "Scale Test",
            "sender_email": "noreply@example.com",
            "_save": "Save",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, f"save refused: {response.text[:2000]}"


def request_password_reset(web: Process) -> None:
    """App code sending from a web process: Django's password reset sends synchronously."""
    session = requests.Session()
    session.get(f"{web.url}{RESET_URL}", timeout=10)
    response = session.post(
        f"{web.url}{RESET_URL}",
        data={"email": ADMIN_EMAIL, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 302, response.text[:500]


def request_test_email(session: requests.Session, web: Process) -> None:
    """A task the worker runs: the admin's "Send test email" queues it."""
    response = session.post(
        f"{web.url}{SEND_TEST_EMAIL_URL}",
        data={"smtp_test_recipient": ADMIN_EMAIL},
        headers={"X-CSRFToken": session.cookies["csrftoken"], "Referer": f"{web.url}{CHANGE_URL}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text[:500]


def is_reset(message) -> bool:
    return "password reset" in str(message.message["Subject"]).lower()


class Repeat(threading.Thread):
    """Calls ``action`` every ``every`` seconds until stopped; keeps the first error."""

    def __init__(self, action, every: float) -> None:
        super().__init__(daemon=True)
        self.action, self.every = action, every
        self.stopped = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.action()
            except BaseException as exc:
                self.error = exc
                return
            self.stopped.wait(self.every)

    def stop(self) -> None:
        self.stopped.set()
        self.join(30)
        if self.error:
            raise self.error


# -- the test -------------------------------------------------------------------------------------
def test_a_change_saved_on_one_web_process_reaches_the_other_and_the_worker(stack, servers):
    old, new = servers
    web_a, web_b = stack.start_web("web-a"), stack.start_web("web-b")
    stack.start_worker()
    stack.start_beat()
    admin = login(web_a)
    save_settings(admin, web_a, old)

    # Warm up: both senders are on the old server, each with a snapshot it polls.
    request_password_reset(web_b)
    request_test_email(admin, web_a)
    wait_until(lambda: len(old.messages) >= 2, 30, "warm-up mail at the old server")

    resets = Repeat(lambda: request_password_reset(web_b), every=0.05)
    tests = Repeat(lambda: request_test_email(admin, web_a), every=0.1)
    resets.start()
    tests.start()
    # Both loops run on the old settings for more than a refresh interval first.
    before = len(old.messages)
    started = time.monotonic()
    wait_until(
        lambda: len(old.messages) >= before + 10 and time.monotonic() > started + REFRESH_SECONDS,
        30,
        "sends at the old server before the change",
    )
    save_settings(admin, web_a, new)
    saved_at = time.monotonic()
    wait_until(
        lambda: (
            sum(1 for m in new.messages if is_reset(m)) >= 3
            and sum(1 for m in new.messages if not is_reset(m)) >= 3
            and time.monotonic() > saved_at + ALLOWED_LAG + 0.5
        ),
        30,
        "both senders to reach the new server",
    )
    resets.stop()
    tests.stop()

    late_at_old = [m for m in old.messages if m.received_at > saved_at + ALLOWED_LAG]
    assert late_at_old == [], "a send used the old server more than 1.2 s after the save"
    web_lag = max((m.received_at - saved_at for m in old.messages if is_reset(m)), default=0)
    task_lag = max((m.received_at - saved_at for m in old.messages if not is_reset(m)), default=0)
    print(f"\nlast send at the old server after the save: web {web_lag:.3f}s, task {task_lag:.3f}s")


def test_a_worker_killed_mid_queue_loses_nothing(stack, servers):
    old, new = servers
    web = stack.start_web("web")
    worker = stack.start_worker()
    stack.start_beat()
    save_settings(login(web), web, new)
    new.stop()  # every route down: the web process defers what it cannot send

    for _ in range(20):
        request_password_reset(web)
    deferred_ids = wait_until(
        lambda: _reset_ids(stack, "deferred", attempted=True),
        30,
        "deferred deliveries retried at least once",
    )
    assert len(_reset_ids(stack)) == 20

    worker.stop(signal.SIGKILL)
    new.start()  # same port: the settings still point at it
    stack.start_worker("worker-2")

    wait_until(lambda: len(_reset_ids(stack, "sent")) == 20, 60, "all 20 deliveries sent")
    # (The health check may also have mailed the admins that the route went down: that
    # alert is a message of its own, so only the password resets are counted here.)
    arrived = [m.message_id for m in new.messages if is_reset(m)]
    assert sorted(arrived) == sorted(_reset_ids(stack)), "lost or duplicated a message"
    assert len(set(arrived)) == len(arrived) == 20
    assert set(deferred_ids) <= set(arrived)
    assert old.messages == []


def _reset_ids(stack: Stack, status: str | None = None, attempted: bool = False) -> list[str]:
    """Message-IDs of the password-reset deliveries in the stack's database."""
    query = "SELECT message_id FROM notifications_delivery WHERE subject ILIKE %s"
    params: list[object] = ["%password reset%"]
    if status:
        query += " AND status = %s"
        params.append(status)
    if attempted:
        query += " AND attempts > 0"
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{stack.database}") as conn:
        return [row[0] for row in conn.execute(query, params)]
