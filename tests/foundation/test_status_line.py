"""The status line follows the settings: a test of replaced settings does not count."""

import pytest
from django.utils import timezone

from smtp_settings.models import AdminConfig, ConfigStatus


@pytest.mark.django_db
def test_status_is_working_after_a_successful_test_of_the_saved_settings(configure_admin):
    config = configure_admin()

    stamped = AdminConfig.objects.filter(pk=1).record_test_result(
        {"ok": True}, timezone.now(), version=config.version
    )

    assert stamped == 1
    assert AdminConfig.get_solo().status == ConfigStatus.WORKING


@pytest.mark.django_db
def test_status_is_untested_again_once_the_settings_are_saved_over(configure_admin):
    config = configure_admin()
    AdminConfig.objects.filter(pk=1).record_test_result(
        {"ok": True}, timezone.now(), version=config.version
    )

    config = AdminConfig.get_solo()
    config.smtp_server = "127.0.0.2"
    config.save()

    assert AdminConfig.get_solo().status == ConfigStatus.UNTESTED


@pytest.mark.django_db
def test_a_result_for_settings_saved_over_is_not_recorded(configure_admin):
    tested_version = configure_admin().version
    configure_admin(smtp_server="127.0.0.2")

    stamped = AdminConfig.objects.filter(pk=1).record_test_result(
        {"ok": False}, timezone.now(), version=tested_version
    )

    assert stamped == 0
    assert AdminConfig.get_solo().smtp_last_tested_at is None


@pytest.mark.django_db
def test_recording_a_result_does_not_bump_the_version(configure_admin):
    version = configure_admin().version

    AdminConfig.objects.filter(pk=1).record_test_result(
        {"ok": True}, timezone.now(), version=version
    )

    assert AdminConfig.get_solo().version == version
