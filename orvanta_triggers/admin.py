"""Admin: every save goes through the services (forms validate through the model's
clean(), the same path as the API, and its field-keyed errors land on their fields).

Staff see the workspaces they are members of (superusers see all): every queryset is
filtered, and an object of another workspace is a 404. Viewers read; developers and
admins write (as in the API), on top of Django's model permissions.
"""

import copy
import hashlib
import json
import logging
import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db import models, transaction
from django.db.models import Q
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.dateparse import parse_datetime
from django.utils.html import escape, format_html
from django.utils.http import urlencode
from django.utils.text import Truncator, capfirst

from config.celery import app as celery_app
from listener.probe import probe_connection
from orvanta_triggers import monitor, netguard, redaction, registry, selectors, services, validation
from orvanta_triggers.models import Flow, Job, Membership, WebSocketTrigger, Workspace

logger = logging.getLogger(__name__)

LIST_ERROR_CHARS = 80
FRAME_MSG_CHARS = 300
RECENT_JOBS = 20

GREY, AMBER, GREEN, RED = "#6c757d", "#b76e00", "#198754", "#dc3545"
TRIGGER_STATUS_COLOURS = {"disabled": GREY, "connecting": AMBER, "connected": GREEN, "error": RED}
JOB_STATUS_COLOURS = {
    "queued": GREY,
    "running": AMBER,
    "success": GREEN,
    "failure": RED,
    "suspended": AMBER,
    "discarded": GREY,
}


# What the trigger actions did, by the mode they set.
MODE_VERBS = {
    WebSocketTrigger.Mode.ENABLED: "Enabled",
    WebSocketTrigger.Mode.SUSPENDED: "Suspended",
    WebSocketTrigger.Mode.DISABLED: "Disabled",
}


# Presentation helpers


def badge(label, colour, key):
    return format_html(
        '<span class="orvanta-badge orvanta-badge-{}" style="display:inline-block;padding:1px 8px;'
        'border-radius:9px;color:#fff;background:{};font-weight:600;font-size:11px;white-space:nowrap">{}</span>',
        key,
        colour,
        label,
    )


def effective_status(trigger):
    """What the trigger is doing: `disabled` whenever it is disabled, whatever is stored."""
    return WebSocketTrigger.Status.DISABLED if not trigger.enabled else trigger.status


def trigger_badge(trigger):
    status = effective_status(trigger)
    label = WebSocketTrigger.Status(status).label if status in WebSocketTrigger.Status.values else status
    return badge(label, TRIGGER_STATUS_COLOURS.get(status, GREY), status)


def job_badge(job):
    label = Job.Status(job.status).label if job.status in Job.Status.values else job.status
    return badge(label, JOB_STATUS_COLOURS.get(job.status, GREY), job.status)


def job_duration(job):
    if not (job.started_at and job.finished_at):
        return "—"
    seconds = (job.finished_at - job.started_at).total_seconds()
    if seconds < 60:
        return f"{seconds:.3f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def pretty_json(value):
    return format_html(
        '<pre class="orvanta-json" style="white-space:pre-wrap;max-height:30em;overflow:auto;margin:0">{}</pre>',
        json.dumps(value, indent=2, ensure_ascii=False, default=str),
    )


def error_text(exc):
    """A ValidationError or a service refusal as one line."""
    if isinstance(exc, ValidationError):
        if hasattr(exc, "error_dict"):
            return "; ".join(
                (" ".join(msgs) if field == NON_FIELD_ERRORS else f"{field}: {' '.join(msgs)}")
                for field, msgs in exc.message_dict.items()
            )
        return " ".join(exc.messages)
    return str(exc)


def frame_fingerprint(frame):
    """Identifies a stored frame across requests (their positions shift as frames arrive)."""
    return hashlib.sha256(json.dumps(frame, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


# Roles and workspaces


def _roles(request):
    """{workspace id: role} of the requesting user, once per request."""
    roles = getattr(request, "_orvanta_roles", None)
    if roles is None:
        roles = dict(Membership.objects.filter(user=request.user).values_list("workspace_id", "role"))
        request._orvanta_roles = roles
    return roles


def _forget_roles(request):
    request._orvanta_roles = None


def can_write(request, workspace_id):
    return request.user.is_superuser or _roles(request).get(workspace_id) in Membership.WRITE_ROLES


def is_workspace_admin(request, workspace_id):
    return request.user.is_superuser or _roles(request).get(workspace_id) == Membership.Role.ADMIN


def writable_workspaces(request):
    if request.user.is_superuser:
        return Workspace.objects.all()
    return Workspace.objects.filter(memberships__user=request.user, memberships__role__in=Membership.WRITE_ROLES)


# Form fields


class PrettyJSONField(forms.JSONField):
    """Edited as indented JSON. A syntax error is an error on this field; an empty box
    is the model field's empty value (null, [] or {})."""

    def __init__(self, *, empty_json=None, **kwargs):
        self.empty_json = empty_json
        super().__init__(**kwargs)

    def to_python(self, value):
        if self.disabled:
            return value
        if value in self.empty_values:
            return copy.deepcopy(self.empty_json)
        if isinstance(value, str):
            try:
                json.loads(value, cls=self.decoder)
            except json.JSONDecodeError as exc:
                raise ValidationError(
                    "Invalid JSON: %(reason)s (line %(line)s, column %(column)s).",
                    code="invalid",
                    params={"reason": exc.msg, "line": exc.lineno, "column": exc.colno, "value": value},
                ) from exc
            except RecursionError as exc:
                raise ValidationError(f"Invalid JSON: it {validation.TOO_DEEP}.", code="invalid") from exc
        return super().to_python(value)

    def bound_data(self, data, initial):
        # Shown again as typed: Django's parse, unlike the one above, lets RecursionError out.
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return forms.fields.InvalidJSONInput(data)

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)


def json_widget(rows=5):
    return forms.Textarea(
        attrs={
            "rows": rows,
            "cols": 90,
            "class": "vLargeTextField orvanta-json",
            "spellcheck": "false",
            "style": "font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
        }
    )


def _flat_values(choices):
    for value, label in choices:
        if isinstance(label, (list, tuple)):
            yield from (v for v, _ in label)
        else:
            yield value


def runnable_picker(db_field, choices):
    """A select of the registry's scripts (and flows) for a path field."""
    return forms.TypedChoiceField(
        choices=choices,
        coerce=str,
        empty_value=None if db_field.null else "",
        required=not db_field.blank,
        label=capfirst(db_field.verbose_name),
        help_text=db_field.help_text,
    )


def script_choices(empty_label="---------"):
    return [("", empty_label), *((p, p) for p in registry.list_scripts())]


def runnable_choices(request):
    """Scripts of the registry, then the flows of the workspaces the user sees."""
    flows = {}
    visible = Flow.objects.filter(workspace__in=selectors.workspaces_for_user(request.user))
    for flow_path, slug in visible.order_by("path", "workspace__slug").values_list("path", "workspace__slug"):
        flows.setdefault(flow_path, []).append(slug)
    choices = [("", "---------"), ("Scripts", [(p, p) for p in registry.list_scripts()])]
    if flows:
        choices.append(
            ("Flows (tick “Is flow”)", [(p, f"{p} (flow in {', '.join(slugs)})") for p, slugs in flows.items()])
        )
    return choices


# Forms


class ServiceModelForm(forms.ModelForm):
    """Model clean() errors (orvanta_triggers.validation, field-keyed) land on their
    fields; one for a field the form doesn't show becomes a form error instead of a
    crash, and a field that already failed its own validation isn't told twice."""

    picker_fields = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.picker_fields:
            field = self.fields.get(name)
            current = getattr(self.instance, name, None)
            if isinstance(field, forms.ChoiceField) and current and current not in set(_flat_values(field.choices)):
                # Keep showing what is stored; saving it again reports why it is invalid.
                field.choices = [*field.choices, (current, f"{current} (not in the registry)")]

    def _update_errors(self, errors):
        if not hasattr(errors, "error_dict"):
            return super()._update_errors(errors)
        kept = {}
        for field, field_errors in errors.error_dict.items():
            if field == NON_FIELD_ERRORS:
                kept.setdefault(NON_FIELD_ERRORS, []).extend(field_errors)
            elif field in self.fields:
                if field not in self._errors:
                    kept.setdefault(field, []).extend(field_errors)
            else:
                kept.setdefault(NON_FIELD_ERRORS, []).extend(
                    f"{field}: {message}" for message in ValidationError(field_errors).messages
                )
        if kept:
            super()._update_errors(ValidationError(kept))


class WebSocketTriggerForm(ServiceModelForm):
    picker_fields = ("script_path", "error_handler_path")

    class Meta:
        model = WebSocketTrigger
        fields = "__all__"
        help_texts = {
            "status_badge": "disabled whenever the trigger is disabled; else connecting, connected or error, "
            "as written by the listener holding it.",
            "error_redacted": "The last connection error (secrets in URLs redacted).",
            "url_redacted": "The URL; query values are secrets, shown as *** to viewers.",
            "url_runnable_args_redacted": "Arguments for the URL runnable; their values are secrets, shown as *** "
            "to viewers.",
            "headers_redacted": "HTTP headers sent on the upgrade request; their values are secrets, shown as *** "
            "to viewers.",
            "initial_messages_redacted": "Sent in order after every connect; messages and runnable args are "
            "secrets, shown as *** to viewers.",
        }

    def clean(self):
        cleaned = super().clean()
        # Before construct_instance: self.instance still holds the stored values.
        workspace = cleaned.get("workspace") or (self.instance.workspace if self.instance.workspace_id else None)
        enabling = cleaned.get("mode", WebSocketTrigger.Mode.DISABLED) != WebSocketTrigger.Mode.DISABLED and not (
            self.instance.pk and self.instance.enabled
        )
        if workspace is not None and (self.instance.pk is None or enabling):
            try:
                services.check_plan(workspace)
            except services.PlanNotAllowed as exc:
                raise ValidationError(str(exc)) from exc
        return cleaned


class FlowForm(ServiceModelForm):
    picker_fields = ("preprocessor_path",)

    class Meta:
        model = Flow
        fields = "__all__"
        help_texts = {"used_by": "Triggers that run this flow, compute their URL or an initial message with it."}

    def clean(self):
        cleaned = super().clean()
        new_path = cleaned.get("path")
        if self.instance.pk and new_path and new_path != self.instance.path:
            users = selectors.triggers_using_flow(workspace_id=self.instance.workspace_id, path=self.instance.path)
            if users:
                self.add_error(
                    "path", f"can't rename flow '{self.instance.path}': used by trigger(s) {', '.join(users)}"
                )
        return cleaned


class WorkspaceForm(ServiceModelForm):
    picker_fields = ("error_handler_path",)

    class Meta:
        model = Workspace
        fields = "__all__"


# Admin base classes


class WorkspaceScopedAdmin(admin.ModelAdmin):
    """Objects of the user's workspaces only; writes need a developer or admin role."""

    workspace_lookup = "workspace"
    script_picker_fields = ()

    def workspace_id_of(self, obj):
        return obj.workspace_id

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.workspace_lookup}__in": selectors.workspaces_for_user(request.user)})

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            # Another workspace's object is not found, exactly like a missing one.
            raise Http404(f"No {self.opts.verbose_name} {object_id!r} in your workspaces.")
        return obj

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or can_write(request, self.workspace_id_of(obj)))

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or can_write(request, self.workspace_id_of(obj)))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "workspace":
            kwargs["queryset"] = writable_workspaces(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if isinstance(db_field, models.JSONField):
            kwargs.setdefault("widget", json_widget())
            empty = None if db_field.null else db_field.get_default()
            return db_field.formfield(form_class=PrettyJSONField, empty_json=empty, **kwargs)
        if db_field.name in self.script_picker_fields:
            return runnable_picker(db_field, self.picker_choices(request, db_field.name))
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def picker_choices(self, request, field_name):
        return script_choices()

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # A service refusing the save (a race past the form's checks) rolls the
        # request's transaction back and shows why, instead of a 500.
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except (ValidationError, services.PlanNotAllowed) as exc:
            self.message_user(request, f"Not saved: {error_text(exc)}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def change_url(self, obj):
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[quote(obj.pk)])


class ServiceDeleteMixin:
    """Deletes go through delete_model (a service); a refusal is an error message."""

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except (ValidationError, services.PlanNotAllowed) as exc:
            self.message_user(request, f"Not deleted: {error_text(exc)}", messages.ERROR)
            obj = self.get_object(request, unquote(object_id))
            return HttpResponseRedirect(self.change_url(obj))

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)

    @admin.action(permissions=["delete"], description="Delete selected %(verbose_name_plural)s")
    def delete_selected(self, request, queryset):
        if not request.POST.get("post"):
            return django_delete_selected(self, request, queryset)  # the confirmation page
        deleted = 0
        for obj in queryset:
            label = str(obj)
            if not self.has_delete_permission(request, obj):
                self.message_user(request, f"{label}: not deleted (your role in its workspace can't).", messages.ERROR)
                continue
            try:
                with transaction.atomic():
                    self.log_deletions(request, [obj])
                    self.delete_model(request, obj)
            except (ValidationError, services.PlanNotAllowed) as exc:
                self.message_user(request, f"{label}: not deleted: {error_text(exc)}", messages.ERROR)
                continue
            deleted += 1
        if deleted:
            self.message_user(request, f"Deleted {deleted} {self.opts.verbose_name_plural}.", messages.SUCCESS)
        return None


def _changed_fields(original, form, names):
    return {
        name: form.cleaned_data[name]
        for name in names
        if name in form.cleaned_data and getattr(original, name) != form.cleaned_data[name]
    }


# Workspaces


class MembershipFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        for form in self.forms:
            if form.instance.pk and "user" in form.changed_data:
                form.add_error("user", "A membership can't be moved to another user; add that user on a new row.")


class MembershipInline(admin.TabularInline):
    """Saved through services.set_membership and services.remove_membership
    (WorkspaceAdmin.save_formset), by the workspace's admins."""

    model = Membership
    formset = MembershipFormSet
    fields = ("user", "role")
    extra = 0

    def _may_manage(self, request, obj):
        return obj is None or is_workspace_admin(request, obj.pk)

    def has_add_permission(self, request, obj):
        return super().has_add_permission(request, obj) and self._may_manage(request, obj)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and self._may_manage(request, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and self._may_manage(request, obj)


@admin.register(Workspace)
class WorkspaceAdmin(WorkspaceScopedAdmin):
    form = WorkspaceForm
    workspace_lookup = "pk"
    script_picker_fields = ("error_handler_path",)
    list_display = ("slug", "name", "plan", "error_handler_path")
    list_filter = ("plan",)
    search_fields = ("slug", "name")
    inlines = [MembershipInline]
    fieldsets = (
        (None, {"fields": ("slug", "name", "plan")}),
        (
            "Error handler",
            {
                "fields": ("error_handler_path", "error_handler_args"),
                "description": "Runs after a job's final failure when its trigger has no error handler of its own.",
            },
        ),
    )

    def workspace_id_of(self, obj):
        return obj.pk

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            readonly.append("slug")
        if not request.user.is_superuser:
            readonly.append("plan")  # plans are the platform's to change
        return readonly

    def has_delete_permission(self, request, obj=None):
        return False  # no service deletes a workspace

    def save_model(self, request, obj, form, change):
        if change:
            original = Workspace.objects.get(pk=obj.pk)
            settings_ = _changed_fields(original, form, ("name", "error_handler_path", "error_handler_args"))
            if settings_:
                services.update_workspace_settings(workspace=original, **settings_)
            if "plan" in form.cleaned_data and form.cleaned_data["plan"] != original.plan:
                services.set_workspace_plan(workspace=original, plan=form.cleaned_data["plan"])
            return
        created = services.create_workspace(
            slug=obj.slug,
            name=obj.name,
            plan=obj.plan,
            owner=None if request.user.is_superuser else request.user,
        )
        if obj.error_handler_path or obj.error_handler_args:
            services.update_workspace_settings(
                workspace=created,
                error_handler_path=obj.error_handler_path,
                error_handler_args=obj.error_handler_args,
            )
        # The admin goes on with `obj` (inlines, log, redirect): make it the saved row.
        obj.pk = created.pk
        obj.created_at = created.created_at
        obj._state.adding = False
        obj._state.db = created._state.db
        _forget_roles(request)

    def save_formset(self, request, form, formset, change):
        if formset.model is Membership:
            for membership in formset.save(commit=False):
                services.set_membership(workspace=formset.instance, user=membership.user, role=membership.role)
            for membership in formset.deleted_objects:
                services.remove_membership(workspace=formset.instance, user=membership.user)
            return
        super().save_formset(request, form, formset, change)


# Flows


@admin.register(Flow)
class FlowAdmin(ServiceDeleteMixin, WorkspaceScopedAdmin):
    form = FlowForm
    script_picker_fields = ("preprocessor_path",)
    list_display = ("path", "workspace", "step_count", "early_return", "edited_at")
    list_filter = (("workspace", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("workspace",)
    search_fields = ("path",)
    actions = ("delete_selected",)

    def get_fieldsets(self, request, obj=None):
        fieldsets = [
            (None, {"fields": ("workspace", "path")}),
            (
                "Steps",
                {
                    "fields": ("preprocessor_path", "steps", "early_return"),
                    "description": escape(
                        'Steps run in order: [{"id": "a", "script_path": "examples/parse", "args": {"msg": {"type": "ref", '
                        '"expr": "flow_input.msg"}}}, ...]. An arg is {"type": "static", "value": ...} or {"type": "ref", '
                        '"expr": ...} where expr is a dotted path rooted at flow_input, results.<earlier step id> or '
                        "previous_result. Early return: the id of the step whose result is sent back as soon as it exists."
                    ),
                },
            ),
        ]
        if obj is not None:
            fieldsets.append(("Usage", {"fields": ("used_by", "created_at", "edited_at")}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        readonly = ["used_by", "created_at", "edited_at"]
        if obj is not None:
            readonly.append("workspace")  # a flow stays in its workspace (triggers name it by path)
        return readonly

    @admin.display(description="Steps")
    def step_count(self, obj):
        return len(obj.steps) if isinstance(obj.steps, list) else "—"

    @admin.display(description="Used by")
    def used_by(self, obj):
        if obj.pk is None:
            return "—"
        return ", ".join(selectors.triggers_using_flow(workspace_id=obj.workspace_id, path=obj.path)) or "—"

    def save_model(self, request, obj, form, change):
        if not change:
            services.save_new_flow(flow=obj)
            return
        original = Flow.objects.get(pk=obj.pk)
        fields = _changed_fields(original, form, services.FLOW_FIELDS)
        if fields:
            services.update_flow(flow=original, **fields)

    def delete_model(self, request, obj):
        services.delete_flow(flow=obj)


# Jobs


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
        if obj is None or can_write(request, obj.workspace_id):
            return fieldsets
        return [
            (name, {**options, "fields": tuple(self.redacted_fields.get(f, f) for f in options["fields"])})
            for name, options in fieldsets
        ]

    def has_resume_permission(self, request):
        """Resuming and discarding suspended jobs: members who may write some workspace
        (each job is checked against its own workspace)."""
        return request.user.is_superuser or any(role in Membership.WRITE_ROLES for role in _roles(request).values())

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
            if job.status != Job.Status.SUSPENDED or not can_write(request, job.workspace_id):
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


# Triggers


class TriggerStatusFilter(admin.SimpleListFilter):
    """By what the badge shows: a disabled trigger is `disabled` whatever is stored."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return WebSocketTrigger.Status.choices

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if value == WebSocketTrigger.Status.DISABLED:
            return queryset.filter(Q(enabled=False) | Q(status=value))
        return queryset.filter(enabled=True, status=value)


@admin.register(WebSocketTrigger)
class WebSocketTriggerAdmin(ServiceDeleteMixin, WorkspaceScopedAdmin):
    form = WebSocketTriggerForm
    script_picker_fields = ("script_path", "error_handler_path")
    list_display = (
        "path",
        "workspace",
        "script_path",
        "mode",
        "status_badge",
        "last_error",
        "last_message_at",
        "listener_id",
    )
    list_filter = (
        "mode",
        TriggerStatusFilter,
        ("workspace", admin.RelatedOnlyFieldListFilter),
        ("script_path", admin.AllValuesFieldListFilter),
    )
    list_select_related = ("workspace",)
    search_fields = ("path", "script_path", "url")
    actions = ("enable", "suspend", "disable", "test_connection", "delete_selected")
    status_fields = (
        "status_badge",
        "error_redacted",
        "last_connected_at",
        "last_message_at",
        "listener_id",
        "subprotocol",
        "edited_at",
    )
    fieldsets = (
        (
            None,
            {
                "fields": ("workspace", "path", "mode"),
                "description": escape(
                    "Suspended: the trigger stays connected and records a job for every message its filters match, "
                    "without running it; resume or discard them from its “Suspended jobs” link (or the jobs list)."
                ),
            },
        ),
        (
            "URL",
            {
                "fields": ("url", "url_runnable_args"),
                "description": escape(
                    "A static ws:// or wss:// URL, or $script:<path> / $flow:<path>: that runnable runs on a worker, with "
                    "the URL runnable args, before every connect and must return the URL as a string (useful for "
                    "authentication query parameters)."
                ),
            },
        ),
        (
            "Runnable",
            {
                "fields": ("script_path", "is_flow"),
                "description": escape(
                    "Runs for every matching message, with the message as the string argument msg (or, if the script "
                    "has a preprocessor, with what preprocessor(event) returns). Tick “Is flow” for a flow."
                ),
            },
        ),
        (
            "Filters",
            {
                "fields": ("filters", "filter_logic"),
                "description": escape(
                    'Filters are [{"key": ..., "value": ...}, ...]. A filter matches when the message parses as JSON and '
                    "has the key at the top level with a value equal to, or a superset of, the filter's value (objects: "
                    "every filter key present and matching recursively; arrays: every filter element matches some "
                    "message element; scalars: strict JSON equality). AND (default): the message must match every "
                    "filter; OR: any one. No filters: every message triggers."
                ),
            },
        ),
        (
            "Initial messages",
            {
                "fields": ("initial_messages",),
                "description": escape(
                    "Sent in order after every (re)connect, e.g. to authenticate or subscribe: "
                    '{"raw_message": "<JSON text>"} (a JSON string is sent unquoted) or '
                    '{"runnable_result": {"path": ..., "args": {}, "is_flow": false}} (its result is sent).'
                ),
            },
        ),
        (
            "Send results",
            {
                "fields": ("can_return_message", "can_return_error_result"),
                "description": escape(
                    "Send each successful job's non-null result back on the trigger's connection (a string as is, "
                    'anything else as JSON); with the second, failures too, as {"error": {name, message, stack}}.'
                ),
            },
        ),
        (
            "Heartbeat",
            {
                "fields": ("heartbeat", "capture", "resume"),
                "description": escape(
                    'Keep-alive sent by the listener itself, with no job: {"interval_secs": 10, "message": ..., '
                    '"state_field": "s"}. Each {{state}} in the message is replaced by the JSON of state_field from the '
                    "latest incoming JSON message that had it (null before any). Empty: no heartbeat. "
                    'Capture keeps named values from incoming JSON frames ({"session_id": "d.session_id", "seq": "s"}), '
                    "usable as {{name}} in the heartbeat and resume messages. Resume is sent after a reconnect instead "
                    "of the initial messages once every value it uses is known; a frame matching refused_when falls "
                    "back to the initial messages."
                ),
            },
        ),
        (
            "Error handler",
            {
                "fields": ("error_handler_path", "error_handler_args"),
                "description": "Runs after a job's final failure instead of the workspace's error handler. "
                "Empty: the workspace's.",
            },
        ),
        (
            "Retry",
            {
                "fields": ("retry",),
                "description": escape(
                    '{"max_attempts": 3, "delay_secs": 1, "multiplier": 2}: a failed job runs up to max_attempts times in '
                    "all, the n-th retry after delay_secs × multiplier^(n-1) seconds. Empty: no retry."
                ),
            },
        ),
        (
            "Advanced",
            {
                "fields": ("headers", "subprotocols"),
                "classes": ("collapse",),
                "description": "Sent on the WebSocket upgrade request.",
            },
        ),
        (
            "Status",
            {
                "fields": status_fields,
                "description": "Written by the listener that holds the trigger.",
            },
        ),
    )

    # What a viewer is shown instead of each field holding secrets (orvanta_triggers.redaction).
    redacted_fields = {
        "url": "url_redacted",
        "url_runnable_args": "url_runnable_args_redacted",
        "headers": "headers_redacted",
        "initial_messages": "initial_messages_redacted",
    }

    def _hides_secrets(self, request, obj):
        return obj is not None and not can_write(request, obj.workspace_id)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if not self._hides_secrets(request, obj):
            return fieldsets
        return [
            (name, {**options, "fields": tuple(self.redacted_fields.get(f, f) for f in options["fields"])})
            for name, options in fieldsets
        ]

    def get_readonly_fields(self, request, obj=None):
        readonly = [*self.status_fields, *self.redacted_fields.values()]
        if obj is not None:
            readonly.insert(0, "workspace")  # no service moves a trigger to another workspace
        return readonly

    def get_search_fields(self, request):
        # A search on URLs would tell a viewer what their query strings hold, a
        # character at a time: only members who may see them search them.
        if request.user.is_superuser or all(role in Membership.WRITE_ROLES for role in _roles(request).values()):
            return self.search_fields
        return tuple(name for name in self.search_fields if name != "url")

    def picker_choices(self, request, field_name):
        return runnable_choices(request) if field_name == "script_path" else script_choices()

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        if "workspace" not in initial:
            workspaces = list(writable_workspaces(request).values_list("pk", flat=True)[:2])
            if len(workspaces) == 1:
                initial["workspace"] = workspaces[0]
        return initial

    # Columns and read-only fields

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj):
        return trigger_badge(obj) if obj.pk else "—"

    @admin.display(description="Last error")
    def last_error(self, obj):
        if not obj.error:
            return "—"
        text = netguard.redact_text(obj.error)
        return format_html('<span title="{}">{}</span>', text, Truncator(text).chars(LIST_ERROR_CHARS))

    @admin.display(description="Error")
    def error_redacted(self, obj):
        return netguard.redact_text(obj.error) if obj.error else "—"

    @admin.display(description="URL")
    def url_redacted(self, obj):
        return redaction.redact_url(obj.url)

    @admin.display(description="URL runnable args")
    def url_runnable_args_redacted(self, obj):
        return pretty_json(redaction.redact_values(obj.url_runnable_args))

    @admin.display(description="Headers")
    def headers_redacted(self, obj):
        return pretty_json(redaction.redact_values(obj.headers))

    @admin.display(description="Initial messages")
    def initial_messages_redacted(self, obj):
        return pretty_json(redaction.redact_initial_messages(obj.initial_messages))

    # Saving

    def save_model(self, request, obj, form, change):
        if not change:
            services.save_new_trigger(trigger=obj)
            return
        # `obj` already carries the form's values; the service compares against the
        # stored ones (enabling checks the plan, toggling resets the status).
        original = WebSocketTrigger.objects.select_related("workspace").get(pk=obj.pk)
        fields = _changed_fields(original, form, services.TRIGGER_CONFIG_FIELDS)
        if fields:
            saved = services.update_trigger(trigger=original, **fields)
            obj.status, obj.error, obj.edited_at = saved.status, saved.error, saved.edited_at

    def delete_model(self, request, obj):
        services.delete_trigger(trigger=obj)

    # Actions

    def _set_mode(self, request, queryset, mode):
        changed = unchanged = 0
        for trigger in queryset.select_related("workspace"):
            if trigger.mode == mode:
                unchanged += 1
                continue
            if not self.has_change_permission(request, trigger):
                self.message_user(
                    request, f"{trigger.path}: your role in its workspace can't change it.", messages.ERROR
                )
                continue
            try:
                services.set_trigger_mode(trigger=trigger, mode=mode)
            except (services.PlanNotAllowed, ValidationError) as exc:
                self.message_user(request, f"{trigger.path}: {error_text(exc)}", messages.ERROR)
                continue
            changed += 1
        verb = MODE_VERBS[mode]
        if changed or not unchanged:
            self.message_user(
                request, f"{verb} {changed} trigger(s).", messages.SUCCESS if changed else messages.WARNING
            )
        if unchanged:
            self.message_user(request, f"{unchanged} trigger(s) were already {verb.lower()}.", messages.INFO)

    @admin.action(description="Enable selected triggers", permissions=["change"])
    def enable(self, request, queryset):
        self._set_mode(request, queryset, WebSocketTrigger.Mode.ENABLED)

    @admin.action(
        description="Suspend selected triggers (record their jobs without running them)", permissions=["change"]
    )
    def suspend(self, request, queryset):
        self._set_mode(request, queryset, WebSocketTrigger.Mode.SUSPENDED)

    @admin.action(description="Disable selected triggers", permissions=["change"])
    def disable(self, request, queryset):
        self._set_mode(request, queryset, WebSocketTrigger.Mode.DISABLED)

    @admin.action(description="Test connection of selected triggers", permissions=["change"])
    def test_connection(self, request, queryset):
        for trigger in queryset:
            if not self.has_change_permission(request, trigger):
                self.message_user(request, f"{trigger.path}: your role in its workspace can't test it.", messages.ERROR)
                continue
            self._report_probe(request, trigger)

    def _report_probe(self, request, trigger):
        """Connect as the listener would, then close; one message with the outcome."""
        try:
            result = probe_connection(
                celery_app=celery_app,
                workspace_id=trigger.workspace_id,
                url=trigger.url,
                url_runnable_args=trigger.url_runnable_args,
                headers=trigger.headers,
                subprotocols=trigger.subprotocols,
            )
        except Exception as exc:  # e.g. the broker is away while a URL runnable must run
            logger.warning("test connection of trigger %s failed: %s", trigger.pk, exc, exc_info=True)
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "subprotocol": None}
        if result["ok"]:
            subprotocol = f", subprotocol {result['subprotocol']}" if result.get("subprotocol") else ""
            self.message_user(
                request,
                f"{trigger.path}: connection OK ({netguard.redact_text(trigger.url)}{subprotocol})",
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request, f"{trigger.path}: connection failed: {netguard.redact_text(result['error'])}", messages.ERROR
            )

    # Views of one trigger: test connection, replay a frame

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/test-connection/",
                self.admin_site.admin_view(self.test_connection_view),
                name="%s_%s_test_connection" % info,
            ),
            path("<path:object_id>/replay/", self.admin_site.admin_view(self.replay_view), name="%s_%s_replay" % info),
            *super().get_urls(),
        ]

    def _trigger_to_act_on(self, request, object_id):
        trigger = self.get_object(request, unquote(object_id))  # 404 outside the user's workspaces
        if not self.has_change_permission(request, trigger):
            raise PermissionDenied
        return trigger

    def test_connection_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        trigger = self._trigger_to_act_on(request, object_id)
        self._report_probe(request, trigger)
        return HttpResponseRedirect(self.change_url(trigger))

    def replay_view(self, request, object_id):
        """Run the trigger's runnable again on one of its recent frames."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        trigger = self._trigger_to_act_on(request, object_id)
        back = HttpResponseRedirect(self.change_url(trigger) + "#recent-frames")
        try:
            frames = monitor.recent_frames(trigger.id)
        except Exception as exc:
            logger.warning("replay on trigger %s: recent frames unavailable: %s", trigger.pk, exc)
            self.message_user(
                request, "Recent frames are unavailable (Redis did not answer); nothing replayed.", messages.ERROR
            )
            return back
        wanted = request.POST.get("frame", "")
        frame = next((f for f in frames if frame_fingerprint(f) == wanted), None)
        if frame is None:
            self.message_user(request, "That frame is no longer among the trigger's recent frames.", messages.ERROR)
            return back
        if frame.get("truncated"):
            self.message_user(
                request, "That frame was too large to keep whole, so it can't be replayed.", messages.ERROR
            )
            return back
        try:
            job_id = services.enqueue_trigger_job(
                trigger=trigger,
                msg=frame["msg"],
                msg_type=frame.get("msg_type", "text"),
                url=frame.get("url"),
            )
        except Exception as exc:
            logger.warning("replay on trigger %s failed: %s", trigger.pk, exc, exc_info=True)
            self.message_user(request, f"Replay failed: {type(exc).__name__}: {exc}", messages.ERROR)
            return back
        job_url = reverse("admin:orvanta_triggers_job_change", args=[job_id])
        self.message_user(
            request,
            format_html(
                'Replayed the frame received at {}: job <a href="{}">{}</a> queued.', frame.get("at"), job_url, job_id
            ),
            messages.SUCCESS,
        )
        return back

    # The change form's read-only sections

    def change_view(self, request, object_id, form_url="", extra_context=None):
        trigger = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if self.has_view_or_change_permission(request, trigger):
            context.update(self._recent_context(request, trigger))
        return super().change_view(request, object_id, form_url, context)

    def _recent_context(self, request, trigger):
        link_jobs = self.admin_site.is_registered(Job) and self.admin_site.get_model_admin(Job).has_view_permission(
            request
        )
        jobs = [
            {
                "job": job,
                "badge": job_badge(job),
                "duration": job_duration(job),
                "url": reverse("admin:orvanta_triggers_job_change", args=[quote(job.pk)]) if link_jobs else None,
            }
            for job in selectors.workspace_jobs(workspace=trigger.workspace, trigger_path=trigger.path)[:RECENT_JOBS]
        ]
        frames, frames_error = [], None
        try:
            stored = monitor.recent_frames(trigger.id)
        except Exception as exc:
            logger.warning("trigger %s: recent frames unavailable: %s", trigger.pk, exc)
            frames_error = f"Recent frames are unavailable: Redis did not answer ({type(exc).__name__})."
        else:
            for frame in stored:
                if not isinstance(frame, dict):
                    continue
                msg = str(frame.get("msg", ""))
                frames.append(
                    {
                        "at": parse_datetime(str(frame.get("at") or "")) or frame.get("at"),
                        "msg_type": frame.get("msg_type", "text"),
                        "msg": Truncator(msg).chars(FRAME_MSG_CHARS),
                        "length": len(msg),
                        "url": netguard.redact_text(frame.get("url") or ""),
                        "truncated": bool(frame.get("truncated")),
                        "fingerprint": frame_fingerprint(frame),
                    }
                )
        may_act = self.has_change_permission(request, trigger)
        jobs_url = reverse("admin:orvanta_triggers_job_changelist")
        of_this_trigger = {"workspace__id__exact": trigger.workspace_id, "trigger_path": trigger.path}
        return {
            "suspended_job_count": selectors.suspended_job_count(
                workspace_id=trigger.workspace_id, trigger_path=trigger.path
            ),
            "suspended_jobs_url": f"{jobs_url}?{urlencode({**of_this_trigger, 'status__exact': 'suspended'})}"
            if link_jobs
            else None,
            "error_handler_runs_url": f"{jobs_url}?{urlencode({**of_this_trigger, 'kind__exact': 'error_handler'})}"
            if link_jobs
            else None,
            "recent_jobs": jobs,
            "recent_jobs_limit": RECENT_JOBS,
            "recent_frames": frames,
            "recent_frames_error": frames_error,
            "can_replay": may_act,
            "can_test_connection": may_act,
        }


admin.site.site_header = "Orvanta administration"
admin.site.site_title = "Orvanta"
admin.site.index_title = "WebSocket triggers, flows and jobs"
