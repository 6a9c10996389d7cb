"""slaboard settings: one file, driven by environment variables with local defaults.

Production values come only from the environment (see README "Configuration").
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

DEV_SECRET_KEY = "dev-insecure-slaboard-secret-key-do-not-use-in-production"


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1/0, true/false, yes/no).")


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def database_from_url(url: str, *, pool: dict[str, Any] | None = None) -> dict[str, Any]:
    """Turn a DATABASE_URL into a Django DATABASES entry.

    Supports ``sqlite:///relative/or/absolute.sqlite3`` and
    ``postgres://user:password@host:port/name?option=value``. Kept in-house: two schemes do
    not justify a dependency. ``pool``: psycopg_pool options for PostgreSQL (None: no pool).
    """
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        raw = unquote(parts.path)
        # sqlite:///var/db.sqlite3 is relative to the project; sqlite:////abs/path is absolute.
        name = raw[1:] if raw.startswith("/") else raw
        path = Path(name) if Path(name).is_absolute() else BASE_DIR / name
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(path),
            "OPTIONS": {
                # Web, worker and beat share one file: WAL lets readers run beside a writer,
                # the busy timeout makes a writer wait instead of failing with "locked", and
                # IMMEDIATE transactions take the write lock up front (no upgrade deadlocks).
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
            },
        }
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        options: dict[str, Any] = dict(parse_qsl(parts.query))
        if pool:
            # Django's built-in psycopg pool (one per process): a process never holds more
            # than max_size connections, and a request that waits longer than `timeout` for
            # one gets a 503 with Retry-After (slaboard/middleware.py), not a 500.
            options["pool"] = pool
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")) or "slaboard",
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": options,
            # Must stay 0 under ASGI: persistent connections leak across async threads. With a
            # pool it must be 0 too (Django refuses otherwise): the pool keeps connections.
            "CONN_MAX_AGE": 0,
            # A pooled connection is checked before use, so one broken by a database restart
            # is replaced instead of failing a request.
            "CONN_HEALTH_CHECKS": bool(pool),
        }
    raise ImproperlyConfigured(
        f"DATABASE_URL scheme {parts.scheme!r} is not supported; use sqlite:/// or postgres://."
    )


DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY", DEV_SECRET_KEY)
if not SECRET_KEY.strip():
    raise ImproperlyConfigured(
        "SECRET_KEY is empty. Set SECRET_KEY in the environment "
        "(for example: python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is the development default. Set SECRET_KEY in the environment "
        "(for example: python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",  # must come before staticfiles: runserver becomes an ASGI server with websockets
    "slaboard.admin_site.AdminConfig",  # django.contrib.admin, for your own staff only
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",  # login throttling (see AXES_* below)
    "django_htmx",
    "ninja",
    "tickets",
    "policies",
    "dashboard",
    "slaboard",  # the project: demo data and the traffic simulator (its management commands)
]

MIDDLEWARE = [
    # First: a request id for every log line, and the one access line per request.
    "slaboard.middleware.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # PostgreSQL down, restarting or saturated: 503 + Retry-After (JSON or a page), never a 500.
    "slaboard.middleware.DatabaseUnavailableMiddleware",
    "slaboard.security.BodyLimitMiddleware",  # 413 beyond the API's and the pages' limits
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",  # Content-Security-Policy (CONTENT_SECURITY_POLICY below)
    "axes.middleware.AxesMiddleware",  # answers 429 to a locked-out login; keep it last
]

ROOT_URLCONF = "slaboard.urls"
ASGI_APPLICATION = "slaboard.asgi.application"

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

DATABASE_URL = env_str("DATABASE_URL", "sqlite:///var/slaboard.sqlite3")


def database_pool() -> dict[str, Any] | None:
    """PostgreSQL connection pool options from DB_POOL_MIN/MAX/TIMEOUT (DB_POOL_MAX=0: none).

    Per process: size PostgreSQL's max_connections for (web processes + worker processes) x
    DB_POOL_MAX plus headroom (docs/deployment.md). MIN stays small: Celery closes the pool
    around every task in its prefork workers, so a larger minimum would only open connections
    nobody uses.
    """
    max_size = int(env_str("DB_POOL_MAX", "10"))
    if max_size <= 0:
        return None
    min_size = min(int(env_str("DB_POOL_MIN", "1")), max_size)
    return {
        "min_size": min_size,
        "max_size": max_size,
        "timeout": float(env_str("DB_POOL_TIMEOUT", "5")),
    }


DATABASES = {"default": database_from_url(DATABASE_URL, pool=database_pool())}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "tickets.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"

LANGUAGE_CODE = "en"
USE_I18N = False
USE_TZ = True  # storage and arithmetic are UTC, always aware
TIME_ZONE = env_str("TIME_ZONE", "UTC")  # display only

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"  # filled by `manage.py collectstatic` in production
# WhiteNoise serves static files from the ASGI app; finders let it work before collectstatic.
WHITENOISE_USE_FINDERS = True
with contextlib.suppress(OSError):
    STATIC_ROOT.mkdir(exist_ok=True)

# Request bodies: the API's documented calls fit in API_MAX_BODY_MB (docs/api.md); pages keep
# Django's 2.5 MB. BodyLimitMiddleware answers 413 beyond them; Django's own limit is the larger.
API_MAX_BODY_BYTES = int(float(env_str("API_MAX_BODY_MB", "32")) * 1_000_000)
PAGE_MAX_BODY_BYTES = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = max(API_MAX_BODY_BYTES, PAGE_MAX_BODY_BYTES)

# Ticket sources whose replies, plans and resolutions are recorded in slaboard itself (the
# agent queue's buttons); tickets from other sources are answered in their own system.
SLABOARD_MANAGED_SOURCES = env_list("MANAGED_SOURCES", ["slaboard", "demo", "sim"])

# Live screens get a heartbeat this often and call themselves stale after missing two.
HEARTBEAT_SECONDS = float(env_str("HEARTBEAT_SECONDS", "15"))

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

# The PubSub layer keeps group membership for as long as the socket lives (the core layer's
# group_expiry silently drops wall screens after a day). socket_timeout None: idle screens
# must not be disconnected by the client's read timeout.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": None, "max_connections": 1000}],
            "prefix": env_str("CHANNEL_PREFIX", "slaboard"),
        },
    }
}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery 5.7.0's consumer dies when the broker goes away while a task runs; this subclass
# fixes it (the cause is explained in slaboard/celery.py).
CELERY_WORKER_CONSUMER = "slaboard.celery:Consumer"
# On a broker connection loss a running task finishes (its late ack reaches Redis when it is
# back) instead of being killed half-way: every task here is idempotent and a killed delivery
# would wait for its lease to expire.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Two queues, one worker each, so slow work never delays the live path:
# - realtime: the minute tick and publishing to screens (short, frequent, time-critical);
# - background: notification delivery (waits on mail servers and webhook receivers) and the
#   re-sync of open clocks after a policy edit (long). Unrouted tasks go there too.
CELERY_TASK_DEFAULT_QUEUE = "background"
CELERY_TASK_ROUTES = {
    "policies.tick": {"queue": "realtime"},
    "dashboard.publish": {"queue": "realtime"},
    "policies.deliver_notifications": {"queue": "background"},
    "policies.resync_open_clocks": {"queue": "background"},
}
# Never schedule ETA tasks further ahead than this: the broker re-delivers them after it.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
# Every entry expires before the next one is due, so a backlog after downtime is dropped
# instead of replayed (the tick itself catches up everything in one run).
# TICK_SECONDS is the beat period of the SLA tick: 60 in production (the end-to-end test that
# watches a real worker and beat shortens it).
TICK_SECONDS = float(env_str("TICK_SECONDS", "60"))
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "tick-sla-clocks-every-minute": {
        "task": "policies.tick",
        "schedule": TICK_SECONDS,
        "options": {"expires": max(1.0, TICK_SECONDS - 5)},
    },
    # Retries, quiet-hours deferrals and level-3 escalations fall due without any new change:
    # this sweep delivers them (new notifications are also sent at once, on commit).
    "deliver-notifications-every-minute": {
        "task": "policies.deliver_notifications",
        "schedule": 60.0,
        "options": {"expires": 55.0},
    },
}

# Health (/readyz, the boards' warning; docs/deployment.md "Health"): the tick is late when the
# watermark is older than TICK_LATE_SECONDS; a queue has no worker when none of its tasks
# finished for WORKER_LATE_SECONDS (beat sends each queue a task every minute); notifications
# are late when the oldest due one waited NOTIFICATION_LATE_SECONDS; a web process whose clock
# is further than CLOCK_SKEW_LIMIT_SECONDS from the database's is not ready.
TICK_LATE_SECONDS = float(env_str("TICK_LATE_SECONDS", str(max(30.0, 2.5 * TICK_SECONDS))))
WORKER_LATE_SECONDS = float(env_str("WORKER_LATE_SECONDS", str(max(30.0, 2.5 * 60))))
NOTIFICATION_LATE_SECONDS = float(env_str("NOTIFICATION_LATE_SECONDS", "600"))
CLOCK_SKEW_LIMIT_SECONDS = float(env_str("CLOCK_SKEW_LIMIT_SECONDS", "5"))
# /metrics answers only a request with "Authorization: Bearer <METRICS_TOKEN>"; empty: 404.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

# Notifications (docs/notifications.md). SITE_URL makes the links in messages absolute.
# A delivery task sends up to NOTIFICATION_CONCURRENCY messages side by side (1: one by one).
NOTIFICATION_CONCURRENCY = max(1, int(env_str("NOTIFICATION_CONCURRENCY", "8")))
SITE_URL = env_str("SITE_URL", f"http://localhost:{env_str('PORT', '8000')}").rstrip("/")
# Development prints emails on the worker's console; production sends through SMTP.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = int(env_str("EMAIL_PORT", "25"))
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "slaboard <slaboard@localhost>")

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(env_str("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    # Preloading is the domain owner's decision (hstspreload.org); opt in explicitly.
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
# Load balancers probe and Prometheus scrapes over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# Behind a TLS-terminating proxy that is not on this host (uvicorn trusts X-Forwarded-Proto
# from 127.0.0.1 by itself): SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto.
if proxy_header := env_str("SECURE_PROXY_SSL_HEADER", ""):
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + proxy_header.upper().replace("-", "_"), "https")

# Login throttling (django-axes) on every authenticate(): the admin's login and the product's.
# Locks a username from one address after LOGIN_FAILURE_LIMIT wrong passwords, for
# LOGIN_COOLOFF_MINUTES (429); a success resets the count. By username *and* address, so
# nobody can lock a user out from elsewhere; the address is REMOTE_ADDR, which uvicorn takes
# from X-Forwarded-For for the proxies in its --forwarded-allow-ips.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(env_str("LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=float(env_str("LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True

# Content-Security-Policy: pages load scripts and styles from slaboard's own static files only
# (no inline script or style), sockets connect to the same host.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# LOG_FORMAT=json: one JSON object per line (for a log collector); plain otherwise. Every line
# carries the request id (X-Request-ID) or the Celery task id (slaboard/logs.py).
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use plain or json.")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "slaboard.logs.RequestIdFilter"},
        "expected": {"()": "slaboard.logs.ExpectedFilter"},
        "quiet_tasks": {"()": "slaboard.logs.QuietTasksFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "slaboard.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "expected", "quiet_tasks"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's defaults give "django" a console handler of its own (with DEBUG) that also
        # propagates to the root: every request and warning was written twice. Root only.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        # The access line comes from slaboard.middleware.RequestLogMiddleware (with the request
        # id); the servers' own ones (Daphne under runserver, uvicorn) would repeat it.
        "django.channels.server": {"handlers": [], "propagate": False},
        "uvicorn.access": {"handlers": [], "propagate": False},
        # uvicorn's start-up and error lines in the same format as everything else.
        "uvicorn": {"handlers": [], "propagate": True},
        "uvicorn.error": {"handlers": [], "propagate": True},
        # django-axes says "BEGIN version …" in every process at start-up, and a line for every
        # login: failures and lock-outs (warnings) are what operations need.
        "axes": {"handlers": [], "level": "WARNING", "propagate": True},
    },
}
