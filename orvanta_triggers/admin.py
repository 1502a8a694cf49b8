"""Admin: every save goes through the services (the form validates through the
model's clean(), the same path as the API)."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from orvanta_triggers import services
from orvanta_triggers.models import Flow, Job, Membership, WebSocketTrigger, Workspace


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "plan", "error_handler_path")
    inlines = [MembershipInline]


class WebSocketTriggerForm(forms.ModelForm):
    class Meta:
        model = WebSocketTrigger
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        workspace = cleaned.get("workspace")
        enabling = cleaned.get("enabled") and not (self.instance.pk and self.instance.enabled)
        if workspace is not None and (self.instance.pk is None or enabling):
            try:
                services.check_plan(workspace)
            except services.PlanNotAllowed as exc:
                raise ValidationError(str(exc)) from exc
        return cleaned


@admin.register(WebSocketTrigger)
class WebSocketTriggerAdmin(admin.ModelAdmin):
    form = WebSocketTriggerForm
    list_display = ("path", "workspace", "script_path", "enabled", "status", "last_message_at", "listener_id")
    list_filter = ("status", "enabled", "workspace")
    search_fields = ("path", "script_path", "url")
    readonly_fields = ("status", "error", "last_connected_at", "last_message_at", "listener_id", "edited_at")
    actions = ("enable", "disable")

    def save_model(self, request, obj, form, change):
        if change:
            fields = {name: form.cleaned_data[name] for name in services.TRIGGER_CONFIG_FIELDS if name in form.cleaned_data}
            services.update_trigger(trigger=obj, **fields)
        else:
            services.save_new_trigger(trigger=obj)

    def delete_model(self, request, obj):
        services.delete_trigger(trigger=obj)

    def delete_queryset(self, request, queryset):
        for trigger in queryset:
            services.delete_trigger(trigger=trigger)

    def _set_enabled(self, request, queryset, enabled):
        for trigger in queryset:
            try:
                services.set_trigger_enabled(trigger=trigger, enabled=enabled)
            except (services.PlanNotAllowed, ValidationError) as exc:
                self.message_user(request, f"{trigger.path}: {exc}", level=messages.ERROR)

    @admin.action(description="Enable selected triggers")
    def enable(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected triggers")
    def disable(self, request, queryset):
        self._set_enabled(request, queryset, False)


@admin.register(Flow)
class FlowAdmin(admin.ModelAdmin):
    list_display = ("path", "workspace", "early_return", "edited_at")
    list_filter = ("workspace",)

    def save_model(self, request, obj, form, change):
        if change:
            services.update_flow(flow=obj, **{name: form.cleaned_data.get(name) for name in services.FLOW_FIELDS})
        else:
            services.save_new_flow(flow=obj)

    def delete_model(self, request, obj):
        services.delete_flow(flow=obj)


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "trigger_path", "script_path", "status", "attempt", "created_at", "finished_at")
    list_filter = ("status", "workspace")
    search_fields = ("trigger_path", "script_path")
    readonly_fields = [f.name for f in Job._meta.fields]

    def has_add_permission(self, request):
        return False
