"""The sweep's own tools find what they claim to find: every encoding of the password, its
ciphertext outside the places allowed, and log records in full (``extra`` and exceptions).

Without these, a sweep that found nothing might only mean a search that looks nowhere.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from email.message import EmailMessage
from urllib.parse import quote

import pytest
from cryptography.fernet import Fernet

from tests.security.collectors import LogCapture
from tests.security.finder import Finder, Source, needles

PASSWORD = 'p&ss<w>"rd-Finder-42'
USER = "system@example.com"
KEY = Fernet.generate_key().decode()


@pytest.fixture
def finder() -> Finder:
    return Finder(needles({"pw": PASSWORD}, [USER]), frozenset({PASSWORD}), keys=[KEY])


def found(finder: Finder, text: str, allowed: frozenset[str] = frozenset()) -> set[str]:
    return {hit.what for hit in finder.search([Source("test", text, allowed)])}


def b64(raw: str) -> str:
    return base64.b64encode(raw.encode()).decode()


@pytest.mark.parametrize(
    ("text", "what"),
    [
        (f"x {PASSWORD} y", "pw in clear"),
        (f"<td>{html.escape(PASSWORD)}</td>", "pw in clear"),
        (f"next=/?p={quote(PASSWORD)}", "pw in clear"),
        (f"535 for {b64(PASSWORD)}", "pw as base64 (AUTH LOGIN)"),
        (f"535 for {b64(PASSWORD).rstrip('=')}", "pw as base64 (AUTH LOGIN)"),
        (
            f"535 for AUTH PLAIN {b64(f'{chr(0)}{USER}{chr(0)}{PASSWORD}')}",
            "pw as the AUTH PLAIN blob",
        ),
    ],
)
def test_finds_the_password_in_every_form_a_page_log_or_server_could_show(finder, text, what):
    assert what in found(finder, text)


def test_finds_the_password_inside_a_base64_task_body(finder):
    body = b64(json.dumps([[], {"smtp_text": f"refused {PASSWORD}"}, {}]))
    message = json.dumps({"body": body, "headers": {"task": "t"}})

    assert "pw in clear" in found(finder, message)


def test_finds_the_password_inside_a_base64_mime_part(finder):
    mail = EmailMessage()
    mail.set_content(f"Your settings: {PASSWORD}\n" + "padding line\n" * 20, cte="base64")

    assert PASSWORD not in mail.as_string()
    assert "pw in clear" in found(finder, mail.as_string())


def test_finds_ciphertext_of_the_password_unless_that_token_is_allowed_there(finder):
    token = Fernet(KEY).encrypt(PASSWORD.encode()).decode()
    other = Fernet(KEY).encrypt(b"not the password").decode()

    assert found(finder, f'{{"password_token": "{token}"}}') == {"ciphertext of the password"}
    assert found(finder, f'{{"password_token": "{token}"}}', frozenset({token})) == set()
    assert found(finder, f"token {other}") == set()


def test_finds_a_known_token_cut_short(finder):
    token = Fernet(KEY).encrypt(PASSWORD.encode()).decode()
    finder.known_tokens.add(token)

    assert found(finder, f"...{token[:45]}…") == {"ciphertext of the password"}


def test_masked_or_unrelated_text_is_no_hit(finder):
    assert found(finder, "535 5.7.8 Authentication failed for AUTH PLAIN ********") == set()


def test_log_capture_keeps_extra_attributes_and_exception_details(finder):
    capture = LogCapture().install()
    logger = logging.getLogger("tests.security.capture")
    try:
        logger.debug("attempt failed", extra={"smtp_text": f"echo {PASSWORD}"})
        error = ValueError("refused")
        error.smtp_text = f"quoted {b64(PASSWORD)}"
        try:
            raise error
        except ValueError:
            logger.warning("send failed", exc_info=True)
    finally:
        capture.uninstall()
    logger.error("after uninstall")

    hits = finder.search(capture.sources())
    assert {hit.where.split()[-2] for hit in hits} == {"tests.security.capture"}
    assert {hit.what for hit in hits} == {"pw in clear", "pw as base64 (AUTH LOGIN)"}
    assert len(capture.records) == 2
    assert capture not in logging.getLogger().handlers
