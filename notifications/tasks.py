"""Celery tasks of the delivery log: retry deferred messages, sweep, purge.

Thin wrappers: the work is in ``notifications.retry`` and ``notifications.retention``. All
are ``acks_late`` (a worker that dies mid-task leaves the message on the broker) and safe to
run twice: a retry only sends a delivery it has just claimed. The beat schedule is
``CELERY_BEAT_SCHEDULE`` in settings. A worker process writes its buffered delivery records
before it exits.
"""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_process_shutdown, worker_shutdown


@shared_task(name="notifications.retry_deliveries", acks_late=True, ignore_result=True)
def retry_deliveries(message_ids: list[str] | None = None) -> int:
    """Send the due deliveries among ``message_ids`` (or any due ones); returns how many."""
    from notifications.retry import send_due

    return send_due(message_ids)


@shared_task(name="notifications.sweep_deliveries", acks_late=True, ignore_result=True)
def sweep_deliveries() -> dict[str, int]:
    """Re-queue deliveries whose worker vanished and queue retries for what is due."""
    from notifications.retry import sweep

    return sweep()


@shared_task(name="notifications.purge_sent_deliveries", acks_late=True, ignore_result=True)
def purge_sent_deliveries() -> int:
    """Delete sent deliveries older than EMAIL_DELIVERY_RETENTION_DAYS."""
    from notifications.retention import purge_sent

    return purge_sent()


@worker_process_shutdown.connect
@worker_shutdown.connect
def _flush_delivery_log(**kwargs: object) -> None:
    # A prefork child leaves through os._exit, which skips atexit.
    from notifications.buffer import buffer

    buffer.drain()
