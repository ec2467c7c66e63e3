"""Provider presets for the SMTP settings form: pick one to fill server, port and security.

Each entry is what the provider documents for authenticated submission. The admin still
types the username, the password and the sender; the note says what that provider needs
(an app password, an API key as password, a regional host). Nothing here is secret.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Preset:
    label: str
    server: str
    port: int
    security: str  # AdminConfig.smtp_security: "TLS" (STARTTLS) or "SSL" (implicit TLS)
    note: str = ""


PRESETS: dict[str, Preset] = {
    "gmail": Preset(
        "Gmail / Google Workspace",
        "smtp.gmail.com",
        587,
        "TLS",
        "Use an app password (two-step verification must be on); the sender must be the "
        "account or one of its verified aliases.",
    ),
    "microsoft365": Preset(
        "Microsoft 365 / Outlook",
        "smtp.office365.com",
        587,
        "TLS",
        "SMTP AUTH must be enabled for the mailbox; the sender must be the mailbox or one it "
        "may send as.",
    ),
    "zoho": Preset(
        "Zoho Mail",
        "smtp.zoho.com",
        465,
        "SSL",
        "Use smtp.zoho.eu (or your region's host) for accounts outside the US; app password "
        "when two-factor authentication is on.",
    ),
    "amazon_ses": Preset(
        "Amazon SES",
        "email-smtp.us-east-1.amazonaws.com",
        587,
        "TLS",
        "Replace us-east-1 with your SES region; the username and password are SES SMTP "
        "credentials, not AWS access keys; the sender must be a verified identity.",
    ),
    "sendgrid": Preset(
        "SendGrid",
        "smtp.sendgrid.net",
        587,
        "TLS",
        'The username is literally "apikey"; the password is an API key; the sender must '
        "be a verified sender or domain.",
    ),
    "mailgun": Preset(
        "Mailgun",
        "smtp.mailgun.org",
        587,
        "TLS",
        "Use smtp.eu.mailgun.org for EU domains; the username is the domain's SMTP login.",
    ),
    "fastmail": Preset(
        "Fastmail",
        "smtp.fastmail.com",
        465,
        "SSL",
        "Use an app password with SMTP access, not the account password.",
    ),
    "postmark": Preset(
        "Postmark",
        "smtp.postmarkapp.com",
        587,
        "TLS",
        "The username and password are both a Server API token; the sender must be a "
        "confirmed sender signature or domain.",
    ),
}


def presets_json() -> str:
    """The table for the form's ``data-presets`` attribute (escaped by the template)."""
    return json.dumps({key: asdict(preset) for key, preset in PRESETS.items()}, sort_keys=True)
