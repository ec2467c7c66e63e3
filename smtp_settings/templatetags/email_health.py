"""``{% email_health as health %}``: the email health for the admin index panel (staff only).

A template tag rather than a context processor, so that no other page pays for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils.dateparse import parse_datetime

from smtp_settings.health import EmailHealthMonitor

register = template.Library()


@register.simple_tag(takes_context=True)
def email_health(context: template.Context) -> dict[str, Any] | None:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_staff:
        return None
    return EmailHealthMonitor(live_delivery=True).check().as_dict()


@register.filter
def parse_iso(value: str | None) -> datetime | None:
    """The health JSON carries ISO timestamps; the panel shows them as dates."""
    return parse_datetime(value) if value else None
