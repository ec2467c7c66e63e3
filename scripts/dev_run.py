"""``make run``: a development server that works on a fresh clone with no services running.

It migrates the database, creates a development superuser when there is none (printing its
random password once, storing it nowhere else), starts a debugging SMTP sink that prints
every message it receives, points the environment SMTP route at that sink unless
SMTP_SERVER is already set, and serves the app with ``runserver`` on 127.0.0.1. Without
REDIS_URL the cache is local memory and without CELERY_BROKER_URL tasks run eagerly
(config.settings decides both). On exit it stops everything it started, and nothing else.

Env: PORT (default 8000), DEV_SMTP_PORT (sink port, default 1025). For development only.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8000
DEFAULT_SINK_PORT = 1025
DEFAULT_ALLOWED_PORTS = "25,465,587,2525"
SUPERUSER_NAME = "admin"
STARTUP_SECONDS = 10.0
SINK_PORT_BUSY = (
    "The SMTP sink cannot listen on {address}: the port is in use (another make run?). "
    "Stop that, or set DEV_SMTP_PORT to a free port."
)
SINK_COMMAND = (sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Debugging")


def dev_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for the app's processes: DEBUG on, output unbuffered (so the sink's
    mail shows at once), the environment route at the sink unless SMTP_SERVER is set, and
    the sink's port allowed in the admin form."""
    env = dict(environ)
    env.setdefault("DEBUG", "true")
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    env["PYTHONUNBUFFERED"] = "1"
    sink_port = env.setdefault("DEV_SMTP_PORT", str(DEFAULT_SINK_PORT))
    if not env.get("SMTP_SERVER"):
        env.update(SMTP_SERVER=HOST, SMTP_PORT=sink_port, SMTP_SECURITY="NONE")
    raw_ports = env.get("SMTP_ALLOWED_PORTS") or DEFAULT_ALLOWED_PORTS
    ports = [port.strip() for port in raw_ports.split(",") if port.strip()]
    if sink_port not in ports:
        ports.append(sink_port)
    env["SMTP_ALLOWED_PORTS"] = ",".join(ports)
    return env


def ensure_dev_superuser() -> tuple[str, str] | None:
    """Create a superuser with a random password when none exists; return its credentials
    (the only time the password exists in clear), or None when one already exists."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    if user_model.objects.filter(is_superuser=True).exists():
        return None
    username = SUPERUSER_NAME
    if user_model.objects.filter(username=username).exists():
        username = f"{SUPERUSER_NAME}-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    user_model.objects.create_superuser(username=username, email="", password=password)
    return username, password


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def wait_for_port(port: int, process: subprocess.Popen, deadline: float) -> bool:
    """True once something accepts on HOST:port; False if ``process`` exits or time runs out."""
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def stop(process: subprocess.Popen | None) -> None:
    """Stop a child we started, and its own children: each runs in its own process group,
    whose id is the child's pid."""
    if process is None:
        return
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()
    # The group can outlive its leader: runserver's reloader runs the server as a child.
    _signal_group(process.pid, signal.SIGTERM)


def banner(http_port: int, sink_port: str, env: Mapping[str, str], login: tuple | None) -> str:
    if login:
        who = f"{login[0]} / {login[1]}   (shown once: note it or change it in admin)"
    else:
        who = "an existing superuser (add one with `manage.py createsuperuser`)"
    route = f"{env['SMTP_SERVER']}:{env.get('SMTP_PORT', '587')}"
    line = "=" * 72
    return "\n".join(
        [
            line,
            " smtp-admin development server",
            f" Admin:      http://{HOST}:{http_port}/admin/",
            f" Login:      {who}",
            f" Mail sink:  {HOST}:{sink_port} (every message it receives is printed here)",
            f" Env route:  SMTP_SERVER={route} (SMTP_SECURITY={env.get('SMTP_SECURITY', 'TLS')})",
            *(
                []
                if env.get("CELERY_BROKER_URL")
                else [
                    " Tasks:      run inline (no CELERY_BROKER_URL); mail that no route takes"
                    " is stored",
                    "             and retried only once a Celery worker and beat run.",
                ]
            ),
            line,
        ]
    )


def prepare(env: dict[str, str]) -> tuple[str, str] | None:
    """Migrate and make sure a superuser exists, in this process."""
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=1)
    return ensure_dev_superuser()


def first_health_check() -> None:
    """Probe the routes once, so the admin's health panel is not "untested" forever: in
    development no beat runs the periodic check."""
    from smtp_settings.health_tasks import run_health_check

    try:
        run_health_check()
    except Exception as exc:
        print(f"First health check failed: {exc.__class__.__name__}", file=sys.stderr)


def main() -> int:
    env = dev_environment(os.environ)
    http_port = int(env.get("PORT") or DEFAULT_HTTP_PORT)
    sink_port = env["DEV_SMTP_PORT"]
    # Turn SIGTERM into SystemExit so that the finally clause below stops the children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    login = prepare(env)
    sink = server = None
    if not port_is_free(int(sink_port)):
        print(SINK_PORT_BUSY.format(address=f"{HOST}:{sink_port}"), file=sys.stderr)
        return 1
    try:
        sink = subprocess.Popen(  # noqa: S603 - our own argv, no shell
            [*SINK_COMMAND, "-l", f"{HOST}:{sink_port}"],
            env=env,
            process_group=0,
        )
        if not wait_for_port(int(sink_port), sink, time.monotonic() + STARTUP_SECONDS):
            print(SINK_PORT_BUSY.format(address=f"{HOST}:{sink_port}"), file=sys.stderr)
            return 1
        first_health_check()
        print(banner(http_port, sink_port, env, login), flush=True)
        server = subprocess.Popen(  # noqa: S603 - our own argv, no shell
            [sys.executable, "manage.py", "runserver", f"{HOST}:{http_port}"],
            cwd=ROOT,
            env=env,
            process_group=0,
        )
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(server)
        stop(sink)


if __name__ == "__main__":
    sys.exit(main())
