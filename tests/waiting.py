"""Wait for a condition, never for a fixed time: one helper for every test that waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float = 20.0,
    what: str = "",
    *,
    interval: float = 0.02,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``condition`` until it returns something truthy and return that; fail naming
    ``what`` after ``timeout`` seconds. Exceptions in ``ignoring`` count as "not yet"
    (a server still starting refuses connections)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
        except ignoring as exc:
            last_error, value = exc, None
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"{what or 'condition'} not met within {timeout}s{detail}")
        time.sleep(interval)
