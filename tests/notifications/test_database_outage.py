"""The database goes away while mail is being sent: the mail still goes out (the send path
needs no database), the records wait in memory, and they are written once it is back.

The outage is real: the shared connection settings point at a PostgreSQL port where nothing
listens, or at an SQLite file in a directory that does not exist, and every open
connection is closed, so each new query really fails in the driver.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core import mail
from django.db import connections

from notifications import recorder
from notifications.models import Delivery, Status
from tests.smtp_servers import free_port
from tests.waiting import wait_until


@contextmanager
def database_down(tmp_path: Path) -> Iterator[None]:
    values = connections.settings["default"]  # the dict every thread's connection is built from
    saved = {key: values.get(key) for key in ("NAME", "HOST", "PORT")}
    if connections["default"].vendor == "sqlite":
        values["NAME"] = str(tmp_path / "no-such-directory" / "db.sqlite3")
    else:
        values.update(HOST="127.0.0.1", PORT=str(free_port()))
    connections["default"].close()
    try:
        yield
    finally:
        connections["default"].close()
        values.update(saved)


@pytest.mark.django_db(transaction=True)
def test_sends_go_out_while_the_database_is_down_and_are_logged_when_it_is_back(
    shared_db, smtp_factory, configure_admin, fast_retries, tmp_path, caplog
):
    server = smtp_factory()
    configure_admin(server)
    assert mail.send_mail("Before", "Body", None, ["user@example.net"]) == 1
    assert recorder.flush() is True

    with caplog.at_level(logging.WARNING, logger="notifications.buffer"), database_down(tmp_path):
        with pytest.raises(Exception) as refused:
            Delivery.objects.count()  # the outage is real
        sent = [mail.send_mail(f"During {n}", "Body", None, ["u@example.net"]) for n in range(3)]
        assert sent == [1, 1, 1]  # the sends did not need the database
        assert len(server.wait_for(4)) == 4
        assert recorder.flush() is False  # nothing can be written now...
        assert recorder.pending() == 3  # ...and nothing is lost
        assert any("cannot write 3 record(s)" in r.getMessage() for r in caplog.records)
    assert "unable to open" in str(refused.value) or "connect" in str(refused.value).lower()

    # Back: the flusher thread writes them on its own (no explicit flush).
    wait_until(lambda: Delivery.objects.count() == 4, timeout=40, what="records written")
    received = {m.message_id for m in server.messages}
    assert set(Delivery.objects.values_list("message_id", flat=True)) == received
    assert set(Delivery.objects.values_list("status", flat=True)) == {Status.SENT}
    assert recorder.pending() == 0
