"""``manage.py smtp_status``: print the email health JSON; exit 0 when healthy, 1 when not.

Healthy means status ``healthy`` or ``using_default`` (smtp_settings.health). By default it
reports what the periodic check recorded and opens no SMTP connection; ``--probe`` runs the
check now first (probes every route, records, and alerts on a change of state, exactly as
the beat task does).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from smtp_settings.health import EmailHealthMonitor


class Command(BaseCommand):
    help = "Print the email health JSON; exit 0 when healthy, 1 otherwise."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--probe",
            action="store_true",
            help="Run the health check now (probe every route) before reporting.",
        )

    def handle(self, *args: Any, probe: bool = False, **options: Any) -> None:
        if probe:
            from smtp_settings.health_tasks import run_health_check

            run_health_check()
        health = EmailHealthMonitor(live_delivery=True).check()
        self.stdout.write(json.dumps(health.as_dict(), indent=2, sort_keys=True))
        if not health.good:
            sys.exit(1)
