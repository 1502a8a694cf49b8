"""WebSocket triggers: configuration (secrets redacted for viewers), list columns,
saves through the services, and the mode and test connection actions."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils.html import escape, format_html
from django.utils.text import Truncator

from orvanta_triggers import netguard, redaction, selectors, services
from orvanta_triggers.admin import access
from orvanta_triggers.admin.base import ServiceDeleteMixin, WorkspaceScopedAdmin, changed_fields
from orvanta_triggers.admin.display import error_text, pretty_json, trigger_badge
from orvanta_triggers.admin.forms import WebSocketTriggerForm, runnable_choices, script_choices
from orvanta_triggers.admin.trigger_views import TriggerViewsMixin
from orvanta_triggers.models import WebSocketTrigger

LIST_ERROR_CHARS = 80


# What the trigger actions did, by the mode they set.
MODE_VERBS = {
    WebSocketTrigger.Mode.ENABLED: "Enabled",
    WebSocketTrigger.Mode.SUSPENDED: "Suspended",
    WebSocketTrigger.Mode.DISABLED: "Disabled",
}


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
class WebSocketTriggerAdmin(TriggerViewsMixin, ServiceDeleteMixin, WorkspaceScopedAdmin):
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
        return obj is not None and not access.can_write(request, obj.workspace_id)

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
        if access.writes_every_workspace(request):
            return self.search_fields
        return tuple(name for name in self.search_fields if name != "url")

    def picker_choices(self, request, field_name):
        return runnable_choices(request) if field_name == "script_path" else script_choices()

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        if "workspace" not in initial:
            workspaces = list(access.writable_workspaces(request).values_list("pk", flat=True)[:2])
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
        original = selectors.stored_trigger(obj.pk)
        fields = changed_fields(original, form, services.TRIGGER_CONFIG_FIELDS)
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
