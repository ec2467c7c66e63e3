"""The tools on the SMTP settings page, through Django's test client: who may use them,
CSRF, the rate limit, validation of what is on screen, and what reaches the broker.
(The end-to-end runs through a real worker are in test_worker_flows.py.)"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone
from django_ratelimit.core import get_usage

from smtp_settings import crypto
from smtp_settings.admin_views import RATE_GROUP, _rate
from smtp_settings.models import AdminConfig, SmtpTestRun
from tests.admin_testing.conftest import queued_tasks
from tests.conftest import SMTP_PASSWORD
from tests.foundation.helpers import change_url, form_data, raw_password_column

pytestmark = pytest.mark.django_db

TEST_CONNECTION = "admin:smtp_settings_adminconfig_test_connection"
SEND_TEST_EMAIL = "admin:smtp_settings_adminconfig_send_test_email"
TEST_RUN = "admin:smtp_settings_adminconfig_test_run"


def run_url(run_id=None) -> str:
    return reverse(TEST_RUN, kwargs={"run_id": run_id or uuid.uuid4()})


@pytest.fixture
def saved(smtp_factory, configure_admin, allow_ports):
    """Saved settings pointing at a real STARTTLS server with AUTH."""
    server = smtp_factory("TLS", auth=True)
    allow_ports(server)
    return server, configure_admin(server)


# -- the page ------------------------------------------------------------------------------------
def test_change_page_has_the_tools_presets_and_no_password(staff_client, saved):
    html = staff_client.get(change_url()).content.decode()

    assert 'id="smtp-tools"' in html
    assert f'data-test-connection-url="{reverse(TEST_CONNECTION)}"' in html
    assert f'data-send-test-email-url="{reverse(SEND_TEST_EMAIL)}"' in html
    assert 'type="button" class="button" id="smtp-test-connection"' in html
    assert "smtp_settings/smtp_tools.js" in html
    assert "&quot;server&quot;: &quot;smtp.gmail.com&quot;" in html  # presets, escaped JSON
    assert 'value="tester@example.com"' in html  # the admin's own address by default
    assert "Not tested yet." in html
    assert SMTP_PASSWORD not in html
    assert raw_password_column() not in html


def test_staff_who_may_only_view_the_settings_get_no_test_buttons(make_user, saved):
    from django.contrib.auth.models import Permission

    viewer = make_user("viewer", can_change=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_adminconfig"))
    client = Client()
    client.force_login(viewer)

    response = client.get(change_url())

    assert response.status_code == 200
    assert 'id="smtp-tools"' not in response.content.decode()


def test_tools_script_is_served(staff_client):
    response = staff_client.get("/static/smtp_settings/smtp_tools.js")

    assert response.status_code == 200
    script = b"".join(response.streaming_content).decode()
    assert "textContent" in script
    assert "innerHTML" not in script


# -- who may use them ----------------------------------------------------------------------------
ENDPOINTS = [("post", TEST_CONNECTION), ("post", SEND_TEST_EMAIL), ("get", TEST_RUN)]


def _url(name: str) -> str:
    return run_url() if name == TEST_RUN else reverse(name)


@pytest.mark.parametrize(("method", "name"), ENDPOINTS)
def test_anonymous_is_sent_to_the_login_page(client, method, name):
    response = getattr(client, method)(_url(name))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize(("method", "name"), ENDPOINTS)
def test_non_staff_is_sent_to_the_login_page(make_user, method, name):
    client = Client()
    client.force_login(make_user("plain", staff=False))

    response = getattr(client, method)(_url(name))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize(("method", "name"), ENDPOINTS)
def test_staff_without_the_change_permission_is_forbidden(make_user, method, name):
    client = Client()
    client.force_login(make_user("nosy", can_change=False))

    response = getattr(client, method)(_url(name), {"smtp_test_recipient": "a@example.net"})

    assert response.status_code == 403
    assert "Only staff allowed to change the SMTP settings" in response.json()["error"]
    assert not SmtpTestRun.objects.exists()


def test_the_buttons_refuse_get(staff_client):
    assert staff_client.get(reverse(SEND_TEST_EMAIL)).status_code == 405
    assert staff_client.get(reverse(TEST_CONNECTION)).status_code == 405


@pytest.mark.parametrize("name", [TEST_CONNECTION, SEND_TEST_EMAIL])
def test_post_without_csrf_token_is_refused(make_user, saved, name):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user())
    data = {**form_data(saved[1]), "smtp_test_recipient": "ops@example.net"}

    refused = client.post(reverse(name), data)
    client.get(change_url())  # the page sets the CSRF cookie, as a browser would get it
    accepted = client.post(
        reverse(name), data, headers={"X-CSRFToken": client.cookies["csrftoken"].value}
    )

    assert refused.status_code == 403
    assert accepted.status_code == 202
    assert SmtpTestRun.objects.count() == 1


# -- the rate limit ------------------------------------------------------------------------------
def _user_far_from_a_window_edge(make_user):
    """django-ratelimit counts in fixed windows whose edge depends on the key (the user's
    pk): pick a user whose current window has time left for eleven quick requests."""
    for n in range(20):
        user = make_user(f"busy{n}")
        request = RequestFactory().post("/")
        request.user = user
        usage = get_usage(
            request, group=RATE_GROUP, key="user", rate=_rate, method="POST", increment=False
        )
        if usage["time_left"] >= 15:
            return user
    raise AssertionError("no user with a fresh rate-limit window")


def test_the_eleventh_test_in_a_minute_is_refused(make_user, saved):
    assert django_settings.SMTP_TEST_RATE == "10/m"
    client = Client()
    client.force_login(_user_far_from_a_window_edge(make_user))
    other = Client()
    other.force_login(make_user("colleague"))
    data = {"smtp_test_recipient": "ops@example.net"}

    codes = [client.post(reverse(SEND_TEST_EMAIL), data).status_code for _ in range(10)]
    eleventh = client.post(reverse(TEST_CONNECTION), form_data(saved[1]))

    assert codes == [202] * 10
    assert eleventh.status_code == 429
    assert eleventh.json()["error"].startswith("Too many tests: at most 10/m per user.")
    assert SmtpTestRun.objects.count() == 10
    # Per user: a colleague is not held back.
    assert other.post(reverse(SEND_TEST_EMAIL), data).status_code == 202


def test_the_rate_comes_from_settings(staff_client, saved, settings):
    settings.SMTP_TEST_RATE = "1/h"
    data = {"smtp_test_recipient": "ops@example.net"}

    assert staff_client.post(reverse(SEND_TEST_EMAIL), data).status_code == 202
    assert staff_client.post(reverse(SEND_TEST_EMAIL), data).status_code == 429


# -- send test email: the recipient --------------------------------------------------------------
@pytest.mark.parametrize(
    ("recipient", "message"),
    [
        ("ops@example.net\r\nBcc: victim@example.org", "Line breaks are not allowed"),
        ("ops@example.net\nBcc: victim@example.org", "Line breaks are not allowed"),
        ("not an address", "Enter a valid email address."),
    ],
)
def test_bad_recipient_is_refused_before_anything_is_queued(
    staff_client, saved, redis_client, recipient, message
):
    response = staff_client.post(reverse(SEND_TEST_EMAIL), {"smtp_test_recipient": recipient})

    assert response.status_code == 400
    assert message in response.json()["errors"]["smtp_test_recipient"][0]
    assert not SmtpTestRun.objects.exists()
    assert queued_tasks(redis_client) == []


def test_recipient_defaults_to_the_admins_own_address(
    staff_client, saved, redis_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse(SEND_TEST_EMAIL), {"smtp_test_recipient": ""})

    assert response.status_code == 202
    [queued] = queued_tasks(redis_client)
    assert queued["task"] == "smtp_settings.tasks.send_test_email"
    assert queued["kwargs"] == {"run_id": response.json()["id"], "recipient": "tester@example.com"}
    run = SmtpTestRun.objects.get()
    assert (run.kind, run.status, run.for_saved_settings) == ("email", "pending", True)
    assert run.config_version == saved[1].version


def test_admin_without_an_email_address_must_type_a_recipient(make_user, saved):
    client = Client()
    client.force_login(make_user("noaddress", email=""))  # overrides the default address

    response = client.post(reverse(SEND_TEST_EMAIL), {"smtp_test_recipient": ""})

    assert response.status_code == 400
    assert (
        "your account has no email address" in response.json()["errors"]["smtp_test_recipient"][0]
    )


# -- test connection: what is on screen ----------------------------------------------------------
def test_typed_password_reaches_the_broker_only_encrypted(
    staff_client, saved, smtp_factory, allow_ports, redis_client, django_capture_on_commit_callbacks
):
    server, config = saved
    other = smtp_factory("TLS", auth=True)
    allow_ports(server, other)
    data = form_data(config, smtp_port=str(other.port), new_password="Typed-Secret-0042")

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse(TEST_CONNECTION), data)

    assert response.status_code == 202, response.content
    [queued] = queued_tasks(redis_client)
    kwargs = queued["kwargs"]
    assert queued["task"] == "smtp_settings.tasks.test_smtp_connection"
    assert "Typed-Secret-0042" not in queued["raw"]
    assert crypto.decrypt(kwargs["password_token"]) == "Typed-Secret-0042"
    assert kwargs["use_stored_password"] is False
    assert kwargs["values"]["smtp_port"] == other.port
    assert SMTP_PASSWORD not in queued["raw"]
    assert "Typed-Secret-0042" not in response.content.decode()
    run = SmtpTestRun.objects.get()
    assert (run.for_saved_settings, run.config_version) == (False, None)


def test_unchanged_settings_with_blank_password_use_the_stored_one(
    staff_client, saved, redis_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse(TEST_CONNECTION), form_data(saved[1]))

    assert response.status_code == 202
    [queued] = queued_tasks(redis_client)
    assert queued["kwargs"]["use_stored_password"] is True
    assert queued["kwargs"]["password_token"] == ""
    assert raw_password_column() not in queued["raw"]  # not even the stored token
    run = SmtpTestRun.objects.get()
    assert (run.for_saved_settings, run.config_version) == (True, saved[1].version)


@pytest.mark.parametrize("enabled", ["on", None])
def test_changed_port_without_password_is_refused_and_the_new_server_sees_nothing(
    staff_client, saved, smtp_factory, allow_ports, redis_client, enabled
):
    server, config = saved
    other = smtp_factory("TLS", auth=True)
    allow_ports(server, other)

    response = staff_client.post(
        reverse(TEST_CONNECTION),
        form_data(config, smtp_port=str(other.port), smtp_enabled=enabled),
    )

    assert response.status_code == 400
    [message] = response.json()["errors"]["new_password"]
    assert "type the password" in message
    assert not SmtpTestRun.objects.exists()
    assert queued_tasks(redis_client) == []
    assert other.recorder.sessions == 0
    assert other.auth_attempts == []


def test_invalid_values_on_screen_are_reported_per_field(staff_client, saved):
    data = form_data(saved[1], smtp_port="2526", smtp_server="smtp://mail.example.com")

    response = staff_client.post(reverse(TEST_CONNECTION), data)

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert "not allowed here" in errors["smtp_port"][0]
    assert "without a scheme" in errors["smtp_server"][0]


def test_a_stale_page_may_still_test_what_it_shows(
    staff_client, saved, configure_admin, django_capture_on_commit_callbacks
):
    server, config = saved
    stale = form_data(config)
    configure_admin(server, sender_name="Saved by someone else")

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse(TEST_CONNECTION), stale)

    assert response.status_code == 202
    assert SmtpTestRun.objects.get().for_saved_settings is False  # the screen differs


def test_server_is_required_to_test(staff_client, configure_admin):
    config = configure_admin(None, smtp_enabled=False, smtp_server="")

    response = staff_client.post(reverse(TEST_CONNECTION), form_data(config))

    assert response.status_code == 400
    assert response.json()["errors"]["smtp_server"] == ["Enter the server to test."]


# -- the status the page polls -------------------------------------------------------------------
def test_status_of_a_pending_then_finished_run(staff_client, make_user):
    run = SmtpTestRun.objects.create(kind="connection", requested_by=make_user("other"))

    pending = staff_client.get(run_url(run.pk)).json()
    SmtpTestRun.finish(
        run.pk,
        {
            "kind": "connection",
            "ok": False,
            "route": "admin",
            "server": "smtp.example.com:587",
            "step": "auth",
            "smtp_code": 535,
            "hint": "Use an app password.",
            "timings": {"tls": 0.02, "connect": 0.01},
            "secret_thing": "never shown",
        },
    )
    done = staff_client.get(run_url(run.pk)).json()

    assert (pending["status"], pending["summary"]) == (
        "pending",
        "Testing… (the page updates by itself)",
    )
    assert done["status"] == "error"
    assert done["summary"] == "Failed at the auth step (535): admin (smtp.example.com:587)."
    assert done["hint"] == "Use an app password."
    assert done["timings"] == "connect 0.010 s · tls 0.020 s"
    assert "secret_thing" not in done["result"]


def test_a_run_pending_for_long_asks_whether_a_worker_runs(staff_client):
    run = SmtpTestRun.objects.create(kind="email")
    SmtpTestRun.objects.filter(pk=run.pk).update(created_at=run.created_at - timedelta(minutes=2))

    summary = staff_client.get(run_url(run.pk)).json()["summary"]

    assert "is a Celery worker running?" in summary


def test_status_of_an_unknown_run_is_404(staff_client):
    assert staff_client.get(run_url()).status_code == 404


def test_page_shows_the_last_recorded_result(staff_client, saved):
    AdminConfig.objects.filter(pk=1).record_test_result(
        {
            "kind": "connection",
            "ok": True,
            "route": "admin",
            "server": "127.0.0.1:2525",
            "sender": "noreply@example.com",
            "recipient": "noreply@example.com",
            "timings": {"connect": 0.001},
        },
        timezone.now(),
        version=saved[1].version,
    )

    html = staff_client.get(change_url()).content.decode()

    assert "Connection OK: admin (127.0.0.1:2525) would accept mail from" in html
    assert "connect 0.001 s" in html
    assert SMTP_PASSWORD not in html


def test_starting_a_test_prunes_runs_older_than_thirty_days(staff_client, saved):
    old = SmtpTestRun.objects.create(kind="email")
    recent = SmtpTestRun.objects.create(kind="email")
    SmtpTestRun.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))
    SmtpTestRun.objects.filter(pk=recent.pk).update(created_at=timezone.now() - timedelta(days=29))

    staff_client.post(reverse(SEND_TEST_EMAIL), {"smtp_test_recipient": "ops@example.net"})

    assert not SmtpTestRun.objects.filter(pk=old.pk).exists()
    assert SmtpTestRun.objects.filter(pk=recent.pk).exists()
    assert SmtpTestRun.objects.count() == 2
