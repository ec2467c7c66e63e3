"""The SMTP password is stored only as a Fernet token, in the field library's format."""

from __future__ import annotations

import pytest
from encrypted_model_fields.fields import decrypt_str

from smtp_settings.models import AdminConfig
from tests.conftest import SMTP_PASSWORD
from tests.foundation.helpers import raw_password_column

pytestmark = pytest.mark.django_db


def test_password_column_holds_no_plaintext(configured_row):
    raw = raw_password_column()

    assert SMTP_PASSWORD not in raw
    assert raw == configured_row.smtp_password.token


def test_password_column_holds_a_token_the_field_library_decrypts(configured_row):
    raw = raw_password_column()

    # A Fernet token: url-safe base64 of version byte 0x80 ("gAAAAA...").
    assert raw.startswith("gAAAAA")
    assert decrypt_str(raw) == SMTP_PASSWORD


def test_loading_the_row_decrypts_nothing_until_reveal(configured_row):
    row = AdminConfig.get_solo()

    assert SMTP_PASSWORD not in repr(row.smtp_password)
    assert SMTP_PASSWORD not in str(row.smtp_password)
    assert row.smtp_password.reveal() == SMTP_PASSWORD


def test_each_save_of_a_new_password_uses_a_fresh_token(configured_row):
    first = raw_password_column()
    configured_row.set_password(SMTP_PASSWORD)
    configured_row.save()

    second = raw_password_column()
    assert second != first
    assert decrypt_str(second) == SMTP_PASSWORD
