"""Django admin for the SMTP settings row and its change history.

The settings page is django-solo's single-object admin with the write-only form of
``smtp_settings.forms``; each save records a ``ConfigChange`` (who, which fields, from/to
for everything but the password, and only "set"/"changed"/"cleared" for the password).
Nothing here may render the password, its token, or decrypt it.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from solo.admin import SingletonModelAdmin

from smtp_settings.admin_views import SmtpToolsAdminMixin
from smtp_settings.forms import EDITABLE_FIELDS, AdminConfigForm
from smtp_settings.health_tasks import check_soon
from smtp_settings.models import AdminConfig, ConfigChange

PASSWORD_CLEARED = (
    "The stored SMTP password was cleared because the server, port or username changed. "
    "Type the password again before turning these settings on."
)
# Parts of a recorded test result worth a line on the page, in this order.
TEST_RESULT_PARTS = ("route", "server", "step", "smtp_code", "smtp_text", "hint")


def tracked_changes(form: AdminConfigForm, obj: AdminConfig) -> dict[str, Any]:
    """{field: {"from": old, "to": new}} for the form's non-secret fields that changed,
    plus {"smtp_password": action} when the password was set, changed or cleared."""
    changes: dict[str, Any] = {}
    for name in EDITABLE_FIELDS:
        old, new = form.initial.get(name), getattr(obj, name)
        if old != new:
            changes[name] = {"from": old, "to": new}
    if form.password_action:
        changes["smtp_password"] = form.password_action
    return changes


@admin.register(AdminConfig)
class AdminConfigAdmin(SmtpToolsAdminMixin, SingletonModelAdmin):
    form = AdminConfigForm
    change_form_template = "admin/smtp_settings/adminconfig/change_form.html"
    fieldsets = (
        (
            "Server",
            {
                "fields": (
                    "smtp_enabled",
                    "smtp_server",
                    "smtp_port",
                    "smtp_security",
                    "smtp_timeout",
                    "smtp_verify_certificates",
                )
            },
        ),
        (
            "Authentication",
            {"fields": ("smtp_username", "masked_username", "password_state", "new_password")},
        ),
        ("Sender", {"fields": ("sender_name", "sender_email")}),
        (
            "Status",
            {
                "fields": (
                    "status_line",
                    "smtp_last_tested_at",
                    "last_test_result",
                    "version",
                    "loaded_version",
                )
            },
        ),
    )
    readonly_fields = (
        "masked_username",
        "password_state",
        "status_line",
        "smtp_last_tested_at",
        "last_test_result",
        "version",
    )

    @admin.display(description="username (masked)")
    def masked_username(self, obj: AdminConfig) -> str:
        return obj.masked_username or "-"

    @admin.display(description="stored password")
    def password_state(self, obj: AdminConfig) -> str:
        return "set" if obj.has_password else "not set"

    @admin.display(description="status")
    def status_line(self, obj: AdminConfig) -> str:
        return str(obj.status.label)

    @admin.display(description="last test result")
    def last_test_result(self, obj: AdminConfig) -> str:
        result = obj.smtp_test_result or {}
        if not result:
            return "never tested"
        outcome = "OK" if result.get("ok") else "Failed"
        parts = [(name, result[name]) for name in TEST_RESULT_PARTS if result.get(name)]
        if not parts:
            # An unknown shape: show it, escaped, rather than hide it.
            return format_html("{} <code>{}</code>", outcome, json.dumps(result, default=str))
        lines = format_html_join("", "<br>{}: {}", parts)
        return format_html("{}{}", outcome, lines)

    def save_model(
        self, request: HttpRequest, obj: AdminConfig, form: AdminConfigForm, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        changes = tracked_changes(form, obj)
        if changes:
            ConfigChange.objects.create(
                changed_by=request.user if request.user.is_authenticated else None,
                changes=changes,
                version=obj.version,
            )
        if form.password_action == "cleared":
            self.message_user(request, PASSWORD_CLEARED, level=messages.WARNING)
        # Probe the new settings now rather than at the next scheduled check.
        check_soon()


@admin.register(ConfigChange)
class ConfigChangeAdmin(admin.ModelAdmin):
    """History, read-only: nobody edits or deletes what happened."""

    list_display = ("changed_at", "changed_by", "changed_fields", "version")
    fields = ("changed_at", "changed_by", "version", "change_details")
    readonly_fields = fields
    date_hierarchy = "changed_at"

    @admin.display(description="fields")
    def changed_fields(self, obj: ConfigChange) -> str:
        return ", ".join(obj.changes) or "-"

    @admin.display(description="changes")
    def change_details(self, obj: ConfigChange) -> str:
        rows = [
            (name, value) if isinstance(value, str) else (name, _from_to(value))
            for name, value in obj.changes.items()
        ]
        return format_html_join("", "<div><strong>{}</strong>: {}</div>", rows)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _from_to(value: Any) -> str:
    if isinstance(value, dict) and {"from", "to"} <= value.keys():
        return f"{value['from']!r} → {value['to']!r}"
    return json.dumps(value, default=str)
