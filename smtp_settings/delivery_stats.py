"""The delivery-log figures the email health shows, read from the notifications app.

One function, ``read_delivery_stats()``, is the only place the health code touches the
delivery log, through ``notifications.stats.delivery_summary()``. When that is not there
(or the log is turned off, or it fails) the figures are reported as unavailable instead of
failing the health check. It never reads message bodies or addresses, only counts and times.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

logger = logging.getLogger(__name__)


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat()
    return value or None


def read_delivery_stats() -> dict[str, Any]:
    """A JSON-able summary of the delivery log right now.

    Keys: ``available``; and when available ``last_hour`` (outcome -> count), ``by_route``
    (route -> outcome -> count, last hour), ``deferred_count``,
    ``oldest_deferred_age_seconds``, ``last_sent_at``; always ``as_of``.
    """
    now = timezone.now()
    try:
        from notifications.stats import delivery_summary
    except ImportError:
        return {
            "available": False,
            "reason": "delivery log not installed",
            "as_of": now.isoformat(),
        }
    try:
        summary = delivery_summary(now=now)
    except (DatabaseError, LookupError, ValueError, TypeError) as exc:
        logger.warning("email health: delivery counts unavailable (%s)", exc.__class__.__name__)
        return {"available": False, "reason": exc.__class__.__name__, "as_of": now.isoformat()}
    oldest = summary.get("oldest_deferred_age_seconds")
    return {
        "available": True,
        "last_hour": {str(k): int(v) for k, v in (summary.get("last_hour") or {}).items()},
        "by_route": {
            str(route): {str(k): int(v) for k, v in outcomes.items()}
            for route, outcomes in (summary.get("by_route") or {}).items()
        },
        "deferred_count": int(summary.get("deferred_count") or 0),
        "oldest_deferred_age_seconds": round(float(oldest), 1) if oldest is not None else None,
        "last_sent_at": _iso(summary.get("last_sent_at")),
        "as_of": now.isoformat(),
    }
