"""What the validators share: Errors (field name -> messages), JSON shape, depth and
strictness, and whether a script or flow exists.
"""

import json

from django.apps import apps

from orvanta_triggers import filters as filter_checks
from orvanta_triggers import registry

# Limits, each answered with a 400 that names it (README, "Security").
# JSON fields nest at most this deep: room for the deepest filters (groups 8 deep,
# values 32 deep), far from where Python's recursive JSON code gives up (~1,000).
MAX_JSON_DEPTH = 64
TOO_DEEP = f"nests deeper than {MAX_JSON_DEPTH} levels of arrays and objects (the limit for JSON)"


class Errors(dict):
    def add(self, field, message):
        self.setdefault(field, []).append(message)


def is_json_object(value):
    return isinstance(value, dict)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def json_depth_error(value):
    """Why `value` nests too deeply to be stored, or None."""
    return TOO_DEEP if filter_checks.nesting_depth(value) > MAX_JSON_DEPTH else None


def strict_json_errors(errors, obj, fields):
    """NaN and Infinity are not JSON (Python's json, e.g. an admin form, accepts them);
    the database's JSON check refuses them, so refuse them here, field-keyed; and so is
    JSON nested deeper than MAX_JSON_DEPTH."""
    for field in fields:
        value = getattr(obj, field)
        message = json_depth_error(value)
        if message:
            errors.add(field, message)
            continue
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            errors.add(field, "must be valid JSON (no NaN or Infinity)")


def script_error(path, label="script"):
    try:
        registry.module_name(path)
    except registry.UnknownScript as exc:
        return f"unknown {label}: {exc}"
    return None


def runnable_error(workspace_id, path, is_flow):
    if is_flow:
        # Through the app registry: models import the validation (clean()), which
        # imports this module, so this one doesn't import them back.
        flows = apps.get_model("orvanta_triggers", "Flow").objects
        if not isinstance(path, str) or not flows.filter(workspace_id=workspace_id, path=path).exists():
            return f"no flow '{path}' in this workspace"
        return None
    return script_error(path)
