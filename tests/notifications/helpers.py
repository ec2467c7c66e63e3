"""Helpers for the delivery-log tests: wait for a condition, count Message-IDs across servers,
send a numbered batch, and build a deferred delivery the way the send path stores one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from django.core import mail

T = TypeVar("T")


def message_id_counts(*servers: object) -> Counter:
    """How many times each Message-ID arrived, over all ``servers`` (parses every message:
    call it once at the end, not in a polling loop)."""
    counts: Counter = Counter()
    for server in servers:
        counts.update(server.recorder.message_ids())
    return counts


def send_numbered(count: int, start: int = 0, before: Callable[[int], None] | None = None) -> list:
    """Send ``count`` messages through ``send_mail``; returns what each call returned."""
    results = []
    for number in range(start, start + count):
        if before is not None:
            before(number)
        results.append(
            mail.send_mail(f"Message {number}", f"Body {number}", None, [f"u{number}@example.net"])
        )
    return results
