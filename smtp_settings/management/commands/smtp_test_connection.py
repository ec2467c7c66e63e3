"""``manage.py smtp_test_connection``: probe one route now and print what it found.

Connects, does TLS and AUTH, asks MAIL FROM / RCPT TO and hangs up: no mail is sent (the
same probe as the admin's "Test connection"). Exits 0 when the route would accept mail, 1
when not. Without ``--route`` it probes the route app mail would use first. A probe of the
saved admin settings is also recorded on the settings row, as the admin button's is.
Prints neither the password nor the username.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email
from django.db import DatabaseError

from smtp_settings.models import AdminConfig, SmtpTestRun
from smtp_settings.probe import ProbeResult, admin_route_from_row, probe
from smtp_settings.resolver import current_routes, get_resolver
from smtp_settings.routes import (
    ADMIN,
    BACKUP,
    ENVIRONMENT,
    ROUTE_NAMES,
    SmtpRoute,
    route_from_settings,
)

SETTING_OF = {ENVIRONMENT: "SMTP_ENVIRONMENT_ROUTE", BACKUP: "SMTP_BACKUP_ROUTE"}


class Command(BaseCommand):
    help = "Probe an SMTP route (connect, TLS, AUTH, MAIL FROM, RCPT TO; nothing is sent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--route",
            choices=ROUTE_NAMES,
            help="Which route to probe (default: the first one app mail would use).",
        )
        parser.add_argument(
            "--to", dest="recipient", default="", help="Recipient for RCPT TO (default: sender)."
        )
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        recipient = options["recipient"]
        if recipient:
            try:
                validate_email(recipient)
            except ValidationError as exc:
                raise CommandError(f"--to: {recipient!r} is not an email address.") from exc
        route, row = self._route(options["route"])
        result = probe(route, recipient=recipient)
        self._record(result, row)
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2, sort_keys=True))
        else:
            self.stdout.write(result.summary())
        if not result.ok:
            sys.exit(1)

    def _record(self, result: ProbeResult, row: AdminConfig | None) -> None:
        """Keep the outcome as the admin button does; a database that is down must not hide
        the answer to "does mail work?", so then it is only printed."""
        try:
            run = SmtpTestRun.objects.create(
                kind=SmtpTestRun.Kind.CONNECTION,
                for_saved_settings=row is not None,
                config_version=row.version if row is not None else None,
            )
            SmtpTestRun.finish(run.pk, result.as_dict())
        except DatabaseError as exc:
            self.stderr.write(f"(result not recorded: database unavailable, {type(exc).__name__})")

    def _route(self, name: str | None) -> tuple[SmtpRoute, AdminConfig | None]:
        """The route to probe, and the settings row when it is the saved admin route."""
        if name == ADMIN:
            row = AdminConfig.objects.filter(pk=1).first()
            if row is None or not row.smtp_server:
                raise CommandError("The admin SMTP settings have no server yet.", returncode=1)
            return admin_route_from_row(row), row
        if name:
            route = route_from_settings(name, SETTING_OF[name])
            if route is None:
                prefix = "BACKUP_" if name == BACKUP else ""
                raise CommandError(
                    f"The {name} route is not configured ({prefix}SMTP_SERVER is empty).",
                    returncode=1,
                )
            return route, None
        get_resolver().refresh(force=True)
        routes = current_routes()
        if not routes:
            raise CommandError(
                "No SMTP route is configured: enable the admin settings or set SMTP_SERVER.",
                returncode=1,
            )
        if routes[0].name == ADMIN:
            return routes[0], AdminConfig.objects.filter(pk=1).first()
        return routes[0], None
