"""Triggers as code: a workspace's WebSocket triggers and flows as one YAML or JSON
document (`exporttriggers`), and that document, or Windmill's trigger files, back into
a workspace (`importtriggers`).

The document (the trigger JSON's and the flow JSON's configuration fields, no status):

    version: 1
    path_prefix: f/feeds/      # only when exported with --path-prefix: --prune stays inside it
    flows:                     # imported before the triggers, which may run them
    - {path, preprocessor_path, steps, early_return}
    websocket_triggers:
    - {path, url, url_runnable_args, script_path, is_flow, mode, filters, ...}

Also read, as they are: one trigger (a Windmill `<path>.websocket_trigger.yaml` as
`wmill sync` writes it, whose path is its file name, or the trigger JSON of the API or
of Windmill's), a list of triggers, and a directory holding `*.websocket_trigger.yaml`
files (a `wmill sync` tree).

- export_document / render: the workspace -> a document -> text, in a fixed order
  (entries by path, fields in the trigger JSON's order, the keys of JSON objects in
  one order too), so the same configuration always gives the same bytes, on SQLite and
  PostgreSQL alike;
- read_path / parse / read_document: a file -> the entries to import, with the problems
  found in them (a file that can't be read or parsed raises TriggerFileError);
- import_document: the entries into a workspace in one transaction, through the
  services (so through the one validation path), writing only what differs: importing
  the same file twice writes nothing the second time, so no trigger's edited_at moves
  and no listener reconnects. If reading or validation found any problem, nothing is
  written and TriggerFileError lists them all.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml
from django.core.exceptions import ValidationError
from django.db import models, transaction

from orvanta_triggers import selectors, services, windmill
from orvanta_triggers.models import Flow, WebSocketTrigger

FORMAT_VERSION = 1
FORMATS = ("yaml", "json")
DOCUMENT_KEYS = ("version", "path_prefix", "flows", "websocket_triggers")
TRIGGER_FIELDS = services.TRIGGER_CONFIG_FIELDS
FLOW_FIELDS = services.FLOW_FIELDS
# Left out of an entry, these keep the stored value (as the API's PUT does: Windmill's
# update body never carries them); a new trigger gets the default.
KEPT_WHEN_ABSENT = ("mode", "enabled")
# Not written by exporttriggers: `enabled` is `mode`'s older alias (still read).
NOT_EXPORTED = ("enabled",)
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
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
PATH_FROM_NAME_HINT = " (or name the file <path>.websocket_trigger.yaml under its f/ or u/ folder, as wmill sync does)"
YAML_HEADER = (
    "# Orvanta WebSocket triggers and flows (python manage.py importtriggers WORKSPACE FILE).\n"
    "# Holds secrets as stored (headers, initial messages, runnable args): keep it private.\n"
)


class TriggerFileError(Exception):
    """The file can't be imported; `errors` lists every problem found, one line each."""

    def __init__(self, errors):
        super().__init__("\n".join(errors))
        self.errors = list(errors)


@dataclass(frozen=True)
class Entry:
    """One flow or trigger to import: its path and configuration (path excluded)."""

    kind: str  # "flow" or "trigger"
    path: str
    fields: dict
    where: str  # how error messages name it
    # What reading found wrong, "field: message" each. The fields named are left out of
    # `fields`, and their validation messages are not repeated.
    problems: tuple = ()
    problem_fields: frozenset = frozenset()


@dataclass
class TriggerDocument:
    flows: list = field(default_factory=list)
    triggers: list = field(default_factory=list)
    # --prune deletes only objects whose path starts with this ("" = the whole workspace).
    path_prefix: str = ""
    # Problems of the file itself, and of entries that can't be imported at all (no path).
    errors: list = field(default_factory=list)

    def problems(self):
        """Every problem reading found: the file's, then each entry's."""
        entries = [*self.flows, *self.triggers]
        return [*self.errors, *(f"{entry.where}: {problem}" for entry in entries for problem in entry.problems)]


@dataclass(frozen=True)
class Change:
    action: str  # "created", "changed" or "deleted"
    kind: str  # "flow" or "trigger"
    path: str
    fields: tuple = ()

    SYMBOLS = {"created": "+", "changed": "~", "deleted": "-"}

    def __str__(self):
        line = f"{self.SYMBOLS[self.action]} {self.action} {self.kind} {self.path}"
        return f"{line}: {', '.join(self.fields)}" if self.fields else line


@dataclass
class ImportResult:
    changes: list
    unchanged: int
    dry_run: bool

    def summary(self):
        if not self.changes:
            text = f"no changes ({self.unchanged} unchanged)"
        else:
            counts = {action: sum(c.action == action for c in self.changes) for action in Change.SYMBOLS}
            text = ", ".join(f"{n} {action}" for action, n in counts.items() if n)
            text += f", {self.unchanged} unchanged"
        return f"dry run, nothing written: {text}" if self.dry_run else text


# Export


# Keys that name an object (a step's id, a filter's key, a transform's type) come first,
# in this order; the rest are sorted.
LEADING_KEYS = ("id", "path", "key", "type", "script_path")


def _key_order(key):
    return (LEADING_KEYS.index(key) if key in LEADING_KEYS else len(LEADING_KEYS), key)


def _canonical(value):
    """`value` with the keys of every JSON object in it in a fixed order: PostgreSQL's
    jsonb keeps no key order, so a fixed one is what every database gives back alike."""
    if isinstance(value, dict):
        return {key: _canonical(value[key]) for key in sorted(value, key=_key_order)}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


def trigger_config(trigger):
    """The trigger's configuration, as the document holds it."""
    return {name: _canonical(getattr(trigger, name)) for name in TRIGGER_FIELDS}


def flow_config(flow):
    return {name: _canonical(getattr(flow, name)) for name in FLOW_FIELDS}


def flows_run_by(config):
    """Paths of the flows a trigger configuration runs: as its runnable, for its URL or
    for an initial message."""
    paths = set()
    if config.get("is_flow") and isinstance(config.get("script_path"), str):
        paths.add(config["script_path"])
    url = config.get("url")
    if isinstance(url, str) and url.startswith("$flow:"):
        paths.add(url.removeprefix("$flow:"))
    for message in config.get("initial_messages") or []:
        runnable = message.get("runnable_result") if isinstance(message, dict) else None
        if isinstance(runnable, dict) and runnable.get("is_flow") and isinstance(runnable.get("path"), str):
            paths.add(runnable["path"])
    return paths


def export_document(*, workspace, path_prefix=None):
    """The workspace's triggers (those whose path starts with `path_prefix`, if given)
    and flows (those under the prefix, and every flow an exported trigger runs)."""
    prefix = path_prefix or ""
    # Filtered again here: SQLite's LIKE (behind startswith) ignores case.
    triggers = [
        {name: value for name, value in trigger_config(t).items() if name not in NOT_EXPORTED}
        for t in selectors.workspace_triggers(workspace=workspace, path_start=prefix or None)
        if t.path.startswith(prefix)
    ]
    run = set().union(*(flows_run_by(config) for config in triggers))
    flows = [
        flow_config(f)
        for f in selectors.workspace_flows(workspace=workspace)
        if f.path.startswith(prefix) or f.path in run
    ]
    document = {"version": FORMAT_VERSION}
    if prefix:
        document["path_prefix"] = prefix
    # Sorted here, not by the database, whose collation may order paths otherwise.
    document["flows"] = sorted(flows, key=lambda config: config["path"])
    document["websocket_triggers"] = sorted(triggers, key=lambda config: config["path"])
    return document


def render(document, fmt="yaml"):
    if fmt == "json":
        text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)
        # A lone surrogate (a frame's, a filter's) can't be written as UTF-8: escaped.
        return LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text) + "\n"
    if fmt != "yaml":
        raise ValueError(f"unknown format '{fmt}': use {' or '.join(FORMATS)}")
    return YAML_HEADER + yaml.safe_dump(
        document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1_000_000
    )


def export_text(*, workspace, path_prefix=None, fmt="yaml"):
    return render(export_document(workspace=workspace, path_prefix=path_prefix), fmt)


# Reading a file


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


# Import


def _same(a, b):
    """Equal as JSON: true is not 1, and key order does not count."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def changed_fields(current_config, entry):
    """The entry's fields whose value differs from the stored configuration, in the
    document's order."""
    return tuple(name for name in entry.fields if not _same(current_config[name], entry.fields[name]))


def _messages(where, exc, skip=frozenset()):
    """The lines for a service's refusal, but for the fields in `skip` (already listed)."""
    if isinstance(exc, ValidationError):
        if hasattr(exc, "error_dict"):
            return [
                f"{where}: {message}" if name == "__all__" else f"{where}: {name}: {message}"
                for name, messages in exc.message_dict.items()
                if name not in skip
                for message in messages
            ]
        return [f"{where}: {message}" for message in exc.messages]
    return [f"{where}: {exc}"]


def _upsert(entries, existing, *, config_of, create, update, kind, changes, errors):
    unchanged = 0
    for entry in entries:
        # An entry reading found problems in still goes through validation, so that
        # its other fields' problems are listed too; the transaction is rolled back.
        errors.extend(f"{entry.where}: {problem}" for problem in entry.problems)
        current = existing.get(entry.path)
        try:
            if current is None:
                create(path=entry.path, **entry.fields)
                changes.append(Change("created", kind, entry.path))
                continue
            names = changed_fields(config_of(current), entry)
            if not names:
                unchanged += 1
                continue
            update(current, **{name: entry.fields[name] for name in names})
            changes.append(Change("changed", kind, entry.path, names))
        except (ValidationError, services.PlanNotAllowed) as exc:
            errors.extend(_messages(entry.where, exc, skip=entry.problem_fields))
    return unchanged


def import_document(*, workspace, document, dry_run=False, prune=False):
    """Create or update the document's flows, then its triggers, by path, in one
    transaction; with `prune`, then delete the workspace's triggers and flows the
    document does not list (within its path_prefix, if it has one). Only what differs
    is written. Every entry goes through the services (the one validation path); if
    any fails, or reading the file found problems, nothing is written and
    TriggerFileError lists every problem. With `dry_run`, everything is worked out the
    same way and rolled back."""
    changes, errors = [], list(document.errors)
    with transaction.atomic():
        unchanged = _upsert(
            document.flows,
            {f.path: f for f in selectors.workspace_flows(workspace=workspace)},
            config_of=flow_config,
            create=lambda **fields: services.create_flow(workspace=workspace, **fields),
            update=lambda flow, **fields: services.update_flow(flow=flow, **fields),
            kind="flow",
            changes=changes,
            errors=errors,
        )
        unchanged += _upsert(
            document.triggers,
            {t.path: t for t in selectors.workspace_triggers(workspace=workspace)},
            config_of=trigger_config,
            create=lambda **fields: services.create_trigger(workspace=workspace, **fields),
            update=lambda trigger, **fields: services.update_trigger(trigger=trigger, **fields),
            kind="trigger",
            changes=changes,
            errors=errors,
        )
        if prune:
            _prune(workspace, document, changes, errors)
        if errors:
            raise TriggerFileError(errors)
        if dry_run:
            transaction.set_rollback(True)
    return ImportResult(changes=changes, unchanged=unchanged, dry_run=dry_run)


def import_path(*, workspace, path, dry_run=False, prune=False):
    """The file (or wmill sync directory) at `path` into the workspace: read_path, then
    import_document. Raises TriggerFileError listing every problem."""
    return import_document(workspace=workspace, document=read_path(path), dry_run=dry_run, prune=prune)


def _prune(workspace, document, changes, errors):
    """Triggers first: a flow can't be deleted while a trigger runs it."""
    prefix = document.path_prefix
    listed = {entry.path for entry in document.triggers}
    for trigger in sorted(selectors.workspace_triggers(workspace=workspace), key=lambda t: t.path):
        if trigger.path.startswith(prefix) and trigger.path not in listed:
            services.delete_trigger(trigger=trigger)
            changes.append(Change("deleted", "trigger", trigger.path))
    listed = {entry.path for entry in document.flows}
    for flow in sorted(selectors.workspace_flows(workspace=workspace), key=lambda f: f.path):
        if flow.path.startswith(prefix) and flow.path not in listed:
            try:
                services.delete_flow(flow=flow)
            except ValidationError as exc:
                errors.extend(_messages(f"flow {flow.path}", exc))
                continue
            changes.append(Change("deleted", "flow", flow.path))
