"""Flows: saved and deleted through the services."""

from django.contrib import admin
from django.utils.html import escape

from orvanta_triggers import selectors, services
from orvanta_triggers.admin.base import ServiceDeleteMixin, WorkspaceScopedAdmin, changed_fields
from orvanta_triggers.admin.forms import FlowForm
from orvanta_triggers.models import Flow


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
        original = selectors.stored_flow(obj.pk)
        fields = changed_fields(original, form, services.FLOW_FIELDS)
        if fields:
            services.update_flow(flow=original, **fields)

    def delete_model(self, request, obj):
        services.delete_flow(flow=obj)
