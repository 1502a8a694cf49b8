"""Reading a file: a file -> the entries to import, with the problems found in them
(a file that can't be read or parsed raises TriggerFileError). Reads a document, one
trigger (a Windmill `<path>.websocket_trigger.yaml`, or the trigger JSON of the API or
of Windmill's), a list of triggers, or a directory of `wmill sync` trigger files.
"""

import json
from pathlib import Path, PurePosixPath

import yaml
from django.db import models

from orvanta_triggers import windmill
from orvanta_triggers.models import Flow, WebSocketTrigger
from orvanta_triggers.triggerfiles.document import (
    DOCUMENT_KEYS,
    FLOW_FIELDS,
    FORMAT_VERSION,
    TRIGGER_FIELDS,
    Entry,
    TriggerDocument,
    TriggerFileError,
)

# Left out of an entry, these keep the stored value (as the API's PUT does: Windmill's
# update body never carries them); a new trigger gets the default.
KEPT_WHEN_ABSENT = ("mode", "enabled")
# Fields of the API's or Windmill's trigger JSON that are not configuration: read-only
# status, and Windmill's ownership and server bookkeeping. Accepted and ignored, so a
# trigger JSON or a `wmill sync` file imports as is; any other unknown field is an error.
IGNORED_TRIGGER_KEYS = frozenset(
    {
        *WebSocketTrigger.STATUS_FIELDS,
        "edited_at",
        "created_at",
        "workspace_id",
        "edited_by",
        "email",
        "extra_perms",
        "server_id",
        "last_server_ping",
        "permissioned_as",
        "preserve_permissioned_as",
        "labels",
    }
)
IGNORED_FLOW_KEYS = frozenset({"created_at", "edited_at"})
WINDMILL_TRIGGER_SUFFIXES = (".websocket_trigger.yaml", ".websocket_trigger.yml", ".websocket_trigger.json")
# Windmill paths start with u/<user>/ or f/<folder>/.
WINDMILL_PATH_ROOTS = ("f", "u")
PATH_FROM_NAME_HINT = " (or name the file <path>.websocket_trigger.yaml under its f/ or u/ folder, as wmill sync does)"


def parse(text, *, name):
    """The data in `text`: JSON when `name` ends in .json, else YAML (safe_load)."""
    if name.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise TriggerFileError([f"{name}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"])
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise TriggerFileError([f"{name}: not valid YAML: {problem}{where}"])
    except yaml.YAMLError as exc:
        raise TriggerFileError([f"{name}: not valid YAML: {exc}"])


def read_path(path):
    """The document in the file at `path`, or, for a directory, the Windmill trigger
    files under it (`<path>.websocket_trigger.yaml|yml|json`, as `wmill sync` lays them
    out). Raises TriggerFileError when the file can't be read or parsed; problems of
    its content are listed by the document (TriggerDocument.problems)."""
    path = Path(path)
    if path.is_dir():
        return _read_windmill_tree(path)
    return read_document(parse(_read_text(path), name=str(path)), name=str(path), default_path=_path_from_name(path))


def _read_text(path):
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TriggerFileError([f"can't read {path}: {exc.strerror or exc}"])
    except UnicodeDecodeError as exc:
        raise TriggerFileError([f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"])


def _windmill_stem(name):
    for suffix in WINDMILL_TRIGGER_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return None


def _path_from_name(path):
    """The trigger path a `wmill sync` file name gives (`f/feeds/ticks.websocket_trigger.yaml`
    -> `f/feeds/ticks`), from its first f/ or u/ folder on, or None."""
    try:
        path = path.resolve().relative_to(Path.cwd().resolve())
    except (OSError, ValueError):
        pass
    stem = _windmill_stem(path.as_posix())
    if stem is None:
        return None
    parts = PurePosixPath(stem).parts
    for index, part in enumerate(parts):
        if part in WINDMILL_PATH_ROOTS and len(parts) - index >= 3:
            return "/".join(parts[index:])
    return None


def _read_windmill_tree(root):
    files = sorted(p for p in root.rglob("*") if p.is_file() and _windmill_stem(p.name) is not None)
    if not files:
        raise TriggerFileError([f"{root}: no *.websocket_trigger.yaml, .yml or .json file in this directory"])
    document = TriggerDocument()
    for file in files:
        relative = file.relative_to(root).as_posix()
        try:
            data = parse(_read_text(file), name=relative)
        except TriggerFileError as exc:
            document.errors.extend(exc.errors)
            continue
        if not isinstance(data, dict):
            document.errors.append(f"{relative}: must be a mapping of trigger fields")
            continue
        read = read_document(data, name=relative, default_path=_windmill_stem(relative))
        document.errors.extend(read.errors)
        document.triggers.extend(read.triggers)
    _drop_duplicates(document)
    return document


def read_document(data, *, name, default_path=None):
    """The entries in parsed file data (a document, one trigger, or a list of triggers),
    with every problem found in them (TriggerDocument.problems)."""
    document = TriggerDocument()
    errors = document.errors
    if isinstance(data, dict) and not set(data).isdisjoint(DOCUMENT_KEYS):
        for key in sorted(set(data) - set(DOCUMENT_KEYS), key=str):
            errors.append(f"{name}: {key}: unknown top-level key (expected {', '.join(DOCUMENT_KEYS)})")
        version = data.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION or isinstance(version, bool):
            errors.append(f"{name}: version: {version!r} is not a version this program reads (use {FORMAT_VERSION})")
        prefix = data.get("path_prefix")
        if prefix is not None and not isinstance(prefix, str):
            errors.append(f"{name}: path_prefix: must be a string")
        else:
            document.path_prefix = prefix or ""
        sections = {}
        for key in ("flows", "websocket_triggers"):
            sections[key] = data.get(key)
            if sections[key] is None:
                sections[key] = []
            elif not isinstance(sections[key], list):
                errors.append(f"{name}: {key}: must be a list")
                sections[key] = []
        document.flows = _read_entries(sections["flows"], "flows", _read_flow, errors)
        document.triggers = _read_entries(sections["websocket_triggers"], "websocket_triggers", _read_trigger, errors)
    elif isinstance(data, dict):
        document.triggers = _read_entries([data], None, _read_trigger, errors, name=name, default_path=default_path)
    elif isinstance(data, list):
        document.triggers = _read_entries(data, None, _read_trigger, errors, name=name)
    elif data is None:
        errors.append(f"{name}: the file is empty")
    else:
        errors.append(
            f"{name}: expected a document (version, flows, websocket_triggers), a trigger or a list of triggers"
        )
    _drop_duplicates(document)
    return document


def _read_entries(items, section, reader, errors, *, name=None, default_path=None):
    entries = []
    for index, item in enumerate(items):
        where = f"{section}[{index}]" if section else (name if len(items) == 1 else f"{name}: [{index}]")
        entry = reader(item, where, errors, default_path=default_path, standalone=section is None)
        if entry is not None:
            entries.append(entry)
    return entries


def _drop_duplicates(document):
    """Keep the first entry of each path; a path listed again is an error."""
    for kind, name in (("flow", "flows"), ("trigger", "triggers")):
        seen, kept = set(), []
        for entry in getattr(document, name):
            if entry.path in seen:
                document.errors.append(f"{kind} {entry.path}: listed more than once")
            else:
                seen.add(entry.path)
                kept.append(entry)
        setattr(document, name, kept)


def _json_problem(value):
    """Why `value` is not a JSON value (YAML can also hold dates, binary, ...), or None."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return None
    if isinstance(value, list):
        return next(filter(None, map(_json_problem, value)), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"the key {key!r} is not a string"
            problem = _json_problem(item)
            if problem:
                return problem
        return None
    return f"{value!r} is not a JSON value (in YAML, quote it)"


def _read_entry(model, kind, item, where, errors, *, names, ignored, problems=None, default_path=None, hint=None):
    """An Entry for `item`, its fields type-checked against the model's, or None (and
    an error) when it has no usable path."""
    if not isinstance(item, dict):
        errors.append(f"{where}: must be a mapping of {kind} fields")
        return None
    problems = dict(problems or {})
    hint = hint or {}
    for key in sorted(set(item) - set(names) - ignored, key=str):
        problems.setdefault(key, []).append("unknown field")
    path = item.get("path", default_path)
    values = {}
    for name in names:
        model_field = model._meta.get_field(name)
        if name == "path":
            value = path
        elif name in item:
            value = item[name]
        elif name in KEPT_WHEN_ABSENT:
            continue
        elif model_field.has_default() or model_field.null:
            value = model_field.get_default()
        else:
            value = None
        if value is None and not model_field.null:
            if isinstance(model_field, models.JSONField) and model_field.has_default():
                # Windmill leaves out (or nulls) what it has not set.
                value = model_field.get_default()
            else:
                problems.setdefault(name, []).append(
                    "may not be null" if name in item else "required" + hint.get(name, "")
                )
                continue
        problem = _type_problem(model_field, value)
        if problem:
            problems.setdefault(name, []).append(problem)
            continue
        values[name] = value
    listed = tuple(f"{name}: {message}" for name, messages in problems.items() for message in messages)
    if "path" not in values:
        errors.extend(f"{where}: {problem}" for problem in listed)
        return None
    return Entry(
        kind=kind,
        path=values.pop("path"),
        fields=values,
        where=f"{kind} {path}" if path else where,
        problems=listed,
        problem_fields=frozenset(problems),
    )


def _type_problem(model_field, value):
    if value is None:
        return None
    if isinstance(model_field, models.BooleanField):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(model_field, models.CharField):
        return None if isinstance(value, str) else "must be a string"
    return _json_problem(value)


def _from_windmill(item):
    """`item` with Windmill's shapes translated, and the problems of those it can't take."""
    problems = {}
    while isinstance(item, dict):
        try:
            return windmill.from_windmill(item), problems
        except windmill.WindmillShapeError as exc:
            for name, messages in exc.errors.items():
                problems.setdefault(name, []).extend(messages)
            left = {key: value for key, value in item.items() if key not in exc.errors}
            if len(left) == len(item):
                break
            item = left
    return item, problems


def _read_trigger(item, where, errors, *, default_path=None, standalone=False):
    item, problems = _from_windmill(item)
    return _read_entry(
        WebSocketTrigger,
        "trigger",
        item,
        where,
        errors,
        names=TRIGGER_FIELDS,
        ignored=IGNORED_TRIGGER_KEYS,
        problems=problems,
        default_path=default_path,
        hint={"path": PATH_FROM_NAME_HINT} if standalone else None,
    )


def _read_flow(item, where, errors, *, default_path=None, standalone=False):
    return _read_entry(Flow, "flow", item, where, errors, names=FLOW_FIELDS, ignored=IGNORED_FLOW_KEYS)
