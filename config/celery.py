"""The Celery app: configured from Django settings (CELERY_*), tasks autodiscovered.

A worker or beat refuses to start when Django's system checks fail (for instance a
FIELD_ENCRYPTION_KEY that cannot decrypt the stored SMTP password), with the check's
sentence, rather than fail on the first message.
"""

import os

from celery import Celery
from celery.signals import beat_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("smtp_admin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def _run_system_checks(**kwargs: object) -> None:
    from django.core.management import call_command

    call_command("check")
