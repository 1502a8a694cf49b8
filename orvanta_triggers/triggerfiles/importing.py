"""Import: the entries into a workspace in one transaction, through the services (so
through the one validation path), writing only what differs: importing the same file
twice writes nothing the second time, so no trigger's edited_at moves and no listener
reconnects. If reading or validation found any problem, nothing is written and
TriggerFileError lists them all.
"""

import json
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

from orvanta_triggers import selectors, services
from orvanta_triggers.triggerfiles.document import TriggerFileError, flow_config, trigger_config
from orvanta_triggers.triggerfiles.reading import read_path


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
