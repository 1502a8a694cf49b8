"""Reads. Views, the admin, tasks and the listener query through these; the admin's
own changelist querysets (Django's filters, search and scoping) aside."""

import hashlib

from django.db import connection
from django.db.models import Count, Max, Sum

from orvanta_triggers import roles
from orvanta_triggers.models import Flow, Job, Membership, WebSocketTrigger, Workspace


def _listenable_triggers():
    return WebSocketTrigger.objects.filter(enabled=True).exclude(
        workspace__plan__in=Workspace.PLANS_WITHOUT_WEBSOCKET_TRIGGERS
    )


def listenable_trigger_versions():
    """{trigger id: edited_at} of every trigger a listener should hold: enabled, in a
    workspace whose plan allows WebSocket triggers."""
    return dict(_listenable_triggers().values_list("id", "edited_at"))


def listenable_triggers_fingerprint():
    """(how many, latest edited_at, sum of ids) of the listenable triggers: one row,
    polled by listeners, which read the whole set only when it changes. A trigger
    created, deleted, enabled, disabled or edited, or a workspace changing plan,
    changes it."""
    summary = _listenable_triggers().aggregate(count=Count("id"), latest=Max("edited_at"), ids=Sum("id"))
    return summary["count"], summary["latest"], summary["ids"]


def listenable_trigger_versions_digest():
    """A digest of listenable_trigger_versions(), for telling whether it changed. On
    PostgreSQL the database computes it: reading 10,000 versions into Python costs the
    listener ~80 ms of CPU, and a listener thread busy that long holds back every
    thread that waits on I/O meanwhile (each heartbeat sent then waited a GIL switch
    interval). Elsewhere (SQLite: development and tests) it is the digest of the
    versions read."""
    versions = _listenable_triggers().values_list("id", "edited_at")
    if connection.vendor != "postgresql":
        return hashlib.blake2b(repr(sorted(dict(versions).items())).encode(), digest_size=16).hexdigest()
    sql, params = versions.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT md5(string_agg(v.id::text || ':' || v.edited_at::text, ',' ORDER BY v.id))"
            f" FROM ({sql}) AS v(id, edited_at)",
            params,
        )
        return cursor.fetchone()[0]


def triggers_by_id(ids):
    return {t.id: t for t in WebSocketTrigger.objects.filter(id__in=list(ids)).select_related("workspace")}


def membership_role(*, user, workspace):
    if not user.is_authenticated:
        return None
    return Membership.objects.filter(user=user, workspace=workspace).values_list("role", flat=True).first()


def workspace_roles(*, user):
    """{workspace id: role} of every membership of `user`."""
    return dict(Membership.objects.filter(user=user).values_list("workspace_id", "role"))


def workspaces_for_user(user):
    if user.is_superuser:
        return Workspace.objects.all()
    return Workspace.objects.filter(memberships__user=user)


def writable_workspaces(*, user):
    """The workspaces `user` may write (superusers: all)."""
    if user.is_superuser:
        return Workspace.objects.all()
    return Workspace.objects.filter(memberships__user=user, memberships__role__in=roles.WRITE_ROLES)


def member_workspaces(*, user):
    """The workspaces `user` is a member of (superusers included: only members see a monitor)."""
    return Workspace.objects.filter(memberships__user=user).order_by("slug")


def workspace_triggers(*, workspace, script_path=None, path_start=None):
    queryset = WebSocketTrigger.objects.filter(workspace=workspace).select_related("workspace")
    if script_path:
        queryset = queryset.filter(script_path=script_path)
    if path_start:
        queryset = queryset.filter(path__startswith=path_start)
    return queryset.order_by("path")


def workspace_trigger_count(*, workspace):
    return WebSocketTrigger.objects.filter(workspace=workspace).count()


def workspace_jobs(*, workspace, trigger_path=None, status=None, script_path=None, kind=None):
    queryset = Job.objects.filter(workspace=workspace)
    if trigger_path:
        queryset = queryset.filter(trigger_path=trigger_path)
    if status:
        queryset = queryset.filter(status=status)
    if script_path:
        queryset = queryset.filter(script_path=script_path)
    if kind:
        queryset = queryset.filter(kind=kind)
    return queryset.order_by("-created_at", "-id")


def suspended_jobs(*, workspace_id, trigger_path, job_ids=None, for_update=False):
    """A trigger's suspended jobs, oldest first (locked, `for_update`, in a transaction)."""
    queryset = Job.objects.filter(workspace_id=workspace_id, trigger_path=trigger_path, status=Job.Status.SUSPENDED)
    if job_ids is not None:
        queryset = queryset.filter(id__in=list(job_ids))
    if for_update:
        queryset = queryset.select_for_update()
    return list(queryset.order_by("created_at", "id"))


def suspended_job_count(*, workspace_id, trigger_path):
    return Job.objects.filter(workspace_id=workspace_id, trigger_path=trigger_path, status=Job.Status.SUSPENDED).count()


def suspended_job_counts(*, workspace):
    """{trigger path: how many suspended jobs} of the workspace's triggers that have any."""
    rows = (
        Job.objects.filter(workspace=workspace, status=Job.Status.SUSPENDED)
        .values_list("trigger_path")
        .annotate(count=Count("id"))
    )
    return dict(rows)


def trigger_by_path(*, workspace_id, path):
    return WebSocketTrigger.objects.filter(workspace_id=workspace_id, path=path).select_related("workspace").first()


def stored_trigger(pk):
    """The trigger as stored (a form may have changed the instance in hand)."""
    return WebSocketTrigger.objects.select_related("workspace").get(pk=pk)


def stored_flow(pk):
    return Flow.objects.get(pk=pk)


def stored_workspace(pk):
    return Workspace.objects.get(pk=pk)


def flow_paths_by_workspace(*, workspaces):
    """[(flow path, workspace slug)] of the flows of `workspaces`, by path."""
    return list(
        Flow.objects.filter(workspace__in=workspaces)
        .order_by("path", "workspace__slug")
        .values_list("path", "workspace__slug")
    )


def workspace_flows(*, workspace):
    return Flow.objects.filter(workspace=workspace).order_by("path")


def flow_by_path(*, workspace_id, path):
    return Flow.objects.filter(workspace_id=workspace_id, path=path).first()


def workspace_by_id(workspace_id):
    return Workspace.objects.filter(pk=workspace_id).first()


def triggers_using_flow(*, workspace_id, path):
    """Paths of the workspace's triggers that run, or compute their URL or an
    initial message with, the flow at `path`."""
    users = []
    for trigger in WebSocketTrigger.objects.filter(workspace_id=workspace_id):
        runs_it = trigger.is_flow and trigger.script_path == path
        url_from_it = trigger.url == f"$flow:{path}"
        sends_it = any(
            (m.get("runnable_result") or {}).get("path") == path and (m.get("runnable_result") or {}).get("is_flow")
            for m in trigger.initial_messages
            if isinstance(m, dict)
        )
        if runs_it or url_from_it or sends_it:
            users.append(trigger.path)
    return users


def existing_workspace_ids(ids):
    return set(Workspace.objects.filter(id__in=list(ids)).values_list("id", flat=True))


# A suspended job is settled for the message that carried it: it runs again only
# through a resume, which sends it in a message of its own.
SETTLED_STATUSES = (Job.Status.SUCCESS, Job.Status.FAILURE, Job.Status.SUSPENDED, Job.Status.DISCARDED)


def settled_job_ids(attempts):
    """Of the jobs {job id: attempt}, those already done with that attempt: ended
    (success or failure), retried since, or failed with their retry scheduled."""
    rows = Job.objects.filter(id__in=list(attempts)).values_list("id", "status", "attempt", "error")
    return {
        str(job_id)
        for job_id, status, attempt, error in rows
        if status in SETTLED_STATUSES
        or attempt > attempts[str(job_id)]
        or (status == Job.Status.QUEUED and error is not None)
    }


def workspace_by_slug(slug):
    return Workspace.objects.filter(slug=slug).first()
