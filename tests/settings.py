"""Settings for the test suite: config.settings with test defaults in the environment.

Every default here can be overridden from the environment (CI sets DATABASE_URL for the
PostgreSQL run). Tests use their own Redis database number (TEST_REDIS_DB, default 9) so
that they never touch the data of a developer's running app.
"""

import os

_redis_db = os.environ.setdefault("TEST_REDIS_DB", "9")
os.environ.setdefault("REDIS_URL", f"redis://127.0.0.1:6379/{_redis_db}")
os.environ.setdefault("CELERY_BROKER_URL", f"redis://127.0.0.1:6379/{_redis_db}")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "tTmOGy4nxdvhvZnNNdDdX5nd6RYCxQOQB4RZ0hmN9m8=")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SMTP_ALLOWED_PORTS", "25,465,587,2525")
os.environ.setdefault("SMTP_CONFIG_REDIS_PREFIX", f"test{_redis_db}:smtp:config")
os.environ.setdefault("CACHE_KEY_PREFIX", f"test{_redis_db}")
os.environ.setdefault("DEFAULT_FROM_EMAIL", "app@example.com")
# The delivery log's flusher thread writes with a connection of its own, outside a test's
# transaction, so its rows would outlive the test: in tests, sent records reach the database
# when a test calls notifications.recorder.flush() (tests of the flusher shorten this).
os.environ.setdefault("EMAIL_DELIVERY_LOG_FLUSH_SECONDS", "3600")

from config.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
LOGGING["root"]["level"] = "INFO"  # noqa: F405 - tests read log records
# The test SMTP servers (aiosmtpd) log every command at INFO; only their problems matter here.
LOGGING["loggers"]["mail.log"] = {"level": "WARNING"}  # noqa: F405
# Serve static files from the apps' folders, as in development: tests never collectstatic.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
