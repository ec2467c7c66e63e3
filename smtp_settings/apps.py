from django.apps import AppConfig


class SmtpSettingsConfig(AppConfig):
    name = "smtp_settings"
    verbose_name = "SMTP settings"

    def ready(self) -> None:
        from smtp_settings import checks  # noqa: F401 - registers the system checks
