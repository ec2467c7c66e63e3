"""Benchmark: GET /admin/health/email under load, against a trivial JSON view.

Both are served by the same gunicorn (2 sync workers) in the same run, on loopback, with
the bearer token a monitor would send; wrk generates the load (a threaded Python client
when wrk is not installed: `apt-get install wrk`). Rounds alternate between the two URLs
and the medians are compared. Prints requests per second and p99 latency for each, and the
throughput ratio health / trivial (target >= 0.8; exit 1 below it). It also checks that
the load opened no SMTP connection: the health endpoint serves recorded probe results.

Setup: a throwaway SQLite database, a real aiosmtpd server as the admin route, one real
health check (probe + record) before the load. Redis: BENCH_REDIS_URL (default
redis://127.0.0.1:6379/14), keys under the "bench:" prefix only.

Usage: .venv/bin/python bench/health_endpoint.py [--duration 10] [--connections 16]
       [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
TRIVIAL, HEALTH = "/bench/trivial", "/admin/health/email"


def bench_env(workdir: Path, token: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "BACKUP_SMTP_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="health_site",
        PYTHONPATH=f"{BENCH}{os.pathsep}{ROOT}",
        DATABASE_URL=f"sqlite:///{workdir / 'bench.sqlite3'}",
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        CELERY_BROKER_URL="",
        SMTP_CONFIG_REDIS_PREFIX="bench:smtp:config",
        CACHE_KEY_PREFIX="bench",
        SECRET_KEY=secrets.token_urlsafe(32),
        FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        EMAIL_HEALTH_TOKEN=token,
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1",
        LOG_LEVEL="WARNING",
        EMAIL_DELIVERY_LOG="false",
    )
    return env


def prepare(env: dict[str, str]):
    """Migrate, point the admin route at a real SMTP server, run one health check."""
    os.environ.update(env)
    sys.path[:0] = [str(BENCH), str(ROOT)]
    import django

    django.setup()
    from django.core.management import call_command

    from smtp_settings.health_tasks import run_health_check
    from smtp_settings.models import AdminConfig
    from tests.smtp_servers import SmtpServer

    call_command("migrate", verbosity=0)
    server = SmtpServer().start()
    config = AdminConfig.get_solo()
    config.smtp_enabled, config.smtp_server, config.smtp_port = True, server.host, server.port
    config.smtp_security, config.sender_email = "NONE", "bench@example.com"
    config.save()
    status = run_health_check()["status"]
    if status != "healthy":
        raise SystemExit(f"setup: the health check says {status!r}, expected 'healthy'")
    return server


def start_gunicorn(env: dict[str, str], port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--workers", "2"]
    command += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--chdir", str(ROOT)]
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{TRIVIAL}", timeout=1).close()
            return process
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("gunicorn did not answer within 30 s")


# -- load generators ----------------------------------------------------------------------------
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, token: str, duration: int, connections: int) -> tuple[float, float]:
    """(requests per second, p99 latency in ms)."""
    out = subprocess.run(
        [
            *("wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency"),
            *("-H", f"Authorization: Bearer {token}", url),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx or 3xx responses" in out:
        raise SystemExit(f"{url} answered errors under load:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    return rps, float(value) * UNITS[unit]


def run_threads(url: str, token: str, duration: int, connections: int) -> tuple[float, float]:
    """The same measurement with threads, for machines without wrk."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + duration
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})

    def worker() -> None:
        mine = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    return len(latencies) / duration, latencies[int(len(latencies) * 0.99) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per round and URL")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    token = secrets.token_urlsafe(24)
    load = run_wrk if shutil.which("wrk") else run_threads
    with tempfile.TemporaryDirectory() as tmp:
        env = bench_env(Path(tmp), token)
        server = prepare(env)
        sessions_before = server.recorder.sessions
        from tests.smtp_servers import free_port

        port = free_port()
        gunicorn = start_gunicorn(env, port)
        try:
            results: dict[str, list[tuple[float, float]]] = {TRIVIAL: [], HEALTH: []}
            for _ in range(args.rounds):
                for path in (TRIVIAL, HEALTH):
                    url = f"http://127.0.0.1:{port}{path}"
                    results[path].append(load(url, token, args.duration, args.connections))
        finally:
            gunicorn.terminate()
            gunicorn.wait(timeout=30)
            server.stop()
    opened = server.recorder.sessions - sessions_before

    def summary(path: str) -> tuple[float, float]:
        rows = results[path]
        return statistics.median(r for r, _ in rows), statistics.median(p for _, p in rows)

    (t_rps, t_p99), (h_rps, h_p99) = summary(TRIVIAL), summary(HEALTH)
    ratio = h_rps / t_rps
    print(f"load generator: {'wrk' if load is run_wrk else 'python threads'}, gunicorn 2 workers,")
    print(f"  {args.connections} connections, {args.rounds} rounds x {args.duration} s per URL")
    print(f"trivial JSON view : {t_rps:8.0f} req/s   p99 {t_p99:6.2f} ms")
    print(f"health endpoint   : {h_rps:8.0f} req/s   p99 {h_p99:6.2f} ms")
    print(f"throughput ratio health / trivial: {ratio:.2f} (target >= 0.80)")
    print(f"SMTP sessions opened during the load: {opened}")
    return 0 if ratio >= 0.8 and opened == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
