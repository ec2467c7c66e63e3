"""Write sent and failed records off the send path: buffer in memory, bulk-insert in the background.

``add()`` is what the send path pays per message: a lock, a list append and a clock read. A
flusher thread (one per process, started lazily by the first ``add()`` in that process, so
a gunicorn or Celery prefork child gets its own) bulk-inserts what accumulated, at most
``EMAIL_DELIVERY_LOG_FLUSH_SECONDS`` behind. ``flush()`` writes everything now, in the
calling thread (tests; process exit through ``atexit`` and Celery's shutdown signals).

When the database is unreachable the records stay in memory and the flusher tries again
(backing off to 30 s); the buffer is bounded by ``EMAIL_DELIVERY_LOG_BUFFER`` and every
record it has to drop is logged as one structured line, so that nothing disappears
silently. This module must never raise into the send path and never holds a secret: the
records carry the values of ``notifications.records.Outcome`` only.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Iterable

from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction

from notifications.records import Outcome

logger = logging.getLogger("notifications.buffer")

CHUNK = 500
MAX_BACKOFF_SECONDS = 30.0


def log_dropped(records: Iterable[Outcome], reason: str) -> None:
    """The last resort: one parseable line per record that will not reach the database."""
    for record in records:
        logger.error(
            "delivery_log_dropped reason=%s status=%s message_id=%s route=%s server=%s "
            "code=%s recipients=%d at=%s",
            reason,
            record.status,
            record.message_id,
            record.route or "-",
            record.server or "-",
            record.smtp_code if record.smtp_code is not None else "-",
            len(record.recipients),
            record.when.isoformat(),
        )


def write(records: list[Outcome]) -> None:
    """Insert ``records`` (with their attempt rows); skip Message-IDs already in the log."""
    from notifications.models import Delivery

    fresh: dict[str, Outcome] = {}
    for record in records:
        fresh.setdefault(record.message_id, record)
    # Read before the write transaction: on SQLite a read-then-write transaction can fail
    # at once with "database is locked" instead of waiting for the lock.
    existing = set(
        Delivery.objects.filter(message_id__in=list(fresh)).values_list("message_id", flat=True)
    )
    rows = [record for key, record in fresh.items() if key not in existing]
    if not rows:
        return
    try:
        _insert(rows)
    except (IntegrityError, DataError):
        # Another process logged one of these Message-IDs in the meantime, or the database
        # refuses one record: row by row, so that one bad record cannot block the others.
        for record in rows:
            try:
                _insert([record])
            except IntegrityError:
                continue  # already in the log under this Message-ID
            except DataError:
                log_dropped([record], "rejected_by_database")


def _insert(records: list[Outcome]) -> None:
    from notifications.models import Delivery, DeliveryAttempt

    with transaction.atomic():
        deliveries = Delivery.objects.bulk_create(
            [
                Delivery(
                    message_id=r.message_id,
                    subject=r.subject,
                    sender=r.sender,
                    recipients="\n".join(r.recipients),
                    route=r.route,
                    server=r.server,
                    status=r.status,
                    attempts=1,
                    last_smtp_code=r.smtp_code,
                    last_error=r.error,
                    created_at=r.when,
                    updated_at=r.when,
                    finished_at=r.when,
                )
                for r in records
            ]
        )
        DeliveryAttempt.objects.bulk_create(
            [
                DeliveryAttempt(
                    delivery=delivery,
                    number=1,
                    started_at=r.when,
                    outcome=r.status,
                    route=r.route,
                    server=r.server,
                    smtp_code=r.smtp_code,
                    error=r.error,
                )
                for delivery, r in zip(deliveries, records, strict=True)
            ]
        )


class DeliveryBuffer:
    """Per-process buffer of records and its flusher thread; see the module docstring."""

    def __init__(self) -> None:
        self._setup()

    def _setup(self) -> None:
        self._lock = threading.Lock()  # guards _items
        self._write_lock = threading.Lock()  # one writer at a time, so flush() waits
        self._items: list[Outcome] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._exit_hook_pid = 0
        self._failures = 0

    # -- the send path -----------------------------------------------------------------------
    def add(self, record: Outcome) -> None:
        if self._thread is None or self._pid != os.getpid():
            self._start()
        with self._lock:
            self._items.append(record)
            dropped = self._trim()
        if dropped:
            log_dropped(dropped, "buffer_full")

    def _trim(self) -> list[Outcome]:
        """Drop the oldest records beyond the bound (caller holds ``_lock``)."""
        over = len(self._items) - max(1, settings.EMAIL_DELIVERY_LOG_BUFFER)
        if over <= 0:
            return []
        dropped = self._items[:over]
        del self._items[:over]
        return dropped

    # -- the flusher -------------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                # A forked child whose fork hook did not run (should not happen): start over
                # without the parent's records, which the parent writes itself.
                self._items.clear()
                self._thread, self._pid = None, os.getpid()
            if self._thread is not None:
                return
            # A fresh event per thread: a thread still finishing after stop() keeps its own.
            self._stop = stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(stop,), name="delivery-log-flusher", daemon=True
            )
            self._thread.start()
            if self._exit_hook_pid != self._pid:
                self._exit_hook_pid = self._pid
                atexit.register(self._at_exit, self._pid)

    def _run(self, stop: threading.Event) -> None:
        while True:
            interval = settings.EMAIL_DELIVERY_LOG_FLUSH_SECONDS
            if self._failures:
                interval = min(MAX_BACKOFF_SECONDS, interval * 2**self._failures)
            if stop.wait(interval):
                return  # stop() callers flush (exit) or discard (tests) themselves
            try:
                self.flush(background=True)
            except Exception:  # the flusher must outlive any surprise
                logger.exception("delivery log: flusher error")

    def flush(self, *, background: bool = False) -> bool:
        """Write every buffered record now. True when the buffer is empty afterwards."""
        with self._write_lock:
            with self._lock:
                batch, self._items = self._items, []
            if not batch:
                return True
            written = 0
            try:
                for start in range(0, len(batch), CHUNK):
                    write(batch[start : start + CHUNK])
                    written = start + CHUNK
            except Exception as exc:
                self._keep(batch[written:], exc)
                return False
            finally:
                if background:
                    # The flusher's connection is idle for a second at a time: close it, so
                    # a restarted database is reconnected and no connection is left behind.
                    _close_connection()
            if self._failures:
                logger.warning("delivery log: database reachable again; records written")
            self._failures = 0
            return True

    def _keep(self, records: list[Outcome], exc: Exception) -> None:
        if not self._failures:
            logger.warning(
                "delivery log: cannot write %d record(s) (%s); keeping them in memory and retrying",
                len(records),
                type(exc).__name__,
            )
        self._failures += 1
        _close_connection()
        with self._lock:
            self._items[:0] = records
            dropped = self._trim()
        if dropped:
            log_dropped(dropped, "database_unavailable")

    def pending(self) -> int:
        with self._lock:
            return len(self._items)

    # -- lifecycle ---------------------------------------------------------------------------
    def stop(self, timeout: float = 5.0) -> None:
        """Stop the flusher thread (it finishes the write it is doing)."""
        thread = self._thread
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    def discard(self) -> list[Outcome]:
        """Stop the flusher and forget the buffer; returns what was pending (tests)."""
        self.stop()
        with self._write_lock, self._lock:
            pending, self._items = self._items, []
        self._failures = 0
        return pending

    def _at_exit(self, pid: int) -> None:
        if pid == os.getpid():
            self.drain()

    def drain(self) -> None:
        """Last call before the process goes: stop the flusher, write, log what is left."""
        self.stop()
        if not self.flush():
            with self._lock:
                left, self._items = self._items, []
            log_dropped(left, "process_exit")

    def after_fork(self) -> None:
        """In a forked child: fresh locks, no thread, no records (the parent owns those)."""
        self._setup()


def _close_connection() -> None:
    try:
        if not connection.in_atomic_block:
            connection.close()
    except Exception:
        logger.debug("delivery log: closing the connection failed", exc_info=True)


buffer = DeliveryBuffer()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=buffer.after_fork)
