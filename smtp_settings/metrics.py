"""``/metrics`` in the Prometheus text format, computed at scrape time from recorded data.

Why not in-process counters: the send path runs in every gunicorn worker and every Celery
worker, and must stay free of database queries and shared files; per-process counters
would need prometheus multiprocess mode and a directory shared by all of them, and would
still miss the workers on other hosts. The delivery log already holds every outcome, so a
scrape reads it (a few indexed queries, once per scrape) together with the recorded probe
results: the numbers are the same whichever worker answers.

Series (all gauges): ``smtp_sends_last_hour{route,outcome}``,
``smtp_route_probe_success{route}`` and ``smtp_route_probe_timestamp_seconds{route}``,
``smtp_seconds_since_last_successful_send``, ``smtp_deferred_messages``,
``smtp_deferred_oldest_age_seconds``, ``smtp_config_version``, ``smtp_mail_deliverable``,
``smtp_health_status{status}``, ``smtp_delivery_stats_available``,
``smtp_redis_available``, ``smtp_database_available``. Never a secret, never a username.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from smtp_settings.health import (
    DEGRADED,
    DISABLED,
    ERROR,
    HEALTHY,
    OK,
    UNTESTED,
    USING_DEFAULT,
    EmailHealth,
    EmailHealthMonitor,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
STATUSES = (HEALTHY, DEGRADED, ERROR, UNTESTED, USING_DEFAULT, DISABLED)


def _gauge(name: str, doc: str, value: float | None) -> Iterator[Metric]:
    if value is not None:
        yield GaugeMetricFamily(name, doc, value=value)


def _sends(health: EmailHealth) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "smtp_sends_last_hour",
        "Messages handled in the last hour, by route and outcome (from the delivery log).",
        labels=["route", "outcome"],
    )
    by_route = health.sends_last_hour_by_route or {}
    if not by_route and health.sends_last_hour:
        by_route = {"any": health.sends_last_hour}
    for route, outcomes in sorted(by_route.items()):
        for outcome, count in sorted(outcomes.items()):
            family.add_metric([route, outcome], count)
    yield family


def _probes(health: EmailHealth) -> Iterator[Metric]:
    success = GaugeMetricFamily(
        "smtp_route_probe_success",
        "1 when the route's last probe succeeded within two check intervals, else 0.",
        labels=["route"],
    )
    when = GaugeMetricFamily(
        "smtp_route_probe_timestamp_seconds",
        "Unix time of the route's last probe with its current settings.",
        labels=["route"],
    )
    for route in health.routes:
        success.add_metric([route.route], 1 if route.state == OK else 0)
        checked = parse_datetime(route.checked_at) if route.checked_at else None
        if checked is not None:
            when.add_metric([route.route], checked.timestamp())
    yield success
    yield when


class HealthCollector:
    """A collector over one ``EmailHealth``, built per scrape."""

    def __init__(self, health: EmailHealth) -> None:
        self.health = health

    def collect(self) -> Iterator[Metric]:
        health = self.health
        yield from _sends(health)
        yield from _probes(health)
        last_sent = parse_datetime(health.last_email_sent) if health.last_email_sent else None
        yield from _gauge(
            "smtp_seconds_since_last_successful_send",
            "Seconds since a server last accepted a message.",
            (timezone.now() - last_sent).total_seconds() if last_sent else None,
        )
        deferred = health.deferred or {}
        yield from _gauge(
            "smtp_deferred_messages", "Messages waiting for a retry.", deferred.get("count")
        )
        yield from _gauge(
            "smtp_deferred_oldest_age_seconds",
            "Age of the oldest message waiting for a retry.",
            deferred.get("oldest_age_seconds"),
        )
        yield from _gauge(
            "smtp_config_version", "Version of the admin SMTP settings.", health.config_version
        )
        yield from _gauge(
            "smtp_mail_deliverable",
            "1 when a route's last probe succeeded within two check intervals.",
            int(health.deliverable),
        )
        status = GaugeMetricFamily(
            "smtp_health_status", "1 for the current email health status.", labels=["status"]
        )
        for name in STATUSES:
            status.add_metric([name], int(health.status == name))
        yield status
        for name, value, doc in (
            (
                "smtp_delivery_stats_available",
                health.sends_last_hour is not None,
                "Delivery log readable.",
            ),
            ("smtp_redis_available", health.redis_available, "Redis reachable."),
            ("smtp_database_available", health.database_available, "Database reachable."),
        ):
            yield from _gauge(name, doc, int(value))


def render_metrics() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealthCollector(EmailHealthMonitor(live_delivery=True).check()))
    return generate_latest(registry)
