"""Helpers for the foundation tests: the raw password column, the admin form's POST data."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.urls import reverse

from smtp_settings.models import AdminConfig

CHANGE_URL_NAME = "admin:smtp_settings_adminconfig_change"


def change_url() -> str:
    return reverse(CHANGE_URL_NAME)


def raw_password_column() -> str:
    """The password column exactly as the database holds it, read with plain SQL."""
    table = AdminConfig._meta.db_table
    column = AdminConfig._meta.get_field("smtp_password").column
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {connection.ops.quote_name(column)} FROM "
            f"{connection.ops.quote_name(table)} WHERE id = %s",
            [AdminConfig.singleton_instance_id],
        )
        return cursor.fetchone()[0]


def row_state() -> dict[str, Any]:
    """Every column of the row plus the raw password: equal before and after means
    nothing was saved."""
    values = AdminConfig.objects.filter(pk=AdminConfig.singleton_instance_id).values().get()
    values["raw_password"] = raw_password_column()
    return values


def form_data(row: AdminConfig, **overrides: Any) -> dict[str, str]:
    """The POST a browser sends for ``row`` as displayed, with ``overrides`` applied.
    A value of None leaves the key out (an unticked checkbox)."""
    data: dict[str, Any] = {
        "smtp_enabled": "on" if row.smtp_enabled else None,
        "smtp_server": row.smtp_server,
        "smtp_port": str(row.smtp_port),
        "smtp_security": row.smtp_security,
        "smtp_timeout": str(row.smtp_timeout),
        "smtp_verify_certificates": "on" if row.smtp_verify_certificates else None,
        "smtp_username": row.smtp_username,
        "new_password": "",
        "sender_name": row.sender_name,
        "sender_email": row.sender_email,
        "loaded_version": str(row.version),
        "_save": "Save",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def form_errors(response: Any) -> dict[str, list[str]]:
    """The bound form's errors from an admin response that re-rendered the page."""
    form = response.context["adminform"].form
    return {name: list(messages) for name, messages in form.errors.items()}
