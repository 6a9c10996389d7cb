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


def database_from_url(url: str) -> dict[str, Any]:
    """Turn a DATABASE_URL into a Django DATABASES entry.

    Supports ``sqlite:///relative/or/absolute.sqlite3`` and
    ``postgres://user:password@host:port/name?option=value``. Kept in-house: two schemes do
    not justify a dependency.
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
        options = dict(parse_qsl(parts.query))
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")) or "slaboard",
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": options,
            # Must stay 0 under ASGI: persistent connections leak across async threads.
            "CONN_MAX_AGE": 0,
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
    "django.middleware.security.SecurityMiddleware",
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
DATABASES = {"default": database_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "tickets.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"

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

# Notifications (docs/notifications.md). SITE_URL makes the links in messages absolute.
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
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
