"""The admin form for AdminConfig: write-only password, stale-page guard, field validation.

What the form decides:

- the password is write-only: a blank field keeps the stored one, a typed one replaces it,
  and changing the server, port or username without typing it again clears the stored one
  (a stored secret is never sent to a host it was not typed for);
- a save made from a page opened before someone else's save is refused (the hidden
  ``loaded_version`` carries the row version the page was rendered from);
- every value an SMTP connection or a mail header will use is checked here, each problem a
  field error an admin can act on.

It must never render the password or its token into HTML, and never decrypt anything.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import idna
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection

from smtp_settings.models import AdminConfig, Security

# The model fields an admin edits (the password has its own write-only field).
EDITABLE_FIELDS = (
    "smtp_enabled",
    "smtp_server",
    "smtp_port",
    "smtp_security",
    "smtp_timeout",
    "smtp_verify_certificates",
    "smtp_username",
    "sender_name",
    "sender_email",
)
# Changing one of these means a different account or host: the stored password must not
# follow it there.
IDENTITY_FIELDS = ("smtp_server", "smtp_port", "smtp_username")
REQUIRED_WHEN_ENABLED = (
    "smtp_server",
    "smtp_port",
    "smtp_username",
    "smtp_security",
    "sender_email",
    "sender_name",
)
TIMEOUT_BOUNDS = (1, 60)
# Each security mode's well-known port, and the sentence for the swap people make most.
SWAPPED_SECURITY = {
    (Security.SSL, 587): "Port 587 expects STARTTLS (TLS), not SSL: choose STARTTLS, "
    "or use port 465 for SSL.",
    (Security.STARTTLS, 465): "Port 465 expects SSL, not TLS/STARTTLS: choose SSL, "
    "or use port 587 for STARTTLS.",
}

PLAINTEXT_LOGIN = (
    "Security None would send the username and password in clear over the network: choose "
    "STARTTLS (TLS) or SSL. None with a username is accepted only for a relay on this "
    "machine (localhost)."
)
STALE_PAGE = (
    "These settings were changed by someone else since you opened this page. "
    "Reload to see their changes."
)
REQUIRED = "Required while “use these settings” is on."
LINE_BREAK = "Line breaks are not allowed here (they could inject mail headers)."
PASSWORD_REQUIRED = "Required while “use these settings” is on: no password is stored."
PASSWORD_RETYPE = (
    "You changed the server, port or username, so the stored password will not be sent "
    "there: type the password again."
)


class SingleLineMixin:
    """Refuses CR or LF anywhere in the raw input, before the field strips it."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and ("\r" in value or "\n" in value):
            raise ValidationError(LINE_BREAK, code="line_break")
        return super().to_python(value)  # type: ignore[misc]


class SingleLineCharField(SingleLineMixin, forms.CharField):
    pass


class SingleLineEmailField(SingleLineMixin, forms.EmailField):
    pass


def normalize_host(value: str) -> str:
    """Return ``value`` as the ASCII host name or IP address to connect to.

    Raises ``ValidationError`` with the reason an admin can fix (a scheme, a space, a
    port inside, or a label that is not a valid IDNA host name label).
    """
    if "://" in value:
        raise ValidationError(
            "Enter only the host name, without a scheme such as smtp:// or https://.",
            code="scheme",
        )
    if any(char.isspace() for char in value):
        raise ValidationError("A host name cannot contain spaces.", code="space")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if ":" in value:
        raise ValidationError(
            "Put the port in the Port field, not in the server name.", code="port_inside"
        )
    try:
        ascii_host = idna.encode(value.rstrip("."), uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValidationError(
            "Enter a host name (like smtp.example.com) or an IP address: %(reason)s.",
            code="invalid_host",
            params={"reason": exc},
        ) from None
    if len(ascii_host) > 253:
        raise ValidationError("A host name is at most 253 characters.", code="too_long")
    if ascii_host.rsplit(".", 1)[-1].isdigit():
        # All-numeric last label: meant as an IPv4 address, but not a valid one.
        raise ValidationError(
            "Enter a valid IPv4 address (four numbers 0-255) or a host name.", code="bad_ip"
        )
    return ascii_host


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1: a relay on this machine, where no network is crossed."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _comparable(name: str, value: Any) -> Any:
    """A value as the form would store it, so that re-saving a row written by code with
    ``Smtp.Example.com`` is not taken for a change of server."""
    if name == "smtp_server" and value:
        try:
            return normalize_host(value)
        except ValidationError:
            return value
    return value


class AdminConfigForm(forms.ModelForm):
    """Edits the AdminConfig row; the ModelAdmin records history and messages from
    ``password_action`` after the save."""

    new_password = forms.CharField(
        label="New password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave blank to keep the stored password. It is never shown again.",
    )
    loaded_version = forms.IntegerField(widget=forms.HiddenInput, min_value=0)

    class Meta:
        model = AdminConfig
        fields = EDITABLE_FIELDS
        field_classes = {
            "smtp_server": SingleLineCharField,
            "smtp_username": SingleLineCharField,
            "sender_name": SingleLineCharField,
            "sender_email": SingleLineEmailField,
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["loaded_version"].initial = self.instance.version
        if "smtp_timeout" in self.fields:
            low, high = TIMEOUT_BOUNDS
            timeout = self.fields["smtp_timeout"]
            timeout.validators += [MinValueValidator(low), MaxValueValidator(high)]
            timeout.widget.attrs.update(min=low, max=high)
        # What the row held when the form was built; clean() compares against it, because
        # the ModelForm copies the new values onto the instance after clean().
        self._had_password = self.instance.has_password
        self._original = {name: getattr(self.instance, name) for name in IDENTITY_FIELDS}
        self.password_action: str | None = None

    # -- single fields -----------------------------------------------------------------------
    def clean_smtp_server(self) -> str:
        value = self.cleaned_data["smtp_server"]
        return normalize_host(value) if value else ""

    def clean_smtp_port(self) -> int | None:
        port = self.cleaned_data["smtp_port"]
        allowed = sorted(settings.SMTP_ALLOWED_PORTS)
        if port is not None and port not in allowed:
            raise ValidationError(
                "Port %(port)s is not allowed here; allowed ports: %(allowed)s "
                "(SMTP_ALLOWED_PORTS).",
                code="port_not_allowed",
                params={"port": port, "allowed": ", ".join(map(str, allowed))},
            )
        return port

    # -- the whole form ----------------------------------------------------------------------
    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        self._refuse_stale_page(cleaned.get("loaded_version"))
        self._check_security_matches_port(cleaned)
        self._refuse_plaintext_login(cleaned)
        has_password = self._decide_password(cleaned)
        if cleaned.get("smtp_enabled"):
            self._require_complete(cleaned, has_password)
        return cleaned

    def _refuse_stale_page(self, loaded_version: int | None) -> None:
        if loaded_version is None or self.instance.pk is None:
            return
        rows = AdminConfig.objects.filter(pk=self.instance.pk)
        if connection.in_atomic_block:
            # The admin saves inside a transaction: lock the row so that two saves from the
            # same page version cannot both pass this check.
            rows = rows.select_for_update()
        current = rows.values_list("version", flat=True).first()
        if current is not None and current != loaded_version:
            raise ValidationError(STALE_PAGE, code="stale")

    def _check_security_matches_port(self, cleaned: dict[str, Any]) -> None:
        hint = SWAPPED_SECURITY.get((cleaned.get("smtp_security"), cleaned.get("smtp_port")))
        if hint and "smtp_security" not in self.errors:
            self.add_error("smtp_security", ValidationError(hint, code="swapped"))

    def _refuse_plaintext_login(self, cleaned: dict[str, Any]) -> None:
        """Security None with a username sends the password in clear: only to this machine."""
        if cleaned.get("smtp_security") != Security.NONE or not cleaned.get("smtp_username"):
            return
        if is_loopback(cleaned.get("smtp_server") or "") or "smtp_security" in self.errors:
            return
        self.add_error("smtp_security", ValidationError(PLAINTEXT_LOGIN, code="plaintext_login"))

    def _identity_changed(self, cleaned: dict[str, Any]) -> bool:
        return any(
            name in cleaned and _comparable(name, cleaned[name]) != _comparable(name, old)
            for name, old in self._original.items()
        )

    def _decide_password(self, cleaned: dict[str, Any]) -> bool:
        """Set ``password_action`` ("set", "changed", "cleared" or None for kept) and
        return whether a password will be stored after the save."""
        typed = cleaned.get("new_password") or ""
        if typed:
            self.password_action = "changed" if self._had_password else "set"
            return True
        if self._had_password and self._identity_changed(cleaned):
            self.password_action = "cleared"
            return False
        self.password_action = None
        return self._had_password

    def _require_complete(self, cleaned: dict[str, Any], has_password: bool) -> None:
        for name in REQUIRED_WHEN_ENABLED:
            if name not in self.errors and cleaned.get(name) in (None, ""):
                self.add_error(name, ValidationError(REQUIRED, code="required"))
        if not has_password:
            message = PASSWORD_RETYPE if self.password_action == "cleared" else PASSWORD_REQUIRED
            self.add_error("new_password", ValidationError(message, code="required"))

    # -- saving ------------------------------------------------------------------------------
    def save(self, commit: bool = True) -> AdminConfig:
        typed = self.cleaned_data.get("new_password") or ""
        if typed:
            self.instance.set_password(typed)
        elif self.password_action == "cleared":
            self.instance.clear_password()
        return super().save(commit=commit)
