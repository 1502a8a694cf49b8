"""Test settings: the project's settings, pointed at a Redis database of their own
and with the listener's timers shortened."""

import os
from urllib.parse import urlsplit, urlunsplit

# The project's settings refuse to load without a secret of their own outside
# DJANGO_DEBUG; the test process and the processes it starts share this one.
os.environ.setdefault("DJANGO_SECRET_KEY", f"tests-only-{os.urandom(32).hex()}")

from config.settings import *  # noqa: E402,F401,F403
from config.settings import ORVANTA_REDIS_PREFIX as _BASE_PREFIX  # noqa: E402
from config.settings import REDIS_URL as _BASE_REDIS_URL  # noqa: E402
from orvanta_triggers.celeryconfig import celery_queues  # noqa: E402

# Database 9 of the same server, apart from a `make run` on this machine; and within
# it, keys and the job queue of this test process only, so concurrent runs never
# share leases or steal each other's jobs. A listener subprocess started by a test
# inherits the prefix through ORVANTA_REDIS_PREFIX.
REDIS_URL = urlunsplit(urlsplit(_BASE_REDIS_URL)._replace(path="/9"))
ORVANTA_REDIS_PREFIX = _BASE_PREFIX if _BASE_PREFIX != "orvanta:" else f"orvanta-test-{os.getpid()}:"
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_DEFAULT_QUEUE = f"{ORVANTA_REDIS_PREFIX}jobs"
ORVANTA_RUNNABLES_QUEUE = f"{ORVANTA_REDIS_PREFIX}runnables"
CELERY_TASK_QUEUES, CELERY_TASK_ROUTES = celery_queues(CELERY_TASK_DEFAULT_QUEUE, ORVANTA_RUNNABLES_QUEUE)
# A worker's BRPOP waits 0.1 s, not kombu's 1 s: closing its channel on shutdown waits
# for the BRPOP in flight, which cost every test with a worker about half a second.
CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS, "polling_interval": 0.1}  # noqa: F405
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "orvanta_triggers.channellayer.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}], "prefix": f"{ORVANTA_REDIS_PREFIX}asgi"},
    }
}
ORVANTA_ALLOW_PRIVATE_URLS = True
ORVANTA_RECONCILE_INTERVAL_SECS = 0.3
ORVANTA_LEASE_TTL_SECS = 5.0
ORVANTA_RUNNABLE_PACKAGES = ["runnables", "tests.runnables"]
ORVANTA_BACKOFF_MIN_SECS = 0.2
ORVANTA_RUNNABLE_TIMEOUT_SECS = 10.0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests and the servers they start speak plain http (tests/config checks production's defaults).
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    import tempfile

    # One file per test process, so concurrent runs never share (and clobber) one.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"orvanta-test-{os.getpid()}.sqlite3")
    }
