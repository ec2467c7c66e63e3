"""gunicorn settings for the web process (see Dockerfile and docker-compose.yml).

Start-up runs Django's system checks, so a missing, malformed or wrong FIELD_ENCRYPTION_KEY
stops the server with the sentence that says what to do instead of failing on first send.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
errorlog = "-"
# Each worker builds its own Redis and SMTP state after the fork.
preload_app = False
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server):
    import django
    from django.core.management import call_command

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    call_command("check")
    # The check read the database in the arbiter; workers forked from it must not share
    # that connection (CONN_MAX_AGE keeps connections open).
    from django.db import connections

    connections.close_all()
