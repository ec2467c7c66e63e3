"""The provider presets the form offers, and the test email's content."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.conf import settings as django_settings

from notifications.test_email import build_test_email
from smtp_settings.forms import SWAPPED_SECURITY, normalize_host
from smtp_settings.models import Security
from smtp_settings.presets import PRESETS, presets_json
from smtp_settings.routes import SecretRef, SmtpRoute
from tests.conftest import SMTP_PASSWORD, SMTP_USER

NAMED_PROVIDERS = (
    "gmail",
    "microsoft365",
    "zoho",
    "amazon_ses",
    "sendgrid",
    "mailgun",
    "fastmail",
    "postmark",
)


def test_every_named_provider_has_a_preset():
    assert set(NAMED_PROVIDERS) <= set(PRESETS)


@pytest.mark.parametrize("key", sorted(PRESETS))
def test_each_preset_would_pass_the_settings_form(key):
    preset = PRESETS[key]

    assert normalize_host(preset.server) == preset.server
    assert preset.security in Security.values
    assert preset.security != Security.NONE  # every provider needs TLS for AUTH
    assert preset.port in django_settings.SMTP_ALLOWED_PORTS
    assert (preset.security, preset.port) not in SWAPPED_SECURITY
    assert preset.note


def test_presets_json_is_what_the_script_reads():
    data = json.loads(presets_json())

    assert data["gmail"] == {
        "label": "Gmail / Google Workspace",
        "server": "smtp.gmail.com",
        "port": 587,
        "security": "TLS",
        "note": PRESETS["gmail"].note,
    }
    assert data["fastmail"]["security"] == "SSL"


def test_test_email_says_where_it_was_meant_to_go_and_when():
    route = SmtpRoute(
        name="admin",
        host="smtp.example.com",
        port=587,
        security="TLS",
        username=SMTP_USER,
        secret=SecretRef(plaintext=SMTP_PASSWORD),
    )
    requested_at = datetime(2026, 12, 4, 9, 30, 5, tzinfo=UTC)

    message = build_test_email(
        "ops@example.net", route=route, requested_at=requested_at, requested_by="alice"
    )

    text = message.body
    [(html, mimetype)] = message.alternatives
    assert message.subject == "SMTP test email (admin route)"
    assert message.to == ["ops@example.net"]
    assert mimetype == "text/html"
    for body in (text, html):
        assert "admin" in body
        assert "smtp.example.com:587" in body
        assert "2026-12-04 09:30:05 UTC" in body
        assert "alice" in body
        assert "sys***@example.com" in body  # the account only masked
        assert SMTP_USER not in body
        assert SMTP_PASSWORD not in body
    assert message.extra_headers["Message-ID"].startswith("<")
    assert message.extra_headers["Auto-Submitted"] == "auto-generated"


def test_test_email_without_any_route_still_builds():
    message = build_test_email("ops@example.net", route=None)

    assert message.subject == "SMTP test email"
    assert "(no route configured)" in message.body
