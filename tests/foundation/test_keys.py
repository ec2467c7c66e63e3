"""A missing, malformed or wrong FIELD_ENCRYPTION_KEY is refused loudly, never worked around."""

from __future__ import annotations

import stat

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from config.encryption_keys import field_encryption_keys
from smtp_settings import crypto
from smtp_settings.checks import check_encryption_key, check_stored_password_decrypts
from smtp_settings.models import AdminConfig
from tests.foundation.helpers import change_url, form_data, raw_password_column

OTHER_KEY = Fernet.generate_key().decode()
UNDECRYPTABLE = "cannot be decrypted with any key in FIELD_ENCRYPTION_KEY"


@pytest.fixture
def wrong_key(configured_row, settings):
    """The row was saved with the test key; now only an unrelated key is configured."""
    settings.FIELD_ENCRYPTION_KEYS = [OTHER_KEY]
    return configured_row


# -- a key that does not decrypt the stored row ------------------------------------------------
@pytest.mark.django_db
def test_wrong_key_fails_the_system_check_with_a_sentence(wrong_key):
    [error] = check_stored_password_decrypts()

    assert error.id == "smtp_settings.E002"
    assert UNDECRYPTABLE in error.msg
    assert "Put the key it was saved with back in the list" in error.msg


@pytest.mark.django_db
def test_wrong_key_stops_manage_py_check(wrong_key):
    with pytest.raises(SystemCheckError, match=r"smtp_settings\.E002"):
        call_command("check")


@pytest.mark.django_db
def test_wrong_key_makes_reading_the_password_raise(wrong_key):
    row = AdminConfig.get_solo()

    with pytest.raises(crypto.UndecryptableSecret, match=UNDECRYPTABLE):
        row.smtp_password.reveal()


@pytest.mark.django_db
def test_saving_the_row_with_a_wrong_key_does_not_encrypt_the_token_again(wrong_key):
    before = raw_password_column()
    row = AdminConfig.get_solo()
    row.sender_name = "Renamed Sender"
    row.save()

    assert raw_password_column() == before
    assert AdminConfig.get_solo().sender_name == "Renamed Sender"


@pytest.mark.django_db
def test_admin_save_with_a_wrong_key_and_blank_password_keeps_the_token(wrong_key, admin_client):
    before = raw_password_column()
    row = AdminConfig.get_solo()

    response = admin_client.post(change_url(), form_data(row, sender_name="Renamed"))

    assert response.status_code == 302
    assert raw_password_column() == before


@pytest.mark.django_db
def test_right_key_passes_the_stored_password_check(configured_row):
    assert check_stored_password_decrypts() == []


# -- missing or malformed key ------------------------------------------------------------------
def test_missing_key_is_e001_with_how_to_generate_one(tmp_path, settings):
    keys, library_keys, problem, source = field_encryption_keys(
        "", debug=False, dev_key_file=tmp_path / "dev-key"
    )
    settings.FIELD_ENCRYPTION_KEY_PROBLEM = problem

    [error] = check_encryption_key()

    assert keys == []
    assert source == "placeholder"
    assert len(library_keys) == 1  # a throwaway key so the field library still imports
    assert error.id == "smtp_settings.E001"
    assert error.msg == problem
    assert problem.startswith("FIELD_ENCRYPTION_KEY is not set.")
    assert "Fernet.generate_key()" in problem
    assert not (tmp_path / "dev-key").exists()


@pytest.mark.parametrize(
    ("raw", "position"),
    [
        ("not-a-fernet-key", 1),
        ("tTmOGy4nxdvhvZnNNdDdX5nd6RYCxQOQB4RZ0hmN9m", 1),  # truncated
        (f"{OTHER_KEY},'quoted-or-garbage'", 2),
    ],
)
def test_malformed_key_is_e001_naming_the_entry(tmp_path, settings, raw, position):
    _, _, problem, _ = field_encryption_keys(raw, debug=False, dev_key_file=tmp_path / "k")
    settings.FIELD_ENCRYPTION_KEY_PROBLEM = problem

    [error] = check_encryption_key()

    assert error.id == "smtp_settings.E001"
    assert f"FIELD_ENCRYPTION_KEY entry {position} is not a Fernet key" in error.msg


@pytest.mark.django_db
def test_unusable_key_stops_manage_py_check_and_refuses_to_encrypt(tmp_path, settings):
    _, _, problem, _ = field_encryption_keys("garbage", debug=False, dev_key_file=tmp_path / "k")
    settings.FIELD_ENCRYPTION_KEY_PROBLEM = problem

    with pytest.raises(SystemCheckError, match=r"smtp_settings\.E001"):
        call_command("check")
    with pytest.raises(crypto.EncryptionKeyError, match="is not a Fernet key"):
        crypto.encrypt("anything")


def test_debug_without_a_key_generates_a_private_dev_key_once(tmp_path, capsys):
    key_file = tmp_path / "dev-key"

    keys, _, problem, source = field_encryption_keys("", debug=True, dev_key_file=key_file)
    again, _, _, _ = field_encryption_keys("", debug=True, dev_key_file=key_file)

    assert problem == ""
    assert source == str(key_file)
    assert keys == again == [key_file.read_text().strip()]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert capsys.readouterr().out.count("Generated a development FIELD_ENCRYPTION_KEY") == 1
