"""What every model admin of the app shares: querysets scoped to the user's workspaces,
writes by role, JSON and runnable fields, and saves and deletes through the services."""

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse

from orvanta_triggers import selectors, services
from orvanta_triggers.admin import access
from orvanta_triggers.admin.display import error_text
from orvanta_triggers.admin.forms import PrettyJSONField, json_widget, runnable_picker, script_choices


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
        return allowed and (obj is None or access.can_write(request, self.workspace_id_of(obj)))

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or access.can_write(request, self.workspace_id_of(obj)))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "workspace":
            kwargs["queryset"] = access.writable_workspaces(request)
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


def changed_fields(original, form, names):
    return {
        name: form.cleaned_data[name]
        for name in names
        if name in form.cleaned_data and getattr(original, name) != form.cleaned_data[name]
    }
