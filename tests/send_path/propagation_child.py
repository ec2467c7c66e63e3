"""A separate sending process for the propagation test and the benchmark.

Run as ``python -m tests.send_path.propagation_child STOP_FILE MAX_SECONDS`` with the test
settings in the environment. It sends with plain ``send_mail`` in a loop until STOP_FILE
exists (or MAX_SECONDS pass), counting every database query it makes, then prints one JSON
line: {"sent": n, "errors": n, "queries": n}. It reads its routes only from Redis: a
process in the steady state needs no database.
"""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]


def database_url(settings_dict: dict, fallback_sqlite: Path) -> str:
    """The parent's database for the child: the same PostgreSQL test database; for SQLite
    (an in-memory test database no other process can open) an empty file, so that any
    query the child made would fail rather than read someone else's data."""
    if settings_dict["ENGINE"].endswith("postgresql"):
        user = quote(settings_dict.get("USER") or "")
        password = quote(settings_dict.get("PASSWORD") or "")
        credentials = f"{user}:{password}@" if password else f"{user}@" if user else ""
        host, port = settings_dict.get("HOST") or "127.0.0.1", settings_dict.get("PORT") or 5432
        return f"postgres://{credentials}{host}:{port}/{settings_dict['NAME']}"
    return f"sqlite:///{fallback_sqlite}"


def spawn(stop_file: Path, max_seconds: float, **environment: str) -> subprocess.Popen:
    """Start the child with this process's environment plus ``environment``. Its log (a
    line per send) goes to a file beside STOP_FILE: a pipe nobody reads would fill up and
    block it."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **environment}
    with stop_file.with_suffix(".log").open("w") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.send_path.propagation_child",
                str(stop_file),
                str(max_seconds),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )


def finish(child: subprocess.Popen, stop_file: Path) -> dict[str, int]:
    """Ask the child to stop and return its counts."""
    stop_file.touch()
    out, _ = child.communicate(timeout=30)
    if child.returncode != 0:
        log = stop_file.with_suffix(".log").read_text()
        raise AssertionError(f"the sending child failed ({child.returncode}): {log[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def main(stop_file: str, max_seconds: float) -> dict[str, int]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django.core import mail
    from django.db import connection

    counts = {"sent": 0, "errors": 0, "queries": 0}

    def count_query(execute, sql, params, many, context):
        counts["queries"] += 1
        return execute(sql, params, many, context)

    deadline = time.monotonic() + max_seconds
    with connection.execute_wrapper(count_query):
        while not os.path.exists(stop_file) and time.monotonic() < deadline:
            try:
                counts["sent"] += mail.send_mail(
                    f"child #{counts['sent']}", "Body", None, ["child@example.net"]
                )
            except smtplib.SMTPException as exc:
                counts["errors"] += 1
                print(f"send failed: {exc}", file=sys.stderr, flush=True)
    return counts


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], float(sys.argv[2]))), flush=True)
