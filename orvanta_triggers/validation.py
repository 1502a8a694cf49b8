"""Validation of workspaces, flows and triggers: the one path behind model.clean(),
shared by the admin, the API and the services. Each function returns a dict of
field name -> list of messages; an empty dict means valid. A trigger's fields are
checked one at a time in triggerfields; what the checks share is in fieldchecks.
"""

import re

from django.core.exceptions import ValidationError

# Re-exported (`as`): the tests read TOO_DEEP here, the listener PLACEHOLDER_RE.
from orvanta_triggers.fieldchecks import TOO_DEEP as TOO_DEEP
from orvanta_triggers.fieldchecks import Errors, is_json_object, runnable_error, script_error, strict_json_errors
from orvanta_triggers.triggerfields import PLACEHOLDER_RE as PLACEHOLDER_RE
from orvanta_triggers.triggerfields import (
    capture_errors,
    filters_errors,
    headers_errors,
    heartbeat_errors,
    initial_messages_errors,
    resume_errors,
    retry_errors,
    subprotocols_errors,
    url_errors,
)

# \Z, not $: "$" also matches before a trailing newline.
PATH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*\Z")
# The last segment of a trigger path can't collide with an API action.
RESERVED_LAST_SEGMENTS = {"setenabled", "setmode", "resume_jobs", "discard_jobs"}
FLOW_EXPR_ROOTS = ("flow_input", "results", "previous_result")


def raise_errors(errors):
    if errors:
        raise ValidationError(errors)


def path_error(path):
    if not isinstance(path, str) or not path:
        return "a path is required"
    if len(path) > 255:
        return "at most 255 characters"
    if not PATH_RE.match(path):
        return "use segments of letters, digits, _ . - separated by / (e.g. f/folder/name)"
    return None


def _handler_errors(errors, path, args):
    if path:
        message = script_error(path, "error handler")
        if message:
            errors.add("error_handler_path", message)
    if not is_json_object(args):
        errors.add("error_handler_args", "must be a JSON object")


def _keeps_its_url_disabled(trigger):
    """A stored trigger that is (being) disabled and keeps its URL and URL runnable
    args. Its URL is not checked again: its host may resolve to a refused address by
    now (or its URL runnable be gone), and disabling it, or editing it while disabled,
    must not depend on that. Enabling it checks the URL again."""
    if trigger.mode != trigger.Mode.DISABLED or trigger.pk is None:
        return False
    stored = type(trigger).objects.filter(pk=trigger.pk).values_list("url", "url_runnable_args").first()
    return stored == (trigger.url, trigger.url_runnable_args)


def trigger_errors(trigger):
    errors = Errors()
    message = path_error(trigger.path)
    if message is None and trigger.path.rsplit("/", 1)[-1] in RESERVED_LAST_SEGMENTS:
        message = f"a path can't end in '{trigger.path.rsplit('/', 1)[-1]}'"
    if message:
        errors.add("path", message)
    elif (
        trigger.workspace_id
        and type(trigger)
        .objects.filter(workspace_id=trigger.workspace_id, path=trigger.path)
        .exclude(pk=trigger.pk)
        .exists()
    ):
        errors.add("path", f"a WebSocket trigger with path '{trigger.path}' already exists in this workspace")
    for sub in (
        {}
        if _keeps_its_url_disabled(trigger)
        else url_errors(trigger.url, trigger.workspace_id, trigger.url_runnable_args),
        filters_errors(trigger.filters, trigger.filter_logic),
        initial_messages_errors(trigger.initial_messages, trigger.workspace_id),
        heartbeat_errors(trigger.heartbeat),
        capture_errors(trigger.capture, trigger.heartbeat),
        resume_errors(trigger.resume, trigger.capture),
        retry_errors(trigger.retry),
        headers_errors(trigger.headers),
        subprotocols_errors(trigger.subprotocols),
    ):
        for field, messages in sub.items():
            errors.setdefault(field, []).extend(messages)
    message = runnable_error(trigger.workspace_id, trigger.script_path, trigger.is_flow)
    if message:
        errors.add("script_path", message)
    _handler_errors(errors, trigger.error_handler_path, trigger.error_handler_args)
    strict_json_errors(
        errors,
        trigger,
        (
            "url_runnable_args",
            "filters",
            "initial_messages",
            "heartbeat",
            "capture",
            "resume",
            "error_handler_args",
            "retry",
            "headers",
            "subprotocols",
        ),
    )
    return dict(errors)


def workspace_errors(workspace):
    errors = Errors()
    _handler_errors(errors, workspace.error_handler_path, workspace.error_handler_args)
    strict_json_errors(errors, workspace, ("error_handler_args",))
    return dict(errors)


def _expr_error(expr, earlier_step_ids):
    if not isinstance(expr, str) or not expr:
        return "expr must be a non-empty dotted path"
    parts = expr.split(".")
    if parts[0] not in FLOW_EXPR_ROOTS or any(not p for p in parts):
        return f"expr '{expr}' must start with flow_input, results.<step id> or previous_result"
    if parts[0] == "results" and (len(parts) < 2 or parts[1] not in earlier_step_ids):
        return f"expr '{expr}' must name an earlier step after results."
    return None


def flow_errors(flow):
    errors = Errors()
    message = path_error(flow.path)
    if message:
        errors.add("path", message)
    elif (
        flow.workspace_id
        and type(flow).objects.filter(workspace_id=flow.workspace_id, path=flow.path).exclude(pk=flow.pk).exists()
    ):
        errors.add("path", f"a flow with path '{flow.path}' already exists in this workspace")
    if flow.preprocessor_path:
        message = script_error(flow.preprocessor_path, "preprocessor script")
        if message:
            errors.add("preprocessor_path", message)
    strict_json_errors(errors, flow, ("steps",))
    steps = flow.steps
    if not isinstance(steps, list) or not steps:
        errors.add("steps", "must be a non-empty list of steps")
        return dict(errors)
    seen = []
    for index, step in enumerate(steps):
        prefix = f"step {index}"
        if not is_json_object(step) or not {"id", "script_path"} <= set(step) <= {"id", "script_path", "args"}:
            errors.add("steps", f'{prefix}: must be {{"id", "script_path", "args"?}}')
            continue
        step_id = step["id"]
        if not isinstance(step_id, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\Z", step_id):
            errors.add("steps", f"{prefix}: id must be an identifier")
        elif step_id in seen:
            errors.add("steps", f"{prefix}: id '{step_id}' is used twice")
        message = script_error(step["script_path"])
        if message:
            errors.add("steps", f"{prefix}: {message}")
        args = step.get("args", {})
        if not is_json_object(args):
            errors.add("steps", f"{prefix}: args must be a JSON object")
        else:
            for name, transform in args.items():
                if not is_json_object(transform) or transform.get("type") not in ("static", "ref"):
                    errors.add(
                        "steps",
                        f'{prefix}: arg {name} must be {{"type": "static", "value"}} or {{"type": "ref", "expr"}}',
                    )
                elif transform["type"] == "static" and set(transform) != {"type", "value"}:
                    errors.add("steps", f'{prefix}: arg {name}: a static transform is {{"type": "static", "value"}}')
                elif transform["type"] == "ref":
                    message = (
                        _expr_error(transform.get("expr"), seen)
                        if set(transform) == {"type", "expr"}
                        else ('a ref transform is {"type": "ref", "expr"}')
                    )
                    if message:
                        errors.add("steps", f"{prefix}: arg {name}: {message}")
        if isinstance(step_id, str):
            seen.append(step_id)
    if flow.early_return and flow.early_return not in seen:
        errors.add("early_return", f"no step with id '{flow.early_return}'")
    return dict(errors)
