"""Fixtures for the secret leak sweep: capture every log record at DEBUG from before the
Celery worker starts, then the worker on a database that the worker thread and the test
share (the delivery-log tests' ``shared_db``), with retry timings in tenths of a second."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery.signals import setup_logging

from tests.notifications.conftest import (  # noqa: F401 - fixtures reused as they are
    fast_retries,
    live_worker,
    migrated_sqlite_template,
    shared_db,
)
from tests.security.collectors import LogCapture


def _leave_logging_alone(**kwargs: object) -> None:
    """A receiver of ``setup_logging`` tells Celery not to configure logging itself: the
    embedded worker would otherwise replace the root handlers and raise the root level to
    WARNING, and the capture would miss records."""


@pytest.fixture
def debug_logs() -> Iterator[LogCapture]:
    capture = LogCapture().install()
    setup_logging.connect(_leave_logging_alone, weak=False)
    try:
        yield capture
    finally:
        setup_logging.disconnect(_leave_logging_alone)
        capture.uninstall()


@pytest.fixture
def sweep_worker(debug_logs: LogCapture, request: pytest.FixtureRequest) -> object:
    """The real Celery worker, started after the capture is in place: the worker decides at
    start-up whether to log at DEBUG (its pool's ``TaskPool: Apply`` line among others)."""
    worker = request.getfixturevalue("live_worker")
    debug_logs.cover_all_loggers()  # loggers the worker created while starting
    return worker
