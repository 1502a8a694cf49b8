"""Form fields and model forms of the admin: JSON edited as indented text, runnable
pickers fed by the registry, and model clean() errors landing on their fields."""

import copy
import json

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils.text import capfirst

from orvanta_triggers import fieldchecks, filters, registry, selectors, services
from orvanta_triggers.models import Flow, WebSocketTrigger, Workspace


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
            if filters.too_deep_to_parse(value):
                raise ValidationError(f"Invalid JSON: it {fieldchecks.TOO_DEEP}.", code="invalid")
            try:
                json.loads(value, cls=self.decoder)
            except json.JSONDecodeError as exc:
                raise ValidationError(
                    "Invalid JSON: %(reason)s (line %(line)s, column %(column)s).",
                    code="invalid",
                    params={"reason": exc.msg, "line": exc.lineno, "column": exc.colno, "value": value},
                ) from exc
        return super().to_python(value)

    def bound_data(self, data, initial):
        # Shown again as typed, never parsed (filters.too_deep_to_parse says why).
        if isinstance(data, str) and filters.too_deep_to_parse(data):
            return forms.fields.InvalidJSONInput(data)
        return super().bound_data(data, initial)

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
    visible = selectors.flow_paths_by_workspace(workspaces=selectors.workspaces_for_user(request.user))
    for flow_path, slug in visible:
        flows.setdefault(flow_path, []).append(slug)
    choices = [("", "---------"), ("Scripts", [(p, p) for p in registry.list_scripts()])]
    if flows:
        choices.append(
            ("Flows (tick “Is flow”)", [(p, f"{p} (flow in {', '.join(slugs)})") for p, slugs in flows.items()])
        )
    return choices


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
