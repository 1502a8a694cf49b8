"""Every write to the database goes through here; callers pass keyword arguments."""

import collections
import logging
import uuid

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Case, Value, When
from django.utils import timezone

from orvanta_triggers import bus, conf, monitor, redaction, selectors
from orvanta_triggers.models import Flow, Job, Membership, WebSocketTrigger, Workspace

logger = logging.getLogger(__name__)

TRIGGER_CONFIG_FIELDS = (
    "path",
    "url",
    "url_runnable_args",
    "script_path",
    "is_flow",
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


def check_plan(workspace):
    if not workspace.allows_websocket_triggers:
        raise PlanNotAllowed(
            f"WebSocket triggers are not available on the {workspace.get_plan_display()} plan "
            f"(workspace '{workspace.slug}')"
        )


def _unknown_fields(fields, allowed):
    unknown = set(fields) - set(allowed)
    if unknown:
        raise TypeError(f"unknown fields: {', '.join(sorted(unknown))}")


# Workspaces and members


@transaction.atomic
def create_workspace(*, slug, name=None, plan=Workspace.Plan.SELF_HOSTED, owner=None):
    workspace = Workspace(slug=slug, name=name or slug, plan=plan)
    workspace.full_clean()
    workspace.save()
    if owner is not None:
        set_membership(workspace=workspace, user=owner, role=Membership.Role.ADMIN)
    return workspace


def _membership_changed(workspace):
    transaction.on_commit(lambda: monitor.notify_membership_changed(workspace.slug))


@transaction.atomic
def set_membership(*, workspace, user, role):
    membership, _ = Membership.objects.update_or_create(workspace=workspace, user=user, defaults={"role": role})
    _membership_changed(workspace)
    return membership


@transaction.atomic
def remove_membership(*, workspace, user):
    """`user` is no longer a member of `workspace`; their open monitors of it close."""
    Membership.objects.filter(workspace=workspace, user=user).delete()
    _membership_changed(workspace)


def update_workspace_settings(*, workspace, **fields):
    _unknown_fields(fields, ("error_handler_path", "error_handler_args", "name"))
    for name, value in fields.items():
        setattr(workspace, name, value)
    workspace.full_clean()
    workspace.save(update_fields=list(fields))
    return workspace


def create_user(*, username, password, is_superuser=False):
    User = get_user_model()
    if is_superuser:
        return User.objects.create_superuser(username=username, password=password, email="")
    return User.objects.create_user(username=username, password=password)


# Triggers


def _save_trigger(trigger, update_fields=None):
    trigger.edited_at = timezone.now()
    trigger.full_clean()
    trigger.save(update_fields=update_fields)
    transaction.on_commit(bus.nudge_listeners)
    return trigger


def create_trigger(*, workspace, **fields):
    """A new trigger; raises ValidationError (field-keyed) or PlanNotAllowed."""
    _unknown_fields(fields, TRIGGER_CONFIG_FIELDS)
    return save_new_trigger(trigger=WebSocketTrigger(workspace=workspace, **fields))


def _check_trigger_count(workspace):
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


@transaction.atomic
def save_new_trigger(*, trigger):
    """Save an unsaved trigger built elsewhere (the admin's form)."""
    check_plan(trigger.workspace)
    _check_trigger_count(trigger.workspace)
    trigger.status = WebSocketTrigger.Status.CONNECTING if trigger.enabled else WebSocketTrigger.Status.DISABLED
    return _save_trigger(trigger)


@transaction.atomic
def update_trigger(*, trigger, **fields):
    """Change configuration fields; listeners pick the change up within seconds. A
    secret sent back redacted, as a viewer sees it, keeps its stored value."""
    _unknown_fields(fields, TRIGGER_CONFIG_FIELDS)
    if fields.get("enabled") and not trigger.enabled:
        check_plan(trigger.workspace)
    fields = redaction.keep_stored_secrets(trigger, fields)
    for name, value in fields.items():
        setattr(trigger, name, value)
    if "enabled" in fields:
        trigger.status = WebSocketTrigger.Status.CONNECTING if trigger.enabled else WebSocketTrigger.Status.DISABLED
        trigger.error = None
    return _save_trigger(trigger)


def set_trigger_enabled(*, trigger, enabled):
    return update_trigger(trigger=trigger, enabled=enabled)


@transaction.atomic
def delete_trigger(*, trigger):
    trigger.delete()
    transaction.on_commit(bus.nudge_listeners)


def record_trigger_status(*, trigger_id, **status_fields):
    """Status written by the listener that holds the trigger (one trigger of
    record_trigger_statuses)."""
    return record_trigger_statuses({trigger_id: status_fields})


# Triggers per status UPDATE: each field whose value differs between them is a CASE
# with a branch per trigger.
STATUS_BATCH = 500


def record_trigger_statuses(statuses):
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


def create_flow(*, workspace, **fields):
    _unknown_fields(fields, FLOW_FIELDS)
    return save_new_flow(flow=Flow(workspace=workspace, **fields))


@transaction.atomic
def save_new_flow(*, flow):
    flow.full_clean()
    flow.save()
    return flow


def _refuse_if_flow_in_use(flow, action):
    users = selectors.triggers_using_flow(workspace_id=flow.workspace_id, path=flow.path)
    if users:
        raise ValidationError({"path": [f"can't {action} flow '{flow.path}': used by trigger(s) {', '.join(users)}"]})


@transaction.atomic
def update_flow(*, flow, **fields):
    _unknown_fields(fields, FLOW_FIELDS)
    if "path" in fields and fields["path"] != flow.path:
        _refuse_if_flow_in_use(flow, "rename")
    for name, value in fields.items():
        setattr(flow, name, value)
    flow.full_clean()
    flow.save()
    return flow


@transaction.atomic
def delete_flow(*, flow):
    _refuse_if_flow_in_use(flow, "delete")
    flow.delete()


# Jobs

JOB_RECORD_FIELDS = (
    "workspace_id",
    "trigger_path",
    "script_path",
    "is_flow",
    "status",
    "args",
    "result",
    "result_type",
    "error",
    "attempt",
    "started_at",
    "finished_at",
)


def record_jobs(*, jobs):
    """Write job rows ({job id: field values}) in one statement, creating them or
    updating them in place (a retry, a redelivery). Returns the rows by job id."""
    rows = {job_id: Job(id=job_id, **values) for job_id, values in jobs.items()}
    if not rows:
        return rows
    fields = sorted({name for values in jobs.values() for name in values} & set(JOB_RECORD_FIELDS))
    Job.objects.bulk_create(
        rows.values(),
        update_conflicts=True,
        unique_fields=["id"],
        update_fields=[f.removesuffix("_id") for f in fields],
    )
    return rows


def fail_abandoned_jobs(*, running_since_before):
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


def enqueue_trigger_job(*, trigger, msg, msg_type="text", url=None):
    """Run the trigger's runnable on `msg` as if it had just arrived (a replay from
    the admin or the monitor). The job id, once the job is queued."""
    # Imported here: execution and tasks call back into these services.
    from orvanta_triggers.execution import job_spec
    from orvanta_triggers.tasks import run_trigger_job

    job_id = str(uuid.uuid4())
    kwargs = {
        "job_id": job_id,
        "spec": job_spec(trigger),
        "msg": msg,
        "msg_type": msg_type,
        "url": url if url is not None else trigger.url,
    }
    transaction.on_commit(lambda: run_trigger_job.apply_async(kwargs=kwargs, task_id=job_id))
    return job_id


# Workspace plan


@transaction.atomic
def set_workspace_plan(*, workspace, plan):
    """Change the workspace's plan. Listeners drop (or pick up) its triggers on their
    next poll; the nudge makes that immediate."""
    workspace.plan = plan
    workspace.full_clean()
    workspace.save(update_fields=["plan"])
    transaction.on_commit(bus.nudge_listeners)
    return workspace
