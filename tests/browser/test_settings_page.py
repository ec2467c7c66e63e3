"""The SMTP settings in a real browser, as an admin uses them: log in, open the settings from
the admin index, fill the form from a preset and for a local STARTTLS server with AUTH, save,
test the connection, send a test email, read the health panel and the health JSON; a value
the form refuses saves nothing; a wrong password shows the failed step and its hint.

Chromium (Playwright) drives pytest-django's live server; a real Celery worker on the Redis
broker runs the tests the page asks for, against real aiosmtpd servers. Every step leaves a
screenshot in ``test-artifacts/browser/<test name>/``.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from smtp_settings.models import AdminConfig, ConfigChange
from tests.browser.conftest import LOGIN_PASSWORD, log_in
from tests.conftest import SMTP_PASSWORD, SMTP_USER
from tests.foundation.helpers import change_url, raw_password_column, row_state

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HEALTH_URL = "/admin/health/email"
HEALTH_KEYS = {
    "status",
    "deliverable",
    "reason",
    "smtp_source",
    "smtp_server",
    "username",
    "last_test",
    "last_test_result",
    "routes",
    "config_version",
    "checked_at",
}
SENDER_NAME, SENDER_EMAIL = "Example Alerts", "alerts@example.com"


def everything_the_browser_holds(page: Page) -> dict[str, str]:
    """The page as serialized from the DOM, every form control's current value (a typed
    value lives only there, not in the markup), and the raw HTML the server sends for the
    same URL with this browser's own cookies."""
    values = page.eval_on_selector_all(
        "input, textarea, select", "els => els.map(e => e.name + '=' + e.value)"
    )
    raw = page.request.get(page.url)
    assert raw.ok, raw.status
    return {"dom": page.content(), "values": "\n".join(values), "raw html": raw.text()}


def open_settings_from_index(page: Page) -> None:
    # The model's row (the app's caption is a link named "SMTP settings" too).
    row = page.locator("#content-main tr.model-adminconfig")
    row.get_by_role("link", name="SMTP settings", exact=True).click()
    page.wait_for_url(re.compile(re.escape(change_url()) + "$"))
    expect(page.locator("#id_smtp_server")).to_be_visible()


def test_admin_configures_a_starttls_server_tests_it_sends_a_test_email_and_reads_health(
    browser_page, shot, superuser, celery_worker, smtp_factory, allow_ports
):
    page = browser_page
    server = smtp_factory("TLS", auth=True)
    allow_ports(server)

    # 1. The real login page.
    page.goto("/admin/")
    page.wait_for_url(re.compile(r"/admin/login/"))
    page.fill("#id_username", "admin")
    page.fill("#id_password", LOGIN_PASSWORD)
    shot(page, "login-page")
    page.click("#login-form [type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))
    expect(page.locator("#user-tools")).to_contain_text("admin")
    shot(page, "admin-index")

    # 2. From the index to the settings page by clicking.
    open_settings_from_index(page)
    expect(page.locator(".field-status_line .readonly")).to_have_text("Not configured")
    shot(page, "settings-page")

    # 3. A preset fills server, port and security; then the local server's values.
    page.select_option("#smtp-preset", "gmail")
    expect(page.locator("#id_smtp_server")).to_have_value("smtp.gmail.com")
    expect(page.locator("#id_smtp_port")).to_have_value("587")
    expect(page.locator("#id_smtp_security")).to_have_value("TLS")
    expect(page.locator("#smtp-preset-note")).to_contain_text("app password")
    shot(page, "preset-gmail")

    page.check("#id_smtp_enabled")
    page.fill("#id_smtp_server", server.host)
    page.fill("#id_smtp_port", str(server.port))
    page.select_option("#id_smtp_security", "TLS")
    page.fill("#id_smtp_username", SMTP_USER)
    page.fill("#id_new_password", SMTP_PASSWORD)
    page.fill("#id_sender_name", SENDER_NAME)
    page.fill("#id_sender_email", SENDER_EMAIL)
    shot(page, "form-filled")

    # 4. Save (and continue editing): the success message and the status line.
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist li")).to_contain_text("was changed successfully")
    expect(page.locator(".field-status_line .readonly")).to_have_text("Configured but not tested")
    expect(page.locator(".field-password_state .readonly")).to_have_text("set")
    saved = AdminConfig.get_solo()
    assert (saved.smtp_server, saved.smtp_port, saved.smtp_security) == (
        "127.0.0.1",
        server.port,
        "TLS",
    )
    assert (saved.smtp_username, saved.sender_name, saved.sender_email) == (
        SMTP_USER,
        SENDER_NAME,
        SENDER_EMAIL,
    )
    assert saved.smtp_enabled
    assert saved.has_password
    shot(page, "saved")

    # 8. After the save, neither the password nor its ciphertext is anywhere in the page.
    token = raw_password_column()
    assert token
    assert token != SMTP_PASSWORD
    held = everything_the_browser_holds(page)
    assert 'id="id_smtp_server"' in held["raw html"]  # the settings page, not a login page
    for where, text in held.items():
        assert SMTP_PASSWORD not in text, f"password in the {where}"
        assert token not in text, f"password token in the {where}"

    # 5. Test connection (the saved settings, stored password): the result appears in place.
    page.evaluate("window.__sameDocument = true")
    page.click("#smtp-test-connection")
    page.wait_for_selector("#smtp-test-status[data-status=ok]")
    summary = page.text_content("#smtp-test-status .smtp-test-summary")
    assert summary.startswith(f"Connection OK: admin (127.0.0.1:{server.port})")
    assert "Nothing was sent." in summary
    timings = page.text_content("#smtp-test-status .smtp-test-timings")
    assert re.search(r"connect \d+\.\d{3} s", timings), timings
    assert re.search(r"auth \d+\.\d{3} s", timings), timings
    # Logins so far: this test's, and the health probe the save queued (it ran first: one
    # worker, one queue). Every one succeeded; none went as far as DATA.
    assert {(user, ok) for user, _, ok in server.auth_attempts} == {(SMTP_USER, True)}
    assert server.recorder.data_commands == 0
    assert server.messages == []
    assert page.evaluate("window.__sameDocument") is True
    shot(page, "test-connection-ok")

    # 6. Send test email (to the admin's own address by default): the server receives it.
    expect(page.locator("#smtp-test-recipient")).to_have_value("admin@example.com")
    page.click("#smtp-send-test-email")
    page.wait_for_selector(
        "#smtp-test-status[data-status=ok] >> text=Test email sent to admin@example.com"
    )
    received = server.wait_for(1)
    assert len(received) == 1
    assert received[0].rcpt_tos == ["admin@example.com"]
    assert received[0].mail_from == SENDER_EMAIL
    assert received[0].message["From"].addresses[0].display_name == SENDER_NAME
    assert page.evaluate("window.__sameDocument") is True
    assert SMTP_PASSWORD not in page.content()
    shot(page, "test-email-sent")

    # 9. The health panel on the admin index, reached through the breadcrumbs.
    page.locator(".breadcrumbs").get_by_role("link", name="Home").click()
    page.wait_for_url(re.compile(r"/admin/$"))
    panel = page.locator("#email-health-panel")
    expect(panel).to_be_visible()
    # The save queued a probe of the new settings, and it succeeded: healthy, not untested.
    expect(panel.locator(".email-health-status")).to_have_text("healthy")
    expect(panel.locator("tr", has_text="Source").locator("td")).to_have_text("admin")
    expect(panel.locator("tr", has_text="Server").locator("td")).to_have_text(
        f"127.0.0.1:{server.port}"
    )
    expect(panel.locator("tr", has_text="Last test").locator("td")).to_contain_text("(ok)")
    shot(page, "health-panel")

    # ... and the health JSON in the same logged-in browser context.
    response = page.request.get(HEALTH_URL)
    assert response.headers["content-type"] == "application/json"
    health = response.json()
    assert health.keys() >= HEALTH_KEYS
    assert response.status == 200
    assert (health["status"], health["deliverable"]) == ("healthy", True)
    assert (health["smtp_source"], health["smtp_server"]) == ("admin", f"127.0.0.1:{server.port}")
    assert health["last_test_result"]["ok"] is True
    assert health["username"]
    assert health["username"] != SMTP_USER
    for secret in (SMTP_PASSWORD, token, SMTP_USER):
        assert secret not in response.text()
    page.goto(HEALTH_URL)
    expect(page.locator("body")).to_contain_text('"smtp_source": "admin"')
    shot(page, "health-json")


INVALID_VALUES = {
    # A header injection attempt: a text input drops line breaks, so the test turns it into
    # a hidden input, whose value the browser submits as it is (CR LF).
    "crlf-in-sender-name": (
        "sender_name",
        "Example Alerts\r\nBcc: everyone@example.net",
        "Line breaks are not allowed here",
    ),
    "invalid-sender-email": ("sender_email", "alerts at example.com", "valid email address"),
    "ssl-on-port-587": ("smtp_security", "SSL", "Port 587 expects STARTTLS (TLS), not SSL"),
}


@pytest.mark.parametrize("case", INVALID_VALUES)
def test_a_refused_value_shows_its_field_error_and_nothing_is_saved(
    case, browser_page, shot, superuser, smtp_factory, configure_admin, allow_ports
):
    page = browser_page
    server = smtp_factory("TLS", auth=True)
    allow_ports(server)
    configure_admin(server)
    before = row_state()
    changes_before = ConfigChange.objects.count()
    field, value, message = INVALID_VALUES[case]

    log_in(page, "admin")
    page.goto(change_url())
    if field == "smtp_security":
        page.fill("#id_smtp_port", "587")
        page.select_option("#id_smtp_security", value)
    elif field == "sender_name":
        page.eval_on_selector(
            "#id_sender_name", "(el, value) => { el.type = 'hidden'; el.value = value; }", value
        )
        assert page.eval_on_selector("#id_sender_name", "el => el.value") == value
    else:
        page.fill(f"#id_{field}", value)
    # A typed password too, so that the only thing wrong is the value under test.
    page.fill("#id_new_password", "a-new-password-typed-here")
    shot(page, "invalid-value-entered")
    page.click("input[name=_continue]")

    expect(page.locator(".errornote")).to_be_visible()
    errors = page.locator(".errorlist")
    expect(page.locator(f".field-{field} .errorlist")).to_contain_text(message)
    expect(errors).to_have_count(1)
    expect(page.locator(".messagelist li", has_text="changed successfully")).to_have_count(0)
    shot(page, "field-error-shown")

    assert row_state() == before
    assert ConfigChange.objects.count() == changes_before
    assert "a-new-password-typed-here" not in page.content()


def test_a_wrong_password_typed_shows_the_failed_auth_step_and_its_hint(
    browser_page, shot, superuser, celery_worker, smtp_factory, configure_admin, allow_ports
):
    page = browser_page
    server = smtp_factory("TLS", auth=True)
    allow_ports(server)
    configure_admin(server)
    before = row_state()
    wrong = "not-the-right-password"

    log_in(page, "admin")
    page.goto(change_url())
    page.fill("#id_new_password", wrong)
    shot(page, "wrong-password-typed")
    page.click("#smtp-test-connection")
    page.wait_for_selector("#smtp-test-status[data-status=error]")

    summary = page.text_content("#smtp-test-status .smtp-test-summary")
    assert summary.startswith(f"Failed at the auth step (535): admin (127.0.0.1:{server.port})")
    hint = page.text_content("#smtp-test-status .smtp-test-hint")
    assert "rejected the username or password" in hint
    # smtplib tries each mechanism the server offers (PLAIN, then LOGIN): all refused.
    assert set(server.auth_attempts) == {(SMTP_USER, wrong, False)}
    assert server.recorder.mail_commands == 0
    assert server.messages == []
    assert page.is_enabled("#smtp-test-connection")  # ready for the next try
    shot(page, "auth-failed")

    assert row_state() == before  # a test saves nothing, and records nothing on the row
    for text in (page.content(), page.request.get(page.url).text()):
        assert wrong not in text
        assert SMTP_PASSWORD not in text
