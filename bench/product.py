"""The product, through its public surface only: the services API, the Job table,
the job spec of wire.job_spec, and the listener's Prometheus metrics."""

import json
import tempfile
import time

from bench.harness import LOG_DIR, BenchError, log
from bench.readers import metric, scrape

ECHO = "examples/echo"
KIND_A = [{"key": "kind", "value": "a"}]


def workspace(slug):
    from orvanta_triggers import services

    return services.create_workspace(slug=slug, plan="enterprise")


def retire_all():
    """Move every workspace to the `free` plan, whose triggers listeners ignore: the
    next scenario's listener sees only that scenario's triggers. One call per
    workspace instead of one per trigger."""
    from orvanta_triggers import services
    from orvanta_triggers.models import Workspace

    for ws in Workspace.objects.exclude(plan="free"):
        services.set_workspace_plan(workspace=ws, plan="free")


def trigger(ws, path, url, **fields):
    from orvanta_triggers import services

    fields.setdefault("script_path", ECHO)
    return services.create_trigger(workspace=ws, path=path, url=url, **fields)


def bulk_triggers(ws, paths_urls, batch_size=1000, **fields):
    """Bench set-up, not product code: create many triggers at once (their ids, in
    order). services.create_trigger validates each with database queries, which for
    10,000 triggers takes minutes; here one representative is validated the same way
    (full_clean) and all are inserted with bulk_create in one transaction. The caller
    keeps the workspace on a plan listeners ignore, or nudges them itself."""
    from django.db import transaction
    from django.utils import timezone

    from orvanta_triggers.models import WebSocketTrigger

    fields.setdefault("script_path", ECHO)
    now = timezone.now()
    triggers = [
        WebSocketTrigger(
            workspace=ws, path=path, url=url, status=WebSocketTrigger.Status.CONNECTING, edited_at=now, **fields
        )
        for path, url in paths_urls
    ]
    if triggers:
        triggers[0].full_clean()
    with transaction.atomic():
        created = WebSocketTrigger.objects.bulk_create(triggers, batch_size=batch_size)
    return [t.id for t in created]


def bulk_update_triggers(ws, **fields):
    """Bench set-up, not product code: change configuration fields of every trigger
    of `ws` in one UPDATE, validated on one representative first. It bumps edited_at
    as the services do, which changes the fingerprint listeners poll
    (selectors.listenable_triggers_fingerprint), and nudges them as the services do.
    Returns how many rows changed."""
    from django.utils import timezone

    from orvanta_triggers import bus
    from orvanta_triggers.models import WebSocketTrigger

    triggers = WebSocketTrigger.objects.filter(workspace=ws)
    sample = triggers.first()
    if sample is None:
        return 0
    for name, value in fields.items():
        setattr(sample, name, value)
    sample.full_clean()
    changed = triggers.update(edited_at=timezone.now(), **fields)
    bus.nudge_listeners()
    return changed


def spec_file(trigger_obj, filters=None):
    """A file holding the trigger's job spec (what a worker needs), for clients."""
    from orvanta_triggers.wire import job_spec

    trigger_obj.refresh_from_db()
    handle = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="spec-", dir=LOG_DIR, delete=False)
    with handle:
        json.dump({"spec": job_spec(trigger_obj), "filters": filters or []}, handle)
    return handle.name


def job_counts(ws, trigger_path):
    """{status: count} of the trigger's job rows."""
    from django.db.models import Count

    from orvanta_triggers.models import Job

    rows = Job.objects.filter(workspace=ws, trigger_path=trigger_path).values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def success_count(ws, trigger_path):
    from orvanta_triggers.models import Job

    return Job.objects.filter(workspace=ws, trigger_path=trigger_path, status="success").count()


def wait_rows(ws, trigger_path, n, started, cap, procs, *, interval=0.2):
    """Poll the Job table every `interval` seconds until n rows of `trigger_path` are
    success (or `cap` seconds after `started`), while every one of `procs` lives;
    returns (successes, monotonic time seen, counts by status)."""
    deadline = started + cap
    last_log = time.monotonic()
    while True:
        done = success_count(ws, trigger_path)
        now = time.monotonic()
        if done >= n or now >= deadline:
            return done, now, job_counts(ws, trigger_path)
        for proc in procs:
            if not proc.alive():
                raise BenchError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log_tail()}")
        if now - last_log > 10:
            last_log = now
            log(f"{trigger_path}: {done:,}/{n:,} rows success after {now - started:.0f}s")
        time.sleep(interval)


def connected(port):
    """How many connections the listener holds in status `connected` (None when its
    metrics do not answer)."""
    return metric(port, 'orvanta_listener_connections{status="connected"}')


def dispatched(port):
    return metric(port, "orvanta_listener_frames_dispatched_total")


def listener_counters(port):
    """The listener's counters, for the details of a scenario."""
    try:
        values = scrape(port)
    except OSError:
        return {}
    return {k: v for k, v in values.items() if k.startswith("orvanta_listener_") and "_bucket" not in k}


def held_back(listener):
    """A note when the listener held frames back (its estimate of jobs waiting for
    workers passed ORVANTA_MAX_QUEUED_JOBS), quoting its first such log line."""
    lines, count = listener.log_lines("holding frames back", limit=1)
    if not count:
        return ""
    return f"the listener held frames back {count}x: '{lines[0].split(' ', 3)[-1]}'"
