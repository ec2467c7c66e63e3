"""A production-like stack in subprocesses, for end-to-end tests: gunicorn web processes, a
Celery worker and beat, on their own PostgreSQL database and Redis database number.

The stack uses ``config.settings`` (not the test settings), as a deployment would, with
everything configured through the environment. It always runs on PostgreSQL, whatever the
suite's own database is, because several processes must share it. Processes bind to
127.0.0.1 only; every wait has a deadline and says what it waited for when it gives up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import requests

from tests import waiting
from tests.smtp_servers import free_port

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_DSN = os.environ.get("E2E_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    """``tests.waiting.wait_until`` where a process that is still starting may raise."""
    return waiting.wait_until(condition, timeout, what, interval=0.05, ignoring=(Exception,))


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if not self.alive():
            return
        os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


@dataclass
class Stack:
    workdir: Path
    redis_db: int
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.database = f"smtp_e2e_{uuid.uuid4().hex[:10]}"
        self.static_root = self.workdir / "static"

    # -- environment ----------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("SMTP_", "BACKUP_SMTP_", "DJANGO_", "PYTEST", "TEST_"))
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{self.database}",
                "REDIS_URL": f"redis://127.0.0.1:6379/{self.redis_db}",
                "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{self.redis_db}",
                "SECRET_KEY": "e2e-secret-key-" + uuid.uuid4().hex,
                "FIELD_ENCRYPTION_KEY": "tTmOGy4nxdvhvZnNNdDdX5nd6RYCxQOQB4RZ0hmN9m8=",
                "DEBUG": "false",
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "STATIC_ROOT": str(self.static_root),
                "EMAIL_HEALTH_TOKEN": "e2e-health-token",
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": "INFO",
            }
        )
        env.update(self.extra_env)
        return env

    # -- database -------------------------------------------------------------------------------
    def create_database(self) -> None:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        self.manage("migrate", "--noinput")
        self.manage("collectstatic", "--noinput")

    def drop_database(self) -> None:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def manage(self, *args: str, input_text: str | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            input=input_text,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    # -- processes ------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], port: int | None = None) -> Process:
        log = self.workdir / f"{name}.log"
        handle = log.open("ab")
        popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process = Process(name, popen, log, port)
        self.processes.append(process)
        return process

    def start_web(self, name: str) -> Process:
        port = free_port()
        process = self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                "config/gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "config.wsgi:application",
            ],
            port,
        )
        wait_until(
            lambda: process.alive() and requests.get(f"{process.url}/admin/login/", timeout=2).ok,
            60,
            f"{name} to serve /admin/login/ ({process.log})",
        )
        return process

    def start_worker(self, name: str = "worker") -> Process:
        process = self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "1",
                "--pool",
                "prefork",
                "-n",
                f"{name}-{uuid.uuid4().hex[:6]}@%h",
            ],
        )
        wait_until(lambda: " ready." in process.output(), 60, f"{name} to be ready ({process.log})")
        return process

    def start_beat(self) -> Process:
        schedule = self.workdir / "celerybeat-schedule"
        process = self._spawn(
            "beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(schedule),
            ],
        )
        wait_until(
            lambda: "beat: Starting" in process.output(), 60, f"beat to start ({process.log})"
        )
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
