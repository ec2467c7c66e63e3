"""The settings page's script in a real browser (Chromium through Playwright): a preset
fills the form, and both buttons show pending and then the outcome without a reload."""

from __future__ import annotations

import pytest

# The browser (Chromium, its flags, a fresh context on the live server) is set up by the
# shared browser fixtures in tests/browser/conftest.py.
from tests.browser.conftest import browser_context, logged_in_context  # noqa: F401
from tests.conftest import SMTP_PASSWORD
from tests.foundation.helpers import change_url

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(browser_context, live_server, make_user):  # noqa: F811 - the imported fixture
    """A Chromium page logged in to the admin as staff with the change permission."""
    logged_in_context(browser_context, make_user("browser"), live_server.url)
    return browser_context.new_page()


def test_preset_then_test_connection_and_test_email_update_the_page_in_place(
    page, celery_worker, smtp_factory, configure_admin, allow_ports
):
    saved_server, on_screen = smtp_factory("TLS", auth=True), smtp_factory("TLS", auth=True)
    allow_ports(saved_server, on_screen)
    configure_admin(saved_server)
    page.goto(change_url())
    page.evaluate("window.__sameDocument = true")

    page.select_option("#smtp-preset", "fastmail")
    filled = [page.input_value(f"#id_{name}") for name in ("smtp_server", "smtp_port")]
    assert filled == ["smtp.fastmail.com", "465"]
    assert page.input_value("#id_smtp_security") == "SSL"
    assert "app password" in page.text_content("#smtp-preset-note")

    page.fill("#id_smtp_server", "127.0.0.1")
    page.fill("#id_smtp_port", str(on_screen.port))
    page.select_option("#id_smtp_security", "TLS")
    page.fill("#id_new_password", SMTP_PASSWORD)
    page.fill("#smtp-test-recipient", "ops@example.net")
    page.click("#smtp-test-connection")
    page.wait_for_selector("#smtp-test-status[data-status=ok]", timeout=20000)

    summary = page.text_content("#smtp-test-status .smtp-test-summary")
    assert summary.startswith(f"Connection OK: admin (127.0.0.1:{on_screen.port})")
    assert "connect" in page.text_content("#smtp-test-status .smtp-test-timings")
    assert [ok for _, _, ok in on_screen.auth_attempts] == [True]
    assert saved_server.recorder.sessions == 0
    assert page.evaluate("window.__sameDocument") is True  # no reload
    assert page.input_value("#id_new_password") == SMTP_PASSWORD  # the form kept its values

    page.click("#smtp-send-test-email")
    page.wait_for_selector(
        "#smtp-test-status[data-status=ok] >> text=Test email sent to ops@example.net",
        timeout=20000,
    )
    assert saved_server.wait_for(1)[0].rcpt_tos == ["ops@example.net"]
    assert page.evaluate("window.__sameDocument") is True
    assert SMTP_PASSWORD not in page.content()


def test_a_refused_request_shows_its_field_errors(page, smtp_factory, configure_admin, allow_ports):
    saved_server, other = smtp_factory("TLS", auth=True), smtp_factory("TLS", auth=True)
    allow_ports(saved_server, other)
    configure_admin(saved_server)
    page.goto(change_url())

    page.fill("#id_smtp_port", str(other.port))  # a new port, and no password typed
    page.click("#smtp-test-connection")
    page.wait_for_selector("#smtp-test-status[data-status=error]", timeout=10000)

    assert "type the password" in page.text_content("#smtp-test-status")
    assert other.recorder.sessions == 0
    assert page.is_enabled("#smtp-test-connection")  # ready for the next try
