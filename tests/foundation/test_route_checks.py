"""Start-up refuses an SMTP_SECURITY / BACKUP_SMTP_SECURITY it does not know."""

from smtp_settings.checks import check_route_security


def test_unknown_environment_security_is_a_startup_error(settings):
    settings.SMTP_ENVIRONMENT_ROUTE = {
        "server": "smtp.example.com",
        "port": 587,
        "security": "STARTLS",
    }

    [error] = check_route_security()

    assert error.id == "smtp_settings.E003"
    assert "SMTP_SECURITY" in error.msg
    assert "'STARTLS'" in error.msg


def test_unknown_backup_security_is_a_startup_error(settings):
    settings.SMTP_BACKUP_ROUTE = {"server": "backup.example.com", "port": 465, "security": "SSLL"}

    [error] = check_route_security()

    assert error.msg.startswith("BACKUP_SMTP_SECURITY")


def test_aliases_and_unset_routes_pass(settings):
    settings.SMTP_ENVIRONMENT_ROUTE = {
        "server": "smtp.example.com",
        "port": 587,
        "security": "starttls",
    }
    settings.SMTP_BACKUP_ROUTE = {"server": "", "port": 587, "security": "nonsense"}

    assert check_route_security() == []


def test_a_line_break_in_an_environment_sender_is_a_startup_error(settings):
    from smtp_settings.checks import check_route_sender

    settings.SMTP_ENVIRONMENT_ROUTE = {"server": "smtp.example.com", "sender_name": "Ops\r\nBcc: x"}
    settings.SMTP_BACKUP_ROUTE = {"server": "", "sender_email": "ok@example.com"}

    [error] = check_route_sender()

    assert error.id == "smtp_settings.E004"
    assert error.msg.startswith("SMTP_SENDER_NAME contains a line break")
