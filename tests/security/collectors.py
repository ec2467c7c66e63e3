"""Collect everything a scenario left behind, as ``finder.Source`` texts to search.

- ``LogCapture``: every log record of every logger at DEBUG, formatted in full (message,
  arguments, ``extra`` attributes, exception traceback, stack); the records of the test
  SMTP servers themselves (aiosmtpd's ``mail.log``: the peer's log, not the app's) are kept
  apart.
- ``ResponseRecorder``: every response a Django test client received (status, headers,
  cookies, body).
- ``BrokerCapture``: every task message published to the broker (headers and body), as
  Celery hands it to kombu.
- ``RedisMonitor``: every command any client sent to the test Redis database (``MONITOR``),
  so values that came and went (consumed task messages, expired keys) are searched too.
- ``redis_sources()``: every key and value in the test Redis database now; kombu messages
  decoded (base64 body).
- ``database_sources()``: ``dumpdata`` and a raw SQL read of every cell of every table,
  bytes decoded, sessions decoded.

Which tokens a source may hold is decided here, where its structure is known: the password
column, the config snapshot key, and the ``password_token`` of a test-connection task message.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import pickle
import re
import threading
from collections.abc import Iterable
from typing import Any

import redis
from celery.signals import before_task_publish
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from django.db import connection

from tests.security.finder import Source, views

TEST_CONNECTION_TASK = "smtp_settings.tasks.test_smtp_connection"
PASSWORD_TABLE, PASSWORD_COLUMN = "smtp_settings_adminconfig", "smtp_password"
PEER_LOGGERS = ("mail.log",)  # aiosmtpd: the test SMTP servers' own log
_STANDARD_RECORD_KEYS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


# -- logs --------------------------------------------------------------------------------------
class LogCapture(logging.Handler):
    """Attach to the root logger (and every logger that does not propagate) at DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        self.records: list[tuple[str, str, str]] = []  # (logger, level, full text)
        self._saved: dict[logging.Logger, tuple[int, bool, bool]] = {}
        self._attached: list[logging.Logger] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.full_text(record)
        except Exception as exc:  # a record that cannot be formatted is still searched
            text = f"<unformattable: {exc!r}> {record.__dict__!r}"
        self.records.append((record.name, record.levelname, text))

    def full_text(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_KEYS}
        parts = [self.format(record), f"args={record.args!r}", f"extra={extra!r}"]
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            parts.append(f"exception={exc!r} attributes={vars(exc)!r}")
        return "\n".join(parts)

    def install(self) -> LogCapture:
        """Everything at DEBUG from now on; the peer's log only here, not on the console."""
        self.cover_all_loggers()
        for name in PEER_LOGGERS:
            peer = logging.getLogger(name)
            self._remember(peer)
            peer.propagate = False
            self._attach(peer)
        return self

    def cover_all_loggers(self) -> None:
        """Lower every known logger to DEBUG; attach to the root and to every logger that
        does not propagate. Call again after something configured logging (the worker's
        start runs ``django.setup()``, whose dictConfig replaces the root's handlers)."""
        root = logging.getLogger()
        self._remember(root)
        root.setLevel(logging.DEBUG)
        self._attach(root)
        for logger in list(logging.root.manager.loggerDict.values()):
            if not isinstance(logger, logging.Logger):
                continue
            self._remember(logger)
            logger.setLevel(logging.DEBUG)
            logger.disabled = False
            if not logger.propagate:
                self._attach(logger)

    def _remember(self, logger: logging.Logger) -> None:
        self._saved.setdefault(logger, (logger.level, logger.propagate, logger.disabled))

    def _attach(self, logger: logging.Logger) -> None:
        if self not in logger.handlers:
            logger.addHandler(self)
        if logger not in self._attached:
            self._attached.append(logger)

    def uninstall(self) -> None:
        for logger in self._attached:
            logger.removeHandler(self)
        for logger, (level, propagate, disabled) in self._saved.items():
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled

    def app_records(self) -> list[tuple[str, str, str]]:
        return [r for r in self.records if not r[0].startswith(PEER_LOGGERS)]

    def peer_records(self) -> list[tuple[str, str, str]]:
        return [r for r in self.records if r[0].startswith(PEER_LOGGERS)]

    def sources(self) -> list[Source]:
        return [
            Source(f"log record #{n} {name} {level}", text)
            for n, (name, level, text) in enumerate(self.app_records())
        ]


# -- HTTP responses ----------------------------------------------------------------------------
class ResponseRecorder:
    """Wraps a test client's ``request`` so that every response is kept."""

    def __init__(self, client: Any) -> None:
        self.responses: list[tuple[str, Any]] = []
        original = client.request

        def request(**environ: Any) -> Any:
            response = original(**environ)
            where = f"{environ.get('REQUEST_METHOD', 'GET')} {environ.get('PATH_INFO', '')}"
            self.responses.append((where, response))
            return response

        client.request = request

    def sources(self) -> list[Source]:
        found = []
        for n, (where, response) in enumerate(self.responses):
            assert not response.streaming, f"{where}: a streaming response is not searched"
            headers = "\n".join(f"{k}: {v}" for k, v in response.items())
            text = f"{response.status_code}\n{headers}\n{response.cookies.output()}\n"
            found.append(Source(f"response #{n} {where}", text + response.content.decode()))
        return found


# -- the broker --------------------------------------------------------------------------------
def _task_token(task: str, kwargs: Any) -> frozenset[str]:
    """The one token a message may carry: a test-connection task's ``password_token``."""
    if task == TEST_CONNECTION_TASK and isinstance(kwargs, dict) and kwargs.get("password_token"):
        return frozenset({kwargs["password_token"]})
    return frozenset()


class BrokerCapture:
    """Every task message as published (``before_task_publish``)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _record(self, sender: str = "", body: Any = None, headers: Any = None, **kw: Any) -> None:
        with self._lock:
            self.messages.append({"task": sender, "headers": headers or {}, "body": body})

    def __enter__(self) -> BrokerCapture:
        before_task_publish.connect(self._record, weak=False)
        return self

    def __exit__(self, *exc: object) -> None:
        before_task_publish.disconnect(self._record)

    def typed_tokens(self) -> list[str]:
        return [
            token
            for m in self.messages
            if m["task"] == TEST_CONNECTION_TASK
            for token in _task_token(m["task"], m["body"][1])
        ]

    def sources(self) -> list[Source]:
        found = []
        for n, message in enumerate(self.messages):
            _args, kwargs, _embed = message["body"]
            text = json.dumps(
                {"headers": message["headers"], "body": message["body"]}, default=repr
            )
            found.append(
                Source(
                    f"broker message #{n} {message['task']}",
                    text,
                    _task_token(message["task"], kwargs),
                )
            )
        return found


class RedisMonitor:
    """``MONITOR`` on the Redis server, keeping the commands sent to the test database."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.db = self.client.connection_pool.connection_kwargs.get("db", 0)
        self.commands: list[str] = []
        self._stop = threading.Event()
        self._monitor = self.client.monitor()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RedisMonitor:
        self._monitor.__enter__()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                command = self._monitor.next_command()
            except (redis.RedisError, OSError, AttributeError):
                return
            if command and command["db"] == self.db:
                self.commands.append(command["command"])

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.client.ping()  # wakes the reader, which then sees the stop flag
        self._thread.join(timeout=5)
        self._monitor.__exit__()

    def sources(self, snapshot_key: str, stored_tokens: set[str]) -> list[Source]:
        return [
            Source(
                f"redis command #{n} {command[:40]}",
                command,
                _monitor_allowed(command, snapshot_key, stored_tokens),
            )
            for n, command in enumerate(self.commands)
        ]


_PASSWORD_TOKEN_VALUE = re.compile(r"""["']password_token["']:\s*["']([A-Za-z0-9_=-]+)["']""")


def _monitor_allowed(command: str, snapshot_key: str, stored_tokens: set[str]) -> frozenset[str]:
    """A snapshot write may carry a token the password column held; a test-connection
    message its own ``password_token`` (in its base64 body)."""
    if snapshot_key in command:
        return frozenset(_PASSWORD_TOKEN_VALUE.findall(command)) & stored_tokens
    if TEST_CONNECTION_TASK in command:
        return frozenset(t for view in views(command) for t in _PASSWORD_TOKEN_VALUE.findall(view))
    return frozenset()


# -- Redis now ---------------------------------------------------------------------------------
def _text(value: Any) -> str:
    if isinstance(value, bytes):
        if value[:1] == b"\x80":  # django-redis pickles what is not an integer
            try:
                return repr(pickle.loads(value))  # our own test database
            except Exception:
                pass
        return value.decode("utf-8", "replace")
    return str(value)


def _kombu_message(raw: str) -> tuple[str, frozenset[str]] | None:
    """A kombu message (or an ``unacked`` entry holding one), body decoded, and its token."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # unacked: [message, exchange, routing key]
    if not (isinstance(data, dict) and {"body", "headers"} <= data.keys()):
        return None
    body = data["body"]
    if data.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body).decode("utf-8", "replace")
    try:
        _args, kwargs, _embed = json.loads(body)
    except (ValueError, TypeError):
        kwargs = {}
    task = data["headers"].get("task", "")
    return f"{raw}\n{body}", _task_token(task, kwargs)


def _redis_values(client: redis.Redis, key: bytes) -> list[str]:
    kind = client.type(key).decode()
    if kind == "string":
        return [_text(client.get(key))]
    if kind == "hash":
        return [f"{_text(k)} = {_text(v)}" for k, v in client.hgetall(key).items()]
    if kind == "list":
        return [_text(v) for v in client.lrange(key, 0, -1)]
    if kind == "set":
        return [_text(v) for v in client.smembers(key)]
    if kind == "zset":
        return [f"{_text(v)} {score}" for v, score in client.zrange(key, 0, -1, withscores=True)]
    if kind == "stream":
        return [repr(client.xrange(key))]
    return [f"<{kind}>"]


def redis_sources(client: redis.Redis, snapshot_key: str, stored_tokens: set[str]) -> list[Source]:
    """Every key and value now. The snapshot may hold a token the password column held;
    a test-connection task message (queued or unacked) its own ``password_token``."""
    found = []
    for key in client.scan_iter(count=500):
        name = _text(key)
        for n, value in enumerate(_redis_values(client, key)):
            where = f"redis key {name}[{n}]"
            allowed: frozenset[str] = frozenset()
            if name == snapshot_key:
                allowed = frozenset({json.loads(value).get("password_token", "")}) & stored_tokens
            kombu = _kombu_message(value.split(" = ", 1)[-1])
            if kombu is not None:
                value, allowed = kombu
            found.append(Source(where, f"{name}\n{value}", allowed))
    return found


# -- the database ------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "" if value is None else str(value)


def _sql_cells() -> Iterable[tuple[str, str, int, str]]:
    """(table, column, row number, text) for every cell of every table."""
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            columns = [column[0] for column in cursor.description]
            for row_number, row in enumerate(cursor.fetchall()):
                for column, value in zip(columns, row, strict=True):
                    yield table, column, row_number, _cell(value)


def database_sources() -> list[Source]:
    found = []
    for table, column, row, text in _sql_cells():
        allowed = (
            frozenset({text}) if (table, column) == (PASSWORD_TABLE, PASSWORD_COLUMN) else None
        )
        found.append(Source(f"db {table}.{column} row {row}", text, allowed or frozenset()))
        if table == "django_session" and column == "session_data":
            decoded = SessionStore().decode(text)
            found.append(Source(f"db {table} row {row} decoded", json.dumps(decoded, default=repr)))
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    for obj in json.loads(dump.getvalue()):
        for name, value in obj["fields"].items():
            text = value if isinstance(value, str) else json.dumps(value)
            allowed = frozenset()
            if obj["model"] == "smtp_settings.adminconfig" and name == PASSWORD_COLUMN:
                allowed = frozenset({text})
            found.append(
                Source(f"dumpdata {obj['model']} pk={obj.get('pk')} {name}", text, allowed)
            )
    return found


def snapshot_key() -> str:
    return f"{settings.SMTP_CONFIG_REDIS_PREFIX}:snapshot"
