"""Fixtures for the delivery-log tests: an empty write buffer per test, short retry timings, a
database that other threads and processes can share, and Celery workers in subprocesses.

``shared_db``: on PostgreSQL the test database itself (transactional tests commit, so a
subprocess sees the rows). On SQLite, pytest-django's in-memory database cannot be opened
by another process and fails concurrent writers from several threads at once ("database
table is locked"), unlike a real SQLite file; so for the length of the test the default
connection is pointed at a migrated SQLite file, as production SQLite is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connections

from notifications.buffer import buffer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _empty_delivery_buffer() -> Iterator[None]:
    """No record buffered by an earlier test reaches this test's database, and the flusher
    thread restarts (with the connection settings of this test)."""
    buffer.discard()
    yield
    buffer.discard()


@pytest.fixture
def fast_retries(settings):
    """Retry timings in tenths of a second instead of minutes."""
    settings.EMAIL_RETRY_BASE_SECONDS = 0.3
    settings.EMAIL_RETRY_MAX_SECONDS = 1.0
    settings.EMAIL_RETRY_GIVE_UP_SECONDS = 3600
    settings.EMAIL_SENDING_LEASE_SECONDS = 60
    settings.EMAIL_DELIVERY_LOG_FLUSH_SECONDS = 0.1
    settings.EMAIL_DELIVERY_LOG = True
    settings.EMAIL_DEFER_ON_FAILURE = True
    return settings


# -- a database other threads and processes can open ---------------------------------------
@dataclass
class SharedDatabase:
    url: str
    path: Path | None = None  # the SQLite file, when it is one


def _postgres_url(values: dict) -> str:
    user = quote(values.get("USER") or "", safe="")
    password = quote(values.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = values.get("HOST") or "127.0.0.1"
    port = values.get("PORT") or "5432"
    return f"postgres://{auth}{host}:{port}/{values['NAME']}"


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per session; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{path}"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=REPO,
        env=env,
        check=True,
        timeout=120,
    )
    return path


@pytest.fixture
def shared_db(transactional_db, request, tmp_path: Path) -> Iterator[SharedDatabase]:
    connection = connections["default"]
    if connection.vendor == "postgresql":
        yield SharedDatabase(url=_postgres_url(connection.settings_dict))
        return
    if not connection.is_in_memory_db():
        path = Path(connection.settings_dict["NAME"])
        yield SharedDatabase(url=f"sqlite:///{path}", path=path)
        return
    path = tmp_path / "shared.sqlite3"
    shutil.copy(request.getfixturevalue("migrated_sqlite_template"), path)
    settings_dict = connections.settings["default"]  # shared by every thread's wrapper
    saved_name, saved_connection = settings_dict["NAME"], connection
    buffer.discard()
    settings_dict["NAME"] = str(path)
    del connections["default"]
    try:
        yield SharedDatabase(url=f"sqlite:///{path}", path=path)
    finally:
        buffer.discard()
        with contextlib.suppress(Exception):
            connections["default"].close()
        del connections["default"]
        settings_dict["NAME"] = saved_name
        connections["default"] = saved_connection


# -- Celery workers in their own processes ---------------------------------------------------
class WorkerProcess:
    """``celery -A config worker`` in a subprocess, on the test broker and ``shared_db``."""

    def __init__(self, name: str, db: SharedDatabase, log: Path, env: dict[str, str]) -> None:
        self.name, self.log = name, log
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": db.url,
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.env.pop("TEST_DATABASE_NAME", None)
        self.process: subprocess.Popen | None = None

    def start(self, *, beat: bool = False) -> WorkerProcess:
        command = [
            str(Path(sys.executable).with_name("celery")),
            "-A",
            "config",
            "worker",
            "-P",
            "solo",
            "-n",
            f"{self.name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
        ]
        if beat:
            command += ["-B", "-s", str(self.log.with_suffix(".beat"))]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


@pytest.fixture
def worker_process(
    shared_db: SharedDatabase, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def make(name: str, **env: object) -> WorkerProcess:
        worker = WorkerProcess(
            name, shared_db, tmp_path / f"{name}.log", {k: str(v) for k, v in env.items()}
        )
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()


@pytest.fixture
def live_worker(shared_db: SharedDatabase, celery_worker) -> object:
    """The in-process Celery worker, started after ``shared_db`` so it uses that database."""
    return celery_worker
