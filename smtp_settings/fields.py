"""The model field that stores the SMTP password, strict where the library is lenient.

It keeps the storage of django-encrypted-model-fields (a text column holding a Fernet
token) but its Python value is an ``EncryptedSecret``: loading a row decrypts nothing, and
saving writes the token back unchanged, so a value encrypted under an old or unknown key is
never encrypted a second time. A plain ``str`` assigned to the field is encrypted on save.
"""

from __future__ import annotations

from typing import Any

from encrypted_model_fields.fields import EncryptedTextField

from smtp_settings.crypto import EncryptedSecret, encrypt, looks_like_token


class EncryptedSecretField(EncryptedTextField):
    """A write-only secret: '' when not set, else an ``EncryptedSecret``."""

    def to_python(self, value: Any) -> EncryptedSecret | str:
        if value is None or value == "":
            return ""
        if isinstance(value, EncryptedSecret):
            return value
        if isinstance(value, bytes):
            value = value.decode("ascii")
        # A token (from a fixture or a serializer) stays a token; anything else is a
        # plaintext password set from code, which get_prep_value encrypts on save. Treating
        # it as a token would store the plaintext in the column.
        return EncryptedSecret(value) if looks_like_token(value) else value

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> EncryptedSecret | str:
        if value is None or value == "":
            return ""
        return EncryptedSecret(value)

    def get_prep_value(self, value: Any) -> str:
        if value is None or value == "":
            return ""
        if isinstance(value, EncryptedSecret):
            return value.token
        return encrypt(str(value))

    def get_db_prep_save(self, value: Any, connection: Any) -> str:
        return self.get_prep_value(value)

    def value_to_string(self, obj: Any) -> str:
        # Serialisation (dumpdata) carries the token, never the plaintext.
        return self.get_prep_value(self.value_from_object(obj))

    def formfield(self, **kwargs: Any) -> None:
        # Never bound to a form that could render it; the admin form has its own
        # write-only password field.
        return None
