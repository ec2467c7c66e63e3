"""Fixtures for the foundation tests: an enabled, complete AdminConfig row with a password."""

from __future__ import annotations

import pytest

from tests.conftest import SMTP_PASSWORD, SMTP_USER


@pytest.fixture
def configured_row(configure_admin):
    """smtp.example.com:587 STARTTLS as system@example.com, password stored, untested."""
    return configure_admin(
        None,
        smtp_server="smtp.example.com",
        smtp_port=587,
        smtp_security="TLS",
        smtp_username=SMTP_USER,
        password=SMTP_PASSWORD,
        smtp_timeout=10,
    )
