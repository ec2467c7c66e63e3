"""Find a secret in collected text, in every form a leak could take.

A ``Source`` is one piece of collected text (a response body, a log record, a Redis value, a
database cell) with a label saying where it came from, and the set of ciphertext tokens that
may legitimately be in it (only the password column, the Redis config snapshot and a
test-connection task message carry one).

``search()`` looks at each source as collected and as it decodes (HTML entities, URL
escapes, JSON and Python string escapes, every base64 run, MIME parts), for:

- the password in clear, base64 of the password (what AUTH LOGIN sends), and base64 of the
  AUTH PLAIN blob ``\\0user\\0password`` (each also without its ``=`` padding);
- any Fernet token that decrypts to the password, and any prefix of a token the scenario
  saw (a token cut short or split by a renderer is still found), outside the sources that
  may hold it.

It reports where each hit was, never the secret itself.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import html
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# A base64 run long enough to hide a password (standard and URL-safe alphabets).
BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")
# A Fernet token: version byte 0x80 and a timestamp make every one start with "gAAAAA".
FERNET_TOKEN = re.compile(r"gAAAAA[A-Za-z0-9_-]{20,}={0,2}")
# Long enough to hold the token's random IV: no two tokens share it.
TOKEN_PREFIX = 40
DECODE_DEPTH = 2
_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_CHAR_ESCAPE = re.compile(r"""\\(["'\\/])""")


@dataclass(frozen=True)
class Needle:
    """One form of a secret: ``what`` names it in a report, ``text`` is searched for."""

    what: str
    text: str


@dataclass(frozen=True)
class Source:
    """Collected text and where it came from; ``allowed_tokens`` may appear in it."""

    where: str
    text: str
    allowed_tokens: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Hit:
    where: str
    what: str
    context: str  # the surroundings, with the secret replaced by its description

    def __str__(self) -> str:
        return f"{self.what} in {self.where}: ...{self.context}..."


def _b64(raw: bytes) -> list[str]:
    forms = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    return sorted(form.rstrip("=") for form in forms)


def needles(passwords: dict[str, str], usernames: Iterable[str]) -> list[Needle]:
    """Every form of every password: ``passwords`` maps a description to the secret."""
    found: list[Needle] = []
    for label, password in passwords.items():
        found.append(Needle(f"{label} in clear", password))
        found += [
            Needle(f"{label} as base64 (AUTH LOGIN)", form) for form in _b64(password.encode())
        ]
        for user in usernames:
            blob = f"\0{user}\0{password}".encode()
            found += [Needle(f"{label} as the AUTH PLAIN blob", form) for form in _b64(blob)]
    return found


# -- decoding ----------------------------------------------------------------------------------
def _base64_decoded(run: str) -> str | None:
    padded = run + "=" * (-len(run) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            return decode(padded).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            continue
    return None


def _mime_parts(text: str) -> Iterator[str]:
    """The decoded parts of a mail message (base64 or quoted-printable bodies)."""
    message = email.message_from_string(text, policy=email.policy.default)
    for part in message.walk():
        if part.is_multipart():
            continue
        try:
            content = part.get_content()
        except (LookupError, ValueError, AssertionError):
            content = part.get_payload(decode=True) or b""
        yield content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)


def _unescaped(text: str) -> str:
    """JSON and Python string escapes undone (``\\"``, ``\\'``, ``\\\\``, ``\\uXXXX``)."""
    text = _UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return _CHAR_ESCAPE.sub(r"\1", text)


def views(text: str, depth: int = DECODE_DEPTH) -> Iterator[str]:
    """``text`` and what it decodes to, the way a reader or a tool would decode it."""
    yield text
    for decoded in (html.unescape(text), unquote(text), _unescaped(text)):
        if decoded != text:
            yield decoded
    if "MIME-Version:" in text or "Content-Transfer-Encoding:" in text:
        yield from _mime_parts(text)
    if depth <= 0:
        return
    for run in set(BASE64_RUN.findall(text)):
        decoded = _base64_decoded(run)
        if decoded:
            yield from views(decoded, depth - 1)


# -- searching ---------------------------------------------------------------------------------
@dataclass
class Finder:
    """Searches sources for ``needles`` and for ciphertext of the passwords."""

    needles: list[Needle]
    passwords: frozenset[str]
    keys: list[str]
    known_tokens: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in self.keys])

    def password_tokens(self, text: str) -> set[str]:
        """Tokens in ``text`` that decrypt to a password, and known tokens (or their
        prefixes) found in it."""
        tokens = set()
        for match in FERNET_TOKEN.finditer(text):
            try:
                plain = self._fernet.decrypt(match.group().encode()).decode("utf-8", "replace")
            except InvalidToken:
                continue
            if plain in self.passwords:
                tokens.add(match.group())
        tokens.update(t for t in self.known_tokens if t[:TOKEN_PREFIX] in text)
        return tokens

    def search(self, sources: Iterable[Source]) -> list[Hit]:
        hits: list[Hit] = []
        for source in sources:
            hits += self._search_one(source)
        return hits

    def _search_one(self, source: Source) -> list[Hit]:
        hits: dict[tuple[str, str], Hit] = {}
        allowed_prefixes = {token[:TOKEN_PREFIX] for token in source.allowed_tokens}
        for view in views(source.text):
            for needle in self.needles:
                position = view.find(needle.text)
                if position >= 0:
                    context = _context(view, position, len(needle.text), f"<{needle.what}>")
                    hits.setdefault((needle.what, ""), Hit(source.where, needle.what, context))
            for token in self.password_tokens(view):
                if token[:TOKEN_PREFIX] in allowed_prefixes:
                    continue
                position = view.find(token[:TOKEN_PREFIX])
                context = _context(view, position, len(token), "<password ciphertext>")
                what = "ciphertext of the password"
                hits.setdefault((what, token), Hit(source.where, what, context))
        return list(hits.values())


def _context(text: str, position: int, length: int, replacement: str) -> str:
    start, end = max(0, position - 60), position + length + 60
    return (text[start:position] + replacement + text[position + length : end]).replace("\n", " ")
