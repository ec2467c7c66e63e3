"""The admin's and the app's side of the leak sweep scenario, as a browser and app code would
drive it: real admin form POSTs, the tools' endpoints and their polled status URLs, the
health endpoints, management commands, and ``send_mail``.

Everything goes through a real Django test client (whose responses are recorded), the real
Celery worker and real SMTP servers; the database is read only to wait for the worker and
to check outcomes.
"""

from __future__ import annotations

import io
from typing import Any

import redis
from django.conf import settings
from django.core import mail
from django.core.management import call_command
from django.urls import reverse

from notifications.models import Delivery
from smtp_settings.health import recent_health
from smtp_settings.health_tasks import run_email_health_check
from smtp_settings.models import AdminConfig, EmailHealthRecord, SmtpTestRun
from tests.admin_testing.conftest import wait_for_run
from tests.foundation.helpers import change_url, form_data, raw_password_column
from tests.waiting import wait_until

TEST_CONNECTION = "admin:smtp_settings_adminconfig_test_connection"
SEND_TEST_EMAIL = "admin:smtp_settings_adminconfig_send_test_email"
RECIPIENT = "ops@example.net"
HEALTH_URL = "/admin/health/email"


class Scenario:
    """One superuser in a browser, plus the commands an operator runs."""

    def __init__(self, client: Any, health_token: str) -> None:
        self.client = client
        self.health_token = health_token
        self.stored_tokens: set[str] = set()
        self.outputs: list[tuple[str, str]] = []  # (command and stream, text)
        self.run_ids: list[str] = []
        self.broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)

    def wait_for_idle_worker(self) -> None:
        """Until no task waits in the queue or is in the worker's hands (tasks are acked
        late: a message leaves ``unacked`` when its task has finished, writes and all). The
        next request then never overlaps a worker's write: SQLite refuses a transaction that
        read first and then writes while another connection writes."""
        wait_until(
            lambda: not self.broker.llen("celery") and not self.broker.hlen("unacked"),
            what="an idle worker",
        )

    # -- the settings form -------------------------------------------------------------------
    def open_settings(self) -> AdminConfig:
        page = self.client.get(change_url())
        assert page.status_code == 200
        return AdminConfig.get_solo()

    def save(
        self, expect_saved: bool = True, *, row: AdminConfig | None = None, **fields: Any
    ) -> Any:
        """POST the settings form as shown (``row``, default: the page just opened) with
        ``fields`` changed; returns the response."""
        row = row or self.open_settings()
        checked_before = self.last_check()
        response = self.client.post(change_url(), form_data(row, **fields), follow=True)
        assert response.status_code == 200, response.status_code
        if expect_saved:
            errors = "" if response.redirect_chain else response.context["adminform"].form.errors
            assert response.redirect_chain, f"not saved: {errors}"
            # A save queues a health check of the new settings.
            self.wait_for_check_after(checked_before)
            self.wait_for_idle_worker()
        else:
            assert not response.redirect_chain
            assert response.context["adminform"].form.errors
        self.remember_token()
        return response

    def remember_token(self) -> None:
        token = raw_password_column()
        if token:
            self.stored_tokens.add(token)

    # -- the tools ---------------------------------------------------------------------------
    def test_connection(self, **fields: Any) -> dict[str, Any]:
        """Press "Test connection" with the form as shown plus ``fields``; wait for the
        worker the way the page does (polling the status URL)."""
        data = form_data(AdminConfig.get_solo(), smtp_test_recipient=RECIPIENT, **fields)
        accepted = self.client.post(reverse(TEST_CONNECTION), data)
        assert accepted.status_code == 202, accepted.content
        return self.poll(accepted.json())

    def send_test_email(self) -> dict[str, Any]:
        accepted = self.client.post(reverse(SEND_TEST_EMAIL), {"smtp_test_recipient": RECIPIENT})
        assert accepted.status_code == 202, accepted.content
        return self.poll(accepted.json())

    def poll(self, accepted: dict[str, Any]) -> dict[str, Any]:
        self.run_ids.append(accepted["id"])
        wait_for_run(accepted["id"])
        self.wait_for_idle_worker()  # the run is written before the settings row is
        status = self.client.get(accepted["status_url"]).json()
        assert status["status"] != SmtpTestRun.Status.PENDING
        return status

    # -- health ------------------------------------------------------------------------------
    @staticmethod
    def last_check() -> Any:
        return EmailHealthRecord.objects.filter(pk=1).values_list("checked_at", flat=True).first()

    @staticmethod
    def wait_for_check_after(before: Any) -> EmailHealthRecord:
        def finished() -> EmailHealthRecord | None:
            record = EmailHealthRecord.objects.filter(pk=1).first()
            done = record and record.checked_at and record.checked_at != before
            return record if done else None

        return wait_until(finished, what="health check by the worker")

    def health_check_through_worker(self) -> EmailHealthRecord:
        """Queue the beat task and wait until the worker finished it."""
        before = self.last_check()
        run_email_health_check.delay()
        record = self.wait_for_check_after(before)
        self.wait_for_idle_worker()
        return record

    def read_health(self) -> None:
        """Every way the health is read: endpoint (staff, bearer, refused), metrics, the
        admin index panel, ``smtp_status``."""
        recent_health.clear()
        bearer = {"Authorization": f"Bearer {self.health_token}"}
        assert self.client.get(HEALTH_URL).status_code in (200, 503)
        assert self.client.get(HEALTH_URL, headers=bearer).status_code in (200, 503)
        wrong = {"Authorization": "Bearer not-the-token"}
        assert self.client.get(HEALTH_URL, headers=wrong).status_code == 401
        assert self.client.get("/metrics", headers=bearer).status_code == 200
        assert self.client.get("/metrics").status_code == 200
        assert self.client.get("/admin/").status_code == 200
        self.command("smtp_status")

    # -- commands and app code ---------------------------------------------------------------
    def command(self, name: str, *args: str) -> int:
        out, err = io.StringIO(), io.StringIO()
        code = 0
        try:
            call_command(name, *args, stdout=out, stderr=err)
        except SystemExit as exc:
            code = int(exc.code or 0)
        self.outputs += [(f"{name} stdout", out.getvalue()), (f"{name} stderr", err.getvalue())]
        return code

    @staticmethod
    def app_sends(subject: str) -> Delivery:
        """App code sends a message (as a view would); returns its delivery-log row."""
        assert mail.send_mail(subject, "Body of " + subject, None, ["user@example.net"]) == 1
        return wait_until(lambda: Delivery.objects.filter(subject=subject).first(), what=subject)

    # -- admin pages -------------------------------------------------------------------------
    def retry_now_in_admin(self, pks: list[int]) -> None:
        """Select deferred deliveries in the delivery log and run "Retry now"."""
        response = self.client.post(
            "/admin/notifications/delivery/",
            {"action": "retry_now", "_selected_action": [str(pk) for pk in pks]},
            follow=True,
        )
        assert response.redirect_chain, response.status_code
        assert f"{len(pks)} deferred message(s) queued for a retry" in response.content.decode()

    def browse_history_and_log(self) -> None:
        """The delivery log, the settings history and every test run's status, as listed
        and in detail."""
        for model in ("notifications/delivery", "smtp_settings/configchange"):
            listing = self.client.get(f"/admin/{model}/")
            assert listing.status_code == 200
            for obj in listing.context["cl"].result_list:
                assert self.client.get(f"/admin/{model}/{obj.pk}/change/").status_code == 200
        for run_id in self.run_ids:
            url = reverse("admin:smtp_settings_adminconfig_test_run", kwargs={"run_id": run_id})
            assert self.client.get(url).status_code == 200
        self.open_settings()
