"""Forget old sent messages: the retention rule of the delivery log.

Deletes ``sent`` deliveries (and their attempts) whose send finished more than
``EMAIL_DELIVERY_RETENTION_DAYS`` ago, in small batches so that no single transaction holds
a large lock. Deferred, failed and cancelled rows are kept: they are the ones someone may
still need to look at.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifications.models import Delivery, Status

BATCH = 1000


def purge_sent(days: int | None = None) -> int:
    """Delete sent deliveries older than ``days`` (default: the setting); returns how many."""
    days = settings.EMAIL_DELIVERY_RETENTION_DAYS if days is None else days
    cutoff = timezone.now() - timedelta(days=days)
    old = Delivery.objects.filter(status=Status.SENT, finished_at__lt=cutoff)
    deleted = 0
    while True:
        pks = list(old.values_list("pk", flat=True)[:BATCH])
        if not pks:
            return deleted
        with transaction.atomic():
            Delivery.objects.filter(pk__in=pks).delete()
        deleted += len(pks)
