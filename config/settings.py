"""Django settings: the only module that reads environment variables."""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from orvanta_triggers.celeryconfig import celery_settings
from orvanta_triggers.conf import DEFAULTS as ORVANTA_DEFAULTS

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _env_proxy(name):
    """Proxy variable `name` as curl and Python's urllib read it: the lower-case variable
    when it is set (even empty, which turns the upper-case one off), else the upper-case one."""
    lower = name.lower()
    return os.environ[lower] if lower in os.environ else os.environ.get(name.upper(), "")


DEBUG = _env_bool("DJANGO_DEBUG", False)
# Only development may run on a known key: anyone holding it can sign sessions and
# cookies (README, "Security").
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or (DEV_SECRET_KEY if DEBUG else "")
if SECRET_KEY in ("", DEV_SECRET_KEY) and not DEBUG:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set to a secret of your own when DJANGO_DEBUG is off (README, Security)"
    )
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()
]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "orvanta_triggers",
    "listener",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Production (DJANGO_DEBUG off) is served over HTTPS: secure cookies, HSTS and a
# redirect to https, each of which an environment variable can turn off (README,
# "Security"); `manage.py check --deploy` is clean with the README's settings.
SECURE_SSL_REDIRECT = _env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = _env_bool("DJANGO_SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = _env_bool("DJANGO_CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_SECURE_HSTS_SECONDS") or (0 if DEBUG else 31536000))
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = _env_bool("DJANGO_SECURE_HSTS_PRELOAD", not DEBUG)
# Behind a proxy that terminates TLS: "HTTP_X_FORWARDED_PROTO,https" tells Django a
# request came over https (else the redirect above would loop).
_proxy_ssl_header = os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER", "")
SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header.split(",", 1)) if "," in _proxy_ssl_header else None

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=60,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Listener, web and worker threads write concurrently: WAL plus immediate
    # transactions make SQLite wait for the lock instead of failing.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

REDIS_URL = os.environ.get("REDIS_URL") or ORVANTA_DEFAULTS["REDIS_URL"]

CHANNEL_LAYERS = {
    "default": {
        # channels-redis's layer, on connections that never drop a cancellation.
        "BACKEND": "orvanta_triggers.channellayer.RedisChannelLayer",
        # redis-py 8 reads with a 5 s socket timeout by default, which cuts the
        # layer's own 5 s blocking pops short; give reads more room than that.
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]},
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "orvanta_triggers.api.pagination.StandardPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "orvanta_triggers.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PARSER_CLASSES": ["orvanta_triggers.api.parsers.JSONParser"],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Orvanta WebSocket triggers API",
    "DESCRIPTION": "WebSocket triggers, flows, jobs and workspace settings. Authenticate with `Authorization: Token <key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs page's assets are served from this app, not fetched from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# Orvanta knobs (README, "Running in production"): each from the environment, else the
# app's default (orvanta_triggers.conf.DEFAULTS); read through orvanta_triggers.conf.


def _knob(name, cast):
    value = os.environ.get(name)
    return cast(value) if value not in (None, "") else ORVANTA_DEFAULTS[name]


ORVANTA_RUNNABLE_PACKAGES = [
    p.strip() for p in os.environ.get("ORVANTA_RUNNABLE_PACKAGES", "runnables").split(",") if p.strip()
]
ORVANTA_ALLOW_PRIVATE_URLS = _env_bool("ORVANTA_ALLOW_PRIVATE_URLS", DEBUG)
ORVANTA_REDIS_PREFIX = _knob("ORVANTA_REDIS_PREFIX", str)
ORVANTA_OVERFLOW_POLICY = _knob("ORVANTA_OVERFLOW_POLICY", str)
if ORVANTA_OVERFLOW_POLICY not in ("backpressure", "drop"):
    raise ValueError("ORVANTA_OVERFLOW_POLICY must be 'backpressure' or 'drop'")
ORVANTA_LEASE_TTL_SECS = _knob("ORVANTA_LEASE_TTL_SECS", float)
ORVANTA_RECONCILE_INTERVAL_SECS = _knob("ORVANTA_RECONCILE_INTERVAL_SECS", float)
ORVANTA_STATUS_WRITE_INTERVAL_SECS = _knob("ORVANTA_STATUS_WRITE_INTERVAL_SECS", float)
ORVANTA_CONNECT_TIMEOUT_SECS = _knob("ORVANTA_CONNECT_TIMEOUT_SECS", float)
ORVANTA_PING_INTERVAL_SECS = _knob("ORVANTA_PING_INTERVAL_SECS", float)
ORVANTA_PONG_TIMEOUT_SECS = _knob("ORVANTA_PONG_TIMEOUT_SECS", float)
ORVANTA_BACKOFF_MIN_SECS = _knob("ORVANTA_BACKOFF_MIN_SECS", float)
ORVANTA_BACKOFF_MAX_SECS = _knob("ORVANTA_BACKOFF_MAX_SECS", float)
ORVANTA_BACKOFF_RESET_AFTER_SECS = _knob("ORVANTA_BACKOFF_RESET_AFTER_SECS", float)
ORVANTA_RUNNABLE_TIMEOUT_SECS = _knob("ORVANTA_RUNNABLE_TIMEOUT_SECS", float)
ORVANTA_TEST_CONNECTION_TIMEOUT_SECS = _knob("ORVANTA_TEST_CONNECTION_TIMEOUT_SECS", float)
ORVANTA_CONNECTION_ERROR_NOTIFY_SECS = _knob("ORVANTA_CONNECTION_ERROR_NOTIFY_SECS", float)
ORVANTA_JOB_TIMEOUT_SECS = _knob("ORVANTA_JOB_TIMEOUT_SECS", float)
ORVANTA_DATABASE_OUTAGE_SECS = _knob("ORVANTA_DATABASE_OUTAGE_SECS", float)
ORVANTA_WORKER_LOST_SECS = _knob("ORVANTA_WORKER_LOST_SECS", float)
ORVANTA_MAX_MESSAGE_BYTES = _knob("ORVANTA_MAX_MESSAGE_BYTES", int)
ORVANTA_DISPATCH_BUFFER_SIZE = _knob("ORVANTA_DISPATCH_BUFFER_SIZE", int)
ORVANTA_MAX_QUEUED_JOBS = _knob("ORVANTA_MAX_QUEUED_JOBS", int)
ORVANTA_MAX_TRIGGERS_PER_WORKSPACE = _knob("ORVANTA_MAX_TRIGGERS_PER_WORKSPACE", int)
ORVANTA_WORKER_METRICS_PORT = _knob("ORVANTA_WORKER_METRICS_PORT", int)
# Trigger connections (listener, test connection) go through these proxies with their
# standard meaning (README, "Proxies").
ORVANTA_HTTPS_PROXY = _env_proxy("https_proxy")
ORVANTA_HTTP_PROXY = _env_proxy("http_proxy")
ORVANTA_NO_PROXY = _env_proxy("no_proxy")
# With a prefork pool and ORVANTA_WORKER_METRICS_PORT, prometheus-client's own
# variable must point at an empty directory.
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None

# Celery: Redis broker; jobs record their own results in the database. Queue names for
# operators (README, "Security"): Celery's default queue for jobs, and one under
# ORVANTA_REDIS_PREFIX for the user code a caller waits for.
CELERY_BROKER_URL = REDIS_URL
ORVANTA_RUNNABLES_QUEUE = f"{ORVANTA_REDIS_PREFIX}runnables"
globals().update(
    celery_settings(
        broker_url=CELERY_BROKER_URL,
        jobs_queue="celery",
        runnables_queue=ORVANTA_RUNNABLES_QUEUE,
        job_timeout_secs=ORVANTA_JOB_TIMEOUT_SECS,
        database_outage_secs=ORVANTA_DATABASE_OUTAGE_SECS,
        worker_lost_secs=ORVANTA_WORKER_LOST_SECS,
    )
)

LOG_FORMAT = os.environ.get("LOG_FORMAT", "text")
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {
            "()": "orvanta_triggers.logging.TextFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "orvanta_triggers.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "text"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "daphne": {"level": "WARNING"},
    },
}
# Any member of a workspace logs in here for its monitor; staff also use the admin's.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "monitor-index"
LOGOUT_REDIRECT_URL = "login"
