"""The Celery settings the app's delivery guarantees rest on, for a project's
settings module (with Celery's Django namespace, as CELERY_* names):

    from orvanta_triggers.celeryconfig import celery_settings
    globals().update(celery_settings(broker_url=BROKER_URL, runnables_queue="orvanta:runnables"))

Imports nothing of Django's, so a settings module may call it."""

from urllib.parse import urlsplit

from kombu import Queue

from orvanta_triggers.conf import DEFAULTS
from orvanta_triggers.wire import RUN_RUNNABLE


def celery_queues(jobs_queue, runnables_queue):
    """(CELERY_TASK_QUEUES, CELERY_TASK_ROUTES): trigger jobs on `jobs_queue` (the
    default one), user code a caller waits for (test connection, URL and
    initial-message runnables: tasks.run_runnable) on `runnables_queue`, so that it
    never waits behind a backlog of jobs. A worker without -Q consumes both."""
    return (
        (Queue(jobs_queue), Queue(runnables_queue)),
        {RUN_RUNNABLE: {"queue": runnables_queue}},
    )


def broker_transport(broker_url):
    """The kombu transport for `broker_url`: brokertransport's for Redis URLs, else
    None (kombu picks one from the URL's scheme)."""
    if urlsplit(broker_url or "").scheme in ("redis", "rediss"):
        return "orvanta_triggers.brokertransport:Transport"
    return None


def celery_settings(
    *,
    broker_url=None,
    jobs_queue="celery",
    runnables_queue=f"{DEFAULTS['ORVANTA_REDIS_PREFIX']}runnables",
    job_timeout_secs=DEFAULTS["ORVANTA_JOB_TIMEOUT_SECS"],
    database_outage_secs=DEFAULTS["ORVANTA_DATABASE_OUTAGE_SECS"],
    worker_lost_secs=DEFAULTS["ORVANTA_WORKER_LOST_SECS"],
):
    """{CELERY_* setting: value}; pass the broker URL and the ORVANTA_* knobs the
    project sets."""
    queues, routes = celery_queues(jobs_queue, runnables_queue)
    return {
        "CELERY_BROKER_TRANSPORT": broker_transport(broker_url),
        "CELERY_TASK_DEFAULT_QUEUE": jobs_queue,
        "CELERY_TASK_QUEUES": queues,
        "CELERY_TASK_ROUTES": routes,
        "CELERY_TASK_SERIALIZER": "json",
        "CELERY_ACCEPT_CONTENT": ["json"],
        "CELERY_TASK_IGNORE_RESULT": True,
        # At-least-once: a job is acknowledged after it ran, and redelivered when its
        # worker process dies mid-run.
        "CELERY_TASK_ACKS_LATE": True,
        "CELERY_TASK_REJECT_ON_WORKER_LOST": True,
        # One message per pool process at a time: what waits stays in the queue, where
        # the listeners see it and coalesce frames, and where any idle worker can take it.
        "CELERY_WORKER_PREFETCH_MULTIPLIER": 1,
        "CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP": True,
        "CELERY_WORKER_HIJACK_ROOT_LOGGER": False,
        # Keep a worker process's database connection across tasks (Celery's Django
        # fixup otherwise opens one per task); it is still replaced after this many.
        "CELERY_DB_REUSE_MAX": 1000,
        # Each job stops at ORVANTA_JOB_TIMEOUT_SECS (jobrunner). Celery kills the
        # process of a one-job task whose job ignores that, once a database outage could
        # also have been waited out; batch messages carry their own limit
        # (conf.message_time_limit).
        "CELERY_TASK_TIME_LIMIT": job_timeout_secs + database_outage_secs + 30,
        # Messages a worker holds are kept visible by the worker itself (heldmessages);
        # those of a dead worker go back to the queue `worker_lost_secs` after it last
        # did, found by a sweep every quarter of that.
        "CELERY_BROKER_TRANSPORT_OPTIONS": {
            "visibility_timeout": worker_lost_secs,
            "unacked_restore_interval": max(int(worker_lost_secs // 4), 1),
            "unacked_restore_throttle": 1,
        },
    }
