"""Key rotation: a new key first, the old one after it, then smtp_rotate_key."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError

from smtp_settings import crypto, snapshot
from smtp_settings.models import AdminConfig
from tests.conftest import SMTP_PASSWORD
from tests.foundation.helpers import raw_password_column

pytestmark = pytest.mark.django_db

TEST_KEY = "tTmOGy4nxdvhvZnNNdDdX5nd6RYCxQOQB4RZ0hmN9m8="  # tests/settings.py
NEW_KEY = Fernet.generate_key().decode()


def rotate() -> str:
    out = StringIO()
    call_command("smtp_rotate_key", stdout=out)
    return out.getvalue()


def test_old_rows_stay_readable_with_new_key_first_and_old_key_after(configured_row, settings):
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, TEST_KEY]

    assert AdminConfig.get_solo().smtp_password.reveal() == SMTP_PASSWORD


def test_rotate_rewrites_the_row_so_the_new_key_alone_decrypts_it(
    configured_row, settings, django_capture_on_commit_callbacks
):
    old_token = raw_password_column()
    old_version = AdminConfig.get_solo().version
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, TEST_KEY]

    with django_capture_on_commit_callbacks(execute=True):
        output = rotate()

    assert "Re-encrypted the SMTP password with the current key" in output
    new_token = raw_password_column()
    assert new_token != old_token
    assert SMTP_PASSWORD not in output
    assert new_token not in output
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    row = AdminConfig.get_solo()
    assert row.smtp_password.reveal() == SMTP_PASSWORD
    assert row.version == old_version + 1
    # Every process learns of it: the published snapshot carries the new token.
    _, published = snapshot.get_store().read()
    assert published["password_token"] == new_token
    assert published["version"] == row.version


def test_rotate_again_says_already_current_and_writes_nothing(configured_row):
    before = raw_password_column()
    version = AdminConfig.get_solo().version

    output = rotate()

    assert "already encrypted with the current key" in output
    assert raw_password_column() == before
    assert AdminConfig.get_solo().version == version


def test_rotate_without_a_stored_password_says_so(configure_admin):
    configure_admin(None, smtp_username="", password="")

    assert "No SMTP password is stored" in rotate()


def test_rotate_when_no_key_decrypts_fails_with_the_sentence(configured_row, settings):
    before = raw_password_column()
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]

    with pytest.raises(CommandError, match="cannot be decrypted with any key") as caught:
        rotate()

    assert caught.value.returncode == 1
    assert str(caught.value) == str(crypto.UndecryptableSecret())
    assert raw_password_column() == before
