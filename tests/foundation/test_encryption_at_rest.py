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


@pytest.mark.django_db
def test_a_plaintext_password_assigned_and_validated_is_stored_encrypted():
    config = AdminConfig.get_solo()
    config.smtp_password = "assigned-in-code-42"

    config.full_clean(exclude=["smtp_server", "sender_email"])
    config.save()

    raw = raw_password_column()
    assert "assigned-in-code-42" not in raw
    assert AdminConfig.get_solo().smtp_password.reveal() == "assigned-in-code-42"


@pytest.mark.django_db
def test_dumpdata_and_loaddata_keep_the_token_without_encrypting_it_again(tmp_path):
    from django.core.management import call_command

    config = AdminConfig.get_solo()
    config.set_password("round-trip-pass")
    config.save()
    token = raw_password_column()
    dump = tmp_path / "config.json"
    call_command("dumpdata", "smtp_settings.adminconfig", output=str(dump))

    AdminConfig.objects.all().delete()
    call_command("loaddata", str(dump))

    assert raw_password_column() == token
    assert "round-trip-pass" not in dump.read_text()
