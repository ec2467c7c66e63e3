"""The SMTP settings admin page: write-only password, what it shows, stale pages refused."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages

from smtp_settings.forms import STALE_PAGE
from smtp_settings.models import AdminConfig
from tests.conftest import SMTP_PASSWORD
from tests.foundation.helpers import (
    change_url,
    form_data,
    form_errors,
    raw_password_column,
    row_state,
)

pytestmark = pytest.mark.django_db


def test_settings_list_goes_straight_to_the_one_row(admin_client, configured_row):
    response = admin_client.get(change_url())

    assert response.status_code == 200
    assert response.context["original"].pk == configured_row.pk
    assert change_url() == "/admin/smtp_settings/adminconfig/"


def test_change_page_never_contains_the_password_or_its_token(admin_client, configured_row):
    token = raw_password_column()

    html = admin_client.get(change_url()).content.decode()

    assert SMTP_PASSWORD not in html
    assert token not in html
    # No slice of the token either (its first bytes are the same for every token).
    assert token[10:40] not in html
    assert '<div class="readonly">set</div>' in html
    assert 'name="new_password"' in html


def test_change_page_says_not_set_without_a_password(admin_client, configure_admin):
    configure_admin(None, smtp_username="", password="")

    html = admin_client.get(change_url()).content.decode()

    assert '<div class="readonly">not set</div>' in html


def test_refused_save_does_not_echo_the_typed_password(admin_client, configured_row):
    typed = "Typed-New-Secret-4711"

    response = admin_client.post(
        change_url(), form_data(configured_row, new_password=typed, smtp_port="2526")
    )

    assert response.status_code == 200
    assert "smtp_port" in form_errors(response)
    assert typed not in response.content.decode()


def test_change_page_shows_status_masked_username_and_hidden_version(admin_client, configured_row):
    html = admin_client.get(change_url()).content.decode()

    assert "Configured but not tested" in html
    assert "sys***@example.com" in html
    assert f'<input type="hidden" name="loaded_version" value="{configured_row.version}"' in html
    for fieldset in ("Server", "Authentication", "Sender", "Status"):
        assert f">{fieldset}</h2>" in html


def test_change_page_warns_when_certificate_verification_is_off(admin_client, configure_admin):
    configure_admin(None, smtp_verify_certificates=False)
    html_off = admin_client.get(change_url()).content.decode()
    configure_admin(None, smtp_verify_certificates=True)
    html_on = admin_client.get(change_url()).content.decode()

    assert "TLS certificate verification is off" in html_off
    assert "TLS certificate verification is off" not in html_on


def test_last_test_result_is_escaped(admin_client, configure_admin):
    configure_admin(None, smtp_test_result={"ok": False, "message": "<script>alert(1)</script>"})

    html = admin_client.get(change_url()).content.decode()

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html


def test_blank_password_keeps_the_stored_one(admin_client, configured_row):
    token = raw_password_column()

    response = admin_client.post(change_url(), form_data(configured_row, sender_name="New Name"))

    assert response.status_code == 302
    row = AdminConfig.get_solo()
    assert row.sender_name == "New Name"
    assert raw_password_column() == token
    assert row.smtp_password.reveal() == SMTP_PASSWORD
    assert row.version == configured_row.version + 1


def test_typed_password_replaces_the_stored_one(admin_client, configured_row):
    response = admin_client.post(
        change_url(), form_data(configured_row, new_password="  spaces kept  ")
    )

    assert response.status_code == 302
    assert AdminConfig.get_solo().smtp_password.reveal() == "  spaces kept  "


@pytest.mark.parametrize(
    "change",
    [
        {"smtp_server": "relay.example.net"},
        {"smtp_port": "2525"},
        {"smtp_username": "other@example.com"},
    ],
)
def test_server_port_or_username_change_without_password_clears_it_and_says_so(
    admin_client, configure_admin, change
):
    row = configure_admin(
        None,
        smtp_enabled=False,
        smtp_server="smtp.example.com",
        smtp_port=587,
        smtp_security="TLS",
        smtp_username="system@example.com",
        password=SMTP_PASSWORD,
    )

    response = admin_client.post(change_url(), form_data(row, **change))

    assert response.status_code == 302
    assert raw_password_column() == ""
    assert not AdminConfig.get_solo().has_password
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("stored SMTP password was cleared" in m for m in said)


def test_enabled_row_refuses_a_server_change_until_the_password_is_typed_again(
    admin_client, configured_row
):
    before = row_state()

    refused = admin_client.post(
        change_url(), form_data(configured_row, smtp_server="relay.example.net")
    )

    assert form_errors(refused)["new_password"] == [
        "You changed the server, port or username, so the stored password will not be "
        "sent there: type the password again."
    ]
    assert row_state() == before
    accepted = admin_client.post(
        change_url(),
        form_data(configured_row, smtp_server="relay.example.net", new_password="for-relay"),
    )
    assert accepted.status_code == 302
    row = AdminConfig.get_solo()
    assert (row.smtp_server, row.smtp_password.reveal()) == ("relay.example.net", "for-relay")


def test_same_server_spelled_differently_keeps_the_password(admin_client, configure_admin):
    row = configure_admin(
        None, smtp_server="SMTP.Example.com", smtp_security="TLS", smtp_username="u@example.com"
    )
    token = raw_password_column()

    response = admin_client.post(change_url(), form_data(row, smtp_server="smtp.example.com"))

    assert response.status_code == 302
    assert raw_password_column() == token


def test_idna_server_name_is_stored_as_its_ascii_form(admin_client, configured_row):
    response = admin_client.post(
        change_url(), form_data(configured_row, smtp_server="bücher.example", new_password="pw")
    )

    assert response.status_code == 302
    assert AdminConfig.get_solo().smtp_server == "xn--bcher-kva.example"


def test_save_from_a_stale_page_is_refused_and_saves_nothing(admin_client, configured_row):
    page_version = configured_row.version
    first = admin_client.post(change_url(), form_data(configured_row, sender_name="First"))
    assert first.status_code == 302
    before = row_state()

    stale = admin_client.post(
        change_url(),
        form_data(configured_row, sender_name="Second", loaded_version=str(page_version)),
    )

    assert stale.status_code == 200
    assert list(stale.context["adminform"].form.non_field_errors()) == [STALE_PAGE]
    assert STALE_PAGE in stale.content.decode()
    assert row_state() == before
    assert AdminConfig.get_solo().sender_name == "First"


def test_required_fields_of_an_enabled_row_without_password(admin_client, db):
    row = AdminConfig.get_solo()
    before = row_state()

    response = admin_client.post(
        change_url(), form_data(row, smtp_enabled="on", smtp_server="smtp.example.com")
    )

    errors = form_errors(response)
    assert set(errors) == {"smtp_username", "new_password", "sender_email", "sender_name"}
    assert errors["new_password"] == [
        "Required while “use these settings” is on: no password is stored."
    ]
    assert row_state() == before


def test_disabled_row_saves_without_server_or_password(admin_client, db):
    row = AdminConfig.get_solo()

    response = admin_client.post(change_url(), form_data(row, smtp_server=""))

    assert response.status_code == 302
    assert AdminConfig.get_solo().version == row.version + 1
