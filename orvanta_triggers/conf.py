"""The app's knobs, typed, in one place: each is the Django setting of that name, or
its default here when the project does not set it (this repo's config/settings.py
reads them from the environment, with these defaults). Nothing else reads them."""

from django.conf import settings

DEFAULTS = {
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "ORVANTA_REDIS_PREFIX": "orvanta:",
    "ORVANTA_RUNNABLE_PACKAGES": ["runnables"],
    "ORVANTA_ALLOW_PRIVATE_URLS": False,
    "ORVANTA_LEASE_TTL_SECS": 15.0,
    "ORVANTA_MAX_MESSAGE_BYTES": 1048576,
    "ORVANTA_RECONCILE_INTERVAL_SECS": 1.0,
    "ORVANTA_STATUS_WRITE_INTERVAL_SECS": 5.0,
    "ORVANTA_CONNECT_TIMEOUT_SECS": 10.0,
    "ORVANTA_PING_INTERVAL_SECS": 20.0,
    "ORVANTA_PONG_TIMEOUT_SECS": 10.0,
    "ORVANTA_BACKOFF_MIN_SECS": 0.5,
    "ORVANTA_BACKOFF_MAX_SECS": 60.0,
    "ORVANTA_BACKOFF_RESET_AFTER_SECS": 30.0,
    "ORVANTA_DISPATCH_BUFFER_SIZE": 100000,
    "ORVANTA_OVERFLOW_POLICY": "backpressure",
    "ORVANTA_MAX_QUEUED_JOBS": 100000,
    "ORVANTA_RUNNABLE_TIMEOUT_SECS": 30.0,
    "ORVANTA_TEST_CONNECTION_TIMEOUT_SECS": 10.0,
    "ORVANTA_CONNECTION_ERROR_NOTIFY_SECS": 60.0,
    "ORVANTA_JOB_TIMEOUT_SECS": 300.0,
    "ORVANTA_DATABASE_OUTAGE_SECS": 120.0,
    "ORVANTA_WORKER_LOST_SECS": 20.0,
    "ORVANTA_MAX_TRIGGERS_PER_WORKSPACE": 1000,
    "ORVANTA_HTTPS_PROXY": "",
    "ORVANTA_HTTP_PROXY": "",
    "ORVANTA_NO_PROXY": "",
    "ORVANTA_WORKER_METRICS_PORT": 0,
    "PROMETHEUS_MULTIPROC_DIR": None,
}


def _setting(name):
    return getattr(settings, name, DEFAULTS[name])


def runnable_packages():
    return list(_setting("ORVANTA_RUNNABLE_PACKAGES"))


def allow_private_urls():
    return bool(_setting("ORVANTA_ALLOW_PRIVATE_URLS"))


def lease_ttl_secs():
    return float(_setting("ORVANTA_LEASE_TTL_SECS"))


def max_message_bytes():
    return int(_setting("ORVANTA_MAX_MESSAGE_BYTES"))


def redis_url():
    return _setting("REDIS_URL")


def redis_prefix():
    return _setting("ORVANTA_REDIS_PREFIX")


def reconcile_interval_secs():
    """How often a listener polls the database for trigger changes."""
    return float(_setting("ORVANTA_RECONCILE_INTERVAL_SECS"))


def status_write_interval_secs():
    """Minimum time between two `last_message_at` writes for one trigger."""
    return float(_setting("ORVANTA_STATUS_WRITE_INTERVAL_SECS"))


def connect_timeout_secs():
    """TCP connect plus WebSocket upgrade; a silent server is an error after this."""
    return float(_setting("ORVANTA_CONNECT_TIMEOUT_SECS"))


def ping_interval_secs():
    """A connection that received nothing for this long is sent a protocol ping."""
    return float(_setting("ORVANTA_PING_INTERVAL_SECS"))


def pong_timeout_secs():
    """A ping unanswered for this long marks the connection dead."""
    return float(_setting("ORVANTA_PONG_TIMEOUT_SECS"))


def backoff_min_secs():
    return float(_setting("ORVANTA_BACKOFF_MIN_SECS"))


def backoff_max_secs():
    return float(_setting("ORVANTA_BACKOFF_MAX_SECS"))


def backoff_reset_after_secs():
    """A connection that stayed up this long starts its next backoff from scratch."""
    return float(_setting("ORVANTA_BACKOFF_RESET_AFTER_SECS"))


def dispatch_buffer_size():
    """Frames the listener holds in memory while the broker can't take them."""
    return int(_setting("ORVANTA_DISPATCH_BUFFER_SIZE"))


def overflow_policy():
    """What a full buffer does: "backpressure" (stop reading the socket) or "drop"
    (count and log the frame)."""
    return _setting("ORVANTA_OVERFLOW_POLICY")


def max_queued_jobs():
    """Jobs waiting in the broker beyond which listeners stop publishing."""
    return int(_setting("ORVANTA_MAX_QUEUED_JOBS"))


def runnable_timeout_secs():
    """How long the listener waits for a URL or initial-message runnable, which runs at
    most that long."""
    return float(_setting("ORVANTA_RUNNABLE_TIMEOUT_SECS"))


def test_connection_timeout_secs():
    """How long test connection waits for its URL runnable, which runs at most that long."""
    return float(_setting("ORVANTA_TEST_CONNECTION_TIMEOUT_SECS"))


def connection_error_notify_secs():
    """A trigger in `error` this long notifies its error handler (once per streak)."""
    return float(_setting("ORVANTA_CONNECTION_ERROR_NOTIFY_SECS"))


def job_timeout_secs():
    """A job's longest run; a row `running` for longer than this (plus the broker's
    redelivery margin) belongs to a dead worker."""
    return float(_setting("ORVANTA_JOB_TIMEOUT_SECS"))


def message_time_limit(job_count):
    """Celery's hard limit for a message of `job_count` jobs: each job has
    ORVANTA_JOB_TIMEOUT_SECS (enforced per job, see jobrunner), and the message may wait
    out a database outage; this only kills a process whose job ignored its limit."""
    return job_count * job_timeout_secs() + database_outage_secs() + 30


def database_outage_secs():
    """How long a worker holds its jobs, retrying, while the database is unreachable."""
    return float(_setting("ORVANTA_DATABASE_OUTAGE_SECS"))


def worker_lost_secs():
    """How long after a worker's death the messages it held go to another worker."""
    return float(_setting("ORVANTA_WORKER_LOST_SECS"))


def max_triggers_per_workspace():
    """A workspace can't have more WebSocket triggers than this."""
    return int(_setting("ORVANTA_MAX_TRIGGERS_PER_WORKSPACE"))


def https_proxy():
    """The proxy URL wss:// connections go through (HTTPS_PROXY), "" for none."""
    return _setting("ORVANTA_HTTPS_PROXY")


def http_proxy():
    """The proxy URL ws:// connections go through (HTTP_PROXY), "" for none."""
    return _setting("ORVANTA_HTTP_PROXY")


def no_proxy():
    """Hosts reached without a proxy (NO_PROXY), orvanta_triggers/client/proxy.py says how it matches."""
    return _setting("ORVANTA_NO_PROXY")


def worker_metrics_port():
    """Workers serve Prometheus metrics on this port (0: they don't)."""
    return int(_setting("ORVANTA_WORKER_METRICS_PORT"))


def prometheus_multiproc_dir():
    """prometheus-client's multiprocess directory (None: a single-process registry)."""
    return _setting("PROMETHEUS_MULTIPROC_DIR")
