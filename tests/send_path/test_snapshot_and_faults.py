"""The routes come from an in-process snapshot kept fresh through Redis: no database query
per message, ciphertext only in Redis, and mail keeps flowing when Redis or the database
is gone."""

import base64
import logging
import time

import pytest
from django.core import mail
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext

from smtp_settings import resolver
from smtp_settings.models import AdminConfig
from smtp_settings.resolver import RouteResolver, get_resolver
from smtp_settings.snapshot import get_store
from tests.conftest import SMTP_PASSWORD
from tests.send_path.conftest import unreachable_database

pytestmark = pytest.mark.django_db(transaction=True)


def send(subject="Hi"):
    return mail.send_mail(subject, "Body", None, ["u@example.net"])


def send_for(seconds, limit=500):
    """Send until ``seconds`` have passed (at most ``limit`` messages); return the count."""
    deadline, count = time.monotonic() + seconds, 0
    while time.monotonic() < deadline and count < limit:
        count += send(f"#{count}")
    return count


def messages_from(records, text):
    return [r for r in records if text in r.getMessage()]


def test_steady_state_sends_make_no_database_query(smtp_factory, configure_admin, settings):
    settings.SMTP_CONFIG_REFRESH_SECONDS = 0.01  # many polls of Redis during the 100 sends
    server = smtp_factory()
    configure_admin(server, sender_name="Before")
    send()
    store = get_store()

    with CaptureQueriesContext(connection) as queries:
        for i in range(100):
            if i == 50:
                # A change published to Redis only: the sends after it prove the polls
                # happened, and that they needed no database.
                _, snapshot = store.read()
                store.write({**snapshot, "sender_name": "After", "version": 99})
            send(f"#{i}")

    assert len(queries.captured_queries) == 0
    received = server.wait_for(101)
    assert received[1].message["From"] == "Before <noreply@example.com>"
    assert received[-1].message["From"] == "After <noreply@example.com>"


def test_queryset_update_publishes_a_new_snapshot(smtp_factory, configure_admin):
    first, second = smtp_factory(), smtp_factory()
    configure_admin(first)
    elsewhere = RouteResolver()  # another process's view: Redis only
    assert elsewhere.routes()[0].port == first.port

    AdminConfig.objects.filter(pk=1).update(smtp_port=second.port)

    elsewhere.refresh(force=True)
    assert elsewhere.routes()[0].port == second.port
    send()
    assert second.wait_for(1)


def test_redis_holds_the_password_only_as_ciphertext(
    smtp_factory, configure_admin, redis_client, settings
):
    server = smtp_factory("TLS", auth=True)
    configure_admin(server)
    AdminConfig.objects.update(sender_name="Updated")
    send()
    RouteResolver().routes()

    forms = [SMTP_PASSWORD.encode(), base64.b64encode(SMTP_PASSWORD.encode())]
    keys = list(redis_client.scan_iter("*"))
    assert any(b"snapshot" in key for key in keys)
    for key in keys:
        kind = redis_client.type(key)
        value = {
            b"string": lambda k: [redis_client.get(k)],
            b"list": lambda k: redis_client.lrange(k, 0, -1),
            b"hash": lambda k: [*redis_client.hkeys(k), *redis_client.hvals(k)],
            b"set": lambda k: list(redis_client.smembers(k)),
            b"zset": lambda k: redis_client.zrange(k, 0, -1),
        }[kind](key)
        blob = key + b"".join(value)
        for form in forms:
            assert form not in blob, key


def test_sends_continue_when_redis_stops(
    throwaway_redis, smtp_factory, configure_admin, settings, caplog
):
    settings.SMTP_CONFIG_REFRESH_SECONDS = 0.2
    server = smtp_factory()
    configure_admin(server)
    assert send() == 1
    throwaway_redis.kill()
    caplog.set_level(logging.INFO)

    with CaptureQueriesContext(connection) as queries:
        started = time.monotonic()
        sent = send_for(1.0)
        elapsed = time.monotonic() - started

    assert sent >= 10
    assert len(server.wait_for(1 + sent)) == 1 + sent
    # The database stands in for Redis at most once per refresh interval...
    assert 1 <= len(queries.captured_queries) <= elapsed / 0.2 + 1
    # ...and the outage is logged once, not once per message or per poll.
    assert len(messages_from(caplog.records, "Redis unreachable")) == 1
    assert not get_resolver().redis_available


def test_sends_continue_on_the_redis_snapshot_when_the_database_is_unreachable(
    smtp_factory, configure_admin, dead_port, tmp_path
):
    server = smtp_factory()
    configure_admin(server)
    resolver.reset_resolver()  # a process starting now knows only Redis

    with unreachable_database(dead_port, tmp_path):
        with pytest.raises(OperationalError):
            AdminConfig.objects.count()
        sent = sum(send(f"#{i}") for i in range(5))

    assert sent == 5
    assert len(server.wait_for(5)) == 5


def test_sends_continue_when_redis_and_the_database_are_both_gone(
    throwaway_redis, smtp_factory, configure_admin, settings, dead_port, tmp_path, caplog
):
    settings.SMTP_CONFIG_REFRESH_SECONDS = 0.2
    server = smtp_factory()
    configure_admin(server)
    send()
    throwaway_redis.kill()
    caplog.set_level(logging.INFO)

    with unreachable_database(dead_port, tmp_path):
        sent = send_for(0.8)

    assert sent >= 5
    assert len(server.wait_for(1 + sent)) == 1 + sent
    assert len(messages_from(caplog.records, "Redis unreachable")) == 1
    assert len(messages_from(caplog.records, "database unreachable")) == 1


def test_save_whose_publish_failed_reaches_other_processes_once_redis_takes_writes(
    throwaway_redis, smtp_factory, configure_admin, settings, caplog
):
    # A long interval: the saving process does not poll meanwhile, so only the failed
    # publish itself can tell it that Redis lags behind the database.
    settings.SMTP_CONFIG_REFRESH_SECONDS = 600
    first, second = smtp_factory(), smtp_factory()
    configure_admin(first)
    send()
    control = throwaway_redis.client()
    control.config_set("min-replicas-to-write", 1)  # Redis refuses writes, serves reads

    configure_admin(second)  # its publish to Redis fails
    send()  # this process already uses the saved row
    assert second.wait_for(1)
    assert messages_from(caplog.records, "not published to Redis")
    assert RouteResolver().routes()[0].port == first.port  # Redis still has the old one

    control.config_set("min-replicas-to-write", 0)
    get_resolver().refresh(force=True)  # the next poll of the saving process
    other_process = RouteResolver()
    assert other_process.routes()[0].port == second.port
    assert other_process.snapshot["version"] == AdminConfig.objects.get().version


def test_hung_redis_costs_a_poll_its_socket_timeout_and_mail_still_flows(
    throwaway_redis, smtp_factory, configure_admin, settings, caplog
):
    settings.SMTP_CONFIG_REFRESH_SECONDS = 0.3
    server = smtp_factory()
    configure_admin(server)
    send()
    throwaway_redis.pause()  # accepts connections, answers nothing
    caplog.set_level(logging.INFO)

    started = time.monotonic()
    sent = send_for(1.5)
    elapsed = time.monotonic() - started

    assert sent >= 3
    assert elapsed < 2.5  # each poll gives up after the store's 0.5 s socket timeout
    assert len(server.wait_for(1 + sent)) == 1 + sent
    assert len(messages_from(caplog.records, "Redis unreachable")) == 1
