"""The app's knobs, typed, in one place. Values and defaults come from Django settings
(config/settings.py reads them from the environment); nothing else reads them."""

from django.conf import settings


def runnable_packages():
    return list(settings.ORVANTA_RUNNABLE_PACKAGES)


def allow_private_urls():
    return bool(settings.ORVANTA_ALLOW_PRIVATE_URLS)


def lease_ttl_secs():
    return float(settings.ORVANTA_LEASE_TTL_SECS)


def max_message_bytes():
    return int(settings.ORVANTA_MAX_MESSAGE_BYTES)


def redis_url():
    return settings.REDIS_URL


def redis_prefix():
    return settings.ORVANTA_REDIS_PREFIX


def reconcile_interval_secs():
    """How often a listener polls the database for trigger changes."""
    return float(settings.ORVANTA_RECONCILE_INTERVAL_SECS)


def status_write_interval_secs():
    """Minimum time between two `last_message_at` writes for one trigger."""
    return float(settings.ORVANTA_STATUS_WRITE_INTERVAL_SECS)


def connect_timeout_secs():
    """TCP connect plus WebSocket upgrade; a silent server is an error after this."""
    return float(settings.ORVANTA_CONNECT_TIMEOUT_SECS)


def ping_interval_secs():
    """A connection that received nothing for this long is sent a protocol ping."""
    return float(settings.ORVANTA_PING_INTERVAL_SECS)


def pong_timeout_secs():
    """A ping unanswered for this long marks the connection dead."""
    return float(settings.ORVANTA_PONG_TIMEOUT_SECS)


def backoff_min_secs():
    return float(settings.ORVANTA_BACKOFF_MIN_SECS)


def backoff_max_secs():
    return float(settings.ORVANTA_BACKOFF_MAX_SECS)


def backoff_reset_after_secs():
    """A connection that stayed up this long starts its next backoff from scratch."""
    return float(settings.ORVANTA_BACKOFF_RESET_AFTER_SECS)


def dispatch_buffer_size():
    """Frames the listener holds in memory while the broker can't take them."""
    return int(settings.ORVANTA_DISPATCH_BUFFER_SIZE)


def overflow_policy():
    """What a full buffer does: "backpressure" (stop reading the socket) or "drop"
    (count and log the frame)."""
    return settings.ORVANTA_OVERFLOW_POLICY


def max_queued_jobs():
    """Jobs waiting in the broker beyond which listeners stop publishing."""
    return int(settings.ORVANTA_MAX_QUEUED_JOBS)


def runnable_timeout_secs():
    """How long the listener waits for a URL or initial-message runnable, which runs at
    most that long."""
    return float(settings.ORVANTA_RUNNABLE_TIMEOUT_SECS)


def test_connection_timeout_secs():
    """How long test connection waits for its URL runnable, which runs at most that long."""
    return float(settings.ORVANTA_TEST_CONNECTION_TIMEOUT_SECS)


def connection_error_notify_secs():
    """A trigger in `error` this long notifies its error handler (once per streak)."""
    return float(settings.ORVANTA_CONNECTION_ERROR_NOTIFY_SECS)


def job_timeout_secs():
    """A job's longest run; a row `running` for longer than this (plus the broker's
    redelivery margin) belongs to a dead worker."""
    return float(settings.ORVANTA_JOB_TIMEOUT_SECS)


def database_outage_secs():
    """How long a worker holds its jobs, retrying, while the database is unreachable."""
    return float(settings.ORVANTA_DATABASE_OUTAGE_SECS)


def worker_lost_secs():
    """How long after a worker's death the messages it held go to another worker."""
    return float(settings.ORVANTA_WORKER_LOST_SECS)


def max_triggers_per_workspace():
    """A workspace can't have more WebSocket triggers than this."""
    return int(settings.ORVANTA_MAX_TRIGGERS_PER_WORKSPACE)


def https_proxy():
    """The proxy URL wss:// connections go through (HTTPS_PROXY), "" for none."""
    return settings.ORVANTA_HTTPS_PROXY


def http_proxy():
    """The proxy URL ws:// connections go through (HTTP_PROXY), "" for none."""
    return settings.ORVANTA_HTTP_PROXY


def no_proxy():
    """Hosts reached without a proxy (NO_PROXY), listener/proxy.py says how it matches."""
    return settings.ORVANTA_NO_PROXY
