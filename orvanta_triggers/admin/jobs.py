"""Jobs: read-only (workers write them); suspended jobs are resumed or discarded here."""

import uuid

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils.html import format_html

from orvanta_triggers import redaction, selectors, services
from orvanta_triggers.admin import access
from orvanta_triggers.admin.base import WorkspaceScopedAdmin
from orvanta_triggers.admin.display import job_badge, job_duration, pretty_json
from orvanta_triggers.models import Job


@admin.register(Job)
class JobAdmin(WorkspaceScopedAdmin):
    list_display = (
        "id",
        "trigger_path",
        "kind",
        "script_path",
        "status_badge",
        "attempt",
        "created_at",
        "started_at",
        "finished_at",
        "duration",
    )
    list_filter = (
        "status",
        "kind",
        ("workspace", admin.RelatedOnlyFieldListFilter),
        ("trigger_path", admin.AllValuesFieldListFilter),
        ("script_path", admin.AllValuesFieldListFilter),
    )
    list_select_related = ("workspace",)
    search_fields = ("trigger_path", "script_path")
    search_help_text = "Trigger path, script path, or a job id."
    actions = ("resume_selected", "discard_selected")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "workspace",
                    "trigger_path",
                    "kind",
                    "parent_job",
                    "script_path",
                    "is_flow",
                    "status_badge",
                    "attempt",
                )
            },
        ),
        ("Times", {"fields": ("created_at", "started_at", "finished_at", "duration")}),
        ("Arguments", {"fields": ("args_json",)}),
        ("Result", {"fields": ("result_json",)}),
        ("Error", {"fields": ("error_display",)}),
    )
    readonly_fields = (
        *(f.name for f in Job._meta.fields),
        "status_badge",
        "parent_job",
        "duration",
        "args_json",
        "args_redacted",
        "result_json",
        "result_redacted",
        "error_display",
    )
    # What a viewer is shown instead (redaction.redact_job).
    redacted_fields = {"args_json": "args_redacted", "result_json": "result_redacted"}

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or access.can_write(request, obj.workspace_id):
            return fieldsets
        return [
            (name, {**options, "fields": tuple(self.redacted_fields.get(f, f) for f in options["fields"])})
            for name, options in fieldsets
        ]

    def has_resume_permission(self, request):
        """Resuming and discarding suspended jobs: members who may write some workspace
        (each job is checked against its own workspace)."""
        return access.writes_some_workspace(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # jobs are written by workers only

    def has_delete_permission(self, request, obj=None):
        return False  # no service deletes jobs

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        try:
            job_id = uuid.UUID(search_term.strip())
        except ValueError:
            return results, may_have_duplicates
        return results | queryset.filter(pk=job_id), may_have_duplicates

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj):
        return job_badge(obj)

    @admin.display(description="Duration")
    def duration(self, obj):
        return job_duration(obj)

    @admin.display(description="Arguments")
    def args_json(self, obj):
        return pretty_json(obj.args)

    @admin.display(description="Arguments")
    def args_redacted(self, obj):
        return pretty_json(self._as_viewer_sees_it(obj)["args"])

    @admin.display(description="Result")
    def result_json(self, obj):
        return pretty_json(obj.result) if obj.result is not None else "—"

    @admin.display(description="Result")
    def result_redacted(self, obj):
        result = self._as_viewer_sees_it(obj)["result"]
        return pretty_json(result) if result is not None else "—"

    @staticmethod
    def _as_viewer_sees_it(obj):
        return redaction.redact_job({"kind": obj.kind, "args": obj.args, "result": obj.result})

    @admin.display(description="Parent job")
    def parent_job(self, obj):
        if obj.parent_job_id is None:
            return "—"
        url = reverse("admin:orvanta_triggers_job_change", args=[quote(obj.parent_job_id)])
        return format_html('<a href="{}">{}</a>', url, obj.parent_job_id)

    # Actions on suspended jobs

    def _suspended_by_trigger(self, request, queryset):
        """The selected suspended jobs the user may act on, by (workspace, trigger path);
        a message for those skipped."""
        selected = list(queryset.select_related("workspace"))
        groups, skipped = {}, 0
        for job in selected:
            if job.status != Job.Status.SUSPENDED or not access.can_write(request, job.workspace_id):
                skipped += 1
                continue
            groups.setdefault((job.workspace, job.trigger_path), []).append(job.id)
        if skipped:
            self.message_user(
                request,
                f"{skipped} selected job(s) skipped: not suspended, or your role in their workspace can't change them.",
                messages.WARNING,
            )
        return groups

    @admin.action(description="Resume selected suspended jobs (oldest first)", permissions=["resume"])
    def resume_selected(self, request, queryset):
        resumed = 0
        for (workspace, trigger_path), job_ids in self._suspended_by_trigger(request, queryset).items():
            trigger = selectors.trigger_by_path(workspace_id=workspace.id, path=trigger_path)
            if trigger is None:
                self.message_user(
                    request,
                    f"{trigger_path}: this trigger no longer exists; its {len(job_ids)} job(s) can only be discarded.",
                    messages.ERROR,
                )
                continue
            try:
                resumed += len(services.resume_jobs(trigger=trigger, job_ids=job_ids))
            except services.ResumeFailed as exc:
                self.message_user(request, f"{trigger_path}: {exc}", messages.ERROR)
        self.message_user(request, f"Resumed {resumed} job(s).", messages.SUCCESS if resumed else messages.WARNING)

    @admin.action(description="Discard selected suspended jobs", permissions=["resume"])
    def discard_selected(self, request, queryset):
        discarded = sum(
            services.discard_jobs(workspace=workspace, trigger_path=trigger_path, job_ids=job_ids)
            for (workspace, trigger_path), job_ids in self._suspended_by_trigger(request, queryset).items()
        )
        self.message_user(
            request, f"Discarded {discarded} job(s).", messages.SUCCESS if discarded else messages.WARNING
        )

    @admin.display(description="Error")
    def error_display(self, obj):
        error = obj.error
        if not error:
            return "—"
        if not isinstance(error, dict):
            return pretty_json(error)
        return format_html(
            '<div class="orvanta-error"><strong>{}</strong>: {}</div>'
            '<pre class="orvanta-stack" style="white-space:pre-wrap;max-height:40em;overflow:auto">{}</pre>',
            error.get("name") or "Error",
            error.get("message") or "",
            error.get("stack") or "",
        )
