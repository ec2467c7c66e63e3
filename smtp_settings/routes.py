"""One resolved SMTP server: where to connect and as whom, with the secret by reference.

A route is immutable and cheap to keep in memory in every process. It never holds a
plaintext secret: the admin route carries the ciphertext, the environment routes carry the
name of the setting; ``password()`` turns either into the secret at the moment a
connection is opened, in the process that opens it. ``repr`` and ``str`` never show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.utils import formataddr

from django.conf import settings

from smtp_settings.crypto import EncryptedSecret

ADMIN = "admin"
ENVIRONMENT = "environment"
BACKUP = "backup"
OVERRIDE = "override"
ROUTE_NAMES = (ADMIN, ENVIRONMENT, BACKUP)

SECURITY_MODES = ("TLS", "SSL", "NONE")
# Spellings admins and other tools use. Anything else is refused rather than guessed: an
# unknown value must never fall through to a plain-text connection that sends the password.
SECURITY_ALIASES = {
    "TLS": "TLS",
    "STARTTLS": "TLS",
    "SSL": "SSL",
    "SMTPS": "SSL",
    "IMPLICIT": "SSL",
    "IMPLICIT_TLS": "SSL",
    "NONE": "NONE",
    "PLAIN": "NONE",
}


def normalize_security(value: str) -> str:
    """``"starttls"`` -> ``"TLS"``; raise ``ValueError`` for a value that is not a mode."""
    mode = SECURITY_ALIASES.get(str(value).strip().upper().replace("-", "_"))
    if mode is None:
        raise ValueError(
            f"Unknown SMTP security {value!r}: use TLS (STARTTLS), SSL (implicit TLS) or NONE."
        )
    return mode


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a route's password lives: a ciphertext token, or a settings entry."""

    token: str = field(default="", repr=False)
    setting_route: str = ""  # "SMTP_ENVIRONMENT_ROUTE" or "SMTP_BACKUP_ROUTE"
    plaintext: str = field(default="", repr=False)  # keyword overrides only

    def reveal(self) -> str:
        if self.token:
            return EncryptedSecret(self.token).reveal()
        if self.setting_route:
            return getattr(settings, self.setting_route).get("password", "")
        return self.plaintext

    def __bool__(self) -> bool:
        if self.setting_route:
            return bool(getattr(settings, self.setting_route).get("password"))
        return bool(self.token or self.plaintext)


@dataclass(frozen=True, slots=True)
class SmtpRoute:
    """An SMTP server a message may be sent through. ``security`` is normalized (or refused
    with ``ValueError``) when the route is built."""

    name: str
    host: str
    port: int
    security: str = "TLS"
    username: str = ""
    secret: SecretRef = field(default_factory=SecretRef, repr=False, compare=False)
    timeout: float = 10.0
    verify_certificates: bool = True
    sender_email: str = ""
    sender_name: str = ""
    # The From header this route sends as when the caller gave no sender of its own,
    # formatted once: it is read for every message.
    sender: str = field(init=False, default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "security", normalize_security(self.security))
        sender = ""
        if self.sender_email:
            sender = (
                formataddr((self.sender_name, self.sender_email))
                if self.sender_name
                else self.sender_email
            )
        object.__setattr__(self, "sender", sender)

    @property
    def use_tls(self) -> bool:
        return self.security == "TLS"

    @property
    def use_ssl(self) -> bool:
        return self.security == "SSL"

    @property
    def address(self) -> str:
        """host:port, as shown to admins and in the health JSON."""
        return f"{self.host}:{self.port}"

    def password(self) -> str:
        """The plaintext secret. Call only where the SMTP connection is opened."""
        return self.secret.reveal()

    def __str__(self) -> str:
        return f"{self.name} ({self.security} {self.address})"


def route_from_settings(name: str, setting_name: str) -> SmtpRoute | None:
    """Build the environment or backup route from its settings, or None when unset.

    Raises ``ValueError`` for a security value that is not a mode (see ``SECURITY_ALIASES``).
    """
    values = getattr(settings, setting_name)
    if not values.get("server"):
        return None
    return SmtpRoute(
        name=name,
        host=values["server"],
        port=int(values["port"]),
        security=values.get("security") or "TLS",
        username=values.get("username", ""),
        secret=SecretRef(setting_route=setting_name),
        timeout=float(settings.SMTP_TIMEOUT),
        verify_certificates=True,
        sender_email=values.get("sender_email") or "",
        sender_name=values.get("sender_name") or "",
    )
