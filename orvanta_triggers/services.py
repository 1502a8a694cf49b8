"""Every write to the database goes through here; callers pass keyword arguments."""

import collections
import logging
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import redis
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Case, Value, When
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from orvanta_triggers import bus, conf, monitor, redaction, selectors, wire
from orvanta_triggers.celeryapp import celery_app
from orvanta_triggers.models import Flow, Job, Membership, WebSocketTrigger, Workspace

logger = logging.getLogger(__name__)

TRIGGER_CONFIG_FIELDS = (
    "path",
    "url",
    "url_runnable_args",
    "script_path",
    "is_flow",
    "mode",
    "enabled",
    "filters",
    "filter_logic",
    "initial_messages",
    "can_return_message",
    "can_return_error_result",
    "heartbeat",
    "capture",
    "resume",
    "error_handler_path",
    "error_handler_args",
    "retry",
    "headers",
    "subprotocols",
)
FLOW_FIELDS = ("path", "preprocessor_path", "steps", "early_return")


class PlanNotAllowed(Exception):
    """The workspace's plan does not include WebSocket triggers."""


def check_plan(workspace: Workspace) -> None:
    if not workspace.allows_websocket_triggers:
        raise PlanNotAllowed(
            f"WebSocket triggers are not available on the {workspace.get_plan_display()} plan "
            f"(workspace '{workspace.slug}')"
        )


def _unknown_fields(fields: Iterable[str], allowed: Iterable[str]) -> None:
    unknown = set(fields) - set(allowed)
    if unknown:
        raise TypeError(f"unknown fields: {', '.join(sorted(unknown))}")


# Workspaces and members


@transaction.atomic
def create_workspace(
    *, slug: str, name: str | None = None, plan: str = Workspace.Plan.SELF_HOSTED, owner: AbstractBaseUser | None = None
) -> Workspace:
    workspace = Workspace(slug=slug, name=name or slug, plan=plan)
    workspace.full_clean()
    workspace.save()
    if owner is not None:
        set_membership(workspace=workspace, user=owner, role=Membership.Role.ADMIN)
    return workspace


def _membership_changed(workspace: Workspace) -> None:
    transaction.on_commit(lambda: monitor.notify_membership_changed(workspace.slug))


@transaction.atomic
def set_membership(*, workspace: Workspace, user: AbstractBaseUser, role: str) -> Membership:
    membership, _ = Membership.objects.update_or_create(workspace=workspace, user=user, defaults={"role": role})
    _membership_changed(workspace)
    return membership


@transaction.atomic
def remove_membership(*, workspace: Workspace, user: AbstractBaseUser) -> None:
    """`user` is no longer a member of `workspace`; their open monitors of it close."""
    Membership.objects.filter(workspace=workspace, user=user).delete()
    _membership_changed(workspace)


def update_workspace_settings(*, workspace: Workspace, **fields: Any) -> Workspace:
    _unknown_fields(fields, ("error_handler_path", "error_handler_args", "name"))
    for name, value in fields.items():
        setattr(workspace, name, value)
    workspace.full_clean()
    workspace.save(update_fields=list(fields))
    return workspace


def create_user(*, username: str, password: str, is_superuser: bool = False) -> AbstractBaseUser:
    User = get_user_model()
    if is_superuser:
        return User.objects.create_superuser(username=username, password=password, email="")
    return User.objects.create_user(username=username, password=password)


# Triggers


def _save_trigger(trigger: WebSocketTrigger, update_fields: list[str] | None = None) -> WebSocketTrigger:
    trigger.edited_at = timezone.now()
    trigger.full_clean()
    trigger.save(update_fields=update_fields)
    transaction.on_commit(bus.nudge_listeners)
    return trigger


def _check_trigger_count(workspace: Workspace) -> None:
    """Raise ValidationError when the workspace has as many triggers as it may have.
    Locks the workspace's row (until the transaction ends) so that concurrent creates
    count one after the other."""
    Workspace.objects.select_for_update().get(pk=workspace.pk)
    limit = conf.max_triggers_per_workspace()
    if selectors.workspace_trigger_count(workspace=workspace) >= limit:
        raise ValidationError(
            f"workspace '{workspace.slug}' already has {limit} WebSocket triggers, "
            f"the most ORVANTA_MAX_TRIGGERS_PER_WORKSPACE allows"
        )


def resolve_mode(*, current: str, fields: dict[str, Any]) -> str:
    """The mode `fields` ask for, given the `current` one: `mode` if given, else what
    `enabled` (Windmill's older field) means: false is disabled; true is enabled, or
    stays suspended, since a suspended trigger reads true (a trigger written back as it
    was read keeps its mode)."""
    Mode = WebSocketTrigger.Mode
    if "mode" in fields:
        return fields["mode"]
    if "enabled" not in fields:
        return current
    if not fields["enabled"]:
        return Mode.DISABLED
    return Mode.SUSPENDED if current == Mode.SUSPENDED else Mode.ENABLED


def _apply_mode(trigger: WebSocketTrigger, mode: str) -> None:
    trigger.mode = mode
    trigger.enabled = mode != WebSocketTrigger.Mode.DISABLED


@transaction.atomic
def save_new_trigger(*, trigger: WebSocketTrigger) -> WebSocketTrigger:
    """Save an unsaved trigger built elsewhere (the admin's form), in its `mode`."""
    check_plan(trigger.workspace)
    _check_trigger_count(trigger.workspace)
    _apply_mode(trigger, trigger.mode)
    trigger.status = WebSocketTrigger.Status.CONNECTING if trigger.enabled else WebSocketTrigger.Status.DISABLED
    return _save_trigger(trigger)


def create_trigger(*, workspace: Workspace, **fields: Any) -> WebSocketTrigger:
    """A new trigger; raises ValidationError (field-keyed) or PlanNotAllowed. `mode`
    wins over `enabled` when both are given."""
    _unknown_fields(fields, TRIGGER_CONFIG_FIELDS)
    mode = resolve_mode(current=WebSocketTrigger.Mode.ENABLED, fields=fields)
    fields.pop("enabled", None)
    trigger = WebSocketTrigger(workspace=workspace, **fields)
    _apply_mode(trigger, mode)
    return save_new_trigger(trigger=trigger)


@transaction.atomic
def update_trigger(*, trigger: WebSocketTrigger, **fields: Any) -> WebSocketTrigger:
    """Change configuration fields; listeners pick the change up within seconds. A
    secret sent back redacted, as a viewer sees it, keeps its stored value. `mode`
    wins over `enabled` when both are given."""
    _unknown_fields(fields, TRIGGER_CONFIG_FIELDS)
    was_held = trigger.enabled
    mode = resolve_mode(current=trigger.mode, fields=fields)
    fields = {name: value for name, value in fields.items() if name not in ("mode", "enabled")}
    if mode != WebSocketTrigger.Mode.DISABLED and not was_held:
        check_plan(trigger.workspace)
    fields = redaction.keep_stored_secrets(trigger, fields)
    for name, value in fields.items():
        setattr(trigger, name, value)
    _apply_mode(trigger, mode)
    if trigger.enabled != was_held:
        trigger.status = WebSocketTrigger.Status.CONNECTING if trigger.enabled else WebSocketTrigger.Status.DISABLED
        trigger.error = None
    return _save_trigger(trigger)


def set_trigger_enabled(*, trigger: WebSocketTrigger, enabled: bool) -> WebSocketTrigger:
    return update_trigger(trigger=trigger, enabled=enabled)


def set_trigger_mode(*, trigger: WebSocketTrigger, mode: str) -> WebSocketTrigger:
    return update_trigger(trigger=trigger, mode=mode)


@transaction.atomic
def delete_trigger(*, trigger: WebSocketTrigger) -> None:
    trigger.delete()
    transaction.on_commit(bus.nudge_listeners)


def record_trigger_status(*, trigger_id: int, **status_fields: Any) -> int:
    """Status written by the listener that holds the trigger (one trigger of
    record_trigger_statuses)."""
    return record_trigger_statuses({trigger_id: status_fields})


# Triggers per status UPDATE: each field whose value differs between them is a CASE
# with a branch per trigger.
STATUS_BATCH = 500


def record_trigger_statuses(statuses: dict[int, dict[str, Any]]) -> int:
    """Status written by the listener that holds the triggers, {trigger id: status
    fields}: one UPDATE per STATUS_BATCH triggers writing the same fields, not one per
    trigger (a listener starting or stopping thousands writes them all at once). Only
    status fields, and never over a disabled trigger's state (the disable may have
    raced the write). Returns how many rows were updated."""
    groups = collections.defaultdict(list)
    for trigger_id, fields in statuses.items():
        _unknown_fields(fields, WebSocketTrigger.STATUS_FIELDS)
        # A status is for reading: a NUL a server put in its close reason is shown as
        # U+FFFD (PostgreSQL text can't hold it) rather than failing the write.
        clean = {
            name: value.replace("\x00", "\ufffd") if isinstance(value, str) else value for name, value in fields.items()
        }
        groups[tuple(sorted(clean))].append((trigger_id, clean))
    updated = 0
    for names, rows in groups.items():
        if not names:
            continue
        # SQLite bounds the parameters of one query: per row, its id in the IN list,
        # and an id and a value in each CASE.
        size = min(STATUS_BATCH, connection.ops.bulk_batch_size(["pk"] * (1 + 2 * len(names)), rows))
        for start in range(0, len(rows), size):
            batch = rows[start : start + size]
            updated += WebSocketTrigger.objects.filter(pk__in=[tid for tid, _ in batch], enabled=True).update(
                **{name: _status_column(name, batch) for name in names}
            )
    return updated


def _status_column(name, rows):
    """The value of field `name` for every row: itself when they all share it, else a
    CASE on the id."""
    first = rows[0][1][name]
    if all(fields[name] == first for _, fields in rows):
        return first
    field = WebSocketTrigger._meta.get_field(name)
    return Case(
        *[When(pk=tid, then=Value(fields[name], output_field=field)) for tid, fields in rows], output_field=field
    )


# Flows


def create_flow(*, workspace: Workspace, **fields: Any) -> Flow:
    _unknown_fields(fields, FLOW_FIELDS)
    return save_new_flow(flow=Flow(workspace=workspace, **fields))


@transaction.atomic
def save_new_flow(*, flow: Flow) -> Flow:
    flow.full_clean()
    flow.save()
    return flow


def _refuse_if_flow_in_use(flow: Flow, action: str) -> None:
    users = selectors.triggers_using_flow(workspace_id=flow.workspace_id, path=flow.path)
    if users:
        raise ValidationError({"path": [f"can't {action} flow '{flow.path}': used by trigger(s) {', '.join(users)}"]})


@transaction.atomic
def update_flow(*, flow: Flow, **fields: Any) -> Flow:
    _unknown_fields(fields, FLOW_FIELDS)
    if "path" in fields and fields["path"] != flow.path:
        _refuse_if_flow_in_use(flow, "rename")
    for name, value in fields.items():
        setattr(flow, name, value)
    flow.full_clean()
    flow.save()
    return flow


@transaction.atomic
def delete_flow(*, flow: Flow) -> None:
    _refuse_if_flow_in_use(flow, "delete")
    flow.delete()


# Jobs

JOB_RECORD_FIELDS = (
    "workspace_id",
    "trigger_path",
    "script_path",
    "is_flow",
    "kind",
    "parent_job_id",
    "status",
    "args",
    "event",
    "result",
    "result_type",
    "error",
    "attempt",
    "started_at",
    "finished_at",
)


def record_jobs(*, jobs: dict[str, dict[str, Any]], overwrite: bool = True) -> dict[str, Job]:
    """Write job rows ({job id: field values}) in one statement, creating them or
    updating them in place (a retry, a redelivery); without `overwrite`, rows that
    exist are left as they are. Returns the rows by job id."""
    rows = {job_id: Job(id=job_id, **values) for job_id, values in jobs.items()}
    if not rows:
        return rows
    fields = sorted({name for values in jobs.values() for name in values} & set(JOB_RECORD_FIELDS))
    # With no field to update, a row that exists is left as it is, on either path.
    update_fields = ["workspace" if f == "workspace_id" else f for f in fields] if overwrite else []
    objs = list(rows.values())
    if connection.in_atomic_block or connection.ops.bulk_batch_size(Job._meta.concrete_fields, objs) < len(objs):
        if update_fields:
            Job.objects.bulk_create(objs, update_conflicts=True, unique_fields=["id"], update_fields=update_fields)
        else:
            Job.objects.bulk_create(objs, ignore_conflicts=True)
        return rows
    _upsert_in_one_statement(objs, update_fields=update_fields)
    return rows


def _upsert_in_one_statement(jobs: list[Job], *, update_fields: list[str]) -> None:
    """The INSERT ... ON CONFLICT that bulk_create would run, outside a transaction:
    bulk_create wraps even a single statement in one, and its BEGIN and COMMIT are two
    more round trips to the database (a one-row upsert took 2.6 ms with them, 1.7 ms
    without). One statement needs no transaction to be all or nothing."""
    opts = Job._meta
    query = InsertQuery(
        Job,
        on_conflict=OnConflict.UPDATE if update_fields else OnConflict.IGNORE,
        update_fields=[opts.get_field(name) for name in update_fields],
        unique_fields=[opts.pk] if update_fields else [],
    )
    query.insert_values(opts.concrete_fields, jobs)
    query.get_compiler(connection=connection).execute_sql(None)


def fail_abandoned_jobs(*, running_since_before: datetime) -> int:
    """Mark failed the jobs still `running` that started before the given time: their
    worker died and the broker did not hand them to another. Returns how many."""
    return Job.objects.filter(status=Job.Status.RUNNING, started_at__lt=running_since_before).update(
        status=Job.Status.FAILURE,
        finished_at=timezone.now(),
        error={
            "name": "JobLost",
            "message": "the worker running this job stopped and the job was not run again",
            "stack": "",
        },
    )


def enqueue_trigger_job(*, trigger: WebSocketTrigger, msg: str, msg_type: str = "text", url: str | None = None) -> str:
    """Run the trigger's runnable on `msg` as if it had just arrived (a replay from
    the admin or the monitor), even while the trigger is suspended: an operator asked
    for this run. The job id, once the job is queued."""
    job_id = str(uuid.uuid4())
    kwargs = {
        "job_id": job_id,
        "spec": {**wire.job_spec(trigger), "suspended": False, "kind": Job.Kind.REPLAY},
        "msg": msg,
        "msg_type": msg_type,
        "url": url if url is not None else trigger.url,
    }
    transaction.on_commit(
        lambda: celery_app().send_task(wire.RUN_TRIGGER_JOB, kwargs=kwargs, task_id=job_id, **wire.reprs(job_id=job_id))
    )
    return job_id


# Suspended jobs

# Resumed jobs travel in broker messages of at most this many, oldest first.
RESUME_MESSAGE_JOBS = 500


class JobConflict(Exception):
    """The job can't be resumed or discarded: it is not suspended (any more), or its
    trigger is gone."""


class ResumeFailed(Exception):
    """The broker did not take the resumed jobs; those not sent are suspended again."""


def _suspended_jobs_changed(trigger_path: str, workspace: Workspace) -> None:
    count = selectors.suspended_job_count(workspace_id=workspace.id, trigger_path=trigger_path)
    monitor.send_events(workspace.slug, [{"type": "suspended_jobs", "trigger_path": trigger_path, "count": count}])


def resume_jobs(*, trigger: WebSocketTrigger, job_ids: Iterable[str] | None = None) -> list[str]:
    """Run the trigger's suspended jobs (those of `job_ids`, else all), oldest first,
    with its current configuration (script, retries, error handler, returning
    results). Returns the ids of the jobs resumed. Raises ResumeFailed when the broker
    refuses them: the jobs it did not take are suspended again."""
    with transaction.atomic():
        suspended = selectors.suspended_jobs(
            workspace_id=trigger.workspace_id, trigger_path=trigger.path, job_ids=job_ids, for_update=True
        )
        resumed = [str(job.id) for job in suspended]
        Job.objects.filter(id__in=resumed).update(status=Job.Status.QUEUED)
    spec = {**wire.job_spec(trigger), "suspended": False}
    encoded = [
        wire.encode_job(str(job.id), trigger.id, job.args["msg"], job.event["msg_type"], job.event["url"])
        for job in suspended
    ]
    for start in range(0, len(encoded), RESUME_MESSAGE_JOBS):
        jobs = encoded[start : start + RESUME_MESSAGE_JOBS]
        try:
            celery_app().send_task(
                wire.RUN_TRIGGER_JOBS,
                kwargs=wire.batch({trigger.id: spec}, jobs),
                time_limit=conf.message_time_limit(len(jobs)),
                retry=False,
                **wire.reprs(jobs=len(jobs)),
            )
        except (BrokerError, redis.RedisError, OSError) as exc:
            unsent = resumed[start:]
            Job.objects.filter(id__in=unsent, status=Job.Status.QUEUED).update(status=Job.Status.SUSPENDED)
            logger.warning(
                "trigger %s: %s suspended jobs could not be resumed (%s); they stay suspended",
                trigger.path,
                len(unsent),
                exc,
            )
            _suspended_jobs_changed(trigger.path, trigger.workspace)
            raise ResumeFailed(
                f"the broker refused the jobs ({exc}): {start} resumed, {len(unsent)} still suspended"
            ) from exc
    if resumed:
        logger.info("trigger %s: resumed %s suspended jobs", trigger.path, len(resumed))
        _suspended_jobs_changed(trigger.path, trigger.workspace)
    return resumed


def resume_job(*, job: Job) -> None:
    """Run one suspended job with its trigger's current configuration."""
    if job.status != Job.Status.SUSPENDED:
        raise JobConflict(f"job {job.id} is {job.status}, not suspended")
    trigger = selectors.trigger_by_path(workspace_id=job.workspace_id, path=job.trigger_path)
    if trigger is None:
        raise JobConflict(f"job {job.id} can't be resumed: its trigger '{job.trigger_path}' no longer exists")
    if not resume_jobs(trigger=trigger, job_ids=[job.id]):
        raise JobConflict(f"job {job.id} is no longer suspended")


def discard_jobs(*, workspace: Workspace, trigger_path: str, job_ids: Iterable[str] | None = None) -> int:
    """Drop suspended jobs of a trigger (those of `job_ids`, else all) unrun: they end
    `discarded`. Returns how many."""
    queryset = Job.objects.filter(workspace=workspace, trigger_path=trigger_path, status=Job.Status.SUSPENDED)
    if job_ids is not None:
        queryset = queryset.filter(id__in=list(job_ids))
    count = queryset.update(status=Job.Status.DISCARDED, finished_at=timezone.now())
    if count:
        logger.info("trigger %s: discarded %s suspended jobs", trigger_path, count)
        _suspended_jobs_changed(trigger_path, workspace)
    return count


def discard_job(*, job: Job) -> None:
    if not discard_jobs(workspace=job.workspace, trigger_path=job.trigger_path, job_ids=[job.id]):
        raise JobConflict(f"job {job.id} is {job.status}, not suspended")


# Workspace plan


@transaction.atomic
def set_workspace_plan(*, workspace: Workspace, plan: str) -> Workspace:
    """Change the workspace's plan. Listeners drop (or pick up) its triggers on their
    next poll; the nudge makes that immediate."""
    workspace.plan = plan
    workspace.full_clean()
    workspace.save(update_fields=["plan"])
    transaction.on_commit(bus.nudge_listeners)
    return workspace
