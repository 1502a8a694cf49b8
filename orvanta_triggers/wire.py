"""What crosses process boundaries between listeners, workers and web processes,
named in one place. Imports nothing of Django's, so settings modules may use it.

Celery task names: the listener and the web process send these by name; workers run
them (orvanta_triggers.tasks)."""

RUN_TRIGGER_JOB = "orvanta.run_trigger_job"
RUN_TRIGGER_JOBS = "orvanta.run_trigger_jobs"
RUN_RUNNABLE = "orvanta.run_runnable"
NOTIFY_CONNECTION_FAILURE = "orvanta.notify_connection_failure"
