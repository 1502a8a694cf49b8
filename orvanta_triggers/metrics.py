"""Prometheus metrics of the workers (served when ORVANTA_WORKER_METRICS_PORT is set)."""

from prometheus_client import Counter, Histogram

JOBS_FINISHED = Counter("orvanta_jobs_finished_total", "Job attempts finished, by outcome", ["status"])
JOB_DURATION = Histogram(
    "orvanta_job_duration_seconds",
    "Time a job attempt took, from start to recorded outcome",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
JOBS_HANDED_OFF = Counter(
    "orvanta_jobs_handed_off_total", "Jobs a slow message handed back to the broker for idle processes"
)
DATABASE_RETRIES = Counter("orvanta_database_retries_total", "Database writes retried while it was unreachable")
RESULTS_HELD = Counter("orvanta_results_held_total", "Job results held for a retry while Redis did not answer")
RESULTS_DROPPED = Counter("orvanta_results_dropped_total", "Held job results dropped: too many waited for Redis")
