"""The app's knobs, in one place. Values come from Django settings (set from the
environment in config/settings.py); defaults live here for the internal ones."""

from django.conf import settings


def _get(name, default):
    return getattr(settings, name, default)


def runnable_packages():
    return list(_get("ORVANTA_RUNNABLE_PACKAGES", ["runnables"]))


def allow_private_urls():
    return bool(_get("ORVANTA_ALLOW_PRIVATE_URLS", False))


def lease_ttl_secs():
    return float(_get("ORVANTA_LEASE_TTL_SECS", 15))


def max_message_bytes():
    return int(_get("ORVANTA_MAX_MESSAGE_BYTES", 1048576))


def redis_url():
    return _get("REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_prefix():
    return _get("ORVANTA_REDIS_PREFIX", "orvanta:")


def reconcile_interval_secs():
    """How often a listener polls the database for trigger changes."""
    return float(_get("ORVANTA_RECONCILE_INTERVAL_SECS", 1.0))


def status_write_interval_secs():
    """Minimum time between two `last_message_at` writes for one trigger."""
    return float(_get("ORVANTA_STATUS_WRITE_INTERVAL_SECS", 5.0))


def connect_timeout_secs():
    """TCP connect plus WebSocket upgrade; a silent server is an error after this."""
    return float(_get("ORVANTA_CONNECT_TIMEOUT_SECS", 10.0))


def ping_interval_secs():
    """A connection that received nothing for this long is sent a protocol ping."""
    return float(_get("ORVANTA_PING_INTERVAL_SECS", 20.0))


def pong_timeout_secs():
    """A ping unanswered for this long marks the connection dead."""
    return float(_get("ORVANTA_PONG_TIMEOUT_SECS", 10.0))


def backoff_min_secs():
    return float(_get("ORVANTA_BACKOFF_MIN_SECS", 0.5))


def backoff_max_secs():
    return float(_get("ORVANTA_BACKOFF_MAX_SECS", 60.0))


def backoff_reset_after_secs():
    """A connection that stayed up this long starts its next backoff from scratch."""
    return float(_get("ORVANTA_BACKOFF_RESET_AFTER_SECS", 30.0))


def dispatch_buffer_size():
    """Frames the listener holds in memory while Redis does not answer."""
    return int(_get("ORVANTA_DISPATCH_BUFFER_SIZE", 100000))


def runnable_timeout_secs():
    """How long the listener waits for a URL or initial-message runnable."""
    return float(_get("ORVANTA_RUNNABLE_TIMEOUT_SECS", 30.0))


def connection_error_notify_secs():
    """A trigger in `error` this long notifies its error handler (once per streak)."""
    return float(_get("ORVANTA_CONNECTION_ERROR_NOTIFY_SECS", 60.0))
