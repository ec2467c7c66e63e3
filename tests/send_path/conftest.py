"""Fixtures for the send path: a throwaway Redis server to kill, a database that cannot be
reached, a server that loses the line after taking the whole message, and helpers that
count Message-IDs across servers.

Everything binds to 127.0.0.1 and is started and stopped by the fixture that made it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connections

from tests.smtp_servers import HOST, RawServer, free_port


@pytest.fixture(autouse=True)
def _bare_send_path(settings) -> Iterator[None]:
    """The send path on its own: no delivery log, and no deferred queue, so that a message
    no route took raises the last route's error (the notifications tests cover the rest).

    Failed sends are still handed to the delivery log's buffer, whose flusher thread would
    write them into a later test's database: it is emptied and stopped around each test."""
    from notifications.buffer import buffer

    settings.EMAIL_DELIVERY_LOG = False
    settings.EMAIL_DEFER_ON_FAILURE = False
    buffer.discard()
    yield
    buffer.discard()


# -- Redis that a test may stop ----------------------------------------------------------------
class ThrowawayRedis:
    """A redis-server of its own on a free port, with nothing persisted."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    def start(self) -> ThrowawayRedis:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.RedisError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the throwaway redis-server did not start") from None
                time.sleep(0.02)  # polling a process that is starting: nothing to wait on

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """A hung Redis: the port accepts, nothing answers; its data stays."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@pytest.fixture
def throwaway_redis(settings, tmp_path: Path) -> Iterator[ThrowawayRedis]:
    """Point REDIS_URL (the snapshot store) at a redis-server this test may kill."""
    server = ThrowawayRedis(tmp_path).start()
    settings.REDIS_URL = server.url
    try:
        yield server
    finally:
        if server.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                server.resume()
        server.kill()


# -- a database that cannot be reached ---------------------------------------------------------
@contextlib.contextmanager
def unreachable_database(dead_port: int, tmp_path: Path) -> Iterator[None]:
    """Replace the default connection with one to a database that is not there: a closed
    PostgreSQL port, or an SQLite file in a directory that does not exist. Queries really
    go to the driver and really fail."""
    original = connections["default"]
    settings_dict = dict(original.settings_dict)
    if original.vendor == "sqlite":
        settings_dict["NAME"] = str(tmp_path / "no-such-dir" / "db.sqlite3")
    else:
        settings_dict.update(HOST=HOST, PORT=str(dead_port))
    broken = type(original)(settings_dict, alias="default")
    connections["default"] = broken
    try:
        yield
    finally:
        broken.close()
        connections["default"] = original


# -- a server that takes the whole message and never answers -----------------------------------
class SwallowServer(RawServer):
    """Speaks SMTP up to DATA, reads the whole message, then drops the line without a reply.

    The client cannot know whether the message was accepted; ``received`` holds what this
    server got, so a test can show it may have been delivered. ``after_data``, if given, is
    sent instead of an answer (e.g. a garbled, overlong line) before the line drops."""

    def __init__(self, after_data: bytes = b"") -> None:
        super().__init__("swallow")
        self.after_data = after_data
        self.received: list[bytes] = []

    def _talk(self, conn: socket.socket) -> None:
        # RawServer accepts and runs this per connection; the line drops when it returns.
        with conn, conn.makefile("rb") as reader:
            self._converse(conn, reader)

    def _converse(self, conn: socket.socket, reader: Any) -> None:
        conn.settimeout(5)
        conn.sendall(b"220 swallow.test ESMTP\r\n")
        try:
            while line := reader.readline():
                command = line.strip().upper()
                if command.startswith((b"EHLO", b"HELO")):
                    conn.sendall(b"250 swallow.test\r\n")
                elif command == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    body = b""
                    while (chunk := reader.readline()) not in (b".\r\n", b""):
                        body += chunk
                    self.received.append(body)
                    if self.after_data:
                        conn.sendall(self.after_data)
                    return  # the whole message is here; a real answer never goes out
                elif command == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 OK\r\n")
        except OSError:
            return


@pytest.fixture(params=[b"", b"2" * 9000], ids=["no-answer", "overlong-answer"])
def swallow_server(request) -> Iterator[SwallowServer]:
    server = SwallowServer(after_data=request.param).start()
    yield server
    server.stop()


# -- helpers -----------------------------------------------------------------------------------
def message_id_counts(*servers: object) -> Counter:
    """How many times each Message-ID arrived, over all ``servers``."""
    counts: Counter = Counter()
    for server in servers:
        counts.update(server.recorder.message_ids())
    return counts


@pytest.fixture
def dead_port() -> int:
    return free_port()


@pytest.fixture
def send_plain() -> Callable[..., int]:
    """``send_plain(n)``: n messages through ``send_mail`` with Django's defaults."""
    from django.core import mail

    def send(count: int = 1, **kwargs: object) -> int:
        return sum(
            mail.send_mail(f"Message {i}", "Body", None, ["user@example.net"], **kwargs)
            for i in range(count)
        )

    return send
