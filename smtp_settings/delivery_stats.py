"""The delivery-log figures the email health shows, read from the notifications app.

``read_delivery_stats()`` is the only place the health code touches the delivery log:
``notifications.stats`` for the counts of the last hour and the oldest waiting message,
and two small aggregates of its own (last accepted message, counts per route) on the same
indexed columns. When the log cannot be read (not migrated, database trouble) the figures
are reported as unavailable instead of failing the health check. Only counts and times:
never a subject, an address or a body.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import Count, Max
from django.utils import timezone

logger = logging.getLogger(__name__)


def _last_sent_at() -> datetime | None:
    from notifications.models import Delivery, Status

    latest = Delivery.objects.filter(status=Status.SENT).aggregate(at=Max("finished_at"))
    return latest["at"]


def _by_route_last_hour(now: datetime) -> dict[str, dict[str, int]]:
    from notifications.models import Delivery, Status

    rows = (
        Delivery.objects.filter(
            status__in=(Status.SENT, Status.FAILED), finished_at__gte=now - timedelta(hours=1)
        )
        .values_list("route", "status")
        .annotate(count=Count("pk"))
        .order_by()
    )
    by_route: dict[str, dict[str, int]] = {}
    for route, status, count in rows:
        by_route.setdefault(route or "none", {})[str(status)] = count
    return by_route


def read_delivery_stats() -> dict[str, Any]:
    """A JSON-able summary of the delivery log right now.

    Keys: ``available``; when available ``last_hour`` (sent and failed in the last hour,
    deferred: waiting now), ``by_route`` (route -> outcome -> count, last hour),
    ``deferred_count``, ``oldest_deferred_age_seconds``, ``last_sent_at``; always ``as_of``.
    """
    now = timezone.now()
    try:
        from notifications import stats
    except ImportError:
        return {"available": False, "reason": "no delivery log", "as_of": now.isoformat()}
    try:
        # A savepoint: on PostgreSQL a failed query must not poison the caller's transaction.
        with transaction.atomic():
            counts = {str(k): int(v or 0) for k, v in stats.counts_last_hour().items()}
            oldest = stats.oldest_deferred_age()
            last_sent = _last_sent_at()
            by_route = _by_route_last_hour(now)
    except (DatabaseError, LookupError, AttributeError, ImportError) as exc:
        logger.warning("email health: delivery counts unavailable (%s)", exc.__class__.__name__)
        return {"available": False, "reason": exc.__class__.__name__, "as_of": now.isoformat()}
    return {
        "available": True,
        "last_hour": counts,
        "by_route": by_route,
        "deferred_count": counts.get("deferred", 0),
        "oldest_deferred_age_seconds": round(oldest, 1) if oldest is not None else None,
        "last_sent_at": last_sent.isoformat() if last_sent else None,
        "as_of": now.isoformat(),
    }
