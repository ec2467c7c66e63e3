"""Every admin save leaves a ConfigChange: who, which fields, and for the password only what
happened to it."""

from __future__ import annotations

import pytest

from smtp_settings.models import AdminConfig, ConfigChange
from tests.conftest import SMTP_PASSWORD
from tests.foundation.helpers import change_url, form_data

pytestmark = pytest.mark.django_db


def test_a_change_records_who_and_the_fields_with_from_and_to(
    admin_client, admin_user, configured_row
):
    admin_client.post(change_url(), form_data(configured_row, sender_name="Ops", smtp_timeout="20"))

    [change] = ConfigChange.objects.all()
    assert change.changed_by == admin_user
    assert change.version == AdminConfig.get_solo().version
    assert change.changes == {
        "sender_name": {"from": "Example Alerts", "to": "Ops"},
        "smtp_timeout": {"from": 10, "to": 20},
    }


@pytest.mark.parametrize(
    ("stored", "typed", "change", "expected"),
    [
        ("", "first-password", {}, "set"),
        (SMTP_PASSWORD, "second-password", {}, "changed"),
        (SMTP_PASSWORD, "", {"smtp_server": "relay.example.net"}, "cleared"),
    ],
)
def test_the_password_entry_says_only_set_changed_or_cleared(
    admin_client, configure_admin, stored, typed, change, expected
):
    row = configure_admin(
        None,
        smtp_enabled=False,
        smtp_security="TLS",
        smtp_username="u@example.com",
        password=stored,
    )

    admin_client.post(change_url(), form_data(row, new_password=typed, **change))

    [entry] = ConfigChange.objects.all()
    assert entry.changes["smtp_password"] == expected
    assert SMTP_PASSWORD not in str(entry.changes)
    assert (typed or "-no-typed-password-") not in str(entry.changes)


def test_a_save_that_changes_nothing_records_nothing(admin_client, configured_row):
    admin_client.post(change_url(), form_data(configured_row))

    assert not ConfigChange.objects.exists()


def test_history_list_shows_when_who_and_field_names(admin_client, configured_row):
    admin_client.post(
        change_url(),
        form_data(configured_row, smtp_server="relay.example.net", new_password="pw-4711"),
    )

    listing = admin_client.get("/admin/smtp_settings/configchange/").content.decode()
    [entry] = ConfigChange.objects.all()
    detail = admin_client.get(
        f"/admin/smtp_settings/configchange/{entry.pk}/change/"
    ).content.decode()

    assert "smtp_server, smtp_password" in listing
    assert "admin" in listing
    assert "changed" in detail
    assert "relay.example.net" in detail
    for page in (listing, detail):
        assert "pw-4711" not in page
        assert SMTP_PASSWORD not in page


def test_history_cannot_be_added_edited_or_deleted(admin_client, configured_row):
    admin_client.post(change_url(), form_data(configured_row, sender_name="Ops"))
    [entry] = ConfigChange.objects.all()

    assert admin_client.get("/admin/smtp_settings/configchange/add/").status_code == 403
    delete = admin_client.post(
        f"/admin/smtp_settings/configchange/{entry.pk}/delete/", {"post": "yes"}
    )
    assert delete.status_code == 403
    assert ConfigChange.objects.filter(pk=entry.pk).exists()
