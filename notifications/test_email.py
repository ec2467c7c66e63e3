"""The test email an admin sends from the SMTP settings page (or ``send_test_email``).

It says which route and server it was meant to go through and when and by whom it was
requested, so that whoever receives it can tell which configuration worked. It must never
contain a secret: no password, no token, and the account's username only masked.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import make_msgid

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.utils import DNS_NAME
from django.template.loader import render_to_string
from django.utils import timezone

from smtp_settings.models import mask_username
from smtp_settings.routes import SmtpRoute

SUBJECT = "SMTP test email"


def build_test_email(
    recipient: str,
    *,
    route: SmtpRoute | None,
    requested_at: datetime | None = None,
    requested_by: str = "",
) -> EmailMultiAlternatives:
    """A text + HTML message to ``recipient``. The From is left to the send path (the
    route's sender, as for any app mail), so the test proves that sender is accepted."""
    context = {
        "route": route.name if route else "",
        "server": route.address if route else "",
        "security": route.security if route else "",
        "account": mask_username(route.username) if route else "",
        "requested_at": requested_at or timezone.now(),
        "requested_by": requested_by,
    }
    subject = f"{SUBJECT} ({context['route']} route)" if route else SUBJECT
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("notifications/test_email.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[recipient],
        headers={
            # Set here so the caller can report it and find the message in the logs.
            "Message-ID": make_msgid(domain=DNS_NAME),
            "X-SMTP-Test": "1",
            "Auto-Submitted": "auto-generated",
        },
    )
    message.attach_alternative(
        render_to_string("notifications/test_email.html", context), "text/html"
    )
    return message
