"""A save in one process reaches another process (a real second Python process) within the
refresh interval plus 0.2 s, and that process reads nothing but Redis to get there."""

import random
import time

import pytest
from django.conf import settings as django_settings
from django.db import connection

from smtp_settings.models import AdminConfig
from tests.send_path.propagation_child import database_url, finish, spawn

pytestmark = pytest.mark.django_db(transaction=True)

SWITCHES = 10


def test_save_reaches_a_sending_process_within_the_refresh_interval(
    smtp_factory, configure_admin, ca_file, tmp_path
):
    interval = django_settings.SMTP_CONFIG_REFRESH_SECONDS
    servers = [smtp_factory("TLS", auth=True), smtp_factory("TLS", auth=True)]
    configure_admin(servers[0])
    stop_file = tmp_path / "stop"
    child = spawn(
        stop_file,
        120,
        SMTP_CA_FILE=str(ca_file),
        SMTP_CONFIG_REFRESH_SECONDS=str(interval),
        EMAIL_DELIVERY_LOG="false",
        DATABASE_URL=database_url(connection.settings_dict, tmp_path / "child.sqlite3"),
    )
    try:
        servers[0].wait_for(1, timeout=60)  # the child is up and sending
        delays = []
        for switch in range(1, SWITCHES + 1):
            target = servers[switch % 2]
            time.sleep(random.uniform(0, interval))  # save at a random moment of the poll cycle
            before = len(target.messages)
            saved_at = time.monotonic()
            if switch % 2:
                configure_admin(target)
            else:  # a bulk update must not bypass the publish
                AdminConfig.objects.update(smtp_port=target.port)
            target.wait_for(before + 1, timeout=10)
            delays.append(time.monotonic() - saved_at)
    finally:
        counts = finish(child, stop_file)

    assert max(delays) <= interval + 0.2, delays
    assert counts["errors"] == 0
    assert counts["queries"] == 0  # the child never needed the database
    assert counts["sent"] == sum(len(server.messages) for server in servers)
