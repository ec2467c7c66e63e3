"""Numbers about the delivery log for the health panel: counts and the oldest waiting message.

Cheap aggregate queries on indexed columns; called by the health monitor, never by the send
path. They return plain numbers, never message content.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Min, Q
from django.utils import timezone

from notifications.models import PENDING, Delivery, Status


def counts_last_hour() -> dict[str, int]:
    """``sent`` and ``failed`` in the last hour, and ``deferred``: messages waiting now
    (deferred, or being retried by a worker)."""
    since = timezone.now() - timedelta(hours=1)
    finished_recently = Q(status__in=(Status.SENT, Status.FAILED), finished_at__gte=since)
    return Delivery.objects.filter(finished_recently | Q(status__in=PENDING)).aggregate(
        sent=Count("pk", filter=Q(status=Status.SENT)),
        failed=Count("pk", filter=Q(status=Status.FAILED)),
        deferred=Count("pk", filter=Q(status__in=PENDING)),
    )


def oldest_deferred_age() -> float | None:
    """Seconds since the oldest message still waiting was first handed over; None if none."""
    oldest = Delivery.objects.filter(status__in=PENDING).aggregate(oldest=Min("created_at"))
    if oldest["oldest"] is None:
        return None
    return max(0.0, (timezone.now() - oldest["oldest"]).total_seconds())
