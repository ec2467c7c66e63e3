"""Django settings for smtp-admin, read from the environment (django-environ).

Every value that differs between a laptop, CI and production comes from an environment
variable; the README lists each one. Nothing here may hold a secret in a default.
"""

from __future__ import annotations

from pathlib import Path

import environ

from config.encryption_keys import field_encryption_keys

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env(
    "SECRET_KEY",
    default="django-insecure-development-only-key" if DEBUG else environ.Env.NOTSET,
)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "solo",
    "smtp_settings",
    "notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (web, worker, beat) share one SQLite file in development: wait for
    # the write lock instead of failing at once. IMMEDIATE takes the write lock when a
    # transaction starts; a deferred one that reads first (the admin's stale-page check) and
    # then writes fails at once with "database is locked" if a worker wrote meanwhile.
    _sqlite_options = DATABASES["default"].setdefault("OPTIONS", {})
    _sqlite_options.setdefault("timeout", 20)
    _sqlite_options.setdefault("transaction_mode", "IMMEDIATE")
# Persistent connections: a Celery worker otherwise opens a new one per task (about 4 ms on
# PostgreSQL), which caps the retry queue. Health checks replace a connection that died.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("TEST", {})
if env.str("TEST_DATABASE_NAME", default=""):
    DATABASES["default"]["TEST"]["NAME"] = env.str("TEST_DATABASE_NAME")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and Redis ------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="smtp-admin"),
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
                # A cache outage must not take the admin down; the SMTP snapshot has its own
                # fallback (smtp_settings.resolver) and does not rely on this cache.
                "IGNORE_EXCEPTIONS": True,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Tasks must finish well inside the broker's visibility timeout, or the broker hands them
# to a second worker while the first still runs.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Modules with tasks beyond the autodiscovered ``tasks.py`` of each app.
CELERY_IMPORTS = ["smtp_settings.health_tasks"]
# One entry per periodic job; each part adds its own key (keep this a dict).
CELERY_BEAT_SCHEDULE: dict[str, dict] = {}

# --- Field encryption -----------------------------------------------------------------------
# FIELD_ENCRYPTION_KEY is a comma-separated list of Fernet keys: the first encrypts, every
# one decrypts. config.encryption_keys explains the placeholder given to the library.
(
    FIELD_ENCRYPTION_KEYS,
    FIELD_ENCRYPTION_KEY,
    FIELD_ENCRYPTION_KEY_PROBLEM,
    FIELD_ENCRYPTION_KEY_SOURCE,
) = field_encryption_keys(
    env.str("FIELD_ENCRYPTION_KEY", default=""),
    debug=DEBUG,
    dev_key_file=BASE_DIR / ".dev-field-key",
)

# --- SMTP routes ----------------------------------------------------------------------------
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="smtp_settings.backends.DynamicSMTPBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="webmaster@localhost")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
ADMINS = [tuple(a.split(":", 1)) for a in env.list("ADMINS", default=[]) if ":" in a]


def _route_env(prefix: str) -> dict:
    return {
        "server": env.str(f"{prefix}SMTP_SERVER", default=""),
        "port": env.int(f"{prefix}SMTP_PORT", default=587),
        "username": env.str(f"{prefix}SMTP_USERNAME", default=""),
        "password": env.str(f"{prefix}SMTP_PASSWORD", default=""),
        "security": env.str(f"{prefix}SMTP_SECURITY", default="TLS").upper(),
        "sender_email": env.str(f"{prefix}SMTP_SENDER_EMAIL", default=""),
        "sender_name": env.str(f"{prefix}SMTP_SENDER_NAME", default=""),
    }


SMTP_ENVIRONMENT_ROUTE = _route_env("")
SMTP_BACKUP_ROUTE = _route_env("BACKUP_")
SMTP_ADMIN_CONFIG_ENABLED = env.bool("SMTP_ADMIN_CONFIG_ENABLED", default=True)
SMTP_ALLOWED_PORTS = env.list("SMTP_ALLOWED_PORTS", cast=int, default=[25, 465, 587, 2525])
SMTP_TIMEOUT = env.float("SMTP_TIMEOUT", default=10.0)
SMTP_CONFIG_REFRESH_SECONDS = env.float("SMTP_CONFIG_REFRESH_SECONDS", default=1.0)
SMTP_CONFIG_REDIS_PREFIX = env.str("SMTP_CONFIG_REDIS_PREFIX", default="smtp:config")
SMTP_CONFIG_SNAPSHOT_TTL = env.int("SMTP_CONFIG_SNAPSHOT_TTL", default=300)
# Extra CA bundle for relays with a private CA (verification stays on; see README).
SMTP_CA_FILE = env.str("SMTP_CA_FILE", default="")
EMAIL_DELIVERY_LOG = env.bool("EMAIL_DELIVERY_LOG", default=True)
EMAIL_DEFER_ON_FAILURE = env.bool("EMAIL_DEFER_ON_FAILURE", default=True)
EMAIL_DELIVERY_RETENTION_DAYS = env.int("EMAIL_DELIVERY_RETENTION_DAYS", default=30)
EMAIL_HEALTH_TOKEN = env.str("EMAIL_HEALTH_TOKEN", default="")
EMAIL_HEALTH_CHECK_INTERVAL = env.int("EMAIL_HEALTH_CHECK_INTERVAL", default=300)
# Deferred mail older than this makes the email health "error" (mail is piling up).
EMAIL_HEALTH_DEFERRED_MAX_AGE = env.int("EMAIL_HEALTH_DEFERRED_MAX_AGE", default=3600)
# The health endpoint computes the health at most once per this many seconds per process.
EMAIL_HEALTH_CACHE_SECONDS = env.float("EMAIL_HEALTH_CACHE_SECONDS", default=1.0)
SMTP_TEST_RATE = env.str("SMTP_TEST_RATE", default="10/m")
# Anonymous password-reset requests send mail: limited per client address.
PASSWORD_RESET_RATE = env.str("PASSWORD_RESET_RATE", default="5/m")

CELERY_BEAT_SCHEDULE["email-health-check"] = {
    "task": "smtp_settings.health_tasks.run_email_health_check",
    "schedule": float(EMAIL_HEALTH_CHECK_INTERVAL),
    # A check queued while no worker ran is worthless once the next one is due.
    "options": {"expires": float(EMAIL_HEALTH_CHECK_INTERVAL)},
}

# --- Delivery log and deferred queue (notifications) ----------------------------------------
# Sent records are buffered per process and bulk-written at most this many seconds behind;
# the buffer keeps at most EMAIL_DELIVERY_LOG_BUFFER records while the database is down.
EMAIL_DELIVERY_LOG_FLUSH_SECONDS = env.float("EMAIL_DELIVERY_LOG_FLUSH_SECONDS", default=1.0)
EMAIL_DELIVERY_LOG_BUFFER = env.int("EMAIL_DELIVERY_LOG_BUFFER", default=10000)
# Deferred mail: exponential backoff from BASE, capped at MAX, given up (failed) after GIVE_UP.
EMAIL_RETRY_BASE_SECONDS = env.float("EMAIL_RETRY_BASE_SECONDS", default=60.0)
EMAIL_RETRY_MAX_SECONDS = env.float("EMAIL_RETRY_MAX_SECONDS", default=3600.0)
EMAIL_RETRY_GIVE_UP_SECONDS = env.float("EMAIL_RETRY_GIVE_UP_SECONDS", default=3 * 86400.0)
# A worker's claim on a message it is sending; must outlast one send (CELERY_TASK_TIME_LIMIT).
EMAIL_SENDING_LEASE_SECONDS = env.float("EMAIL_SENDING_LEASE_SECONDS", default=300.0)
EMAIL_RETRY_SWEEP_SECONDS = env.float("EMAIL_RETRY_SWEEP_SECONDS", default=30.0)
CELERY_BEAT_SCHEDULE["notifications-sweep-deliveries"] = {
    "task": "notifications.sweep_deliveries",
    "schedule": EMAIL_RETRY_SWEEP_SECONDS,
    "options": {"expires": EMAIL_RETRY_SWEEP_SECONDS},
}
CELERY_BEAT_SCHEDULE["notifications-purge-sent-deliveries"] = {
    "task": "notifications.purge_sent_deliveries",
    "schedule": 86400.0,
}

# --- Auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django": {"level": "INFO", "propagate": True},
    },
}
