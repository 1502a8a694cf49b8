"""Workspaces and their memberships (managed by the workspace's admins)."""

from django import forms
from django.contrib import admin

from orvanta_triggers import selectors, services
from orvanta_triggers.admin import access
from orvanta_triggers.admin.base import WorkspaceScopedAdmin, changed_fields
from orvanta_triggers.admin.forms import WorkspaceForm
from orvanta_triggers.models import Membership, Workspace


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
        return obj is None or access.is_workspace_admin(request, obj.pk)

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
            original = selectors.stored_workspace(obj.pk)
            settings_ = changed_fields(original, form, ("name", "error_handler_path", "error_handler_args"))
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
        access.forget_roles(request)

    def save_formset(self, request, form, formset, change):
        if formset.model is Membership:
            for membership in formset.save(commit=False):
                services.set_membership(workspace=formset.instance, user=membership.user, role=membership.role)
            for membership in formset.deleted_objects:
                services.remove_membership(workspace=formset.instance, user=membership.user)
            return
        super().save_formset(request, form, formset, change)
