"""An SMTP error's traceback, as Django's error page or an error tracker renders it, does
not show the password that the connection code held in its local variables."""

import sys
import uuid

import pytest
from django.core import mail
from django.test import RequestFactory
from django.views.debug import ExceptionReporter

from smtp_settings.errors import SmtpAuthError

# Made at import: neither the test's source lines nor its locals (both on the error page)
# may contain it, or the test would find itself.
PASSWORD = f"typed-{uuid.uuid4().hex}"


@pytest.mark.django_db(transaction=True)
def test_the_error_page_of_a_refused_login_shows_no_password(
    smtp_factory, configure_admin, settings
):
    server = smtp_factory("TLS", auth=True)
    configure_admin(server, password=PASSWORD)
    settings.EMAIL_DEFER_ON_FAILURE = False  # the error reaches the caller

    try:
        mail.send_mail("Hi", "Body", None, ["user@example.net"])
    except SmtpAuthError:
        report = ExceptionReporter(RequestFactory().get("/"), *sys.exc_info())
    else:
        pytest.fail("the wrong password was accepted")

    html, text = report.get_traceback_html(), report.get_traceback_text()
    frames = report.get_traceback_frames()
    assert any(frame["function"] == "open_connection" for frame in frames)
    assert PASSWORD not in html
    assert PASSWORD not in text
    assert server.auth_attempts[0][1] == PASSWORD  # it did reach the server
